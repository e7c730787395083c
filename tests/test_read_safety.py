"""mlstm reads only the files the user names, and only as much of them as a command needs.

1. HDF5 / MAT v7.3 inputs that point elsewhere (raw data in external files, external links,
   virtual datasets over other files) are refused with one ``Error:`` line, in ``run`` (in memory
   and streamed), ``info``, ``check`` and ``verify``; a dangling soft link is an error when used
   and is listed as such by ``info``.
2. A variable declaring far more data than is stored (an unwritten or unallocated dataset, a
   MATLAB_empty size vector, an unused .npz member) is sized from metadata before any data is
   read: each case runs the command in a fresh wrapper process and bounds its peak RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
from conftest import REPO, assert_one_line_error, run_mlstm
from reference import random_problem, reference_lstm

from mlstm.errors import MlstmError
from mlstm.io import write_variables
from mlstm.io.hdf5 import check_local, get_local

C, H, B, T = 3, 4, 2, 5
BIG = 120_000_000  # float64 or uint64 elements: 960 MB declared, next to nothing stored


@pytest.fixture
def problem(rng):
    X, H0, C0, W, R, b = random_problem(rng, C=C, H=H, B=B, T=T)
    return {"X": X, "H0": H0, "C0": C0, "weights": W, "recurrentWeights": R, "bias": b.reshape(-1, 1)}


def expected_y(p):
    return reference_lstm(p["X"], p["H0"], p["C0"], p["weights"], p["recurrentWeights"], p["bias"], "CBT")[0]


def write_plain(path, variables):
    """Plain HDF5 in NumPy order (the dataset shape is the MATLAB size), DataFormat as ASCII."""
    with h5py.File(path, "w") as f:
        for name, value in variables.items():
            f[name] = np.bytes_(value) if isinstance(value, str) else value
    return path


def write_mat73(path, variables):
    write_variables(str(path), variables, "mat73")
    return path


def secret_file(tmp_path, nbytes):
    """A file outside the input whose bytes decode as finite doubles: following it 'works'."""
    path = tmp_path / "secret.bin"
    path.write_bytes(np.linspace(-1, 1, nbytes // 8).tobytes())
    return path


def replace_dataset(f, name, reversed_dims, **create):
    """Swap variable ``name`` of an open file for a dataset made with ``create`` (MATLAB class kept)."""
    if name in f:
        del f[name]
    ds = f.create_dataset(name, **create)
    if reversed_dims:
        ds.attrs.create("MATLAB_class", np.bytes_("double"))
    return ds


CONTAINERS = {"hdf5": (write_plain, False), "mat73": (write_mat73, True)}


# ---------------------------------------------------------------- 1. only the named files


@pytest.mark.parametrize("container", ["hdf5", "mat73"])
@pytest.mark.parametrize("output", ["out.mat", "out.h5"])  # in memory, and streamed block by block
def test_external_raw_storage_is_refused(tmp_path, problem, container, output):
    write, reversed_dims = CONTAINERS[container]
    infile = write(tmp_path / "in.h5", dict(problem, DataFormat="CBT"))
    secret = secret_file(tmp_path, problem["X"].nbytes)
    shape = problem["X"].shape[::-1] if reversed_dims else problem["X"].shape
    with h5py.File(infile, "r+") as f:
        replace_dataset(
            f, "X", reversed_dims, shape=shape, dtype="f8", external=[(str(secret), 0, secret.stat().st_size)]
        )
    proc = run_mlstm("run", infile, "-o", tmp_path / output)
    assert_one_line_error(
        proc, "in.h5: variable 'X'", f"stored in an external file {secret}", "mlstm reads only the files you name"
    )
    assert not (tmp_path / output).exists()


@pytest.mark.parametrize("container", ["hdf5", "mat73"])
@pytest.mark.parametrize("role", ["X", "weights", "DataFormat"])
def test_a_null_dataspace_is_named_in_run_and_info(tmp_path, problem, container, role):
    """A dataset with a null dataspace (h5py shape None) has no size at all: run names the file,
    the variable and what it found; info lists it as not read; neither says 'unexpected'."""
    write, reversed_dims = CONTAINERS[container]
    infile = write(tmp_path / "in.h5", dict(problem, DataFormat="CBT"))
    with h5py.File(infile, "r+") as f:
        replace_dataset(f, role, reversed_dims, shape=None, dtype="f8")
    for output in ("out.mat", "out.h5"):
        proc = run_mlstm("run", infile, "-o", tmp_path / output)
        assert_one_line_error(proc, f"in.h5: variable '{role}'", "null dataspace")
        assert "unexpected" not in proc.stderr
        assert not (tmp_path / output).exists()
    info = run_mlstm("info", infile, "--json")
    assert info.returncode == 0, info.stderr
    listed = json.loads(info.stdout)["variables"]
    assert "null dataspace" in listed[role]["note"] and listed[role]["size"] is None


def test_a_null_dataspace_in_a_mat73_empty_marker_or_a_struct_field(tmp_path, problem):
    """Two places of MAT v7.3 that read a dataset's size before its data: a MATLAB_empty size
    vector and a struct array's reference field. A null dataspace there is named, not a crash."""
    infile = write_mat73(tmp_path / "in.mat", dict(problem, DataFormat="CBT"))
    with h5py.File(infile, "r+") as f:
        del f["H0"]
        ds = f.create_dataset("H0", shape=None, dtype="u8")
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        ds.attrs["MATLAB_empty"] = np.uint8(1)
        group = f.create_group("s")
        group.attrs["MATLAB_class"] = np.bytes_("struct")
        group.create_dataset("a", shape=None, dtype=h5py.ref_dtype)
    info = run_mlstm("info", infile, "--json")
    assert info.returncode == 0, info.stderr
    listed = json.loads(info.stdout)["variables"]
    assert "null dataspace" in listed["H0"]["note"] and listed["s"]["class"] == "struct"
    assert_one_line_error(run_mlstm("run", infile, "-o", tmp_path / "o.mat"), "variable 'H0'", "null dataspace")


def test_external_links_are_refused_not_followed(tmp_path, problem):
    other = write_plain(tmp_path / "other.h5", {"X": problem["X"], "grp/X": problem["X"]})
    infile = write_mat73(tmp_path / "in.mat", dict(problem, DataFormat="CBT"))
    with h5py.File(infile, "r+") as f:
        del f["X"]
        f["X"] = h5py.ExternalLink(str(other), "/X")
    assert_one_line_error(
        run_mlstm("run", infile, "-o", tmp_path / "o.h5"),
        "in.mat: variable 'X'",
        f"an external link to {other}:/X",
        "mlstm reads only the files you name",
    )
    # Plain HDF5: a path through an external link to a group is refused at the link.
    plain = write_plain(tmp_path / "plain.h5", {k: v for k, v in problem.items() if k != "X"})
    with h5py.File(plain, "r+") as f:
        f["ext"] = h5py.ExternalLink(str(other), "/grp")
    proc = run_mlstm("run", plain, "-o", tmp_path / "o.mat", "--var", "X=/ext/X", "DataFormat=CBT")
    assert_one_line_error(proc, "plain.h5: variable '/ext/X'", f"an external link to {other}:/grp (at /ext)")


def test_virtual_datasets_over_other_files_are_refused(tmp_path, problem):
    other = write_plain(tmp_path / "other.h5", {"X": problem["X"]})
    infile = write_plain(tmp_path / "in.h5", dict({k: v for k, v in problem.items() if k != "X"}, DataFormat="CBT"))
    with h5py.File(infile, "r+") as f:
        layout = h5py.VirtualLayout(shape=problem["X"].shape, dtype="f8")
        layout[:] = h5py.VirtualSource(str(other), "X", shape=problem["X"].shape)
        f.create_virtual_dataset("X", layout)
    proc = run_mlstm("run", infile, "-o", tmp_path / "o.h5")
    assert_one_line_error(proc, "in.h5: variable 'X'", f"a virtual dataset mapping {other}:X")


def test_a_virtual_dataset_over_its_own_file_is_read(tmp_path, problem):
    infile = write_plain(tmp_path / "in.h5", dict(problem, DataFormat="CBT"))
    with h5py.File(infile, "r+") as f:
        layout = h5py.VirtualLayout(shape=problem["X"].shape, dtype="f8")
        layout[:] = h5py.VirtualSource(".", "/X", shape=problem["X"].shape)
        f.create_virtual_dataset("Xv", layout)
    out = tmp_path / "o.h5"
    run_mlstm("run", infile, "-o", out, "--var", "X=Xv", check=0)
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["Y"][()], expected_y(problem), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("container", ["hdf5", "mat73"])
def test_info_lists_links_and_outside_storage_without_following_them(tmp_path, problem, container):
    write, reversed_dims = CONTAINERS[container]
    infile = write(tmp_path / "in.h5", dict(problem, DataFormat="CBT"))
    secret = secret_file(tmp_path, 64)
    with h5py.File(infile, "r+") as f:
        f["gone"] = h5py.SoftLink("/nowhere")
        f["elsewhere"] = h5py.ExternalLink(str(tmp_path / "missing.h5"), "/X")  # never opened
        replace_dataset(f, "outside", reversed_dims, shape=(8, 1), dtype="f8", external=[(str(secret), 0, 64)])
    proc = run_mlstm("info", infile, check=0)
    lines = {line.split()[0]: line for line in proc.stdout.decode().splitlines()[1:]}
    assert set(lines) >= {"X", "H0", "C0", "weights", "recurrentWeights", "bias", "gone", "elsewhere", "outside"}
    assert "3x2x5" in lines["X"] and "double" in lines["X"]
    assert "dangling soft link" in lines["gone"] and "/nowhere" in lines["gone"]
    assert "external link" in lines["elsewhere"] and "missing.h5:/X" in lines["elsewhere"]
    assert f"external file {secret}" in lines["outside"] and "not read" in lines["outside"]
    # The dangling link is an error only where it is used.
    proc = run_mlstm("run", infile, "-o", tmp_path / "o.mat", "--var", "H0=gone")
    assert_one_line_error(proc, "variable 'gone'", "a soft link to /nowhere, which is not in the file")
    run_mlstm("run", infile, "-o", tmp_path / "o.mat", check=0)


def test_check_and_verify_refuse_outputs_stored_elsewhere(tmp_path, problem):
    y = expected_y(problem)
    secret = tmp_path / "y.bin"
    secret.write_bytes(np.ascontiguousarray(y).tobytes())
    stored = dict(problem, DataFormat="CBT", Y=y, hiddenState=problem["H0"], cellState=problem["C0"])
    infile = write_plain(tmp_path / "in.h5", stored)
    with h5py.File(infile, "r+") as f:
        replace_dataset(f, "Y", False, shape=y.shape, dtype="f8", external=[(str(secret), 0, y.nbytes)])
    expected = write_plain(tmp_path / "expected.h5", {"Y": y})
    proc = run_mlstm("check", infile, expected)
    assert_one_line_error(proc, "in.h5: variable 'Y'", f"stored in an external file {secret}")
    proc = run_mlstm("verify", infile)
    assert proc.returncode == 1
    assert f"ERROR  {infile}: {infile}: variable 'Y': stored in an external file {secret}" in proc.stdout.decode()


def test_soft_link_loops_end(tmp_path, problem):
    infile = write_plain(tmp_path / "in.h5", dict(problem, DataFormat="CBT"))
    with h5py.File(infile, "r+") as f:
        f["a"] = h5py.SoftLink("/b")
        f["b"] = h5py.SoftLink("/a")
    proc = run_mlstm("run", infile, "-o", tmp_path / "o.mat", "--var", "X=a")
    assert_one_line_error(proc, "variable 'a'", "a soft link to /b", "soft links (a loop?)")


def test_check_local_and_get_local_for_other_readers(tmp_path):
    """The functions a reader outside mlstm.io (the Keras weights reader) calls on what it reads."""
    secret = secret_file(tmp_path, 64)
    path = tmp_path / "k.h5"
    with h5py.File(path, "w") as f:
        f["kernel"] = np.ones((2, 8))
        f.create_dataset("stolen", shape=(8,), dtype="f8", external=[(str(secret), 0, 64)])
        f["g/link"] = h5py.ExternalLink(str(tmp_path / "does-not-exist.h5"), "/x")
    with h5py.File(path, "r") as f:
        check_local(f["kernel"], "k.h5", "kernel")  # stored in the file: no error
        with pytest.raises(MlstmError, match=r"^k\.h5: variable 'stolen': stored in an external file .*secret\.bin"):
            check_local(f["stolen"], "k.h5", "stolen")
        assert get_local(f, "kernel", "k.h5")[()].shape == (2, 8)
        # Refused at the link: h5py never tries to open the (missing) target file.
        with pytest.raises(MlstmError, match=r"variable '/g/link': an external link to .*does-not-exist\.h5:/x"):
            get_local(f, "/g/link", "k.h5")


# ---------------------------------------------------------------- 2. memory bounded by what is needed

RSS_WRAPPER = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": proc.returncode, "stdout": proc.stdout.decode("utf-8", "replace"),
                  "stderr": proc.stderr.decode("utf-8", "replace"), "peak": peak}))
"""
# Allowance over a small valid run's own peak: far below any of the 800-960 MB declared payloads,
# far above allocator noise. Relative, so it holds whatever NumPy/SciPy/h5py builds cost to import.
RSS_ALLOWANCE_MB = 50


def run_measured(*argv):
    """(CompletedProcess, peak RSS in MB) of ``argv`` run by a fresh wrapper, whose only child it is."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    wrapper = subprocess.run(
        [sys.executable, "-c", RSS_WRAPPER, *map(str, argv)], capture_output=True, env=env, timeout=300, check=True
    )
    out = json.loads(wrapper.stdout)
    peak_mb = out["peak"] / (1024 * 1024 if sys.platform == "darwin" else 1024)
    return subprocess.CompletedProcess(argv, out["rc"], out["stdout"], out["stderr"]), peak_mb


def mlstm_measured(*args):
    return run_measured(sys.executable, "-m", "mlstm", *args)


@pytest.fixture(scope="module")
def rss_limit(tmp_path_factory):
    """Peak RSS allowed: a small valid run's peak (it imports NumPy, SciPy and h5py) plus the allowance."""
    tmp = tmp_path_factory.mktemp("baseline")
    p = dict(zip(["X", "H0", "C0", "weights", "recurrentWeights", "bias"], random_problem(np.random.default_rng(1))))
    write_plain(tmp / "in.h5", dict(p, DataFormat="CBT"))
    proc, peak = mlstm_measured("run", tmp / "in.h5", "-o", tmp / "out.mat")
    assert proc.returncode == 0, proc.stderr
    return peak + RSS_ALLOWANCE_MB


@pytest.mark.parametrize("output", ["out.mat", "out.h5"])
def test_unwritten_weights_are_sized_before_they_are_read(tmp_path, problem, rss_limit, output):
    """weights declares 960 MB (never written, so the file is tiny) beside a 3-by-2-by-5 X."""
    infile = write_plain(tmp_path / "in.h5", dict(problem, DataFormat="CBT"))
    with h5py.File(infile, "r+") as f:
        replace_dataset(f, "weights", False, shape=(BIG, 1), dtype="f8")
    assert os.path.getsize(infile) < 100_000
    proc, peak = mlstm_measured("run", infile, "-o", tmp_path / output)
    assert_one_line_error(proc, "variable 'weights'", "expected size 4H-by-InputSize = 16x3", f"found {BIG}x1")
    assert peak < rss_limit, f"peak RSS {peak:.0f} MB"


def test_unallocated_chunks_in_a_streamed_mat73_run(tmp_path, problem, rss_limit):
    """recurrentWeights is chunked with no chunk written: 960 MB declared, none allocated."""
    infile = write_mat73(tmp_path / "in.mat", dict(problem, DataFormat="CBT"))
    with h5py.File(infile, "r+") as f:
        replace_dataset(f, "recurrentWeights", True, shape=(BIG // 16, 16), dtype="f8", chunks=(1 << 16, 16))
    proc, peak = mlstm_measured("run", infile, "-o", tmp_path / "out.h5")  # X streamed from the file
    assert_one_line_error(proc, "variable 'recurrentWeights'", "expected size 4H-by-H = 16x4", "found 16x7500000")
    assert peak < rss_limit, f"peak RSS {peak:.0f} MB"


def test_a_huge_matlab_empty_size_vector_is_not_read(tmp_path, problem, rss_limit):
    infile = write_mat73(tmp_path / "in.mat", dict(problem, DataFormat="CBT"))
    with h5py.File(infile, "r+") as f:
        ds = replace_dataset(f, "C0", True, shape=(BIG,), dtype="u8", chunks=(1 << 20,))
        ds.attrs.create("MATLAB_empty", np.uint8(1))
    proc, peak = mlstm_measured("info", infile)
    assert peak < rss_limit, f"peak RSS {peak:.0f} MB"
    assert proc.returncode == 0, proc.stderr
    c0 = next(line for line in proc.stdout.splitlines() if line.split()[:1] == ["C0"])
    assert "MATLAB_empty" in c0 and "damaged file?" in c0
    assert "weights" in proc.stdout and "3x2x5" in proc.stdout  # the rest is listed
    proc, peak = mlstm_measured("run", infile, "-o", tmp_path / "out.mat")
    assert_one_line_error(proc, "in.mat: variable 'C0'", "marked empty (MATLAB_empty)", f"found {BIG} uint64 data")
    assert peak < rss_limit, f"peak RSS {peak:.0f} MB"


def test_info_sizes_a_huge_unwritten_text_dataset_without_reading_it(tmp_path, problem, rss_limit):
    infile = write_plain(tmp_path / "in.h5", dict(problem, DataFormat="CBT"))
    with h5py.File(infile, "r+") as f:
        f.create_dataset("notes", shape=(BIG * 8,), dtype="S1")
    proc, peak = mlstm_measured("info", infile)
    assert proc.returncode == 0, proc.stderr
    assert "DataFormat" in proc.stdout and "char" in proc.stdout
    assert peak < rss_limit, f"peak RSS {peak:.0f} MB"
    # Named as an option variable, it is refused from its size alone.
    with h5py.File(infile, "r+") as f:
        del f["DataFormat"]
        f["DataFormat"] = f["notes"]
    proc, peak = mlstm_measured("run", infile, "-o", tmp_path / "out.mat")
    assert_one_line_error(proc, "variable 'DataFormat'", f"holds {BIG * 8} bytes of text")
    assert peak < rss_limit, f"peak RSS {peak:.0f} MB"


def test_check_and_verify_size_outputs_before_reading_them(tmp_path, problem, rss_limit):
    y = expected_y(problem)
    stored = dict(problem, DataFormat="CBT", Y=y, hiddenState=problem["H0"], cellState=problem["C0"])
    infile = write_plain(tmp_path / "in.h5", stored)
    with h5py.File(infile, "r+") as f:
        replace_dataset(f, "Y", False, shape=(BIG, 1), dtype="f8")
    proc, peak = mlstm_measured("verify", infile)
    assert proc.returncode == 1, proc.stderr
    assert f"Y: size {BIG}x1, expected 4x2x5" in proc.stdout
    assert peak < rss_limit, f"peak RSS {peak:.0f} MB"
    expected = write_plain(tmp_path / "expected.h5", {"Y": y})
    proc, peak = mlstm_measured("check", infile, expected)
    assert proc.returncode == 1, proc.stderr
    assert f"size {BIG}x1, expected 4x2x5" in proc.stdout
    assert peak < rss_limit, f"peak RSS {peak:.0f} MB"


# ---------------------------------------------------------------- .npz: only the members used


def write_npz(path, arrays, unused_elements=0):
    """np.savez's layout; plus an 'unused' float64 member of ``unused_elements`` zeros, streamed in."""
    np.savez(path, **arrays)
    if unused_elements:
        with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            with z.open("unused.npy", "w", force_zip64=True) as fh:
                header = {"descr": "<f8", "fortran_order": False, "shape": (unused_elements,)}
                np.lib.format.write_array_header_1_0(fh, header)
                block, left = bytes(1 << 24), unused_elements * 8
                while left > 0:
                    fh.write(block[: min(left, len(block))])
                    left -= len(block)
    return path


@pytest.fixture(scope="module")
def big_npz(tmp_path_factory):
    """A PyTorch-style state dict (nn.LSTM(3, 4)) and an unused 800 MB member (a few MB on disk)."""
    rng = np.random.default_rng(7)
    tensors = {
        "weight_ih_l0": rng.standard_normal((16, 3)),
        "weight_hh_l0": rng.standard_normal((16, 4)),
        "bias_ih_l0": rng.standard_normal(16),
        "bias_hh_l0": rng.standard_normal(16),
    }
    path = write_npz(tmp_path_factory.mktemp("npz") / "w.npz", tensors, unused_elements=100_000_000)
    return path, tensors


def test_npz_archive_decompresses_only_the_members_looked_up(big_npz, rss_limit):
    path, tensors = big_npz
    code = (
        "import sys, numpy as np; from mlstm.io.npz import NpzArchive; a = NpzArchive(sys.argv[1]); "
        "print(sorted(a)); print(a.declared('unused').shape); np.save(sys.argv[2], a['weight_ih_l0'])"
    )
    saved = os.path.join(os.path.dirname(path), "w.npy")
    proc, peak = run_measured(sys.executable, "-c", code, path, saved)
    assert proc.returncode == 0, proc.stderr
    assert "'unused', 'weight_hh_l0'" in proc.stdout and "(100000000,)" in proc.stdout
    np.testing.assert_array_equal(np.load(saved), tensors["weight_ih_l0"])
    assert peak < rss_limit, f"peak RSS {peak:.0f} MB"


def test_npz_member_declaring_more_than_it_holds(tmp_path):
    from mlstm.io.npz import NpzArchive

    path = tmp_path / "lie.npz"
    with zipfile.ZipFile(path, "w") as z, z.open("w.npy", "w") as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False, "shape": (BIG,)})
        fh.write(np.zeros(2).tobytes())
    with pytest.raises(
        MlstmError, match=rf"member 'w': its header declares shape \({BIG},\) float64 .* holds 16 bytes"
    ):
        NpzArchive(str(path))["w"]


def test_converting_an_npz_reads_only_the_lstm_members(big_npz, tmp_path, rss_limit):
    path, tensors = big_npz
    proc, peak = mlstm_measured("convert", "--from", "pytorch", path, "-o", tmp_path / "w.mat")
    assert proc.returncode == 0, proc.stderr
    assert peak < rss_limit, f"peak RSS {peak:.0f} MB"


def _keras_legacy_h5(path, hidden=2, inputs=3, rng=None):
    """A tf.keras 2 style weights file: model_weights/lstm/lstm/lstm_cell/{kernel,recurrent_kernel,bias}:0."""
    rng = rng or np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        cell = f.create_group("model_weights/lstm/lstm/lstm_cell")
        cell["kernel:0"] = rng.standard_normal((inputs, 4 * hidden)).astype(np.float32)
        cell["recurrent_kernel:0"] = rng.standard_normal((hidden, 4 * hidden)).astype(np.float32)
        cell["bias:0"] = np.zeros(4 * hidden, np.float32)
    return path


def test_keras_weights_behind_an_external_link_are_refused(tmp_path):
    other = _keras_legacy_h5(tmp_path / "other.h5")
    path = tmp_path / "linked.h5"
    with h5py.File(path, "w") as f:
        cell = f.create_group("model_weights/lstm/lstm/lstm_cell")
        cell["kernel:0"] = h5py.ExternalLink(str(other), "/model_weights/lstm/lstm/lstm_cell/kernel:0")
        cell["recurrent_kernel:0"] = np.zeros((2, 8), np.float32)
    proc = run_mlstm("convert", "--from", "keras", path, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "linked.h5", "external link", "other.h5")
    assert not (tmp_path / "w.mat").exists()


def test_keras_weights_with_external_raw_storage_are_refused(tmp_path):
    secret = secret_file(tmp_path, 3 * 8 * 4)
    path = _keras_legacy_h5(tmp_path / "ext.h5")
    with h5py.File(path, "a") as f:
        cell = f["model_weights/lstm/lstm/lstm_cell"]
        del cell["kernel:0"]
        cell.create_dataset("kernel:0", shape=(3, 8), dtype=np.float32, external=[(str(secret), 0, 3 * 8 * 4)])
    proc = run_mlstm("convert", "--from", "keras", path, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "ext.h5", "external file", str(secret))
