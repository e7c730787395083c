"""Keras files into MATLAB's layout.

Two kinds of file: ones real Keras 3 wrote (tests/make_keras_files.py, run when keras and its
torch backend import), checked against the weights Keras held and against Keras's own output; and
ones written here with h5py and zipfile in Keras's layouts (Keras 3 archives from versions that
stored no layer names, tf.keras 2 Bidirectional), which need nothing but h5py.
Keras kernels are MATLAB's weights transposed (gate columns i, f, c, o = MATLAB's i, f, g, o).
"""

import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import REPO, assert_one_line_error, run_mlstm
from reference import reference_lstm

from mlstm.errors import MlstmError
from mlstm.foreign import read_foreign

C, H, T, B = 5, 4, 7, 3
MAKE = os.path.join(REPO, "tests", "make_keras_files.py")


@pytest.fixture(scope="module")
def keras_made(tmp_path_factory):
    out = tmp_path_factory.mktemp("keras")
    env = dict(os.environ, KERAS_BACKEND="torch")
    proc = subprocess.run([sys.executable, MAKE, str(out)], capture_output=True, text=True, env=env, timeout=300)
    if proc.returncode == 3:
        pytest.skip(proc.stderr.strip().splitlines()[-1])
    assert proc.returncode == 0, proc.stderr
    with np.load(out / "reference.npz") as ref:
        return out, {k: ref[k] for k in ref.files}


def expect_layer(got, ref, name):
    np.testing.assert_array_equal(got["weights"], ref[f"{name}/kernel"].T)
    np.testing.assert_array_equal(got["recurrentWeights"], ref[f"{name}/recurrent_kernel"].T)
    np.testing.assert_array_equal(got["bias"][:, 0], ref[f"{name}/bias"])


@pytest.mark.parametrize("filename", ["stack.keras", "stack.weights.h5", "stack_legacy.h5"])
def test_real_keras_files_hold_the_weights_keras_built(keras_made, filename):
    out, ref = keras_made
    for layer, state in (("enc", "softsign"), ("dec", "relu")):
        got = read_foreign(str(out / filename), layer=layer)
        expect_layer(got, ref, layer)
        if filename.endswith(".weights.h5"):  # weights only: no config, so no activations
            assert "StateActivationFunction" not in got
        else:
            assert got["StateActivationFunction"] == state
            assert got["GateActivationFunction"] == "sigmoid"
    with pytest.raises(MlstmError, match=r"2 LSTM layers \((dec, enc|enc, dec)\); pick one with --layer NAME"):
        read_foreign(str(out / filename))


def test_real_keras_archive_runs_like_keras(keras_made, tmp_path):
    """mlstm run --weights model.keras reproduces Keras's own output of that layer."""
    out, ref = keras_made
    xpath = tmp_path / "x.mat"
    zeros = np.zeros((H, 1), np.float32)
    scipy.io.savemat(xpath, {"X": ref["X"], "H0": zeros, "C0": zeros})
    y = tmp_path / "y.mat"
    run_mlstm("run", xpath, "--weights", out / "stack.keras", "--layer", "enc", "-o", y, "DataFormat=BTC", check=0)
    np.testing.assert_allclose(scipy.io.loadmat(y)["Y"], ref["enc/Y"], rtol=1e-5, atol=1e-6)
    # convert writes the same weights, and says which activation Keras used
    w = tmp_path / "w.mat"
    run_mlstm("convert", "--from", "keras", out / "stack.keras", "--layer", "enc", "-o", w, check=0)
    got = scipy.io.loadmat(w)
    expect_layer(got, ref, "enc")
    assert str(got["StateActivationFunction"][0]) == "softsign"


def test_real_keras_refusals(keras_made, tmp_path):
    out, ref = keras_made
    o = tmp_path / "w.mat"
    assert_one_line_error(
        run_mlstm("convert", out / "hard.keras", "-o", o),
        "layer 'hard'",
        "recurrent_activation 'hard_sigmoid' (Keras 3",
        "slope 1/6",
        "0.2x + 0.5",
    )
    assert_one_line_error(run_mlstm("convert", out / "gru.keras", "-o", o), "gru.keras", "not an LSTM", "g (GRU)")
    for name in ("bi.keras", "bi.weights.h5"):
        assert_one_line_error(
            run_mlstm("convert", out / name, "--layer", "backward_lstm", "-o", o),
            "layer 'bi/backward_lstm' is the backward half of a Bidirectional layer",
        )
        expect_layer(read_foreign(str(out / name), layer="forward_lstm"), ref, "bi/forward_lstm")
    assert not o.exists()


# ---- files written in Keras's layouts with h5py and zipfile ----


def random_lstm(seed, hidden=H, inputs=C):
    rng = np.random.default_rng(seed)
    kernel = rng.standard_normal((inputs, 4 * hidden)).astype(np.float32)
    recurrent = rng.standard_normal((hidden, 4 * hidden)).astype(np.float32)
    bias = rng.standard_normal(4 * hidden).astype(np.float32)
    return kernel, recurrent, bias


def lstm_spec(name, activation="tanh", recurrent_activation="sigmoid"):
    return {
        "module": "keras.layers",
        "class_name": "LSTM",
        "config": {"name": name, "units": H, "activation": activation, "recurrent_activation": recurrent_activation},
    }


def write_archive(path, weights_writer, layers, version="3.3.3"):
    """A .keras zip as Keras 3 writes it: config.json, metadata.json, model.weights.h5."""
    config = {"module": "keras", "class_name": "Sequential", "config": {"name": "sequential", "layers": layers}}
    h5 = path.parent / (path.name + ".h5")
    with h5py.File(h5, "w") as f:
        weights_writer(f)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": version}))
        z.writestr("config.json", json.dumps(config))
        z.write(h5, "model.weights.h5")
    h5.unlink()
    return path


def test_keras3_archive_without_stored_layer_names(tmp_path):
    """Keras 3 releases before layer names were stored with the weights: the names and the
    activations come from config.json, matched by the paths Keras saves layers under
    (layers/<snake_case class>[_N], in order)."""
    enc, dec = random_lstm(1), random_lstm(2, hidden=3, inputs=H)

    def weights(f):
        for group, (k, r, b) in (("layers/lstm", enc), ("layers/lstm_1", dec)):
            g = f.create_group(f"{group}/cell/vars")
            g["0"], g["1"], g["2"] = k, r, b
        f.create_group("layers/dense/vars")["0"] = np.zeros((3, 1), np.float32)

    layers = [
        {"class_name": "InputLayer", "config": {"name": "input_layer", "batch_shape": [None, T, C]}},
        lstm_spec("enc", activation="softsign"),
        {"class_name": "Dense", "config": {"name": "out"}},  # a different class: not counted as lstm_N
        lstm_spec("dec", activation="relu"),
    ]
    path = write_archive(tmp_path / "model.zip", weights, layers)  # found by its content, not its name
    proc = run_mlstm("convert", path, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "model.zip", "2 LSTM layers (enc, dec)", "--layer NAME")
    for name, (k, r, b), state in (("enc", enc, "softsign"), ("dec", dec, "relu")):
        out = tmp_path / f"{name}.mat"
        run_mlstm("convert", path, "--layer", name, "-o", out, check=0)
        got = scipy.io.loadmat(out)
        np.testing.assert_array_equal(got["weights"], k.T)
        np.testing.assert_array_equal(got["recurrentWeights"], r.T)
        np.testing.assert_array_equal(got["bias"][:, 0], b)
        assert str(got["StateActivationFunction"][0]) == state
    # and mlstm runs it as MATLAB's lstm runs those weights (the float64 reference)
    X = np.random.default_rng(4).standard_normal((C, B, T)).astype(np.float32)
    scipy.io.savemat(tmp_path / "x.mat", {"X": X, "H0": np.zeros((H, 1)), "C0": np.zeros((H, 1))})
    y = tmp_path / "y.mat"
    run_mlstm("run", tmp_path / "x.mat", "--weights", path, "--layer", "enc", "-o", y, "DataFormat=CBT", check=0)
    k, r, b = enc
    Yr, _, _ = reference_lstm(X, np.zeros((H, 1)), np.zeros((H, 1)), k.T, r.T, b, "CBT", state="softsign")
    np.testing.assert_allclose(scipy.io.loadmat(y)["Y"], Yr, rtol=1e-5, atol=1e-6)


def test_keras3_weights_h5_bidirectional_and_gru(tmp_path):
    fwd, bwd, gru = random_lstm(3), random_lstm(4), random_lstm(5)
    path = tmp_path / "bi.weights.h5"
    with h5py.File(path, "w") as f:
        for half, (k, r, b) in (("forward_layer", fwd), ("backward_layer", bwd)):
            g = f.create_group(f"layers/bidirectional/{half}/cell/vars")
            g["0"], g["1"], g["2"] = k, r, b
            f[f"layers/bidirectional/{half}/vars"] = np.zeros(0)  # (a dataset: no stored names here)
        g = f.create_group("layers/gru/cell/vars")
        g["0"], g["1"], g["2"] = gru[0][:, : 3 * H], gru[1][:, : 3 * H], np.zeros((2, 3 * H), np.float32)
    proc = run_mlstm("convert", path, "--layer", "layers/bidirectional/backward_layer", "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "backward half of a Bidirectional layer", "forward only")
    proc = run_mlstm("convert", path, "--layer", "layers/gru", "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "not an LSTM", "a GRU", "recurrent_kernel 4x12")
    got = read_foreign(str(path), layer="layers/bidirectional/forward_layer")
    np.testing.assert_array_equal(got["weights"], fwd[0].T)
    np.testing.assert_array_equal(got["recurrentWeights"], fwd[1].T)


def test_tf_keras2_bidirectional_legacy_h5(tmp_path):
    """tf.keras 2's layout: model_weights/<layer>/<layer>/forward_lstm/lstm_cell/kernel:0, the
    model's config as JSON in the model_config attribute; its hard_sigmoid is MATLAB's."""
    fwd, bwd = random_lstm(6), random_lstm(7)
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "sequential",
            "layers": [
                {
                    "class_name": "Bidirectional",
                    "config": {
                        "name": "bidirectional",
                        "layer": lstm_spec("lstm", activation="relu", recurrent_activation="hard_sigmoid"),
                    },
                }
            ],
        },
    }
    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "2.15.0"
        for half, (k, r, b) in (("forward_lstm", fwd), ("backward_lstm", bwd)):
            g = f.create_group(f"model_weights/bidirectional/bidirectional/{half}/lstm_cell")
            g["kernel:0"], g["recurrent_kernel:0"], g["bias:0"] = k, r, b
    proc = run_mlstm("convert", path, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "2 LSTM layers", "bidirectional/backward_lstm", "bidirectional/forward_lstm")
    proc = run_mlstm("convert", path, "--layer", "backward_lstm", "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "layer 'bidirectional/backward_lstm' is the backward half")
    got = read_foreign(str(path), layer="forward_lstm")
    np.testing.assert_array_equal(got["weights"], fwd[0].T)
    assert got["GateActivationFunction"] == "hard-sigmoid"
    assert got["StateActivationFunction"] == "relu"


def test_keras_archive_without_weights_is_an_error(tmp_path):
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("config.json", "{}")
    assert_one_line_error(run_mlstm("convert", path, "-o", tmp_path / "w.mat"), "model.keras", "model.weights.h5")


def test_keras_half_precision_weights_are_refused(tmp_path):
    """Mixed-precision Keras keeps float32 variables; a float16 file, or bfloat16 as Keras 3
    stores it (uint16 with a dtype attribute), is refused, not widened silently."""
    k, r, b = random_lstm(8)
    for name, write in (
        ("float16", lambda g: g.create_dataset("0", data=k.astype(np.float16))),
        ("bfloat16", lambda g: g.create_dataset("0", data=k.view(np.uint32).astype(np.uint16))),
    ):
        path = tmp_path / f"{name}.weights.h5"
        with h5py.File(path, "w") as f:
            g = f.create_group("layers/lstm/cell/vars")
            write(g)
            if name == "bfloat16":
                g["0"].attrs["dtype"] = "bfloat16"
            g["1"], g["2"] = r, b
        proc = run_mlstm("convert", path, "-o", tmp_path / "w.mat")
        assert_one_line_error(proc, f"{name}.weights.h5", f"kernel is {name}", "save the weights as float32")
