"""A cgroup CPU quota caps the threads mlstm's plans use (mlstm/engines/cpu_plans.py: cores,
cgroup_cpu_quota): the quota files of cgroup v2 and v1 read from trees written here, ancestors
and containers included; the serial plan's BLAS kept to those threads; and, where this machine
lets a test make a cgroup, a real process under a one-CPU quota."""

import json
import os
import subprocess
import sys
import textwrap
import uuid

import numpy as np
import pytest
from reference import random_problem, reference_lstm

from mlstm.engines import cpu_plans, numpy_engine
from mlstm.formats import resolve

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def tree(tmp_path, files: dict[str, str], self_cgroup: str) -> tuple[str, str]:
    """A cgroup mount under tmp_path with ``files`` (path -> text), and a /proc/self/cgroup."""
    root = tmp_path / "cgroup"
    root.mkdir()
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    proc = tmp_path / "self-cgroup"
    proc.write_text(self_cgroup)
    return str(root), str(proc)


@pytest.mark.parametrize(
    "files, self_cgroup, expected",
    [
        ({"cpu.max": "200000 100000\n"}, "0::/\n", 2.0),  # cgroup v2, the container's own root
        ({"cpu.max": "max 100000\n"}, "0::/\n", None),  # no quota
        # the quota of an ancestor counts; the smallest over the path wins
        ({"a/b/cpu.max": "max 100000\n", "a/cpu.max": "150000 100000\n", "cpu.max": "400000 100000"}, "0::/a/b\n", 1.5),
        ({"a/b/cpu.max": "50000 100000\n", "a/cpu.max": "150000 100000\n"}, "0::/a/b\n", 0.5),
        # a container that sees the host's path in /proc/self/cgroup but its own cgroup as the mount
        ({"cpu.max": "50000 100000\n"}, "0::/system.slice/docker-0123.scope\n", 0.5),
        # cgroup v1, the cpu controller mounted with cpuacct, the process one level down
        (
            {"cpu,cpuacct/job/cpu.cfs_quota_us": "300000\n", "cpu,cpuacct/job/cpu.cfs_period_us": "100000\n"},
            "4:cpu,cpuacct:/job\n3:memory:/job\n",
            3.0,
        ),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, "2:cpu:/\n", None),  # v1: none
        (
            {
                "cpu/job/cpu.cfs_quota_us": "-1\n",
                "cpu/job/cpu.cfs_period_us": "100000\n",
                "cpu/cpu.cfs_quota_us": "100000\n",
                "cpu/cpu.cfs_period_us": "50000\n",
            },
            "2:cpu:/job\n",
            2.0,
        ),
        ({"cpu.max": "banana\n"}, "0::/\n", None),  # unreadable content: as if no quota
        ({"cpu.max": "100000 0\n"}, "0::/\n", None),
        ({"cpu.max": "100000\n"}, "0::/\n", None),
        ({}, "0::/\n", None),  # no files at all
        # a path out of the mount is not followed, to a directory beside the mount or one whose
        # name only begins with the mount's: the mount's own quota counts
        ({"cpu.max": "100000 100000\n", "../outside/cpu.max": "50000 100000\n"}, "0::/../outside\n", 1.0),
        ({"cpu.max": "100000 100000\n", "../cgroupX/cpu.max": "50000 100000\n"}, "0::/../cgroupX\n", 1.0),
        # pure v2: a cgroup that happens to be called "cpu" (or "cpu,cpuacct") is not v1's mount
        ({"cpu.max": "max 100000\n", "cpu/cpu.max": "50000 100000\n"}, "0::/\n", None),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "50000\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, "0::/\n", None),
        # pure v1: a cpu.max at the tmpfs above the controllers' mounts is not read
        (
            {"cpu.max": "50000 100000\n", "cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"},
            "2:cpu:/\n",
            None,
        ),
        # a file that names no cpu hierarchy (v1 with the cpu controller not mounted): every mount
        ({"cpu.max": "50000 100000\n"}, "3:memory:/job\n", 0.5),
    ],
)
def test_quota_files(tmp_path, files, self_cgroup, expected):
    root, proc = tree(tmp_path, files, self_cgroup)
    assert cpu_plans.cgroup_cpu_quota(root, proc) == expected


def test_no_proc_file_still_reads_the_mount(tmp_path):
    root, _ = tree(tmp_path, {"cpu.max": "100000 100000\n"}, "")
    assert cpu_plans.cgroup_cpu_quota(root, str(tmp_path / "absent")) == 1.0


@pytest.mark.parametrize("spelling", ["{}/", "{}//", "{}/.", "{}/../cgroup/"])
def test_the_mount_may_be_spelled_any_way(tmp_path, spelling):
    root, proc = tree(tmp_path, {"a/cpu.max": "50000 100000\n"}, "0::/a\n")
    assert cpu_plans.cgroup_cpu_quota(spelling.format(root), proc) == 0.5


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_reads_its_quota_again(monkeypatch):
    """The quota is read once per process, and again in a forked child (a child may be moved to
    another cgroup, as a job runner does)."""
    answers = iter([1.0, 3.0])
    monkeypatch.setattr(cpu_plans, "cgroup_cpu_quota", lambda: next(answers))
    cpu_plans.process_cpu_quota.cache_clear()
    try:
        assert cpu_plans.process_cpu_quota() == 1.0
        assert cpu_plans.process_cpu_quota() == 1.0  # cached
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what it reads, and leave without pytest's teardown
            try:
                os.write(write, repr(cpu_plans.process_cpu_quota()).encode())
            finally:
                os._exit(0)
        os.close(write)
        with os.fdopen(read) as fh:
            child = fh.read()
        os.waitpid(pid, 0)
        assert child == "3.0"
        assert cpu_plans.process_cpu_quota() == 1.0  # the parent's is kept
    finally:
        cpu_plans.process_cpu_quota.cache_clear()


@pytest.mark.parametrize("quota, expected", [(0.5, 1), (1.0, 1), (1.2, 2), (2.0, 2), (64.0, None)])
def test_cores_are_capped_by_the_quota_rounded_up(monkeypatch, quota, expected):
    monkeypatch.delenv("MLSTM_NUM_THREADS", raising=False)
    affinity = len(os.sched_getaffinity(0))
    monkeypatch.setattr(cpu_plans, "process_cpu_quota", lambda: quota)
    assert cpu_plans.cores() == min(affinity, expected or affinity)
    monkeypatch.setenv("MLSTM_NUM_THREADS", "3")  # asked for: what the user says goes
    assert cpu_plans.cores() == 3


def test_the_serial_plan_keeps_the_blas_to_the_threads_allowed(monkeypatch):
    """MLSTM_NUM_THREADS (or a quota) below the BLAS's own count: the serial plan runs the BLAS at
    the threads allowed, and puts the count back after."""
    loops = numpy_engine.compiled_loop()
    if loops is None or loops[np.dtype(np.float32)].blas_threads is None:
        pytest.skip("the compiled loop or scipy's OpenBLAS thread controls are not here")
    args = random_problem(np.random.default_rng(5), C=16, H=64, B=32, T=50, scale=0.3, dtype=np.float32)
    p = resolve(*args, "CBT")
    eng = numpy_engine.prepare(p.weights, p.recurrent_weights, p.bias, "sigmoid", "tanh", p.dtype)
    blas = eng.loop.blas_threads
    before = blas.get()
    real_set = blas.set
    seen = []

    def recording_set(n):
        seen.append(n)
        return real_set(n)

    monkeypatch.setattr(blas, "set", recording_set)
    monkeypatch.setenv("MLSTM_CPU_PLAN", "serial")
    monkeypatch.setenv("MLSTM_NUM_THREADS", "1")
    real_set(3)  # as OpenBLAS would be on a machine with more cores than this process may use
    try:
        y, h, c = eng.run(p.x, p.hidden_state, p.cell_state)
        assert seen == [1, 3]  # one thread for the run, then put back
        assert eng.last_plan == "serial"
        for got, want in zip(p.restore(y, h, c), reference_lstm(*args, "CBT")):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        seen.clear()
        monkeypatch.setenv("MLSTM_NUM_THREADS", "4")  # more allowed than the BLAS has: left alone
        eng.run(p.x, p.hidden_state, p.cell_state)
        assert seen == [3]  # only the put-back
    finally:
        real_set(before)


def test_the_numpy_loop_keeps_the_blas_to_the_threads_allowed(monkeypatch):
    """The NumPy loop (MLSTM_PURE_NUMPY=1, or no compiled loop) calls scipy's gemm for larger
    problems: it runs at no more threads than a plan may use (MLSTM_NUM_THREADS, a quota), and
    the BLAS's count is put back after. (OpenBLAS counts the CPUs it sees, not a cgroup quota.)"""
    from mlstm.engines import cpu_loop

    blas = cpu_loop._blas_threads()  # the same library's controls, found on their own
    if blas is None:
        pytest.skip("scipy's OpenBLAS thread controls are not here")
    args = random_problem(np.random.default_rng(6), C=16, H=64, B=32, T=20, scale=0.3, dtype=np.float32)
    p = resolve(*args, "CBT")
    eng = numpy_engine.prepare(p.weights, p.recurrent_weights, p.bias, "sigmoid", "tanh", p.dtype, compiled=False)
    assert eng.loop is None and eng._scipy_gemm(32) is not None  # the NumPy loop, with scipy's gemm
    real_steps = eng._numpy_steps
    during = []

    def recording_steps(*a):
        during.append(blas.get())
        return real_steps(*a)

    monkeypatch.setattr(eng, "_numpy_steps", recording_steps)
    before = blas.get()
    blas.set(3)  # as OpenBLAS would be on a machine with more CPUs than this process may use
    try:
        monkeypatch.setenv("MLSTM_NUM_THREADS", "1")
        y, h, c = eng.run(p.x, p.hidden_state, p.cell_state)
        assert during == [1] and blas.get() == 3
        for got, want in zip(p.restore(y, h, c), reference_lstm(*args, "CBT")):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        during.clear()
        monkeypatch.setenv("MLSTM_NUM_THREADS", "4")  # more allowed than the BLAS has: left alone
        eng.run(p.x, p.hidden_state, p.cell_state)
        assert during == [3] and blas.get() == 3
    finally:
        blas.set(before)


def _writable_cpu_cgroup() -> tuple[str, str] | None:
    """(a new cgroup directory, its quota file) under a writable cpu controller, or None."""
    name = f"mlstm-test-{uuid.uuid4().hex[:8]}"
    v1 = "/sys/fs/cgroup/cpu"
    v2 = "/sys/fs/cgroup"
    if os.path.isfile(os.path.join(v1, "cpu.cfs_quota_us")) and os.access(v1, os.W_OK):
        directory, quota = os.path.join(v1, name), "cpu.cfs_quota_us"
    elif os.path.isfile(os.path.join(v2, "cgroup.controllers")) and os.access(v2, os.W_OK):
        with open(os.path.join(v2, "cgroup.subtree_control")) as fh:
            if "cpu" not in fh.read().split():
                return None
        directory, quota = os.path.join(v2, name), "cpu.max"
    else:
        return None
    try:
        os.mkdir(directory)
    except OSError:
        return None
    return directory, quota


@pytest.fixture
def one_cpu_cgroup():
    made = _writable_cpu_cgroup()
    if made is None:
        pytest.skip("no writable cgroup cpu controller here (not root, or a read-only cgroupfs)")
    directory, quota = made
    try:
        with open(os.path.join(directory, quota), "w") as fh:
            fh.write("100000" if quota == "cpu.cfs_quota_us" else "100000 100000")
    except OSError:
        os.rmdir(directory)
        pytest.skip("the cgroup's quota cannot be set here")
    yield directory
    os.rmdir(directory)  # empty again: its one process has exited


def test_a_process_under_a_one_cpu_quota_plans_for_one_thread(one_cpu_cgroup):
    """A real cgroup with a quota of one CPU's time: mlstm counts one core and the plan of a run
    that would otherwise split is the one-thread loop, the BLAS at one thread too."""
    script = textwrap.dedent(
        """
        import os, sys, json
        import numpy as np
        from mlstm.engines import cpu_plans, numpy_engine
        print(json.dumps({"quota": cpu_plans.cgroup_cpu_quota(), "cores": cpu_plans.cores(),
                          "plan": numpy_engine.cpu_plan(1000, 256, 40, 64, np.dtype(np.float32))}))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("MLSTM_NUM_THREADS", "MLSTM_CPU_PLAN")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    procs = os.path.join(one_cpu_cgroup, "cgroup.procs")
    shell = f'(echo $$ > "{procs}") 2>/dev/null || exit 77; exec "{sys.executable}" -c "$0"'
    done = subprocess.run(["sh", "-c", shell, script], env=env, capture_output=True, text=True, timeout=120)
    if done.returncode == 77:
        pytest.skip("a process cannot be moved into the new cgroup here (cgroup.procs refused the write)")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["quota"] == 1.0
    assert got["cores"] == 1
    assert got["plan"] == ["single", 1]
