"""mlstm batch: sharding, resume, failure isolation, weights read once, summaries."""

import json
import os

import numpy as np
import pytest
import scipy.io
from conftest import assert_one_line_error, run_mlstm
from reference import reference_lstm

from mlstm.batch import expand_inputs, parse_shard, select_shard, shard_from_environment
from mlstm.errors import MlstmError

H, C = 3, 4


@pytest.fixture
def weights_file(tmp_path):
    rng = np.random.default_rng(0)
    w = {
        "weights": rng.standard_normal((4 * H, C)) * 0.5,
        "recurrentWeights": rng.standard_normal((4 * H, H)) * 0.5,
        "bias": rng.standard_normal((4 * H, 1)) * 0.2,
        "H0": np.zeros((H, 1)),
        "C0": np.zeros((H, 1)),
        "DataFormat": "CBT",
    }
    path = tmp_path / "weights.mat"
    scipy.io.savemat(path, w)
    return str(path), w


def make_inputs(tmp_path, n, bad=()):
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    rng = np.random.default_rng(1)
    paths = []
    for i in range(n):
        path = folder / f"seq{i:02d}.mat"
        X = rng.standard_normal((C, 2, 5 + i))
        if i in bad:
            X = X[:2]  # wrong InputSize
        scipy.io.savemat(path, {"X": X})
        paths.append(str(path))
    return paths


def check_output(out_path, in_path, w):
    X = scipy.io.loadmat(in_path)["X"]
    Yr, hr, cr = reference_lstm(X, w["H0"], w["C0"], w["weights"], w["recurrentWeights"], w["bias"], "CBT")
    got = scipy.io.loadmat(out_path)
    np.testing.assert_allclose(got["Y"], Yr, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["hiddenState"], hr, rtol=1e-12, atol=1e-14)


def test_shards_are_disjoint_and_cover_everything():
    paths = sorted(f"f{i}.mat" for i in range(23))
    for n in (1, 2, 3, 7, 30):
        shares = [select_shard(paths, (k, n)) for k in range(1, n + 1)]
        flat = [p for share in shares for p in share]
        assert sorted(flat) == paths and len(flat) == len(set(flat))


def test_slurm_environment_and_shard_parsing():
    assert shard_from_environment({}) is None
    env = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "0"}
    assert shard_from_environment(env) == (4, 4)
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    assert shard_from_environment(env) == (1, 4)
    with pytest.raises(MlstmError, match="SLURM: task 9 is not one of the 4 array tasks 0-3;"):
        shard_from_environment({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "4"})
    assert parse_shard("2/5") == (2, 5)
    for bad in ("0/3", "4/3", "x", "1/0"):
        with pytest.raises(MlstmError, match="--shard: expected K/N"):
            parse_shard(bad)


def slurm_array(task, first, last, step):
    count = (last - first) // step + 1
    names = ("ID", "MIN", "MAX", "STEP", "COUNT")
    return {f"SLURM_ARRAY_TASK_{n}": str(v) for n, v in zip(names, (task, first, last, step, count))}


def test_stepped_slurm_arrays_give_every_share_once():
    # --array=1-9:2: tasks 1, 3, 5, 7, 9 are shares 1..5 of 5.
    assert [shard_from_environment(slurm_array(t, 1, 9, 2)) for t in (1, 3, 5, 7, 9)] == [(k, 5) for k in range(1, 6)]
    assert shard_from_environment(slurm_array(12, 0, 12, 4)) == (4, 4)
    with pytest.raises(MlstmError, match="task 4 is not one of the 5 array tasks 1-9:2"):
        shard_from_environment(slurm_array(4, 1, 9, 2))
    # --array=0,2,7: SLURM says STEP=1, COUNT=3, MAX=7; shares 2 and 3 would never run.
    irregular = {**slurm_array(2, 0, 2, 1), "SLURM_ARRAY_TASK_MAX": "7"}
    with pytest.raises(MlstmError, match="ids 0 to 7 are not 3 evenly spaced ids"):
        shard_from_environment(irregular)
    with pytest.raises(MlstmError, match="expected integer array variables, found .*SLURM_ARRAY_TASK_STEP='x'"):
        shard_from_environment({**slurm_array(1, 1, 9, 2), "SLURM_ARRAY_TASK_STEP": "x"})


def test_expand_inputs_globs_lists_and_errors(tmp_path):
    paths = make_inputs(tmp_path, 3)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# inputs\n{paths[2]}\n\n{paths[0]}\n")
    assert expand_inputs([str(tmp_path / "in" / "*.mat")]) == paths
    assert expand_inputs([f"@{listing}", paths[0]]) == [paths[0], paths[2]]
    with pytest.raises(MlstmError, match="matches no file"):
        expand_inputs([str(tmp_path / "nothing*.mat")])


def test_batch_with_two_shards_and_slurm(tmp_path, weights_file):
    wpath, w = weights_file
    paths = make_inputs(tmp_path, 5)
    out = tmp_path / "out"
    pattern = str(tmp_path / "in" / "*.mat")
    run_mlstm("batch", pattern, "--weights", wpath, "--out-dir", out, "--shard", "1/2", check=0)
    assert sorted(os.listdir(out)) == ["seq00.mat", "seq02.mat", "seq04.mat"]
    env = {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "2", "SLURM_ARRAY_TASK_MIN": "1"}
    run_mlstm("batch", pattern, "--weights", wpath, "--out-dir", out, env=env, check=0)
    assert sorted(os.listdir(out)) == [f"seq{i:02d}.mat" for i in range(5)]
    for p in paths:
        check_output(out / os.path.basename(p), p, w)


def test_resume_after_interruption(tmp_path, weights_file):
    wpath, w = weights_file
    paths = make_inputs(tmp_path, 4)
    out = tmp_path / "out"
    out.mkdir()
    # A killed run: two outputs done, a temporary file left behind by the one in flight.
    run_mlstm("batch", paths[0], paths[1], "--weights", wpath, "--out-dir", out, check=0)
    (out / ".mlstm-abc.tmp").write_bytes(b"half-written")
    done_before = {p: os.path.getmtime(out / p) for p in ("seq00.mat", "seq01.mat")}
    summary = tmp_path / "summary.jsonl"
    proc = run_mlstm("batch", *paths, "--weights", wpath, "--out-dir", out, "--summary", summary, check=0)
    records = [json.loads(line) for line in summary.read_text().splitlines()]
    assert [r["status"] for r in records] == ["skipped", "skipped", "ok", "ok"]
    assert "2 done, 2 skipped" in proc.stderr
    assert {p: os.path.getmtime(out / p) for p in done_before} == done_before
    for p in paths:
        check_output(out / os.path.basename(p), p, w)
    ok = records[2]
    assert ok["engine"] == "numpy" and ok["Y_size"] == [3, 2, 7] and ok["T"] == 7 and ok["seconds"] >= 0
    # --overwrite redoes everything; its records follow the earlier ones.
    run_mlstm("batch", *paths, "--weights", wpath, "--out-dir", out, "--summary", summary, "--overwrite", check=0)
    statuses = [json.loads(line)["status"] for line in summary.read_text().splitlines()]
    assert statuses == ["skipped", "skipped", "ok", "ok"] + ["ok"] * 4


def test_summary_of_a_rerun_keeps_the_first_runs_records(tmp_path, weights_file):
    wpath, w = weights_file
    paths = make_inputs(tmp_path, 3)
    out, summary = tmp_path / "out", tmp_path / "summary.jsonl"
    run_mlstm("batch", *paths[:2], "--weights", wpath, "--out-dir", out, "--summary", summary, check=0)
    first = [json.loads(line) for line in summary.read_text().splitlines()]
    with open(summary, "ab") as fh:
        fh.write(b'{"input": "cut short by a kill')  # a torn last line: skipped, kept apart
    run_mlstm("batch", *paths, "--weights", wpath, "--out-dir", out, "--summary", summary, check=0)
    lines = summary.read_text().splitlines()
    assert [json.loads(line) for line in lines[:2]] == first and lines[2] == '{"input": "cut short by a kill'
    second = [json.loads(line) for line in lines[3:]]
    assert [r["status"] for r in second] == ["skipped", "skipped", "ok"]
    for earlier, skipped in zip(first, second):
        assert skipped["input"] == earlier["input"]
        for field in ("T", "B", "H", "input_size", "Y_size", "YFormat", "compute_class", "format", "engine"):
            assert skipped[field] == earlier[field], field
    assert second[0]["Y_size"] == [H, 2, 5] and second[2]["Y_size"] == [H, 2, 7]


def test_bad_inputs_are_isolated(tmp_path, weights_file):
    wpath, w = weights_file
    paths = make_inputs(tmp_path, 4, bad=(1,))
    corrupt = tmp_path / "in" / "seq09.mat"
    corrupt.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 200)
    out = tmp_path / "out"
    summary = tmp_path / "s.jsonl"
    proc = run_mlstm(
        "batch", str(tmp_path / "in" / "*.mat"), "--weights", wpath, "--out-dir", out, "--summary", summary
    )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 2 and "seq01.mat" in errors[0] and "weights" in errors[0] and "seq09.mat" in errors[1]
    assert "Traceback" not in proc.stderr
    assert sorted(os.listdir(out)) == ["seq00.mat", "seq02.mat", "seq03.mat"]
    for i in (0, 2, 3):
        check_output(out / f"seq{i:02d}.mat", paths[i], w)
    statuses = {json.loads(line)["input"]: json.loads(line) for line in summary.read_text().splitlines()}
    assert statuses[paths[1]]["status"] == "failed" and "expected size" in statuses[paths[1]]["error"]


def test_bad_invocations_exit_2(tmp_path, weights_file):
    wpath, _ = weights_file
    paths = make_inputs(tmp_path, 2)
    out = tmp_path / "out"
    assert_one_line_error(run_mlstm("batch", *paths, "--out-dir", out, "--shard", "3/2"), "--shard")
    assert_one_line_error(run_mlstm("batch", *paths, "--out-dir", out, "--weights", tmp_path / "no.mat"), "no.mat")
    assert_one_line_error(run_mlstm("batch", str(tmp_path / "zz*.mat"), "--out-dir", out), "matches no file")
    assert_one_line_error(run_mlstm("batch", *paths, "--out-dir", out, "Bogus=1"), "Bogus")
    # a bad value given once is the invocation's error too, not every file's failure
    fresh = tmp_path / "fresh"
    proc = run_mlstm("batch", *paths, "--out-dir", fresh, "--weights", wpath, "DataFormat=XYZ")
    assert_one_line_error(proc, "DataFormat", "S, C, B, T, U", "'X'")
    assert not fresh.exists()
    other = tmp_path / "other"
    other.mkdir()
    scipy.io.savemat(other / "seq00.mat", {"X": np.zeros((C, 2, 3))})
    assert_one_line_error(run_mlstm("batch", paths[0], other / "seq00.mat", "--out-dir", out), "both write")


def test_weights_read_once_and_engine_prepared_once(tmp_path, weights_file, monkeypatch, capsys):
    import mlstm.engines.numpy_engine as numpy_engine
    import mlstm.io as io
    from mlstm.cli import main

    wpath, w = weights_file
    paths = make_inputs(tmp_path, 4)
    opened, prepared = [], []
    real_open, real_prepare = io.open_matrix_file, numpy_engine.prepare
    monkeypatch.setattr(io, "open_matrix_file", lambda path, *a, **k: opened.append(path) or real_open(path, *a, **k))
    monkeypatch.setattr(numpy_engine, "prepare", lambda *a: prepared.append(1) or real_prepare(*a))
    with pytest.raises(SystemExit) as exit_info:
        main(["batch", *paths, "--weights", wpath, "--out-dir", str(tmp_path / "out"), "-q"])
    assert exit_info.value.code == 0
    assert opened.count(wpath) == 1 and len(opened) == 5
    assert len(prepared) == 1
    for p in paths:
        check_output(tmp_path / "out" / os.path.basename(p), p, w)
