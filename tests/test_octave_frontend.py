"""The .m front end (mlstm/matlab/mlstm_lstm.m) run in real GNU Octave.

Skips without Octave unless MLSTM_REQUIRE_OCTAVE=1 (set by .ci/run), where that is a failure.
"""

import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO, octave_or_skip, run_mlstm

OCTAVE = octave_or_skip(module_level=True)

MATLAB_DIR = os.path.join(REPO, "mlstm", "matlab")
OCTAVE_DIR = os.path.join(REPO, "tests", "octave")
EXE = f"{sys.executable} -m mlstm"


def octave(code, tmp_path):
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(
        [
            OCTAVE,
            "--quiet",
            "--no-init-file",
            "--no-window-system",
            "--eval",
            f"addpath('{MATLAB_DIR}'); addpath('{OCTAVE_DIR}'); {code}",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


CASES = [
    ("CBT", "double", "sigmoid", "tanh", 0),
    ("CBT", "single", "sigmoid", "tanh", 1),
    ("TCB", "double", "hard-sigmoid", "softsign", 0),
    ("BTC", "single", "sigmoid", "relu", 0),
    ("SCBT", "double", "sigmoid", "tanh", 1),
    ("CT", "double", "sigmoid", "softsign", 0),
    ("BT", "single", "hard-sigmoid", "tanh", 0),
    ("CUBT", "double", "sigmoid", "tanh", 0),
    ("cbt", "double", "sigmoid", "tanh", 0),
]


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_front_end_matches_octave_reference(tmp_path, case):
    fmt, cls, gate, state, shared = case
    proc = octave(f"frontend_case('{EXE}', '{fmt}', '{cls}', '{gate}', '{state}', {shared})", tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok "), proc.stdout + proc.stderr
    assert os.listdir(tmp_path) == [], "temporary files left behind"


def test_error_carries_mlstm_message_and_cleans_up(tmp_path):
    code = (
        "X = randn(3, 4, 5); H0 = zeros(2, 1); W = zeros(8, 3); R = zeros(8, 2); b = zeros(8, 1);"
        "try, mlstm_lstm(X, H0, H0, W, R, b, 'DataFormat', 'CQT', 'Executable', '" + EXE + "');"
        " disp('no error'); catch e, printf('%s|%s\\n', e.identifier, e.message); end"
    )
    proc = octave(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    ident, _, message = proc.stdout.strip().partition("|")
    assert ident == "mlstm:failed"
    assert message == "mlstm: DataFormat: expected only the labels S, C, B, T, U in 'CQT', found 'Q'"
    assert os.listdir(tmp_path) == []
    # A size error from the front end names the argument, and a missing executable is reported too.
    code = (
        "try, mlstm_lstm(randn(3, 4, 5), zeros(2, 1), zeros(2, 1), zeros(8, 4), zeros(8, 2), zeros(8, 1),"
        " 'DataFormat', 'CBT', 'Executable', '" + EXE + "'); catch e, disp(e.message); end;"
        "try, mlstm_lstm(1, 1, 1, ones(4, 1), ones(4, 1), ones(4, 1), 'DataFormat', 'CT', 'Executable',"
        " 'no-such-mlstm-here'); catch e, disp(e.message); end;"
        "try, mlstm_lstm(1, 1, 1, ones(4, 1), ones(4, 1), ones(4, 1), 'DataFormat'); catch e, disp(e.message); end"
    )
    lines = octave(code, tmp_path).stdout.strip().splitlines()
    assert lines[0].startswith("mlstm: variable 'weights': expected size 4H-by-InputSize = 8x3")
    assert "no-such-mlstm-here" in lines[1] and "exited with status" in lines[1]
    assert "must come in pairs" in lines[2]
    assert os.listdir(tmp_path) == []


def test_default_executable_on_path(tmp_path):
    if shutil.which("mlstm") is None:
        pytest.skip("the mlstm console script is not on PATH")
    code = (
        "[Y, h, c] = mlstm_lstm(single(randn(3, 2, 4)), zeros(2, 1), zeros(2, 1), randn(8, 3), randn(8, 2),"
        " randn(8, 1), 'DataFormat', 'CBT'); printf('%s %s\\n', class(Y), mat2str(size(Y)));"
    )
    proc = octave(code, tmp_path)
    assert proc.stdout.strip() == "single [2 2 4]", proc.stdout + proc.stderr


def test_matlab_path_command():
    folder = run_mlstm("matlab-path", check=0).stdout.decode().strip()
    assert os.path.isfile(os.path.join(folder, "mlstm_lstm.m"))
