"""Interop with GNU Octave, a real MATLAB-compatible program.

Octave writes the inputs (save -v7, -v6, -v4), runs mlstm, loads mlstm's outputs and checks
sizes, classes and values against tests/octave/reference_lstm.m, an LSTM written in Octave's
own language. Skips when Octave is absent, unless MLSTM_REQUIRE_OCTAVE=1 (set by .ci/run),
where a missing Octave is a failure.
"""

import os
import subprocess
import sys

import pytest
from conftest import REPO, octave_or_skip

OCTAVE = octave_or_skip(module_level=True)

OCTAVE_DIR = os.path.join(REPO, "tests", "octave")


def octave(code, cwd):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [OCTAVE, "--quiet", "--no-init-file", "--no-window-system", "--eval", f"addpath('{OCTAVE_DIR}'); {code}"],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    return proc


MLSTM = f'"{sys.executable}" -m mlstm'

CASES = [
    # save format, DataFormat, class, gate, state, output file, extra mlstm arguments
    ("-v7", "CBT", "double", "sigmoid", "tanh", "o.mat", ""),
    ("-v7", "SCBT", "single", "sigmoid", "tanh", "o.mat", ""),
    ("-v6", "TCB", "double", "hard-sigmoid", "softsign", "o.mat", ""),
    ("-v6", "BTC", "single", "sigmoid", "relu", "o.mat", ""),
    ("-v7", "BT", "double", "sigmoid", "tanh", "o.mat", ""),
    ("-v7", "CSBTS", "double", "hard-sigmoid", "tanh", "o.mat", ""),
    ("-v7", "CUBT", "single", "sigmoid", "softsign", "o.mat", ""),
    ("-v4", "CT", "double", "sigmoid", "relu", "o.mat", ""),
    ("-v4", "TC", "double", "sigmoid", "tanh", "o.mat", ""),
    ("-v7", "CBT", "double", "sigmoid", "tanh", "o73.mat", "--format mat73"),
    ("-v7", "TBC", "single", "hard-sigmoid", "tanh", "o73.mat", "--format mat73"),
    ("-v7", "CBT", "double", "sigmoid", "tanh", "o.h5", "--hdf5-order matlab"),
]


@pytest.mark.parametrize("case", CASES, ids=["_".join(c[:5]) + c[5] for c in CASES])
def test_octave_writes_mlstm_computes_octave_checks(tmp_path, case):
    savefmt, fmt, cls, gate, state, outname, extra = case
    out = tmp_path / outname
    args = ", ".join(f"'{a}'" for a in (MLSTM, tmp_path, savefmt, fmt, cls, gate, state, out, extra))
    proc = octave(f"interop_case({args})", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok "), proc.stdout + proc.stderr


def test_octave_reads_mlstm_error_exit_status(tmp_path):
    # A bad DataFormat: Octave's system() sees exit status 2 and mlstm's one Error: line.
    code = (
        "X = randn(3, 4); H0 = zeros(2, 1); C0 = H0; weights = zeros(8, 3); recurrentWeights = zeros(8, 2);"
        "bias = zeros(8, 1); save('-v7', 'in.mat');"
        f"[s, out] = system('{MLSTM} run in.mat -o o.mat DataFormat=CQ 2>&1');"
        "printf('%d|%s', s, out);"
    )
    proc = octave(code, tmp_path)
    status, _, text = proc.stdout.partition("|")
    assert status == "2" and text.startswith("Error: ") and "DataFormat" in text
    assert not (tmp_path / "o.mat").exists()
