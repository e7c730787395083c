"""Weights from ONNX, PyTorch and Keras files, and mlstm convert.

Independent checks: ONNX Runtime runs the same .onnx file mlstm reads; torch.nn.LSTM runs the same
state dict; Keras files are built by hand in the documented layouts (kernel = weights', gates i, f, c, o).
"""

import json
import os

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import assert_one_line_error, run_mlstm
from reference import reference_lstm

try:  # only the ONNX cases need these; the PyTorch, Keras and pickle cases run without them
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper
except ImportError:  # pragma: no cover - CI installs both
    onnx = ort = TensorProto = helper = numpy_helper = None
needs_onnx = pytest.mark.skipif(onnx is None or ort is None, reason="onnx and onnxruntime are not installed")

C, H, B, T = 5, 4, 3, 7


def matlab_weights(seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return {
        "weights": (rng.standard_normal((4 * H, C)) * 0.5).astype(dtype),
        "recurrentWeights": (rng.standard_normal((4 * H, H)) * 0.5).astype(dtype),
        "bias": (rng.standard_normal((4 * H, 1)) * 0.3).astype(dtype),
    }


def to_onnx_order(a):
    """MATLAB blocks (i, f, g, o) -> ONNX (i, o, f, c), written out block by block."""
    i, f, g, o = np.split(np.asarray(a), 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


def build_onnx(
    path,
    w,
    activations=("Sigmoid", "Tanh", "Tanh"),
    extra_attrs=None,
    states=None,
    peephole=False,
    second_node=False,
    split_bias=True,
):
    W = to_onnx_order(w["weights"])[None]
    R = to_onnx_order(w["recurrentWeights"])[None]
    b = to_onnx_order(w["bias"].reshape(-1))
    # Split the bias between Wb and Rb, so reading it must add the two halves.
    wb, rb = (b * 0.25, b * 0.75) if split_bias else (b, np.zeros_like(b))
    inits = [
        numpy_helper.from_array(W, "W"),
        numpy_helper.from_array(R, "R"),
        numpy_helper.from_array(np.concatenate([wb, rb])[None].astype(np.float32), "B"),
    ]
    inputs = ["X", "W", "R", "B", "", "", ""]
    graph_inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, C])]
    if states is not None:
        inits += [
            numpy_helper.from_array(states[0].T[None].astype(np.float32), "h0"),
            numpy_helper.from_array(states[1].T[None].astype(np.float32), "c0"),
        ]
        inputs[5:7] = ["h0", "c0"]
    if peephole:
        inits.append(numpy_helper.from_array(np.zeros((1, 3 * H), np.float32), "P"))
        inputs.append("P")
    attrs = {"hidden_size": H, "activations": list(activations)}
    attrs.update(extra_attrs or {})
    nodes = [helper.make_node("LSTM", inputs, ["Y", "Y_h", "Y_c"], name="lstm1", **attrs)]
    if second_node:
        nodes.append(helper.make_node("LSTM", inputs, ["Y2", "", ""], name="lstm2", hidden_size=H))
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [T, 1, B, H])]
    graph = helper.make_graph(nodes, "g", graph_inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.save(model, path)
    return str(path)


def run_ort(path, X):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["Y"], {"X": X})[0][:, 0]  # (T, B, H)


@pytest.fixture
def x_file(tmp_path):
    X = np.random.default_rng(9).standard_normal((T, B, C)).astype(np.float32)
    path = tmp_path / "x.mat"
    scipy.io.savemat(path, {"X": X, "H0": np.zeros((H, 1), np.float32), "C0": np.zeros((H, 1), np.float32)})
    return str(path), X


ONNX_CASES = [
    (("Sigmoid", "Tanh", "Tanh"), {}, {}),
    (("HardSigmoid", "Tanh", "Tanh"), {"activation_alpha": [0.2], "activation_beta": [0.5]}, {}),
    (("Sigmoid", "Softsign", "Softsign"), {}, {"State": "softsign"}),
    (("Sigmoid", "Relu", "Relu"), {}, {}),
]


@needs_onnx
@pytest.mark.parametrize("activations,attrs,_", ONNX_CASES, ids=[c[0][0] + "-" + c[0][1] for c in ONNX_CASES])
def test_onnx_model_runs_like_onnxruntime(tmp_path, x_file, activations, attrs, _):
    xpath, X = x_file
    w = matlab_weights()
    model = build_onnx(tmp_path / "m.onnx", w, activations, attrs)
    want = run_ort(model, X)
    out = tmp_path / "o.mat"
    run_mlstm("run", xpath, "--weights", model, "-o", out, "DataFormat=TBC", check=0)
    got = scipy.io.loadmat(out)["Y"]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@needs_onnx
def test_onnx_initial_states_come_from_the_model(tmp_path):
    rng = np.random.default_rng(2)
    h0, c0 = rng.standard_normal((H, B)).astype(np.float32), rng.standard_normal((H, B)).astype(np.float32)
    w = matlab_weights(1)
    model = build_onnx(tmp_path / "m.onnx", w, states=(h0, c0))
    X = rng.standard_normal((T, B, C)).astype(np.float32)
    xpath = tmp_path / "x.mat"
    scipy.io.savemat(xpath, {"X": X})
    out = tmp_path / "o.mat"
    run_mlstm("run", xpath, "--weights", model, "-o", out, "DataFormat=TBC", check=0)
    np.testing.assert_allclose(scipy.io.loadmat(out)["Y"], run_ort(model, X), rtol=1e-5, atol=1e-6)
    Yr, _, _ = reference_lstm(X, h0, c0, w["weights"], w["recurrentWeights"], w["bias"], "TBC")
    np.testing.assert_allclose(scipy.io.loadmat(out)["Y"], Yr, rtol=1e-5, atol=1e-6)


@needs_onnx
@pytest.mark.parametrize(
    "kwargs,fragments",
    [
        ({"extra_attrs": {"clip": 3.0}}, ["attribute clip", "cannot express"]),
        ({"extra_attrs": {"input_forget": 1}}, ["attribute input_forget"]),
        ({"extra_attrs": {"direction": "reverse"}}, ["attribute direction", "'reverse'"]),
        ({"peephole": True}, ["peephole"]),
        ({"activations": ("Sigmoid", "Tanh", "Relu")}, ["Tanh for the cell candidate but Relu for the output"]),
        ({"activations": ("Tanh", "Tanh", "Tanh")}, ["gate function f = Tanh"]),
        ({"activations": ("Sigmoid", "Elu", "Elu")}, ["state function Elu"]),
        (
            {
                "activations": ("HardSigmoid", "Tanh", "Tanh"),
                "extra_attrs": {"activation_alpha": [0.25], "activation_beta": [0.5]},
            },
            ["HardSigmoid(0.25, 0.5)"],
        ),
        ({"second_node": True}, ["2 LSTM nodes (lstm1, lstm2)", "--node NAME"]),
    ],
)
def test_onnx_what_matlab_cannot_express(tmp_path, x_file, kwargs, fragments):
    xpath, _ = x_file
    model = build_onnx(tmp_path / "m.onnx", matlab_weights(), **kwargs)
    proc = run_mlstm("run", xpath, "--weights", model, "-o", tmp_path / "o.mat", "DataFormat=TBC")
    assert_one_line_error(proc, "m.onnx", *fragments)


@needs_onnx
def test_onnx_node_choice_and_bidirectional(tmp_path, x_file):
    xpath, X = x_file
    model = build_onnx(tmp_path / "m.onnx", matlab_weights(), second_node=True)
    run_mlstm("run", xpath, "--weights", model, "--node", "lstm1", "-o", tmp_path / "o.mat", "DataFormat=TBC", check=0)
    proc = run_mlstm("run", xpath, "--weights", model, "--node", "nope", "-o", tmp_path / "o.mat", "DataFormat=TBC")
    assert_one_line_error(proc, "--node", "no LSTM node 'nope'", "lstm1, lstm2")


@needs_onnx
def test_convert_round_trip_matlab_onnx_matlab_is_exact(tmp_path):
    for dtype in (np.float32, np.float64):
        w = matlab_weights(3, dtype)
        src = tmp_path / f"w_{dtype.__name__}.mat"
        scipy.io.savemat(src, dict(w, StateActivationFunction="softsign", GateActivationFunction="hard-sigmoid"))
        model = tmp_path / f"m_{dtype.__name__}.onnx"
        keep = ["--dtype", "double"] if dtype == np.float64 else []
        proc = run_mlstm("convert", "--to", "onnx", src, "-o", model, *keep, check=0)
        assert proc.stderr == ""  # nothing narrowed, nothing to say
        back = tmp_path / f"back_{dtype.__name__}.mat"
        run_mlstm("convert", "--from", "onnx", model, "-o", back, check=0)
        got = scipy.io.loadmat(back)
        for k in w:
            assert got[k].dtype == dtype
            np.testing.assert_array_equal(got[k], w[k])
        assert str(got["StateActivationFunction"][0]) == "softsign"
        assert str(got["GateActivationFunction"][0]) == "hard-sigmoid"


@needs_onnx
def test_convert_to_onnx_runs_in_onnxruntime(tmp_path, x_file):
    xpath, X = x_file
    w = matlab_weights(4)
    src = tmp_path / "w.mat"
    scipy.io.savemat(src, w)
    model = tmp_path / "m.onnx"
    run_mlstm("convert", "--to", "onnx", src, "-o", model, check=0)
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    zeros = np.zeros((1, B, H), np.float32)
    Y = session.run(["Y"], {"X": X, "initial_h": zeros, "initial_c": zeros})[0][:, 0]
    Yr, _, _ = reference_lstm(
        X, np.zeros((H, 1)), np.zeros((H, 1)), w["weights"], w["recurrentWeights"], w["bias"], "TBC"
    )
    np.testing.assert_allclose(Y, Yr, rtol=1e-5, atol=1e-6)
    # A file without the weights is a clear error.
    scipy.io.savemat(tmp_path / "x_only.mat", {"X": X})
    assert_one_line_error(
        run_mlstm("convert", "--to", "onnx", tmp_path / "x_only.mat", "-o", model),
        "x_only.mat",
        "missing weights, recurrentWeights, bias",
    )


# ---- PyTorch ----


def torch_state_dict(layer_count=2, prefix="lstm.", proj=False, bidirectional=False):
    rng = np.random.default_rng(5)
    sd = {}
    for k in range(layer_count):
        in_size = C if k == 0 else H
        for suffix in [""] + (["_reverse"] if bidirectional else []):
            sd[f"{prefix}weight_ih_l{k}{suffix}"] = rng.standard_normal((4 * H, in_size)).astype(np.float32) * 0.5
            sd[f"{prefix}weight_hh_l{k}{suffix}"] = rng.standard_normal((4 * H, H)).astype(np.float32) * 0.5
            sd[f"{prefix}bias_ih_l{k}{suffix}"] = rng.standard_normal(4 * H).astype(np.float32) * 0.2
            sd[f"{prefix}bias_hh_l{k}{suffix}"] = rng.standard_normal(4 * H).astype(np.float32) * 0.2
        if proj:
            sd[f"{prefix}weight_hr_l{k}"] = np.zeros((2, H), np.float32)
    return sd


def test_pytorch_npz_layers_and_prefix(tmp_path):
    sd = torch_state_dict()
    path = tmp_path / "sd.npz"
    np.savez(path, **sd)
    for layer in (0, 1):
        out = tmp_path / f"w{layer}.mat"
        run_mlstm("convert", "--from", "pytorch", path, "--layer", layer, "-o", out, check=0)
        got = scipy.io.loadmat(out)
        np.testing.assert_array_equal(got["weights"], sd[f"lstm.weight_ih_l{layer}"])
        np.testing.assert_array_equal(got["recurrentWeights"], sd[f"lstm.weight_hh_l{layer}"])
        np.testing.assert_array_equal(got["bias"][:, 0], sd[f"lstm.bias_ih_l{layer}"] + sd[f"lstm.bias_hh_l{layer}"])


@pytest.mark.parametrize(
    "kwargs,fragments",
    [({"proj": True}, ["proj_size"]), ({"bidirectional": True}, ["bidirectional"])],
)
def test_pytorch_unsupported(tmp_path, kwargs, fragments):
    path = tmp_path / "sd.npz"
    np.savez(path, **torch_state_dict(layer_count=1, **kwargs))
    assert_one_line_error(run_mlstm("convert", "--from", "pytorch", path, "-o", tmp_path / "w.mat"), *fragments)


def test_pickled_torch_files_are_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"\x80\x04\x95" + b"\0" * 40)
    proc = run_mlstm("convert", path, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "model.pt", "pickle", "arbitrary code", "safetensors")


def test_pytorch_safetensors_reproduce_torch_lstm(tmp_path):
    torch = pytest.importorskip("torch")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    model = torch.nn.LSTM(C, H, num_layers=1)
    path = tmp_path / "lstm.safetensors"
    safetensors_torch.save_file(model.state_dict(), str(path))
    X = torch.randn(T, B, C)
    with torch.no_grad():
        want, _ = model(X)
    xpath = tmp_path / "x.mat"
    scipy.io.savemat(xpath, {"X": X.numpy(), "H0": np.zeros((H, 1), np.float32), "C0": np.zeros((H, 1), np.float32)})
    out = tmp_path / "o.mat"
    run_mlstm("run", xpath, "--weights", path, "-o", out, "DataFormat=TBC", check=0)
    np.testing.assert_allclose(scipy.io.loadmat(out)["Y"], want.numpy(), rtol=1e-5, atol=1e-6)


# ---- Keras ----


def keras_weights(w):
    """MATLAB (i, f, g, o) rows -> Keras kernel (In, 4H) with columns i, f, c, o: the transpose."""
    return w["weights"].T.copy(), w["recurrentWeights"].T.copy(), w["bias"].reshape(-1).copy()


def test_keras2_legacy_full_model_file(tmp_path, x_file):
    xpath, X = x_file
    w = matlab_weights(6)
    kernel, recurrent, bias = keras_weights(w)
    path = tmp_path / "model.h5"
    config = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "class_name": "LSTM",
                    "config": {"name": "lstm", "activation": "softsign", "recurrent_activation": "hard_sigmoid"},
                },
                {"class_name": "Dense", "config": {"name": "dense"}},
            ]
        },
    }
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = b"2.15.0"
        g = f.create_group("model_weights/lstm/lstm/lstm_cell")
        g["kernel:0"], g["recurrent_kernel:0"], g["bias:0"] = kernel, recurrent, bias
        d = f.create_group("model_weights/dense/dense")
        d["kernel:0"] = np.zeros((H, 1), np.float32)
    out = tmp_path / "w.mat"
    run_mlstm("convert", "--from", "keras", path, "-o", out, check=0)
    got = scipy.io.loadmat(out)
    for k in w:
        np.testing.assert_array_equal(got[k], w[k])
    assert str(got["StateActivationFunction"][0]) == "softsign"
    assert str(got["GateActivationFunction"][0]) == "hard-sigmoid"
    y = tmp_path / "y.mat"
    run_mlstm("run", xpath, "--weights", path, "-o", y, "DataFormat=TBC", check=0)
    Yr, _, _ = reference_lstm(
        X, np.zeros((H, 1)), np.zeros((H, 1)), *w.values(), "TBC", gate="hard-sigmoid", state="softsign"
    )
    np.testing.assert_allclose(scipy.io.loadmat(y)["Y"], Yr, rtol=1e-5, atol=1e-6)


def test_keras3_weights_file_and_layer_choice(tmp_path):
    w1, w2 = matlab_weights(7), matlab_weights(8)
    path = tmp_path / "model.weights.h5"
    with h5py.File(path, "w") as f:
        for name, w in (("lstm", w1), ("lstm_1", w2)):
            g = f.create_group(f"layers/{name}/cell/vars")
            g["0"], g["1"], g["2"] = keras_weights(w)
        f.create_group("layers/dense/vars")["0"] = np.zeros((H, 1), np.float32)
    proc = run_mlstm("convert", "--from", "keras", path, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "2 LSTM layers", "--layer NAME")
    run_mlstm("convert", path, "--layer", "lstm_1", "-o", tmp_path / "w.mat", check=0)  # sniffed as Keras
    got = scipy.io.loadmat(tmp_path / "w.mat")
    for k in w2:
        np.testing.assert_array_equal(got[k], w2[k])
    assert "StateActivationFunction" not in got  # a weights-only file says nothing about activations


def test_keras3_hard_sigmoid_is_not_matlabs(tmp_path):
    w = matlab_weights(6)
    path = tmp_path / "model.h5"
    config = {
        "class_name": "LSTM",
        "config": {"name": "lstm", "activation": "tanh", "recurrent_activation": "hard_sigmoid"},
    }
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = json.dumps(config)
        f.attrs["keras_version"] = "3.5.0"
        g = f.create_group("model_weights/lstm/lstm/lstm_cell")
        g["kernel"], g["recurrent_kernel"], g["bias"] = keras_weights(w)
    proc = run_mlstm("convert", "--from", "keras", path, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "recurrent_activation 'hard_sigmoid' (Keras 3.5.0)")


def test_convert_refuses_matlab_variables_and_weights_flags_need_weights(tmp_path, x_file):
    xpath, _ = x_file
    assert_one_line_error(run_mlstm("convert", xpath, "-o", tmp_path / "w.mat"), "nothing to convert")
    assert_one_line_error(
        run_mlstm("run", xpath, "--node", "a", "-o", tmp_path / "o.mat", "DataFormat=TBC"), "--weights"
    )
    assert not os.path.exists(tmp_path / "w.mat")


def test_safetensors_whose_header_length_starts_with_0x80(tmp_path, x_file):
    """A valid safetensors file whose 8-byte header length begins with 0x80 (pickle's protocol
    byte) is read as safetensors, giving what the same tensors give in an ordinary file."""
    import json
    import struct

    st = pytest.importorskip("safetensors.numpy")
    xpath, _ = x_file
    w = matlab_weights(9)
    tensors = {
        "weight_ih_l0": np.ascontiguousarray(w["weights"], np.float64),
        "weight_hh_l0": np.ascontiguousarray(w["recurrentWeights"], np.float64),
        "bias_ih_l0": np.ascontiguousarray(w["bias"].reshape(-1), np.float64),
        "bias_hh_l0": np.zeros(w["bias"].size),
    }
    plain = tmp_path / "plain.safetensors"
    st.save_file(tensors, str(plain))
    data = plain.read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    text = json.dumps(header).encode()
    length = -(-(len(text) + 1) // 256) * 256 + 0x80  # low byte 0x80; padded with spaces (allowed)
    padded = tmp_path / "padded.safetensors"
    padded.write_bytes(struct.pack("<Q", length) + text.ljust(length) + data[8 + n :])
    assert padded.read_bytes()[:1] == b"\x80"
    outs = []
    for path in (plain, padded):
        out = tmp_path / f"{path.stem}.mat"
        run_mlstm("run", xpath, "--weights", path, "-o", out, "DataFormat=TBC", check=0)
        outs.append(scipy.io.loadmat(out)["Y"])
    np.testing.assert_array_equal(outs[0], outs[1])


# ---- what the readers refuse rather than guess (one line each, never the catch-all) ----


def test_pytorch_stacked_layers_need_layer(tmp_path):
    path = tmp_path / "sd.npz"
    np.savez(path, **torch_state_dict(layer_count=2))
    proc = run_mlstm("convert", path, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "sd.npz", "2 stacked LSTM layers", "lstm.weight_ih_l0, lstm.weight_ih_l1", "--layer K")
    proc = run_mlstm("convert", path, "--layer", "enc", "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "--layer", "expected a layer index K, found 'enc'")
    proc = run_mlstm("convert", path, "--layer", "2", "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "--layer", "no LSTM layer 2")
    assert not os.path.exists(tmp_path / "w.mat")


@pytest.mark.parametrize("rows,kind", [(3, "a GRU"), (1, "a plain RNN"), (5, "")])
def test_pytorch_weights_that_are_not_an_lstm(tmp_path, rows, kind):
    rng = np.random.default_rng(0)
    sd = {
        "weight_ih_l0": rng.standard_normal((rows * H, C)).astype(np.float32),
        "weight_hh_l0": rng.standard_normal((rows * H, H)).astype(np.float32),
        "bias_ih_l0": np.zeros(rows * H, np.float32),
    }
    path = tmp_path / "gru.npz"
    np.savez(path, **sd)
    proc = run_mlstm("convert", path, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "gru.npz", "not an LSTM", f"weight_hh_l0 is {rows * H}x{H}", kind)


def test_half_precision_safetensors_are_refused(tmp_path):
    """float16 through the safetensors package; bfloat16 (which NumPy cannot hold) as the
    format's documented header: u64 length, JSON {name: {dtype, shape, data_offsets}}, data."""
    import struct

    st = pytest.importorskip("safetensors.numpy")
    w = matlab_weights(2)
    half = tmp_path / "half.safetensors"
    st.save_file(
        {"weight_ih_l0": w["weights"].astype(np.float16), "weight_hh_l0": w["recurrentWeights"].astype(np.float16)},
        str(half),
    )
    proc = run_mlstm("convert", half, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "half.safetensors", "'weight_ih_l0' is float16", "float32")
    header, data, offset = {}, b"", 0
    for name, shape in (("weight_ih_l0", (4 * H, C)), ("weight_hh_l0", (4 * H, H))):
        size = 2 * shape[0] * shape[1]
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + size]}
        data, offset = data + b"\0" * size, offset + size
    text = json.dumps(header).encode()
    bf16 = tmp_path / "bf16.safetensors"
    bf16.write_bytes(struct.pack("<Q", len(text)) + text + data)
    proc = run_mlstm("convert", bf16, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "bf16.safetensors", "'weight_ih_l0' is bfloat16", "float32")


@needs_onnx
def test_layer_and_node_options_that_do_not_apply(tmp_path, x_file):
    xpath, _ = x_file
    model = build_onnx(tmp_path / "m.onnx", matlab_weights())
    proc = run_mlstm("run", xpath, "--weights", model, "--layer", "0", "-o", tmp_path / "o.mat", "DataFormat=TBC")
    assert_one_line_error(proc, "--layer", "m.onnx is an ONNX model", "--node NAME")
    keras_file = tmp_path / "k.weights.h5"
    with h5py.File(keras_file, "w") as f:
        g = f.create_group("layers/lstm/cell/vars")
        g["0"], g["1"], g["2"] = keras_weights(matlab_weights())
    proc = run_mlstm("convert", keras_file, "--node", "lstm", "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "--node", "k.weights.h5 is a Keras file", "--layer NAME")
    proc = run_mlstm("run", xpath, "--weights", xpath, "--layer", "x", "-o", tmp_path / "o.mat", "DataFormat=TBC")
    assert_one_line_error(proc, "--layer", "MATLAB variables")
    assert not os.path.exists(tmp_path / "o.mat")
