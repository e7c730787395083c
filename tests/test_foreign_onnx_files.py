"""ONNX files other tools wrote, read by mlstm and run by ONNX Runtime on the same X.

- torch.onnx.export of nn.LSTM: the TorchScript exporter (dynamo=False, opsets 14-18) and the
  torch.export one (dynamo=True, opset 18, needs onnxscript), with and without constant folding
  (without it, the TorchScript exporter computes W/R/B with Slice/Concat/Unsqueeze subgraphs on
  the parameters).
- The onnx package's own LSTM node tests (onnx.backend.test.case.node.lstm), with W/R/B made
  initializers: their expected outputs come from onnx's numpy LSTM (the only reference for the
  batch-first layout, which ONNX Runtime's LSTM does not run).
- Constant subgraphs built here op by op (Transpose, Squeeze, Gather, Concat) and graphs whose
  weights depend on a graph input.

Each ONNX case skips only when onnx/onnxruntime is missing, each torch case when torch is.
"""

import numpy as np
import pytest
import scipy.io
from conftest import assert_one_line_error, run_mlstm

from mlstm import lstm
from mlstm.errors import MlstmError

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from mlstm.foreign import read_foreign  # noqa: E402

# torch.onnx.export's deprecation and batch-size warnings are not what these tests look at.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")

C, H, T, B = 5, 4, 7, 3


def run_with(weights, X, data_format, H0=None, C0=None):
    """mlstm's lstm with weights read from a file; states from the file, else given, else zeros."""
    H0 = weights.get("H0", H0 if H0 is not None else np.zeros((weights["recurrentWeights"].shape[1], 1), X.dtype))
    C0 = weights.get("C0", C0 if C0 is not None else np.zeros_like(H0))
    return lstm(
        X,
        H0,
        C0,
        weights["weights"],
        weights["recurrentWeights"],
        weights["bias"],
        DataFormat=data_format,
        GateActivationFunction=weights.get("GateActivationFunction", "sigmoid"),
        StateActivationFunction=weights.get("StateActivationFunction", "tanh"),
    )


def ort_run(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {n: feeds[n] for n in names})


# ---- torch.onnx.export ----


def export(tmp_path, model, args, name, **kwargs):
    torch = pytest.importorskip("torch")
    if kwargs.get("dynamo"):
        pytest.importorskip("onnxscript")
    path = tmp_path / name
    with torch.no_grad():
        torch.onnx.export(model, args, str(path), **kwargs)
    return path


# torch 2.13's dynamo exporter writes opset 18 (asked for less, its version converter fails on
# Shape and it keeps 18), so it is tried at 18 only.
EXPORTS = [(False, opset) for opset in (14, 16, 18)] + [(True, 18)]


@pytest.mark.parametrize("folding", [True, False], ids=["folded", "unfolded"])
@pytest.mark.parametrize("dynamo,opset", EXPORTS, ids=[f"{'dynamo' if d else 'torchscript'}-{o}" for d, o in EXPORTS])
def test_torch_onnx_export_runs_like_onnxruntime(tmp_path, dynamo, opset, folding):
    torch = pytest.importorskip("torch")
    torch.manual_seed(opset)
    model = torch.nn.LSTM(C, H).eval()
    X = torch.randn(T, B, C)
    path = export(
        tmp_path, model, (X,), "lstm.onnx", dynamo=dynamo, opset_version=opset, do_constant_folding=folding,
        input_names=["X"],
    )  # fmt: skip
    assert [o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")] == [opset]
    weights = read_foreign(str(path))
    want = ort_run(path, {"X": X.numpy()})[0]  # (T, B, H)
    Y, hidden, cell = run_with(weights, X.numpy(), "TBC")
    np.testing.assert_allclose(Y, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(Y, model(X)[0].numpy(), rtol=1e-5, atol=1e-5)  # and torch agrees


def test_torch_export_stacked_batch_first_with_states(tmp_path):
    """Two layers (two LSTM nodes, picked with --node), batch_first, h0/c0 as graph inputs:
    states the graph takes at run time are not weights, so they come from the data file."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    model = torch.nn.LSTM(C, H, num_layers=2, batch_first=True).eval()
    X, h0, c0 = torch.randn(B, T, C), torch.randn(2, B, H), torch.randn(2, B, H)
    path = export(
        tmp_path, model, (X, (h0, c0)), "stacked.onnx", dynamo=False, opset_version=17, do_constant_folding=False,
        input_names=["X", "h0", "c0"],
    )  # fmt: skip
    nodes = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "LSTM"]
    assert len(nodes) == 2
    with pytest.raises(MlstmError, match="2 LSTM nodes .*pick one with --node NAME"):
        read_foreign(str(path))
    first = read_foreign(str(path), node=nodes[0])
    assert "H0" not in first
    Y1, _, _ = run_with(first, X.numpy(), "BTC", h0[0].numpy().T, c0[0].numpy().T)
    second = read_foreign(str(path), node=nodes[1])
    Y2, hidden, _ = run_with(second, Y1, "BTC", h0[1].numpy().T, c0[1].numpy().T)
    Y, h_n, _ = ort_run(path, {"X": X.numpy(), "h0": h0.numpy(), "c0": c0.numpy()})
    np.testing.assert_allclose(Y2, Y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(hidden, h_n[1].T, rtol=1e-5, atol=1e-5)
    # The same through the command line, states from the data file.
    xpath = tmp_path / "x.mat"
    scipy.io.savemat(xpath, {"X": X.numpy(), "H0": h0[0].numpy().T, "C0": c0[0].numpy().T})
    out = tmp_path / "y.mat"
    run_mlstm("run", xpath, "--weights", path, "--node", nodes[0], "-o", out, "DataFormat=BTC", check=0)
    np.testing.assert_allclose(scipy.io.loadmat(out)["Y"], Y1, rtol=1e-6, atol=1e-6)


def test_torch_gru_export_is_not_an_lstm(tmp_path):
    torch = pytest.importorskip("torch")
    path = export(tmp_path, torch.nn.GRU(C, H), (torch.randn(T, B, C),), "gru.onnx", dynamo=False, opset_version=14)
    proc = run_mlstm("convert", path, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "gru.onnx", "not an LSTM", "GRU")


# ---- the onnx package's LSTM node tests ----


def onnx_node_cases():
    """(name, model, inputs, outputs) from onnx.backend.test.case.node.lstm, collected by
    standing in for its ``expect`` (which would build all of onnx's node tests)."""
    from onnx.backend.test.case.node import lstm as cases

    found = []

    def expect(node, inputs, outputs, name, **kwargs):
        graph_inputs = [
            helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for n, a in zip([i for i in node.input if i], inputs)
        ]
        graph_outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in node.output if n]
        graph = helper.make_graph([node], name, graph_inputs, graph_outputs)
        found.append((name, helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), inputs, outputs))

    saved, cases.expect = cases.expect, expect
    try:
        for attr in sorted(dir(cases.LSTM)):
            if attr.startswith("export"):
                getattr(cases.LSTM, attr)()
    finally:
        cases.expect = saved
    return found


def as_initializers(model, inputs, keep=("X",)):
    """The node test's model with every input but X stored as an initializer."""
    graph = model.graph
    names = [i.name for i in graph.input]
    values = dict(zip(names, inputs))
    graph_inputs = [i for i in graph.input if i.name in keep]
    inits = [numpy_helper.from_array(values[n], n) for n in names if n not in keep]
    g = helper.make_graph(list(graph.node), graph.name, graph_inputs, list(graph.output), inits)
    return helper.make_model(g, opset_imports=list(model.opset_import))


REFUSED = {
    "test_lstm_with_peepholes": "peephole",
    "test_lstm_reverse": "attribute direction is 'reverse'",
    "test_lstm_bidirectional": "attribute direction is 'bidirectional'",
}


def test_onnx_node_test_cases(tmp_path):
    found = onnx_node_cases()
    assert {"test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_batchwise"} <= {c[0] for c in found}
    for name, model, inputs, outputs in found:
        path = tmp_path / f"{name}.onnx"
        onnx.save(as_initializers(model, inputs), str(path))
        if name in REFUSED:
            with pytest.raises(MlstmError, match=REFUSED[name]):
                read_foreign(str(path))
            continue
        node = model.graph.node[0]
        layout = next((a.i for a in node.attribute if a.name == "layout"), 0)
        X = inputs[0]
        weights = read_foreign(str(path))
        Y, hidden, _ = run_with(weights, X, "BTC" if layout else "TBC")
        # ONNX Runtime refuses layout 1 ("Batchwise recurrent operations are not supported"):
        # there, onnx's own numpy LSTM is the reference.
        got = ort_run(path, {"X": X}) if layout == 0 else outputs
        present = [n for n in node.output if n]
        for out_name, want, from_ort in zip(present, outputs, got):
            if out_name == "Y_h":  # [1, B, H] or (layout 1) [B, 1, H]
                mine = hidden.T[:, None, :] if layout else hidden.T[None]
            else:  # Y: [T, 1, B, H] or (layout 1) [B, T, 1, H]
                mine = Y[:, :, None, :] if layout else Y[:, None]
            np.testing.assert_allclose(mine, from_ort, rtol=1e-5, atol=1e-6, err_msg=f"{name} {out_name} vs ORT")
            np.testing.assert_allclose(mine, want, rtol=1e-5, atol=1e-6, err_msg=f"{name} {out_name} vs onnx")


# ---- constant subgraphs built op by op; weights that depend on the input ----


def subgraph_model(path, W, R, Bias, depend_on_input=False):
    """W stored transposed (Transpose), R with an extra axis (Squeeze), B as rows of a table
    (Gather), each gate block of W via Concat: what an old exporter might write."""
    nodes = [
        helper.make_node("Transpose", ["W_t"], ["W_2d"], perm=[1, 0]),
        helper.make_node("Split", ["W_2d", "split4"], ["w0", "w1", "w2", "w3"], axis=0),
        helper.make_node("Concat", ["w0", "w1", "w2", "w3"], ["W_cat"], axis=0),
        helper.make_node("Unsqueeze", ["W_cat", "axis0"], ["W"]),
        helper.make_node("Squeeze", ["R_x", "axis3"], ["R"]),
        helper.make_node("Gather", ["B_table", "row"], ["B"], axis=0),
    ]
    inits = [
        numpy_helper.from_array(np.ascontiguousarray(W[0].T), "W_t"),
        numpy_helper.from_array(np.full(4, W.shape[1] // 4, np.int64), "split4"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([3], np.int64), "axis3"),
        numpy_helper.from_array(R[..., None], "R_x"),
        numpy_helper.from_array(np.stack([np.zeros_like(Bias), Bias]), "B_table"),
        numpy_helper.from_array(np.array(1, np.int64), "row"),
    ]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [T, B, C])]
    if depend_on_input:  # R scaled by something computed from X: not a constant
        nodes[4:5] = [
            helper.make_node("Squeeze", ["R_x", "axis3"], ["R_raw"]),
            helper.make_node("ReduceMax", ["X"], ["m"], keepdims=0),
            helper.make_node("Mul", ["R_raw", "m"], ["R"]),
        ]
    nodes.append(helper.make_node("LSTM", ["X", "W", "R", "B"], ["Y"], hidden_size=H))
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))
    return path


def test_constant_subgraph_weights(tmp_path):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((1, 4 * H, C)).astype(np.float32)
    R = rng.standard_normal((1, 4 * H, H)).astype(np.float32)
    Bias = rng.standard_normal((1, 8 * H)).astype(np.float32)
    path = subgraph_model(tmp_path / "sub.onnx", W, R, Bias)
    X = rng.standard_normal((T, B, C)).astype(np.float32)
    weights = read_foreign(str(path))
    Y, _, _ = run_with(weights, X, "TBC")
    np.testing.assert_allclose(Y, ort_run(path, {"X": X})[0][:, 0], rtol=1e-5, atol=1e-6)
    bad = subgraph_model(tmp_path / "bad.onnx", W, R, Bias, depend_on_input=True)
    proc = run_mlstm("convert", bad, "-o", tmp_path / "w.mat")
    assert_one_line_error(proc, "bad.onnx", "input R ('R')", "depends on the graph input 'X'")


# ---- convert --to onnx: a file ONNX Runtime runs ----


def test_convert_to_onnx_narrows_double_with_a_notice(tmp_path):
    rng = np.random.default_rng(1)
    w = {
        "weights": rng.standard_normal((4 * H, C)),
        "recurrentWeights": rng.standard_normal((4 * H, H)),
        "bias": rng.standard_normal((4 * H, 1)),
    }
    src = tmp_path / "w.mat"
    scipy.io.savemat(src, w)  # double, MATLAB's default class
    model = tmp_path / "m.onnx"
    proc = run_mlstm("convert", "--to", "onnx", src, "-o", model, check=0)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mlstm: notice:") and "--dtype double" in lines[0]
    X = rng.standard_normal((T, B, C)).astype(np.float32)
    zeros = np.zeros((1, B, H), np.float32)
    Y = ort_run(model, {"X": X, "initial_h": zeros, "initial_c": zeros})[0][:, 0]
    Yd, _, _ = run_with(w, X.astype(np.float64), "TBC")  # the double weights, in double
    np.testing.assert_allclose(Y, Yd, rtol=1e-5, atol=1e-5)
    # --dtype double keeps every bit; --dtype with --to matlab is an error
    exact = tmp_path / "d.onnx"
    run_mlstm("convert", "--to", "onnx", "--dtype", "double", src, "-o", exact, check=0)
    np.testing.assert_array_equal(read_foreign(str(exact))["weights"], w["weights"])
    proc = run_mlstm("convert", exact, "--dtype", "single", "-o", tmp_path / "back.mat")
    assert_one_line_error(proc, "--dtype", "--to matlab")
