"""Faults while writing and running: a full disk or file-size limit, signals, a reader that goes
away, outputs that would destroy an input. Every case: the documented exit status, one line on
stderr, the previous output byte for byte as it was, and no temporary file left behind."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import REPO, assert_one_line_error, run_mlstm

from mlstm.io.output import AtomicOutput, GuardedFile, is_temporary, remove_stale_temporaries


def _problem(rng, c=6, h=8, b=3, t=400, dtype=np.float64):
    return {
        "X": rng.standard_normal((c, b, t)).astype(dtype),
        "H0": np.zeros((h, b), dtype),
        "C0": np.zeros((h, b), dtype),
        "weights": (0.3 * rng.standard_normal((4 * h, c))).astype(dtype),
        "recurrentWeights": (0.3 * rng.standard_normal((4 * h, h))).astype(dtype),
        "bias": np.zeros((4 * h, 1), dtype),
    }


@pytest.fixture
def inputs(tmp_path, rng):
    problem = _problem(rng)
    mat = tmp_path / "in.mat"
    scipy.io.savemat(mat, dict(problem, DataFormat="CBT"))
    h5 = tmp_path / "in.h5"
    with h5py.File(h5, "w") as f:
        for name, value in problem.items():
            f[name] = value
    return tmp_path, mat, h5


def _temporaries(directory):
    return [name for name in os.listdir(directory) if is_temporary(name)]


def _env(**extra):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(extra)
    return env


def _run_limited(args, limit, cwd):
    """``python -m mlstm ARGS`` with RLIMIT_FSIZE = limit bytes (no root needed)."""

    def limit_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    proc = subprocess.run(
        [sys.executable, "-m", "mlstm", *map(str, args)],
        capture_output=True,
        preexec_fn=limit_size,
        env=_env(),
        cwd=cwd,
        timeout=300,
    )
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


# ---------------------------------------------------------------- a file-size limit (EFBIG) mid-write

WRITES = [
    ("in.mat", "out.mat", []),  # MAT v7 through scipy
    ("in.mat", "out.h5", []),  # HDF5, whole variables
    ("in.mat", "out.mat", ["--format", "mat73"]),  # MAT v7.3, whole variables
    ("in.h5", "out.h5", ["DataFormat=CBT", "--chunk-steps", "50"]),  # HDF5 streamed block by block
    ("in.h5", "out.mat", ["DataFormat=CBT", "--chunk-steps", "50", "--format", "mat73"]),  # v7.3 streamed
]


@pytest.mark.parametrize("source,target,extra", WRITES)
@pytest.mark.parametrize("limit", [4096, 60_000])
def test_file_size_limit_is_one_error_and_keeps_the_previous_output(inputs, source, target, extra, limit):
    directory, _, _ = inputs
    previous = b"a good previous output" * 5000  # over the limit: it was written before the limit
    (directory / target).write_bytes(previous)
    proc = _run_limited(["run", source, "-o", target, *extra], limit, directory)
    assert_one_line_error(proc, target, "File too large")
    assert proc.returncode == 2  # not a crash (h5py used to segfault at exit here)
    assert (directory / target).read_bytes() == previous
    assert _temporaries(directory) == []


def test_a_write_within_the_limit_still_works(inputs):
    directory, _, _ = inputs
    proc = _run_limited(["run", "in.h5", "-o", "out.h5", "DataFormat=CBT", "--chunk-steps", "50"], 50 << 20, directory)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(directory / "out.h5") as f:
        assert f["Y"].shape == (8, 3, 400)


def test_guarded_file_keeps_the_first_write_error_and_reads_zeros_past_the_end(tmp_path):
    class Full(OSError):
        pass

    guarded = GuardedFile(str(tmp_path / "f.bin"))
    assert guarded.write(b"abc") == 3
    guarded._fh.close()  # every later write fails as a full disk would
    guarded._fh = open(tmp_path / "f.bin", "rb", buffering=0)  # noqa: SIM115 - read-only: writes fail
    assert guarded.write(b"defg") == 4  # reported as done to HDF5
    assert isinstance(guarded.error, OSError)
    guarded.seek(0)
    buffer = bytearray(6)
    assert guarded.readinto(buffer) == 6
    assert bytes(buffer) == b"abc\0\0\0"
    with pytest.raises(OSError):
        guarded.raise_error()
    guarded.close()


# ---------------------------------------------------------------- temporary files


def test_failed_commit_removes_the_temporary(tmp_path):
    target = tmp_path / "out.mat"
    with pytest.raises(Exception, match="No space left"), AtomicOutput(str(target)) as out:
        with open(out.tmp, "wb") as fh:
            fh.write(b"x")
        raise OSError(28, "No space left on device")
    assert _temporaries(tmp_path) == []
    assert not target.exists()


def test_commit_onto_a_directory_is_one_error_and_no_temporary(inputs):
    directory, _, _ = inputs
    os.mkdir(directory / "taken.mat")
    proc = run_mlstm("run", "in.mat", "-o", "taken.mat", cwd=directory)
    assert_one_line_error(proc, "taken.mat", "directory")
    assert _temporaries(directory) == []


def test_stale_temporary_of_a_killed_run_is_removed_by_the_next_run(inputs):
    directory, _, _ = inputs
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    import socket

    host = "".join(ch if ch.isalnum() else "_" for ch in socket.gethostname())[:40]
    stale = directory / f".mlstm-{host}-{dead.pid}-abcd1234.tmp"
    stale.write_bytes(b"half a file")
    alive = directory / f".mlstm-{host}-{os.getpid()}-efgh5678.tmp"  # a live process's (this one)
    alive.write_bytes(b"in progress")
    run_mlstm("run", "in.mat", "-o", "out.mat", cwd=directory, check=0)
    assert not stale.exists()
    assert alive.exists()
    alive.unlink()
    assert remove_stale_temporaries(str(directory)) == []


def test_sigkill_leaves_a_temporary_that_batch_never_counts(inputs):
    directory, _, _ = inputs
    (directory / "b.mat").write_bytes((directory / "in.mat").read_bytes())
    out = directory / "out"
    out.mkdir()
    (out / ".mlstm-otherhost-1-zzzz.tmp").write_bytes(b"half a file")  # another host's: left alone
    proc = run_mlstm("batch", "in.mat", "b.mat", "--out-dir", out, "--summary", directory / "s.jsonl", cwd=directory)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir() if not is_temporary(p.name)) == ["b.mat", "in.mat"]
    assert "2 done, 0 skipped" in proc.stderr


# ---------------------------------------------------------------- signals


@pytest.fixture
def long_run(tmp_path, rng):
    """A run of tens of seconds in one call of the compiled loop (one observation, 1024 units,
    float32: each step streams the 16 MB recurrent matrix)."""
    h, t = 1024, 20000
    problem = _problem(rng, c=4, h=h, b=1, t=t, dtype=np.float32)
    problem["recurrentWeights"] *= 0.2
    scipy.io.savemat(tmp_path / "long.mat", dict(problem, DataFormat="CBT"))
    return tmp_path


def _interrupt(directory, signum, args, env=None, wait=2.0):
    previous = b"previous output"
    (directory / "out.mat").write_bytes(previous)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlstm", "run", *args, "-o", "out.mat"],
        cwd=directory,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(**(env or {})),
    )
    time.sleep(wait)
    assert proc.poll() is None, "the run ended before the signal: make it longer"
    sent = time.perf_counter()
    proc.send_signal(signum)
    code = proc.wait(timeout=60)
    latency = time.perf_counter() - sent
    stderr = proc.stderr.read().decode()
    assert (directory / "out.mat").read_bytes() == previous
    assert _temporaries(directory) == []
    return code, latency, stderr


@pytest.mark.parametrize("plan", ["serial", "units", "batch"])
@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_stops_the_compiled_loop_promptly(long_run, plan, signum, status):
    from mlstm.engines.numpy_engine import compiled_loop

    if compiled_loop() is None:
        pytest.skip("the compiled loop is not built")
    code, latency, stderr = _interrupt(long_run, signum, ["long.mat"], env={"MLSTM_CPU_PLAN": plan})
    assert code == status, stderr
    assert stderr.strip().splitlines() == [
        f"mlstm: interrupted by {signal.Signals(signum).name}; no output was written"
    ]
    # Measured 0.1-0.3 s; the run itself takes tens of seconds. The bound only tells "stopped
    # within a few steps" from "ran on to the end", with room for a loaded CI machine.
    assert latency < 5.0, f"took {latency:.2f} s to stop"


def test_sigint_during_a_streamed_hdf5_run_is_not_swallowed(long_run):
    data = scipy.io.loadmat(long_run / "long.mat")
    with h5py.File(long_run / "long.h5", "w") as f:
        for name in ("X", "H0", "C0", "weights", "recurrentWeights", "bias"):
            f[name] = data[name]
    code, latency, stderr = _interrupt(
        long_run, signal.SIGINT, ["long.h5", "DataFormat=CBT", "--chunk-steps", "500", "--format", "mat73"]
    )
    assert code == 130, stderr
    assert latency < 5.0  # a block of Y is written and the v7.3 file closed on the way out


# ---------------------------------------------------------------- a reader that goes away


def test_broken_pipe_on_stdout_exits_quietly_with_141(tmp_path, rng):
    directory = tmp_path
    scipy.io.savemat(directory / "in.mat", dict(_problem(rng, t=4000), DataFormat="CBT"))  # Y > a pipe's 64 KB
    private_tmp = tmp_path / "tmpdir"
    private_tmp.mkdir()
    script = f"{sys.executable} -m mlstm run in.mat -o - | head -c 10 > /dev/null; echo ${{PIPESTATUS[0]}}"
    proc = subprocess.run(
        ["bash", "-c", script], cwd=directory, capture_output=True, text=True, env=_env(TMPDIR=str(private_tmp))
    )
    assert proc.stdout.strip() == "141"
    assert proc.stderr == ""
    assert _temporaries(private_tmp) == []


def test_binary_output_refused_on_a_terminal(inputs):
    import pty

    directory, _, _ = inputs
    leader, follower = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "mlstm", "run", "in.mat", "-o", "-"],
        cwd=directory,
        stdout=follower,
        stderr=subprocess.PIPE,
        env=_env(),
        timeout=120,
    )
    os.close(follower)
    os.close(leader)
    proc.stderr = proc.stderr.decode()
    assert_one_line_error(proc, "-o -", "terminal")


def test_closed_stdin_is_one_error(inputs):
    directory, _, _ = inputs
    proc = subprocess.run(
        [sys.executable, "-m", "mlstm", "run", "-", "-o", "out.mat"],
        cwd=directory,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=_env(),
        close_fds=True,
        preexec_fn=lambda: os.close(0),
    )
    proc.stderr = proc.stderr.decode()
    assert_one_line_error(proc, "<stdin>", "closed")


# ---------------------------------------------------------------- never destroy an input


def test_output_that_is_the_input_is_refused(inputs):
    directory, mat, _ = inputs
    before = mat.read_bytes()
    os.symlink(mat, directory / "link.mat")
    os.link(mat, directory / "hard.mat")
    for target in ("in.mat", "./in.mat", "link.mat", "hard.mat", str(mat)):
        proc = run_mlstm("run", "in.mat", "-o", target, cwd=directory)
        assert_one_line_error(proc, "is the input", "in.mat")
    assert mat.read_bytes() == before


def test_output_that_is_the_weights_file_is_refused(inputs):
    directory, _, _ = inputs
    proc = run_mlstm("run", "in.mat", "--weights", "in.h5", "-o", "in.h5", cwd=directory)
    assert_one_line_error(proc, "is the input", "in.h5")


def test_output_fifo_and_device_are_refused(inputs):
    directory, _, _ = inputs
    os.mkfifo(directory / "pipe.mat")
    proc = run_mlstm("run", "in.mat", "-o", "pipe.mat", cwd=directory)
    assert_one_line_error(proc, "pipe.mat", "FIFO")
    proc = run_mlstm("run", "in.mat", "-o", "/dev/null", "--format", "mat", cwd=directory)
    assert_one_line_error(proc, "/dev/null", "device")


def test_batch_out_dir_holding_the_inputs_is_refused_before_any_work(inputs):
    directory, mat, _ = inputs
    before = mat.read_bytes()
    (directory / "other.mat").write_bytes(before)
    proc = run_mlstm("batch", "in.mat", "other.mat", "--out-dir", ".", "--no-resume", cwd=directory)
    assert_one_line_error(proc, "is the input")
    assert mat.read_bytes() == before and (directory / "other.mat").read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_directory_fails_before_computing(inputs):
    directory, _, _ = inputs
    locked = directory / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        proc = run_mlstm("run", "in.mat", "-o", locked / "out.mat", cwd=directory)
        assert_one_line_error(proc, "not writable")
    finally:
        locked.chmod(0o755)


def test_unwritable_directory_fails_before_computing(inputs, monkeypatch):
    """As root the directory permission cannot stop a write, so the temporary's creation is made
    to fail: the error comes before the compute (no engine call)."""
    import mlstm.api
    from mlstm.cli import main

    directory, _, _ = inputs
    computed = []
    monkeypatch.setattr(mlstm.api, "compute", lambda *a, **k: computed.append(1))

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    monkeypatch.chdir(directory)
    with pytest.raises(SystemExit) as stop:
        main(["run", "in.mat", "-o", "out.mat"])
    assert stop.value.code == 2
    assert computed == []


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB tmpfs (needs mount rights; the file-size-limit tests above need none)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("extra", [[], ["--format", "mat73", "--chunk-steps", "50"]])
def test_full_disk_is_one_error_and_keeps_the_previous_output(small_disk, inputs, extra):
    directory, _, h5 = inputs
    previous = b"previous" * 1000
    (small_disk / "out.h5").write_bytes(previous)
    (small_disk / "filler").write_bytes(b"\0" * (220 << 10))  # leave less room than Y needs
    proc = run_mlstm("run", h5, "-o", small_disk / "out.h5", "DataFormat=CBT", *extra)
    assert_one_line_error(proc, "out.h5", "No space left on device")
    assert (small_disk / "out.h5").read_bytes() == previous
    assert _temporaries(small_disk) == []


def test_an_interrupt_seen_at_commit_still_removes_the_temporary(tmp_path):
    from mlstm import signals
    from mlstm.io import write_variables

    signals.received = signal.SIGINT  # as if h5py had swallowed the exception of a SIGINT
    try:
        with pytest.raises(signals.Interrupted):
            write_variables(str(tmp_path / "o.h5"), {"Y": np.ones(3)}, "hdf5")
    finally:
        signals.received = 0
    assert list(tmp_path.iterdir()) == []


def test_broken_pipe_on_printed_text_is_141_not_mismatch(inputs):
    directory, _, _ = inputs
    script = f"{sys.executable} -m mlstm info in.mat | (exit 0); echo ${{PIPESTATUS[0]}}"
    for _ in range(3):  # the reader may close before or after the write: either way not 1
        proc = subprocess.run(["bash", "-c", script], cwd=directory, capture_output=True, text=True, env=_env())
        assert proc.stdout.strip() in ("0", "141"), proc.stdout
        assert proc.stderr == ""


def test_batch_summary_naming_an_input_is_refused(inputs):
    directory, mat, _ = inputs
    before = mat.read_bytes()
    (directory / "b.mat").write_bytes(before)
    proc = run_mlstm("batch", "in.mat", "b.mat", "--out-dir", "out", "--summary", "b.mat", cwd=directory)
    assert_one_line_error(proc, "b.mat", "is the input")
    assert (directory / "b.mat").read_bytes() == before
    assert not (directory / "out").exists() or not list((directory / "out").iterdir())


def test_check_plot_onto_a_diagnose_input_is_refused(inputs):
    directory, mat, _ = inputs
    before = mat.read_bytes()
    run_mlstm("run", "in.mat", "-o", "out.mat", cwd=directory, check=0)
    proc = run_mlstm(
        "check", "out.mat", "out.mat", "--diagnose", "--inputs", "in.mat", "--plot", "in.mat", cwd=directory
    )
    assert_one_line_error(proc, "is the input")
    assert mat.read_bytes() == before


def test_batch_list_file_that_is_binary(inputs):
    directory, _, _ = inputs
    proc = run_mlstm("batch", "@in.mat", "--out-dir", "out", cwd=directory)
    assert_one_line_error(proc, "@in.mat", "binary")


def test_two_inputs_with_one_stem_are_refused_even_in_different_shards(inputs):
    directory, mat, _ = inputs
    for sub in ("a", "b"):
        (directory / sub).mkdir()
        (directory / sub / "x.mat").write_bytes(mat.read_bytes())
    proc = run_mlstm("batch", "a/x.mat", "b/x.mat", "--out-dir", "out", "--shard", "1/2", cwd=directory)
    assert_one_line_error(proc, "a/x.mat", "b/x.mat", "rename one")
