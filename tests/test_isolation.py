"""batch and verify isolate every failure: one input's error, foreseen or not, is that input's
line and record, and the run goes on to the next input (exit 1 at the end)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.io
from conftest import run_mlstm
from reference import reference_lstm

import mlstm.cli
import mlstm.inputs


def _write(path, rng, hidden=3, outputs=False):
    c, b, t = 4, 2, 5
    args = {
        "X": rng.standard_normal((c, b, t)),
        "H0": np.zeros((hidden, b)),
        "C0": np.zeros((hidden, b)),
        "weights": rng.standard_normal((4 * hidden, c)),
        "recurrentWeights": rng.standard_normal((4 * hidden, hidden)),
        "bias": rng.standard_normal((4 * hidden, 1)),
        "DataFormat": "CBT",
    }
    if outputs and hidden:
        y, h, cell = reference_lstm(
            args["X"], args["H0"], args["C0"], args["weights"], args["recurrentWeights"], args["bias"], "CBT"
        )
        args.update(Y=y, hiddenState=h, cellState=cell)
    scipy.io.savemat(path, args)


def test_batch_goes_on_after_a_bad_input(tmp_path, rng):
    for name, hidden in (("a", 3), ("b", 0), ("c", 3)):  # b: H = 0
        _write(tmp_path / f"{name}.mat", rng, hidden)
    proc = run_mlstm("batch", "a.mat", "b.mat", "c.mat", "--out-dir", "out", "--summary", "s.jsonl", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mat", "c.mat"]
    records = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "failed", "ok"]
    assert "H0" in records[1]["error"] and "hidden unit" in records[1]["error"]


def _unforeseen(monkeypatch, victim):
    """Make the run of one input fail with an exception nobody anticipated."""
    original = mlstm.inputs.Inputs.compute

    def compute(self, *args, **kwargs):
        if any(f.label.endswith(victim) for f in self.files):
            raise RuntimeError("something nobody foresaw")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(mlstm.inputs.Inputs, "compute", compute)


def test_batch_isolates_an_unforeseen_failure(tmp_path, rng, monkeypatch, capsys):
    for name in "abc":
        _write(tmp_path / f"{name}.mat", rng)
    _unforeseen(monkeypatch, "b.mat")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        mlstm.cli.main(["batch", "a.mat", "b.mat", "c.mat", "--out-dir", "out", "--summary", "s.jsonl"])
    assert stop.value.code == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.mat", "c.mat"]
    records = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "failed", "ok"]
    assert "RuntimeError: something nobody foresaw" in records[1]["error"]
    assert "Error: b.mat: internal error RuntimeError" in capsys.readouterr().err


def test_verify_prints_a_line_for_every_file(tmp_path, rng, monkeypatch, capsys):
    for name in "abc":
        _write(tmp_path / f"{name}.mat", rng, outputs=True)
    _unforeseen(monkeypatch, "b.mat")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        mlstm.cli.main(["verify", "a.mat", "b.mat", "c.mat"])
    assert stop.value.code == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("OK") and "a.mat" in lines[0]
    assert lines[1].startswith("ERROR") and "b.mat" in lines[1] and "RuntimeError" in lines[1]
    assert lines[2].startswith("OK") and "c.mat" in lines[2]
    assert "2 agree, 0 differ, 1 could not be checked" in lines[3]
