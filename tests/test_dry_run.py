"""--dry-run (run, batch) checks from metadata and writes nothing; run --json summarises a run."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import scipy.io
from conftest import REPO, assert_one_line_error, run_mlstm
from reference import random_problem, reference_lstm

NAMES = ("X", "H0", "C0", "weights", "recurrentWeights", "bias")


def _save(path, rng, **extra):
    args = dict(zip(NAMES, random_problem(rng, C=3, H=4, B=2, T=7)))
    scipy.io.savemat(path, dict(args, **extra))
    return args


def test_run_dry_run_writes_nothing_and_says_what_it_would(tmp_path, rng):
    _save(tmp_path / "in.mat", rng)
    proc = run_mlstm("run", "in.mat", "-o", "out.mat", "DataFormat=CBT", "--dry-run", "--json", cwd=tmp_path, check=0)
    assert not (tmp_path / "out.mat").exists()
    assert list(tmp_path.iterdir()) == [tmp_path / "in.mat"]  # no temporary either
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("mlstm: dry run: would write out.mat (mat): Y 4x2x7 double (CBT)")
    record = json.loads(lines[1])
    assert record["dry_run"] and record["y_size"] == [4, 2, 7] and record["steps"] == 7 and record["hidden_size"] == 4


def test_dry_run_gives_the_errors_a_run_gives(tmp_path, rng):
    args = _save(tmp_path / "in.mat", rng)
    scipy.io.savemat(tmp_path / "bad.mat", dict(args, weights=np.ones((16, 5))))
    for extra in ([], ["--dry-run"]):
        proc = run_mlstm("run", "bad.mat", "-o", "out.mat", "DataFormat=CBT", *extra, cwd=tmp_path)
        assert_one_line_error(proc, "bad.mat", "'weights'", "16x5")
        proc = run_mlstm("run", "in.mat", "-o", "out.mat", "DataFormat=CBX", *extra, cwd=tmp_path)
        assert_one_line_error(proc, "DataFormat")
        proc = run_mlstm("run", "in.mat", "-o", "in.mat", "DataFormat=CBT", *extra, cwd=tmp_path)
        assert_one_line_error(proc, "is the input")


def test_dry_run_reads_no_data(tmp_path, rng):
    """X declares 8 GB and stores none: a dry run sizes it from metadata, in little memory."""
    args = dict(zip(NAMES, random_problem(rng, C=3, H=4, B=2, T=7)))
    with h5py.File(tmp_path / "big.h5", "w") as f:
        f.create_dataset("X", shape=(3, 2, 1 << 28), dtype="f8", chunks=(3, 2, 4096))  # never written
        for name in NAMES[1:]:
            f[name] = args[name]
    code = (
        "import resource, subprocess, sys; "
        "p = subprocess.run([sys.executable, '-m', 'mlstm', 'run', 'big.h5', '-o', 'out.h5', 'DataFormat=CBT', "
        "'--dry-run'], capture_output=True, text=True); "
        "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(p.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, env={"PYTHONPATH": REPO}
    ).stdout
    status, rss_kb = map(int, out.splitlines()[0].split())
    assert status == 0, out
    assert f"T={1 << 28}" in out and "streamed" in out
    assert rss_kb < 300_000  # the data alone would be 8 GB
    assert not (tmp_path / "out.h5").exists()


def test_run_json_summarises_a_real_run(tmp_path, rng):
    args = _save(tmp_path / "in.mat", rng)
    proc = run_mlstm("run", "in.mat", "-o", "out.mat", "DataFormat=CBT", "--json", cwd=tmp_path, check=0)
    record = json.loads(proc.stderr.strip().splitlines()[-1])
    assert record["dry_run"] is False and record["format"] == "mat" and record["compute_class"] == "double"
    assert record["y_size"] == [4, 2, 7] and record["seconds_compute"] >= 0
    y_ref, _, _ = reference_lstm(*args.values(), "CBT")
    np.testing.assert_allclose(scipy.io.loadmat(tmp_path / "out.mat")["Y"], y_ref, rtol=1e-12, atol=1e-14)


def test_batch_dry_run(tmp_path, rng):
    args = _save(tmp_path / "a.mat", rng, DataFormat="CBT")
    scipy.io.savemat(tmp_path / "b.mat", dict(args, DataFormat="CBT", H0=np.zeros((5, 2))))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "c.mat").write_bytes(b"done before")
    scipy.io.savemat(tmp_path / "c.mat", dict(args, DataFormat="CBT"))
    proc = run_mlstm(
        "batch", "a.mat", "b.mat", "c.mat", "--out-dir", "out", "--dry-run", "--summary", "s.jsonl", cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stderr
    assert "would run a.mat -> out/a.mat" in proc.stderr.replace("  ", " ")
    assert "Error: b.mat: variable 'C0'" in proc.stderr or "Error: b.mat" in proc.stderr
    assert "1 would run, 1 skipped (output exists), 1 failed" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c.mat"]
    assert not (tmp_path / "s.jsonl").exists()


def test_batch_dry_run_creates_no_directory(tmp_path, rng):
    _save(tmp_path / "a.mat", rng, DataFormat="CBT")
    proc = run_mlstm("batch", "a.mat", "--out-dir", "new/deeper", "--dry-run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "would run a.mat -> new/deeper/a.mat" in proc.stderr.replace("  ", " ")
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("not a directory")
    proc = run_mlstm("batch", "a.mat", "--out-dir", "file/sub", "--dry-run", cwd=tmp_path)
    assert_one_line_error(proc, "--out-dir file/sub", "cannot create the directory", "is not a directory")
    proc = run_mlstm("batch", "a.mat", "--out-dir", "file", "--dry-run", cwd=tmp_path)  # as the real run says
    assert_one_line_error(proc, "--out-dir file", "cannot create the directory", "a file of that name exists")


def test_python_api_does_what_the_commands_do(tmp_path, rng):
    import mlstm

    args = _save(tmp_path / "a.mat", rng)
    y_ref, h_ref, c_ref = reference_lstm(*args.values(), "CBT")
    scipy.io.savemat(tmp_path / "export.mat", dict(args, Y=y_ref, hiddenState=h_ref, cellState=c_ref))
    batch = mlstm.prepare_batch([str(tmp_path / "a.mat")], str(tmp_path / "out"), DataFormat="CBT")
    records = list(batch.run())
    assert [r["status"] for r in records] == ["ok"]
    np.testing.assert_allclose(scipy.io.loadmat(tmp_path / "out" / "a.mat")["Y"], y_ref, rtol=1e-12, atol=1e-14)
    (one,) = mlstm.verify_files([str(tmp_path / "export.mat")], DataFormat="CBT")
    assert one.status == "ok", one.detail
    result = mlstm.check_files(str(tmp_path / "out" / "a.mat"), str(tmp_path / "export.mat"))
    assert result.ok
    scipy.io.savemat(tmp_path / "wrong.mat", dict(args, Y=y_ref * 1.01, hiddenState=h_ref, cellState=c_ref))
    assert not mlstm.check_files(str(tmp_path / "out" / "a.mat"), str(tmp_path / "wrong.mat")).ok


def test_convert_to_onnx_checks_sizes_as_lstm_does(tmp_path):
    scipy.io.savemat(
        tmp_path / "w.mat", {"weights": np.ones((8, 3)), "recurrentWeights": np.ones((7, 2)), "bias": np.ones((8, 1))}
    )
    proc = run_mlstm("convert", "--to", "onnx", "w.mat", "-o", "m.onnx", cwd=tmp_path)
    assert_one_line_error(proc, "w.mat", "'recurrentWeights'", "8x2", "7x2")
    scipy.io.savemat(
        tmp_path / "b.mat", {"weights": np.ones((8, 3)), "recurrentWeights": np.ones((8, 2)), "bias": np.ones((5, 1))}
    )
    proc = run_mlstm("convert", "--to", "onnx", "b.mat", "-o", "m.onnx", cwd=tmp_path)
    assert_one_line_error(proc, "b.mat", "'bias'", "length 4H = 8", "5x1")
    assert not (tmp_path / "m.onnx").exists()
