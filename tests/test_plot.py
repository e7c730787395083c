"""mlstm plot and mlstm check --plot: PNGs of the asked size, one-line errors, matplotlib optional."""

import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest
import scipy.io
from conftest import REPO, assert_one_line_error, run_mlstm
from reference import random_problem, reference_lstm

NAMES = ("X", "H0", "C0", "weights", "recurrentWeights", "bias")


def save(path, variables):
    scipy.io.savemat(path, variables, oned_as="column")
    return str(path)


def png_size(path):
    data = open(path, "rb").read(24)
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data
    return struct.unpack(">II", data[16:24])


@pytest.fixture
def outputs(tmp_path, rng):
    """An output file as MATLAB would write it (no YFormat), from the independent reference: B = 3, T = 9."""
    p = random_problem(rng, C=3, H=4, B=3, T=9)
    Y, h, c = reference_lstm(*p, "CBT")
    return {"Y": Y, "hiddenState": h, "cellState": c}


def test_cli_import_does_not_load_plotting_or_diagnosis():
    names = "('matplotlib', 'mlstm.plot', 'mlstm.diagnose', 'mlstm.mistakes')"
    code = f"import sys, mlstm.cli; print(sorted(m for m in {names} if m in sys.modules))"
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip() == "[]"


def test_help_imports_no_numpy():
    """`mlstm --help` as the console script runs it (main, whose error handling is set up before
    the command line is parsed): NumPy is 40-70% of a bare start-up's time."""
    code = (
        "import sys, mlstm.cli\n"
        "try:\n    mlstm.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('numpy' in sys.modules, file=sys.stderr)"
    )
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert "Usage:" in proc.stdout
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr


def test_without_matplotlib_one_line_error(tmp_path, outputs):
    fake = tmp_path / "fake"
    (fake / "matplotlib").mkdir(parents=True)
    (fake / "matplotlib" / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    f = save(tmp_path / "out.mat", dict(outputs, YFormat="CBT"))
    env = {"PYTHONPATH": f"{fake}{os.pathsep}{REPO}"}
    assert_one_line_error(run_mlstm("plot", f, "-o", tmp_path / "a.png", env=env), "pip install 'mlstm[plot]'")
    proc = run_mlstm("check", f, f, "--plot", tmp_path / "b.png", env=env)
    assert_one_line_error(proc, "--plot", "pip install 'mlstm[plot]'")
    assert not os.path.exists(tmp_path / "a.png") and not os.path.exists(tmp_path / "b.png")


def test_plot_outputs(tmp_path, outputs):
    pytest.importorskip("matplotlib")
    f = save(tmp_path / "out.mat", dict(outputs, YFormat="CBT"))
    image = tmp_path / "y.png"
    run_mlstm("plot", f, "-o", image, check=0)
    assert png_size(image) == (1000, 600)
    run_mlstm("plot", f, "-o", image, "--obs", "3", "--size", "640x480", check=0)
    assert png_size(image) == (640, 480)
    # Y alone, its layout from DataFormat= (here a T x C x B Y)
    only_y = save(tmp_path / "y.mat", {"Y": np.transpose(outputs["Y"], (2, 0, 1))})
    run_mlstm("plot", only_y, "-o", image, "DataFormat=TCB", "--size", "300x200", check=0)
    assert png_size(image) == (300, 200)


@pytest.mark.parametrize("obs", ["0", "4", "-1"])
def test_plot_bad_observation(tmp_path, outputs, obs):
    pytest.importorskip("matplotlib")
    f = save(tmp_path / "out.mat", dict(outputs, YFormat="CBT"))
    proc = run_mlstm("plot", f, "-o", tmp_path / "y.png", "--obs", obs)
    assert_one_line_error(proc, "--obs", "expected an observation 1 to 3", f"found {obs}")
    assert not os.path.exists(tmp_path / "y.png")


def test_plot_bad_invocations(tmp_path, outputs):
    pytest.importorskip("matplotlib")
    no_format = save(tmp_path / "out.mat", outputs)
    assert_one_line_error(run_mlstm("plot", no_format, "-o", tmp_path / "y.png"), "out.mat", "YFormat", "DataFormat=")
    assert_one_line_error(
        run_mlstm("plot", no_format, "-o", tmp_path / "y.png", "DataFormat=CBT", "--size", "big"), "--size", "'big'"
    )
    assert_one_line_error(run_mlstm("plot", no_format, "-o", tmp_path / "y.png", "DataFormat=CB"), "DataFormat", "'CB'")
    assert_one_line_error(run_mlstm("check", no_format, no_format, "--obs", "2"), "add --plot")


def test_check_plot(tmp_path, outputs):
    pytest.importorskip("matplotlib")
    expected = save(tmp_path / "expected.mat", outputs)
    drifted = dict(outputs, Y=outputs["Y"].copy())
    drifted["Y"][1, 2, 5:] *= 1 + 1e-6  # unit 2 of observation 3 drifts from step 6 on
    actual = save(tmp_path / "actual.mat", dict(drifted, YFormat="CBT"))
    image = tmp_path / "diff.png"
    proc = run_mlstm("check", actual, expected, "--plot", image, "--json")
    assert proc.returncode == 1
    drawn = json.loads(proc.stdout)["plot"]
    assert drawn == {"observation": 3, "unit": 2, "first_step_over_tolerance": 6, "format": "CBT"}
    assert png_size(image) == (1000, 800)
    proc = run_mlstm("check", actual, expected, "--plot", image, "--obs", "1", "--size", "700x500", "--json")
    assert json.loads(proc.stdout)["plot"]["observation"] == 1 and png_size(image) == (700, 500)
    assert_one_line_error(run_mlstm("check", actual, expected, "--plot", image, "--obs", "9"), "--obs", "found 9")
    # Files that agree still get their picture: nothing over the tolerance.
    proc = run_mlstm("check", expected, expected, "--plot", image, "DataFormat=CBT", "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["plot"]["first_step_over_tolerance"] is None
    # Y of different sizes: the comparison says so; no picture, a notice.
    os.remove(image)
    small = save(tmp_path / "small.mat", dict(outputs, Y=outputs["Y"][:, :, :4]))
    proc = run_mlstm("check", small, expected, "--plot", image, "DataFormat=CBT")
    assert proc.returncode == 1 and "not drawn" in proc.stderr and not os.path.exists(image)
