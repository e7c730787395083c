"""`mlstm info --json` on files written by scipy.io and h5py, checked against those libraries' own
view of the file (scipy.io.whosmat / matfile_version, h5py shapes). MATLAB-written files: see
test_matlab_made.py."""

import json

import h5py
import numpy as np
import scipy.io
from conftest import assert_one_line_error, run_mlstm


def info_json(*args):
    proc = run_mlstm("info", "--json", *args, check=0)
    return json.loads(proc.stdout)


def test_mat5_sizes_classes_and_char_values(tmp_path):
    path = tmp_path / "in.mat"
    scipy.io.savemat(
        path,
        {
            "X": np.zeros((3, 4, 5)),
            "H0": np.zeros((2, 1), np.float32),
            "DataFormat": "CBT",
            "StateActivationFunction": "softsign",
        },
    )
    got = info_json(path)
    assert got["file"] == str(path)
    assert got["container"] == "MAT v5/v7" and scipy.io.matlab.matfile_version(str(path))[0] == 1
    whos = {name: (list(size), cls) for name, size, cls in scipy.io.whosmat(path)}
    assert list(got["variables"]) == [name for name, _, _ in scipy.io.whosmat(path)]
    for name, entry in got["variables"].items():
        if whos[name][1] != "char":
            assert (entry["size"], entry["class"]) == whos[name], name
    assert got["variables"]["DataFormat"] == {"size": [1, 3], "class": "char", "value": "CBT"}
    assert got["variables"]["StateActivationFunction"]["value"] == "softsign"
    assert "value" not in got["variables"]["X"]


def test_mat4_container(tmp_path):
    path = tmp_path / "v4.mat"
    scipy.io.savemat(path, {"X": np.ones((2, 7))}, format="4")
    got = info_json(path)
    assert scipy.io.matlab.matfile_version(str(path))[0] == 0
    assert got["container"] == "MAT v4"
    assert got["variables"]["X"] == {"size": [2, 7], "class": "double"}


def test_long_char_value_is_cut_and_says_so(tmp_path):
    text = "".join(chr(ord("a") + i % 26) for i in range(5000))
    path = tmp_path / "long.mat"
    scipy.io.savemat(path, {"note": text, "DataFormat": "CT"})
    entry = info_json(path)["variables"]["note"]
    assert entry["size"] == [1, 5000] and entry["class"] == "char"
    assert 0 < len(entry["value"]) < 5000 and text.startswith(entry["value"])
    assert entry["value_truncated"] is True
    assert "value_truncated" not in info_json(path)["variables"]["DataFormat"]


def test_plain_hdf5_both_orders(tmp_path):
    path = tmp_path / "in.h5"
    with h5py.File(path, "w") as fh:
        fh["X"] = np.zeros((3, 4, 5), np.float32)
        fh.create_group("data")["x"] = np.zeros((6, 2))
        fh["DataFormat"] = np.bytes_("CBT")
    got = info_json(path)
    assert got["container"] == "HDF5"
    with h5py.File(path, "r") as fh:
        assert got["variables"]["X"] == {"size": list(fh["X"].shape), "class": "single"}
        assert got["variables"]["/data/x"]["size"] == list(fh["data/x"].shape)
    assert got["variables"]["DataFormat"]["value"] == "CBT"
    reversed_order = info_json("--hdf5-order", "matlab", path)
    assert reversed_order["variables"]["X"]["size"] == [5, 4, 3]


def test_info_json_on_a_bad_file_is_one_error_line(tmp_path):
    bad = tmp_path / "bad.mat"
    bad.write_bytes(b"not a mat file at all")
    proc = run_mlstm("info", "--json", bad)
    assert_one_line_error(proc, "bad.mat", "expected a MAT or HDF5 file")
    assert proc.stdout == b""
