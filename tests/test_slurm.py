"""The README's SLURM job-array script, run as it stands on a real one-node SLURM cluster:
a whole run, a run cancelled mid-write with scancel and resubmitted, and a stepped array.

Outputs are checked against the float64 reference (tests/reference.py). The cluster needs
slurm-wlm and munge (apt) and root; .ci/run installs them and sets MLSTM_REQUIRE_SLURM=1.
"""

import glob
import json
import os
import re
import sys
import time

import numpy as np
import pytest
import scipy.io
from conftest import REPO
from reference import reference_lstm
from slurm_cluster import Cluster, slurm_or_skip

C, H, INPUTS = 4, 3, 16

# The job's `mlstm`: this checkout's, by its entry point. It reports its exit status, and while
# the file named by MLSTM_TEST_HOLD exists it holds each output listed there mid-write (the
# temporary written, not yet renamed), so that scancel finds a task in flight, deterministically.
WRAPPER = f"""#!{sys.executable}
import os, sys, time
sys.path.insert(0, {REPO!r})
from mlstm import io
from mlstm.cli import main

hold = os.environ.get("MLSTM_TEST_HOLD")


def held_write(path, variables, fmt, hdf5_order="numpy", stdout=None):
    with io.AtomicOutput(path, stdout) as target:
        io.write_file(target.tmp, variables, fmt, hdf5_order)
        while os.path.exists(hold) and os.path.basename(path) in open(hold).read().split():
            time.sleep(0.05)


if hold:
    io.write_variables = held_write
try:
    main()
except SystemExit as exc:
    print(f"mlstm exit status {{exc.code}}", file=sys.stderr)
    raise
"""


def readme_script():
    with open(os.path.join(REPO, "README.md")) as fh:
        text = fh.read()
    found = re.search(r"<!-- slurm-job-array:[^>]*-->\n```bash\n(.*?)```\n<!-- /slurm-job-array -->", text, re.S)
    assert found, "README.md: the SLURM job-array script between its <!-- slurm-job-array --> markers"
    return found.group(1)


@pytest.fixture(scope="module")
def cluster():
    programs = slurm_or_skip()
    cluster = Cluster(programs)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def problem(tmp_path_factory):
    """weights.mat, data/seq00..15.mat, the job script and a bin folder with `mlstm`."""
    root = tmp_path_factory.mktemp("slurm-problem")
    rng = np.random.default_rng(7)
    w = {
        "weights": rng.standard_normal((4 * H, C)) * 0.5,
        "recurrentWeights": rng.standard_normal((4 * H, H)) * 0.5,
        "bias": rng.standard_normal((4 * H, 1)) * 0.2,
        "H0": rng.standard_normal((H, 1)) * 0.1,
        "C0": np.zeros((H, 1)),
        "DataFormat": "CBT",
    }
    scipy.io.savemat(root / "weights.mat", w)
    (root / "data").mkdir()
    for i in range(INPUTS):
        scipy.io.savemat(root / "data" / f"seq{i:02d}.mat", {"X": rng.standard_normal((C, 2, 3 + i))})
    (root / "job.sh").write_text(readme_script())
    (root / "bin").mkdir()
    (root / "bin" / "mlstm").write_text(WRAPPER)
    (root / "bin" / "mlstm").chmod(0o755)
    return root, w


def workdir(problem, tmp_path):
    """A folder laid out as the script expects: data/, weights.mat and logs/."""
    root, _ = problem
    os.symlink(root / "data", tmp_path / "data")
    os.symlink(root / "weights.mat", tmp_path / "weights.mat")
    (tmp_path / "logs").mkdir()
    return tmp_path


def job_env(problem, **extra):
    root, _ = problem
    return {"PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}", **extra}


def check_results(results, problem):
    root, w = problem
    for i in range(INPUTS):
        X = scipy.io.loadmat(root / "data" / f"seq{i:02d}.mat")["X"]
        Yr, hr, cr = reference_lstm(X, w["H0"], w["C0"], w["weights"], w["recurrentWeights"], w["bias"], "CBT")
        got = scipy.io.loadmat(results / f"seq{i:02d}.mat")
        for name, ref in (("Y", Yr), ("hiddenState", hr), ("cellState", cr)):
            np.testing.assert_allclose(got[name], ref, rtol=1e-12, atol=1e-14, err_msg=f"seq{i:02d} {name}")
    assert not glob.glob(str(results / ".mlstm-*.tmp"))


def records(path):
    with open(path) as fh:
        return [json.loads(line) for line in fh]


def log(work, job, task):
    path = work / "logs" / f"mlstm-{job}_{task}.log"
    return path.read_text() if path.exists() else None


def assert_succeeded(work, job, tasks):
    for task in tasks:
        text = log(work, job, task)
        assert text is not None and text.splitlines()[-1] == "mlstm exit status 0", (task, text)
        assert "Error" not in text, (task, text)


def test_readme_job_array_runs_every_input(cluster, problem, tmp_path):
    work = workdir(problem, tmp_path)
    job = cluster.submit(str(problem[0] / "job.sh"), cwd=work, env=job_env(problem))
    cluster.wait(job)
    assert_succeeded(work, job, range(8))
    check_results(work / "results", problem)
    # Task k (share k+1 of 8) did inputs k and k+8, each once, with the shapes of its input.
    for task in range(8):
        rs = records(work / "results" / f"summary-{task}.jsonl")
        assert [r["input"] for r in rs] == [f"data/seq{task:02d}.mat", f"data/seq{task + 8:02d}.mat"]
        assert [r["status"] for r in rs] == ["ok", "ok"] and rs[0]["engine"] == "numpy"
        assert [r["Y_size"] for r in rs] == [[H, 2, 3 + task], [H, 2, 11 + task]]


def test_cancelled_job_array_resumes_only_the_rest(cluster, problem, tmp_path):
    work = workdir(problem, tmp_path)
    results = work / "results"
    # Tasks 0 and 1 finish; the next two to start are held mid-write of their first output.
    hold = work / "hold"
    hold.write_text(" ".join(f"seq{i:02d}.mat" for i in range(INPUTS) if i % 8 > 1))
    job = cluster.submit(str(problem[0] / "job.sh"), cwd=work, env=job_env(problem, MLSTM_TEST_HOLD=str(hold)))
    first_done = [results / f"seq{i:02d}.mat" for i in (0, 8, 1, 9)]

    def mid_run():
        return all(p.exists() for p in first_done) and len(glob.glob(str(results / ".mlstm-*.tmp"))) == 2

    deadline = time.monotonic() + 40
    while not mid_run():
        assert time.monotonic() < deadline, (cluster.active(job), os.listdir(work / "logs"), cluster.logs())
        time.sleep(0.05)
    running = [line.split()[0] for line in cluster.active(job) if line.endswith("RUNNING")]
    assert len(running) == 2 and not {"0", "1"} & set(running), cluster.active(job)
    cluster.run("scancel", job)
    cluster.wait(job)
    # SIGTERM reached the two running mlstm processes: status 143, temporaries removed. (squeue
    # can drop the job a moment before the last lines reach the log: wait for them, briefly.)
    for task in running:
        deadline = time.monotonic() + 15
        while "mlstm exit status" not in (log(work, job, task) or "") and time.monotonic() < deadline:
            time.sleep(0.1)
        text = log(work, job, task)
        assert "mlstm: interrupted by SIGTERM" in text and "mlstm exit status 143" in text, text
    assert not glob.glob(str(results / ".mlstm-*.tmp"))
    started = {str(t) for t in range(8) if log(work, job, t) is not None}
    assert started == {"0", "1", *running}
    assert sorted(os.listdir(results)) == sorted(
        [p.name for p in first_done] + [f"summary-{t}.jsonl" for t in ("0", "1", *running)]
    )
    before = {p.name: os.stat(p).st_mtime_ns for p in first_done}
    first_records = {t: records(results / f"summary-{t}.jsonl") for t in (0, 1)}

    hold.unlink()
    again = cluster.submit(str(problem[0] / "job.sh"), cwd=work, env=job_env(problem))
    cluster.wait(again)
    assert_succeeded(work, again, range(8))
    check_results(results, problem)
    assert {p.name: os.stat(p).st_mtime_ns for p in first_done} == before  # not redone
    # The summaries keep the first run's records; the rerun's skipped ones repeat their shapes.
    for task in range(8):
        rs = records(results / f"summary-{task}.jsonl")
        if task in (0, 1):
            assert rs[:2] == first_records[task]
            assert [r["status"] for r in rs[2:]] == ["skipped", "skipped"]
            assert [r["Y_size"] for r in rs[2:]] == [r["Y_size"] for r in first_records[task]]
        else:
            assert [(r["input"], r["status"]) for r in rs] == [
                (f"data/seq{task:02d}.mat", "ok"),
                (f"data/seq{task + 8:02d}.mat", "ok"),
            ]


def test_stepped_job_array_takes_every_share_once(cluster, problem, tmp_path):
    work = workdir(problem, tmp_path)
    job = cluster.submit("--array=1-9:2", str(problem[0] / "job.sh"), cwd=work, env=job_env(problem))
    cluster.wait(job)
    tasks = (1, 3, 5, 7, 9)
    assert_succeeded(work, job, tasks)
    check_results(work / "results", problem)
    done = [r["input"] for t in tasks for r in records(work / "results" / f"summary-{t}.jsonl")]
    assert sorted(done) == [f"data/seq{i:02d}.mat" for i in range(INPUTS)]  # each input once
    share = [r["input"] for r in records(work / "results" / "summary-3.jsonl")]
    assert share == [f"data/seq{i:02d}.mat" for i in (1, 6, 11)]  # task 3 is share 2 of 5
