"""mlstm check and mlstm verify: they pass identical data and catch each kind of difference."""

import json
import os

import numpy as np
import pytest
import scipy.io
from conftest import REPO, assert_one_line_error, run_mlstm

FIXTURES = os.path.join(REPO, "fixtures")
OUTPUTS = ("Y", "hiddenState", "cellState")


def load(path):
    return scipy.io.loadmat(path, squeeze_me=False)


def save(path, variables):
    scipy.io.savemat(path, {k: v for k, v in variables.items() if not k.startswith("__")}, oned_as="column")
    return str(path)


@pytest.fixture
def expected_path():
    return os.path.join(FIXTURES, "cbt_double", "expected.mat")


@pytest.fixture
def expected(expected_path):
    return load(expected_path)


def _perturbations(expected):
    def element(d):
        d["Y"][1, 2, 3] += 1e-9 * max(1.0, abs(d["Y"][1, 2, 3]))  # MATLAB Y(2,3,4)

    def klass(d):
        d["hiddenState"] = d["hiddenState"].astype(np.float32)

    def size(d):
        d["cellState"] = d["cellState"][:, :-1]

    def nan(d):
        d["Y"][0, 0, 4] = np.nan  # MATLAB Y(1,1,5)

    return {"element": element, "class": klass, "size": size, "nan": nan}


KINDS = ["element", "class", "size", "nan"]
WHAT = {
    "element": ("Y", "1 value(s) outside tolerance", "(2,3,4)"),
    "class": ("hiddenState", "class single, expected double", None),
    "size": ("cellState", "size 3x3, expected 3x4", None),
    "nan": ("Y", "1 NaN pattern mismatch(es)", "(1,1,5)"),
}


def test_check_identical_files_pass(expected_path):
    proc = run_mlstm("check", expected_path, expected_path, check=0)
    assert "OK:" in proc.stdout.decode()


@pytest.mark.parametrize("kind", KINDS)
def test_check_catches(tmp_path, expected, expected_path, kind):
    changed = {k: np.array(v, copy=True) for k, v in expected.items() if not k.startswith("__")}
    _perturbations(changed)[kind](changed)
    actual = save(tmp_path / "actual.mat", changed)
    proc = run_mlstm("check", actual, expected_path)
    assert proc.returncode == 1, proc.stdout
    text = proc.stdout.decode()
    variable, problem, worst = WHAT[kind]
    assert "MISMATCH" in text and problem in text
    line = next(line for line in text.splitlines() if line.startswith(variable))
    assert "FAIL" in line
    if worst:
        assert f"{variable}{worst}" in line
    # --json says the same
    report = json.loads(run_mlstm("check", actual, expected_path, "--json").stdout)
    assert report["ok"] is False
    bad = [v for v in report["variables"] if not v["ok"]]
    assert [v["name"] for v in bad] == [variable]
    if worst:
        assert bad[0]["worst"] == worst


def test_check_tolerance_options(tmp_path, expected, expected_path):
    changed = {k: np.array(v, copy=True) for k, v in expected.items() if not k.startswith("__")}
    changed["Y"] = changed["Y"] * (1 + 1e-8)
    actual = save(tmp_path / "a.mat", changed)
    assert run_mlstm("check", actual, expected_path).returncode == 1
    assert run_mlstm("check", actual, expected_path, "--rtol", "1e-7").returncode == 0


def test_check_single_tolerance_by_class(tmp_path):
    e = {"Y": np.float32([[1.0, 2.0]]), "hiddenState": np.float32([[1.0]]), "cellState": np.float32([[1.0]])}
    a = dict(e, Y=np.float32([[1.0 + 5e-6, 2.0]]))
    assert run_mlstm("check", save(tmp_path / "a.mat", a), save(tmp_path / "e.mat", e)).returncode == 0
    a = dict(e, Y=np.float32([[1.0 + 5e-5, 2.0]]))
    assert run_mlstm("check", save(tmp_path / "a.mat", a), save(tmp_path / "e.mat", e)).returncode == 1


def test_check_matching_nan_passes(tmp_path):
    e = {"Y": np.array([[np.nan, 1.0, np.inf]]), "hiddenState": np.ones((1, 1)), "cellState": np.ones((1, 1))}
    p = save(tmp_path / "e.mat", e)
    run_mlstm("check", p, p, check=0)
    a = dict(e, Y=np.array([[np.nan, 1.0, -np.inf]]))
    assert run_mlstm("check", save(tmp_path / "a.mat", a), p).returncode == 1


def test_check_bad_files(tmp_path, expected_path):
    assert_one_line_error(run_mlstm("check", tmp_path / "nope.mat", expected_path), "nope.mat")
    empty = save(tmp_path / "other.mat", {"Z": np.ones(2)})
    assert_one_line_error(run_mlstm("check", expected_path, empty), "other.mat", "expected variables Y")
    # Missing from ACTUAL is a mismatch, not a usage error.
    proc = run_mlstm("check", empty, expected_path)
    assert proc.returncode == 1 and b"missing" in proc.stdout


# ---- verify: files holding MATLAB's inputs and outputs together ----


def _export(tmp_path, name, change=None, filename=None):
    """A 'MATLAB export': a fixture's inputs and expected outputs in one file."""
    data = {k: v for k, v in load(os.path.join(FIXTURES, name, "input.mat")).items() if not k.startswith("__")}
    data = {k: (str(v[0]) if v.dtype.kind == "U" else v) for k, v in data.items()}
    out = {k: v for k, v in load(os.path.join(FIXTURES, name, "expected.mat")).items() if k in OUTPUTS}
    if change:
        change(out)
    return save(tmp_path / (filename or f"{name}.mat"), dict(data, **out))


def test_verify_passes_fixture_exports(tmp_path):
    files = [_export(tmp_path, n) for n in ("cbt_double", "ctb_single", "softsign", "scbt_spatial", "mixed_h0_single")]
    proc = run_mlstm("verify", *files)
    text = proc.stdout.decode()
    assert proc.returncode == 0, text
    assert text.count("OK ") == 5 and "5 file(s): 5 agree, 0 differ, 0 could not be checked" in text


@pytest.mark.parametrize("kind", KINDS)
def test_verify_catches(tmp_path, kind):
    good = _export(tmp_path, "cbt_double", filename="good.mat")
    bad = _export(tmp_path, "cbt_double", change=_perturbations(None)[kind], filename="bad.mat")
    proc = run_mlstm("verify", good, bad)
    text = proc.stdout.decode()
    assert proc.returncode == 1, text
    lines = text.splitlines()
    assert lines[0].startswith("OK") and "good.mat" in lines[0]
    assert lines[1].startswith("DIFFER") and "bad.mat" in lines[1] and WHAT[kind][1] in lines[1]
    assert "1 agree, 1 differ" in lines[-1]
    records = [json.loads(line) for line in run_mlstm("verify", good, bad, "--json").stdout.splitlines()]
    assert [r.get("status") for r in records[:2]] == ["ok", "differ"]
    assert records[2]["summary"] == {"ok": 1, "differ": 1, "error": 0}


def test_verify_options_from_command_line_and_unreadable_file(tmp_path):
    data = {
        k: v
        for k, v in load(os.path.join(FIXTURES, "cbt_double", "input.mat")).items()
        if k in ("X", "H0", "C0", "weights", "recurrentWeights", "bias")
    }
    out = {k: v for k, v in load(os.path.join(FIXTURES, "cbt_double", "expected.mat")).items() if k in OUTPUTS}
    f = save(tmp_path / "noformat.mat", dict(data, **out))
    assert run_mlstm("verify", f, "DataFormat=CBT").returncode == 0
    # The wrong activation on the command line: the stored outputs differ from the recomputation.
    assert run_mlstm("verify", f, "DataFormat=CBT", "State=relu").returncode == 1
    broken = tmp_path / "broken.mat"
    broken.write_bytes(b"MATLAB 5.0 MAT-file" + b"\0" * 50)
    proc = run_mlstm("verify", f, broken, "DataFormat=CBT")
    text = proc.stdout.decode()
    assert proc.returncode == 1 and "ERROR  " in text and "broken.mat" in text and "1 could not be checked" in text
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    "bad, fragments",
    [
        (("--rtol", "-1"), ("--rtol", ">= 0", "-1")),
        (("--atol", "nan"), ("--atol", ">= 0", "nan")),
        (("DataFormat=XYZ",), ("DataFormat", "S, C, B, T, U")),
        (("DataFormat=CBTT",), ("DataFormat", "'T'", "at most once")),
    ],
)
def test_verify_bad_invocation_is_one_error_not_every_files_failure(tmp_path, bad, fragments):
    """A bad tolerance or option given once: one Error: line on stderr, exit 2, nothing on stdout
    (as check does), not an ERROR record per file with exit 1."""
    files = [_export(tmp_path, "cbt_double", filename=f"{n}.mat") for n in ("a", "b")]
    proc = run_mlstm("verify", *files, *bad)
    assert_one_line_error(proc, *fragments)
    assert proc.stdout in (b"", "")


def test_verify_with_cupy_where_none_is_usable_is_one_error(tmp_path):
    from mlstm.engines import cupy_unavailable_reason

    if cupy_unavailable_reason() is None:
        pytest.skip("CuPy can use a GPU here")
    proc = run_mlstm("verify", _export(tmp_path, "cbt_double"), "--engine", "cupy")
    assert_one_line_error(proc, "engine", "cupy")
    assert proc.stdout in (b"", "")
