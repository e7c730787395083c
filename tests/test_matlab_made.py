"""MAT files that MATLAB itself wrote (../shared/matlab-made, see its PROVENANCE.md) through
``mlstm info`` and ``mlstm run``.

Expected sizes and classes come from scipy.io.whosmat (v4-v7) and, for what whosmat cannot say
(v7.3, the MATLAB 7.4 HDF5 file, MATLAB string objects), from MATLAB's documented conventions
written out below. Values come from reading the same file independently (loadmat with
mat_dtype=True, or h5py with the dimensions reversed) and the float64 reference LSTM.

.ci/run sets MLSTM_REQUIRE_MATLAB_MADE=1: there a missing folder fails instead of skipping.
"""

import json
import os
import struct
import zlib

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import REPO, assert_one_line_error, run_mlstm
from reference import reference_lstm

CANDIDATES = [
    os.environ.get("MLSTM_MATLAB_MADE", ""),
    os.path.join(REPO, "..", "shared", "matlab-made"),
    os.path.join(REPO, "shared", "matlab-made"),
    "/work/shared/matlab-made",
]
FOLDER = next((os.path.abspath(p) for p in CANDIDATES if p and os.path.isdir(p)), None)
if FOLDER is None:
    if os.environ.get("MLSTM_REQUIRE_MATLAB_MADE") == "1":
        pytest.fail("MLSTM_REQUIRE_MATLAB_MADE=1 but ../shared/matlab-made is missing", pytrace=False)
    pytest.skip("../shared/matlab-made (MATLAB-written files) is not here", allow_module_level=True)

FILES = sorted(f for f in os.listdir(FOLDER) if f.endswith(".mat"))
V73 = {f for f in FILES if open(os.path.join(FOLDER, f), "rb").read(1024)[512:520] == b"\x89HDF\r\n\x1a\n"}

# What whos says in MATLAB where no independent reader can: v7.3 files, whose expectations are
# MATLAB's conventions (reversed dims, MATLAB_sparse rows, struct arrays), and MATLAB objects.
KNOWN = {
    ("scipy_testhdf5_7.4_GLNX86.mat", "testdouble"): ((1, 9), "double"),
    ("skjerns_testfile13.mat", "A"): ((2, 3), "sparse"),
    ("skjerns_testfile2.mat", "raw1"): ((1, 5), "struct"),
    ("scipy_testmatlabstring_7_WIN64.mat", "matstring1"): ((1, 1), "string"),
    ("scipy_testmatlabstring_7_WIN64.mat", "matstring2"): ((1, 1), "string"),
    ("pymatreader_v73.mat", "a_matrix"): ((100, 100), "double"),
    ("pymatreader_v73.mat", "a_struct"): ((1, 1), "struct"),
    ("pymatreader_v73.mat", "a_unit64"): ((1, 1), "uint64"),
}
WHOS_NAMES = {"function": "function_handle"}


def info_lines(path):
    proc = run_mlstm("info", path, check=0)
    out = {}
    for line in proc.stdout.decode().splitlines()[1:]:
        name, size, cls = line.split(None, 2)
        out[name] = (tuple(int(d) for d in size.split("x")), cls)
    return out


def whos_expected(path):
    try:
        return {
            n: (tuple(s), WHOS_NAMES.get(c, c)) for n, s, c in scipy.io.whosmat(path) if n != "__function_workspace__"
        }
    except Exception:
        return None


def matlab_size(shape):
    shape = tuple(shape)
    if len(shape) == 1:  # whosmat gives char rows as (n,)
        shape = (1, shape[0]) if shape[0] else (0, 0)
    return shape


@pytest.mark.parametrize("name", FILES)
def test_info_matches_whos(name):
    path = os.path.join(FOLDER, name)
    got = info_lines(path)
    want = whos_expected(path) if name not in V73 else None
    if want is not None:
        assert set(got) == set(want)
        for var, (size, cls) in want.items():
            assert got[var][1] == cls, (var, got[var], cls)
            if cls != "char":
                assert got[var][0] == matlab_size(size), (var, got[var], size)
    for (file, var), expected in KNOWN.items():
        if file == name:
            assert got[var] == expected, (var, got[var], expected)
    assert got, "info listed nothing"


CONTAINERS = {0: "MAT v4", 1: "MAT v5/v7", 2: "MAT v7.3"}  # scipy.io.matlab.matfile_version's major


def h5py_expected(path):
    """{name: (size, class, text or None)} of a v7.3 file's top-level MATLAB datasets, read with h5py alone:
    size is the dataset's shape reversed (an empty array stores its size as its data), char text is
    the uint16 codes of a row."""
    out = {}
    with h5py.File(path, "r") as fh:
        for name, obj in fh.items():
            if not isinstance(obj, h5py.Dataset) or "MATLAB_class" not in obj.attrs or obj.dtype.names:
                continue
            cls = obj.attrs["MATLAB_class"].decode()
            empty = "MATLAB_empty" in obj.attrs and int(np.asarray(obj.attrs["MATLAB_empty"]).ravel()[0])
            size = tuple(int(d) for d in np.asarray(obj[()]).ravel()) if empty else tuple(reversed(obj.shape))
            text = None
            if cls == "char" and (empty or size[0] == 1):
                text = "" if empty else "".join(chr(c) for c in np.asarray(obj[()]).ravel())
            out[name] = (size, cls, text)
    return out


def loadmat_text(path, var):
    """A char variable's text as scipy.io.loadmat reads it (one string per row)."""
    value = scipy.io.loadmat(path, variable_names=[var], chars_as_strings=True)[var]
    return "\n".join(str(row) for row in value.ravel())


@pytest.mark.parametrize("name", FILES)
def test_info_json_matches_independent_readers(name):
    """`mlstm info --json`: container from scipy's matfile_version; sizes, classes and char text from
    scipy.io.whosmat/loadmat (v4-v7) or h5py (v7.3), plus MATLAB's conventions where neither can say."""
    path = os.path.join(FOLDER, name)
    proc = run_mlstm("info", "--json", path, check=0)
    got = json.loads(proc.stdout)
    assert got["file"] == path
    assert got["container"] == CONTAINERS[scipy.io.matlab.matfile_version(path)[0]]
    variables = got["variables"]
    if name in V73:
        want = h5py_expected(path)
        for var, (size, cls, text) in want.items():
            assert variables[var]["size"] == list(size), (var, variables[var], size)
            assert variables[var]["class"] == cls, (var, variables[var], cls)
            if text is not None:
                assert variables[var]["value"] == text, var
    else:
        want = whos_expected(path)
        if want is not None:
            assert set(variables) == set(want)
            for var, (size, cls) in want.items():
                assert variables[var]["class"] == cls, (var, variables[var], cls)
                if cls == "char":
                    text = loadmat_text(path, var)
                    assert variables[var]["value"] == text, var
                    if "\n" not in text:
                        assert variables[var]["size"] == ([1, len(text)] if text else [0, 0]), var
                else:
                    assert variables[var]["size"] == list(matlab_size(size)), (var, variables[var], size)
    for (file, var), (size, cls) in KNOWN.items():
        if file == name:
            assert (variables[var]["size"], variables[var]["class"]) == (list(size), cls)
    assert all("value" in v for v in variables.values() if v["class"] == "char")
    assert not any("value" in v for v in variables.values() if v["class"] != "char")


def independent_numeric(path):
    """{name: float64 array} of the real, non-empty double/single variables, read without mlstm."""
    out = {}
    if path.endswith(tuple(V73)):
        with h5py.File(path, "r") as fh:
            for name, obj in fh.items():
                cls = obj.attrs.get("MATLAB_class", b"").decode() if "MATLAB_class" in obj.attrs else ""
                if isinstance(obj, h5py.Dataset) and cls in ("double", "single") and "MATLAB_empty" not in obj.attrs:
                    if obj.dtype.names is None:
                        out[name] = np.asarray(obj[()], dtype=np.float64).T
        return out
    try:
        loaded = scipy.io.loadmat(path, mat_dtype=True)
        stored = scipy.io.loadmat(path)  # mat_dtype=True drops imaginary parts: find complex here
        whos = {n: c for n, _, c in scipy.io.whosmat(path)}
    except Exception:
        return out
    for name, value in loaded.items():
        if whos.get(name) in ("double", "single") and isinstance(value, np.ndarray) and value.size:
            if value.dtype.kind == "f" and value.ndim == 2 and stored[name].dtype.kind != "c":
                out[name] = value.astype(np.float64)
    return out


NUMERIC = [(f, v) for f in FILES for v in independent_numeric(os.path.join(FOLDER, f))]


@pytest.mark.parametrize("name,var", NUMERIC, ids=[f"{f}:{v}" for f, v in NUMERIC])
def test_every_numeric_variable_runs_as_x(tmp_path, name, var):
    """MATLAB's variable as X (DataFormat CT), against the float64 reference on the same values."""
    path = os.path.join(FOLDER, name)
    X = independent_numeric(path)[var]
    C = X.shape[0]
    H = 3
    rng = np.random.default_rng(C)
    scale = 0.5 / max(1.0, float(np.max(np.abs(X))))
    params = dict(
        H0=rng.standard_normal((H, 1)) * 0.5,
        C0=rng.standard_normal((H, 1)) * 0.5,
        weights=rng.standard_normal((4 * H, C)) * scale / np.sqrt(C),
        recurrentWeights=rng.standard_normal((4 * H, H)) * 0.5,
        bias=rng.standard_normal((4 * H, 1)) * 0.2,
    )
    scipy.io.savemat(tmp_path / "params.mat", params)
    out = tmp_path / "out.mat"
    run_mlstm("run", path, tmp_path / "params.mat", "--var", f"X={var}", "-o", out, "DataFormat=CT", check=0)
    got = scipy.io.loadmat(out)
    Yr, hr, cr = reference_lstm(X, *params.values(), "CT")
    assert got["Y"].dtype == np.float64  # MATLAB's class double, whatever the storage type
    np.testing.assert_allclose(got["Y"], Yr.reshape(got["Y"].shape), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got["hiddenState"], hr, rtol=1e-12, atol=1e-14)


def test_integer_valued_double_as_h0_and_bias(tmp_path):
    """scipy_testmatrix: a 3x5 double that MATLAB stored as miUINT8 (the zeros(3,1) case)."""
    path = os.path.join(FOLDER, "scipy_testmatrix_7.1_GLNX86.mat")
    raw = scipy.io.loadmat(path)["testmatrix"]
    assert raw.dtype.kind in "iu"  # the storage type really is an integer
    H0 = scipy.io.loadmat(path, mat_dtype=True)["testmatrix"] / 10  # 3 x 5: H = 3, B = 5
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 5, 4))
    params = dict(
        X=X,
        C0=np.zeros((3, 1)),
        weights=rng.standard_normal((12, 2)) * 0.3,
        recurrentWeights=rng.standard_normal((12, 3)) * 0.3,
        bias=np.zeros((12, 1)),
    )
    scipy.io.savemat(tmp_path / "rest.mat", params)
    out = tmp_path / "out.mat"
    run_mlstm("run", path, tmp_path / "rest.mat", "--var", "H0=testmatrix", "-o", out, "DataFormat=CBT", check=0)
    got = scipy.io.loadmat(out)
    Yr, _, _ = reference_lstm(
        X, H0 * 10, params["C0"], params["weights"], params["recurrentWeights"], params["bias"], "CBT"
    )
    np.testing.assert_allclose(got["Y"], Yr, rtol=1e-12, atol=1e-14)


def test_complex_double_stays_an_error(tmp_path):
    path = os.path.join(FOLDER, "scipy_testcomplex_7.1_GLNX86.mat")
    scipy.io.savemat(
        tmp_path / "p.mat",
        dict(
            H0=np.zeros((1, 1)),
            C0=np.zeros((1, 1)),
            weights=np.ones((4, 1)),
            recurrentWeights=np.ones((4, 1)),
            bias=np.zeros((4, 1)),
        ),
    )
    proc = run_mlstm(
        "run", path, tmp_path / "p.mat", "--var", "X=testcomplex", "-o", tmp_path / "o.mat", "DataFormat=CT"
    )
    assert_one_line_error(proc, "testcomplex", "complex")
    assert not (tmp_path / "o.mat").exists()


def _inflated(matlab):
    """The same MAT v7 file with each compressed element (miCOMPRESSED, 15) stored inflated."""
    assert matlab[126:128] == b"IM"
    out, pos = [matlab[:128]], 128
    while pos + 8 <= len(matlab):
        kind, size = struct.unpack("<II", matlab[pos : pos + 8])
        body = matlab[pos + 8 : pos + 8 + size]
        out.append(zlib.decompress(body) if kind == 15 else matlab[pos : pos + 8 + size + (-size % 8)])
        pos += 8 + size + (0 if kind == 15 else -size % 8)
    return b"".join(out)


def _with_numeric(tmp_path, **variables):
    """MATLAB's string-object file with numeric variables appended (scipy writes their elements)."""
    with open(os.path.join(FOLDER, "scipy_testmatlabstring_7_WIN64.mat"), "rb") as fh:
        matlab = _inflated(fh.read())
    extra = tmp_path / "extra.mat"
    scipy.io.savemat(extra, variables, do_compression=False)
    target = tmp_path / "mixed.mat"
    target.write_bytes(matlab + extra.read_bytes()[128:])
    return target


def test_string_object_does_not_hide_the_other_variables(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((2, 4))
    params = dict(
        X=X,
        H0=np.zeros((3, 1)),
        C0=np.zeros((3, 1)),
        weights=rng.standard_normal((12, 2)) * 0.3,
        recurrentWeights=rng.standard_normal((12, 3)) * 0.3,
        bias=np.zeros((12, 1)),
    )
    mixed = _with_numeric(tmp_path, **params)
    listed = info_lines(mixed)
    assert listed["matstring1"] == ((1, 1), "string") and listed["X"] == ((2, 4), "double")
    out = tmp_path / "out.mat"
    run_mlstm("run", mixed, "-o", out, "DataFormat=CT", check=0)
    Yr, _, _ = reference_lstm(*params.values(), "CT")
    np.testing.assert_allclose(scipy.io.loadmat(out)["Y"], Yr, rtol=1e-12, atol=1e-14)
    # A string as an argument or as the DataFormat option: say so, and how to fix it.
    proc = run_mlstm("run", mixed, "--var", "X=matstring1", "-o", out, "DataFormat=CT")
    assert_one_line_error(proc, "matstring1", "MATLAB string", "char(")
    # The string variable renamed in place (same length) to DataFormat: read as the option.
    renamed = _with_numeric(tmp_path, **params)
    data = renamed.read_bytes()
    assert data.count(b"matstring1") == 1
    renamed.write_bytes(data.replace(b"matstring1", b"DataFormat"))
    assert info_lines(renamed)["DataFormat"] == ((1, 1), "string")
    proc = run_mlstm("run", renamed, "-o", tmp_path / "o2.mat")
    assert_one_line_error(proc, "DataFormat", "MATLAB string", "char(")
