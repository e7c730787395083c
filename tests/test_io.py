"""File formats (docs/BEHAVIOUR.md §5): MAT v7.3 structure, plain HDF5, stdin/stdout, unsupported content,
corrupt files.

Independent checks: the v7.3 files are inspected with h5py at the byte and attribute level, and
cross-read/written with the hdf5storage package; values are compared with tests/reference.py.
"""

import io
import os

import h5py
import hdf5storage
import numpy as np
import pytest
import scipy.io
import scipy.sparse
from conftest import assert_one_line_error, run_mlstm
from reference import random_problem, reference_lstm

from mlstm.io import open_matrix_file, write_variables

NAMES = ("X", "H0", "C0", "weights", "recurrentWeights", "bias")


@pytest.fixture
def problem(rng):
    return dict(zip(NAMES, random_problem(rng, C=3, H=2, B=4, T=5)))


@pytest.fixture
def infile(tmp_path, problem):
    path = str(tmp_path / "in.mat")
    scipy.io.savemat(path, problem, oned_as="column")
    return path


# ---- MAT v7.3 writer: the structure MATLAB's load needs ----


def test_mat73_output_structure(tmp_path, problem, infile):
    out = tmp_path / "o.mat"
    run_mlstm("run", infile, "-o", out, "--format", "mat73", "DataFormat=CBT", check=0)
    raw = out.read_bytes()
    assert raw[:19] == b"MATLAB 7.3 MAT-file"
    assert raw[116:124] == b"\0" * 8  # no subsystem
    assert raw[124:126] == b"\x00\x02" and raw[126:128] == b"IM"
    assert raw[512:520] == b"\x89HDF\r\n\x1a\n"
    assert raw[520] == 0  # superblock version 0: the library default, never libver='latest'
    Yr, hr, cr = reference_lstm(*problem.values(), "CBT")
    with h5py.File(out, "r") as f:
        assert f.userblock_size == 512
        assert set(f) == {"Y", "hiddenState", "cellState", "YFormat"}
        for name in f:
            assert "MATLAB_class" in f[name].attrs
        assert f["Y"].attrs["MATLAB_class"] == b"double"
        assert f["Y"].shape == (5, 4, 2)  # reversed MATLAB size 2x4x5
        np.testing.assert_allclose(f["Y"][()].T, Yr, rtol=1e-12, atol=1e-14)
        assert f["hiddenState"].shape == (4, 2)
        yf = f["YFormat"]
        assert yf.attrs["MATLAB_class"] == b"char" and yf.attrs["MATLAB_int_decode"] == 2
        assert yf.dtype == np.uint16 and yf.shape == (3, 1)
        assert "".join(map(chr, yf[()].ravel())) == "CBT"


def test_mat73_single_class_and_large_arrays_chunked(tmp_path):
    path = str(tmp_path / "big.mat")
    big = np.arange(2 * 300 * 1000, dtype=np.float32).reshape(2, 300, 1000)
    write_variables(path, {"Y": big, "s": np.float32([[1.5]])}, "mat73")
    with h5py.File(path, "r") as f:
        assert f["Y"].attrs["MATLAB_class"] == b"single"
        assert f["Y"].chunks is not None and f["Y"].compression == "gzip"
        assert f["Y"].shape == (1000, 300, 2)
    loaded = hdf5storage.loadmat(path)
    np.testing.assert_array_equal(loaded["Y"], big)
    assert loaded["s"].dtype == np.float32


@pytest.mark.parametrize(
    "value",
    [
        np.arange(6.0).reshape(2, 3),
        np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        np.arange(6.0).reshape(2, 3, 1),  # trailing singleton: MATLAB's 2x3
        np.arange(4.0).reshape(4, 1),
        np.float64([[7.0]]),
    ],
    ids=["double2d", "single3d", "trailing1", "column", "scalar"],
)
def test_mat73_writer_read_by_hdf5storage(tmp_path, value):
    path = str(tmp_path / "w.mat")
    write_variables(path, {"A": value, "F": "CBT"}, "mat73")
    loaded = hdf5storage.loadmat(path)
    expected = value.reshape(value.shape[:2]) if value.ndim == 3 and value.shape[2] == 1 else value
    assert loaded["A"].dtype == value.dtype
    np.testing.assert_array_equal(loaded["A"], expected)
    assert str(np.asarray(loaded["F"]).ravel()[0]) == "CBT"


@pytest.mark.parametrize(
    "value",
    [
        np.arange(6.0).reshape(2, 3),
        np.arange(24, dtype=np.float32).reshape(2, 3, 4),
        np.arange(4.0).reshape(4, 1),
    ],
)
def test_hdf5storage_writer_read_by_mlstm(tmp_path, value):
    path = str(tmp_path / "hs.mat")
    hdf5storage.savemat(path, {"A": value, "DataFormat": "CBT"}, format="7.3", matlab_compatible=True)
    with open_matrix_file(path) as f:
        assert f.kind == "MAT v7.3"
        got = f.read("A")
        assert got.dtype == value.dtype and got.shape == value.shape
        np.testing.assert_array_equal(got, value)
        assert f.read("DataFormat") == "CBT"
        info = {v.name: v for v in f.info()}
        assert info["A"].matlab_class == ("single" if value.dtype == np.float32 else "double")


def test_run_on_hdf5storage_v73_input(tmp_path, problem):
    path = str(tmp_path / "in73.mat")
    hdf5storage.savemat(path, dict(problem, DataFormat="CBT"), format="7.3", matlab_compatible=True)
    out = tmp_path / "o.mat"
    run_mlstm("run", path, "-o", out, check=0)
    Yr, _, _ = reference_lstm(*problem.values(), "CBT")
    np.testing.assert_allclose(scipy.io.loadmat(out)["Y"], Yr, rtol=1e-12, atol=1e-14)


def test_mat73_round_trip_through_mlstm(tmp_path, problem):
    path = str(tmp_path / "in73.mat")
    write_variables(path, dict(problem, DataFormat="CBT"), "mat73")
    with open_matrix_file(path) as f:
        for name in NAMES:
            want = problem[name] if problem[name].ndim > 1 else problem[name].reshape(-1, 1)
            np.testing.assert_array_equal(f.read(name), want)


def test_empty_and_logical_mat73(tmp_path):
    path = str(tmp_path / "e.mat")
    write_variables(path, {"E": np.zeros((0, 3)), "F": ""}, "mat73")
    with h5py.File(path, "a") as f:
        f.create_dataset("L", data=np.uint8([[1, 0, 1]]))
        f["L"].attrs["MATLAB_class"] = np.bytes_("logical")
        f["L"].attrs["MATLAB_int_decode"] = np.int32(1)
    with open_matrix_file(path) as f:
        assert f.read("E").shape == (0, 3)
        assert f.read("F") == ""
        assert f.read("L").dtype == np.bool_
        assert {v.name: v.size for v in f.info()}["E"] == (0, 3)


# ---- plain HDF5 ----


def test_plain_hdf5_numpy_order_paths_and_output(tmp_path, problem):
    path = str(tmp_path / "in.h5")
    with h5py.File(path, "w") as f:
        g = f.create_group("data")
        g["x"] = problem["X"]
        for name in NAMES[1:]:
            f[name] = problem[name]
    out = tmp_path / "o.h5"
    run_mlstm("run", path, "--var", "X=/data/x", "-o", out, "DataFormat=CBT", check=0)
    Yr, hr, _ = reference_lstm(*problem.values(), "CBT")
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["Y"][()], Yr, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(f["hiddenState"][()], hr, rtol=1e-12, atol=1e-14)
        assert f["YFormat"][()] == b"CBT"


def test_plain_hdf5_matlab_order(tmp_path, problem):
    # MATLAB's h5write stores column-major data: h5py sees the reversed size.
    path = str(tmp_path / "in.h5")
    with h5py.File(path, "w") as f:
        for name in NAMES:
            f[name] = np.asarray(problem[name]).T
    out = tmp_path / "o.h5"
    run_mlstm("run", path, "--hdf5-order", "matlab", "-o", out, "DataFormat=CBT", check=0)
    Yr, _, _ = reference_lstm(*problem.values(), "CBT")
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["Y"][()].T, Yr, rtol=1e-12, atol=1e-14)
    # Read in NumPy order, the same file has the wrong sizes: a clear error, not a silent transpose.
    proc = run_mlstm("run", path, "-o", tmp_path / "o2.h5", "DataFormat=CBT")
    assert_one_line_error(proc, "in.h5")


def test_format_flag_overrides_extension(tmp_path, infile):
    out = tmp_path / "o.h5"
    run_mlstm("run", infile, "-o", out, "--format", "mat", "DataFormat=CBT", check=0)
    assert set(scipy.io.loadmat(out)) >= {"Y", "hiddenState", "cellState", "YFormat"}


# ---- pipelines ----


def test_stdin_and_stdout(tmp_path, problem, infile):
    data = open(infile, "rb").read()
    proc = run_mlstm("run", "-", "-o", "-", "DataFormat=CBT", input=data, check=0, subprocess_only=True)
    got = scipy.io.loadmat(io.BytesIO(proc.stdout))
    Yr, _, _ = reference_lstm(*problem.values(), "CBT")
    np.testing.assert_allclose(got["Y"], Yr, rtol=1e-12, atol=1e-14)
    # stdout in MAT v7.3 and HDF5 too; stdin may hold v7.3.
    for fmt in ("mat73", "hdf5"):
        proc = run_mlstm("run", "-", "-o", "-", "--format", fmt, "DataFormat=CBT", input=data, check=0)
        path = tmp_path / f"piped.{fmt}"
        path.write_bytes(proc.stdout)
        with h5py.File(path, "r") as f:
            assert "Y" in f
    proc = run_mlstm("run", "-", "-o", "-", "--format", "mat73", "DataFormat=CBT", input=data, check=0)
    proc2 = run_mlstm("run", "-", "-o", "-", input=proc.stdout.replace(b"", b""), check=None)
    assert proc2.returncode == 2  # outputs are not inputs: a clear error naming <stdin>
    assert "<stdin>" in proc2.stderr


def test_stdin_only_once(tmp_path):
    assert_one_line_error(run_mlstm("run", "-", "-", "-o", tmp_path / "o.mat", input=b""), "only once")


# ---- unsupported content ----


def _mat73_with(path, name, make):
    write_variables(str(path), {"X": np.zeros((2, 2))}, "mat73")
    with h5py.File(path, "a") as f:
        make(f, name)
    return str(path)


def _cell(f, name):
    refs = f.create_group("#refs#")
    refs["a"] = np.zeros((1, 1))
    ds = f.create_dataset(name, data=np.array([[refs["a"].ref]], dtype=h5py.ref_dtype))
    ds.attrs["MATLAB_class"] = np.bytes_("cell")


def _struct(f, name):
    g = f.create_group(name)
    g.attrs["MATLAB_class"] = np.bytes_("struct")
    g["field"] = np.zeros((1, 1))


def _sparse(f, name):
    g = f.create_group(name)
    g.attrs["MATLAB_class"] = np.bytes_("double")
    g.attrs["MATLAB_sparse"] = np.uint64(3)
    g["data"] = np.ones(1)


def _complex(f, name):
    ds = f.create_dataset(name, data=np.zeros((2, 2), dtype=[("real", "<f8"), ("imag", "<f8")]))
    ds.attrs["MATLAB_class"] = np.bytes_("double")


def _function_handle(f, name):
    g = f.create_group(name)
    g.attrs["MATLAB_class"] = np.bytes_("function_handle")


def _string_object(f, name):
    ds = f.create_dataset(name, data=np.zeros((1, 6), dtype=np.uint32))
    ds.attrs["MATLAB_class"] = np.bytes_("string")
    ds.attrs["MATLAB_object_decode"] = np.int32(3)


@pytest.mark.parametrize(
    "make,what",
    [
        (_cell, "a cell array"),
        (_struct, "a struct"),
        (_sparse, "a sparse matrix"),
        (_complex, "complex double"),
        (_function_handle, "a function handle"),
        (_string_object, "string"),
    ],
)
def test_mat73_unsupported_content(tmp_path, make, what):
    path = _mat73_with(tmp_path / "u.mat", "H0", make)
    proc = run_mlstm("run", path, "-o", tmp_path / "o.mat", "DataFormat=CBT")
    assert_one_line_error(proc, "u.mat", "variable 'H0'", what, "expected")


@pytest.mark.parametrize(
    "value,what",
    [
        (np.array([[np.zeros(2), np.ones(3)]], dtype=object), "cell"),
        ({"a": np.zeros(2)}, "struct"),
        (scipy.sparse.csc_matrix(np.eye(2)), "sparse"),
        (np.ones((2, 2)) * 1j, "complex double"),
        (np.int32([[1, 2]]), "int32"),
        (np.array([[True, False]]), "logical"),
    ],
    ids=["cell", "struct", "sparse", "complex", "int32", "logical"],
)
def test_mat7_unsupported_content(tmp_path, problem, value, what):
    path = str(tmp_path / "u.mat")
    scipy.io.savemat(path, dict(problem, H0=value), oned_as="column")
    proc = run_mlstm("run", path, "-o", tmp_path / "o.mat", "DataFormat=CBT")
    assert_one_line_error(proc, "u.mat", "'H0'", what, "expected")


@pytest.mark.parametrize(
    "data,what",
    [
        (np.zeros((2, 2), dtype=[("a", "<f8"), ("b", "<i4")]), "compound"),
        (np.zeros((2, 2), dtype=np.complex128), "complex"),
        (None, "object references"),
    ],
)
def test_plain_hdf5_unsupported_content(tmp_path, data, what):
    path = str(tmp_path / "u.h5")
    with h5py.File(path, "w") as f:
        f["X"] = np.zeros((2, 2))
        if data is None:
            f.create_dataset("H0", data=np.array([f["X"].ref]), dtype=h5py.ref_dtype)
        else:
            f["H0"] = data
    proc = run_mlstm("run", path, "-o", tmp_path / "o.mat", "DataFormat=CBT")
    assert_one_line_error(proc, "u.h5", "'H0'", what)


# ---- truncated, corrupt and foreign files: Error:, exit 2, output untouched ----


def _corrupt_files(tmp_path, infile):
    good = open(infile, "rb").read()
    mat73 = tmp_path / "good73.mat"
    run_mlstm("run", infile, "-o", mat73, "--format", "mat73", "DataFormat=CBT", check=0)
    raw73 = mat73.read_bytes()
    rng = np.random.default_rng(1)
    missing = tmp_path / "missing.h5"
    with h5py.File(missing, "w") as f:
        f["X"] = np.zeros((3, 4, 5))
    v4 = tmp_path / "v4src.mat"
    scipy.io.savemat(v4, {"X": np.ones((3, 4))}, format="4")
    return {
        "mat7_truncated.mat": good[:300],
        "mat7_half.mat": good[: len(good) // 2],
        "mat7_header_random.mat": good[:128] + rng.bytes(4000),
        "mat4_truncated.mat": v4.read_bytes()[:40],
        "mat73_truncated.mat": raw73[:700],
        "mat73_half.mat": raw73[: len(raw73) // 2],
        "hdf5_missing_dataset.h5": missing.read_bytes(),
        "not_a_matrix.mat": b"%PDF-1.4\n" + rng.bytes(2000),
        "empty.mat": b"",
    }


def test_corrupt_files_each_kind(tmp_path, infile):
    out = tmp_path / "out.mat"
    out.write_bytes(b"precious")
    for name, content in _corrupt_files(tmp_path, infile).items():
        path = tmp_path / name
        path.write_bytes(content)
        proc = run_mlstm("run", path, "-o", out, "DataFormat=CBT")
        assert_one_line_error(proc, name)
        assert out.read_bytes() == b"precious", name
        assert not [p for p in os.listdir(tmp_path) if p.startswith(".mlstm-")]
        info = run_mlstm("info", path)
        assert info.returncode in (0, 2) and "Traceback" not in info.stderr


@pytest.mark.parametrize("compressed", [False, True])
def test_a_mat5_file_cut_inside_its_data_is_an_error_for_info_too(tmp_path, problem, compressed):
    """whosmat reads only each variable's header, so info listed a cut file as whole; the data
    elements' tags say it is short. The whole file, and every cut, checked."""
    whole = tmp_path / "whole.mat"
    scipy.io.savemat(whole, problem, do_compression=compressed, oned_as="column")
    raw = whole.read_bytes()
    assert run_mlstm("info", whole).returncode == 0
    run_mlstm("run", whole, "-o", tmp_path / "o.mat", "DataFormat=CBT", check=0)
    for cut in (200, 300, len(raw) // 2, len(raw) - 1):
        path = tmp_path / f"cut{cut}.mat"
        path.write_bytes(raw[:cut])
        for command in (("info", path), ("run", path, "-o", tmp_path / "o2.mat", "DataFormat=CBT")):
            assert_one_line_error(run_mlstm(*command), f"cut{cut}.mat", "truncated")


def test_info_on_mat73_and_hdf5(tmp_path, infile):
    out = tmp_path / "o.mat"
    run_mlstm("run", infile, "-o", out, "--format", "mat73", "DataFormat=CBT", check=0)
    text = run_mlstm("info", out, check=0).stdout.decode()
    assert "MAT v7.3" in text
    rows = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:]}
    assert rows["Y"] == ["2x4x5", "double"] and rows["YFormat"] == ["1x3", "char"]


def test_mat_output_too_big_for_v7_switches_to_v73_with_a_notice(tmp_path, infile, monkeypatch, capsys):
    # The 2 GB per-variable limit of MAT v7, lowered so a small Y passes it.
    import mlstm.io
    from mlstm.cli import main

    monkeypatch.setattr(mlstm.io, "MAT5_VARIABLE_LIMIT", 100)
    out = tmp_path / "big.mat"
    with pytest.raises(SystemExit) as exit_info:
        main(["run", infile, "-o", str(out), "DataFormat=CBT"])
    assert exit_info.value.code == 0
    assert "MAT v7 cannot hold; writing MAT v7.3" in capsys.readouterr().err
    assert out.read_bytes()[:19] == b"MATLAB 7.3 MAT-file"
    with h5py.File(out, "r") as f:
        assert f["Y"].attrs["MATLAB_class"] == b"double"
