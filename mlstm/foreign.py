"""LSTM parameters from other frameworks, turned into MATLAB's layout, and back to ONNX.

MATLAB: ``weights`` 4H x InputSize, ``recurrentWeights`` 4H x H, ``bias`` 4H x 1, gate
blocks input, forget, cell candidate (g), output.

- ONNX ``LSTM``: W [dirs, 4H, In], R [dirs, 4H, H], B [dirs, 8H] = (Wb, Rb); gates i, o, f, c.
- PyTorch ``nn.LSTM`` state dict: ``weight_ih_lK`` (4H x In), ``weight_hh_lK``, ``bias_ih_lK`` and
  ``bias_hh_lK`` (added); gates i, f, g, o (MATLAB's order).
- Keras ``LSTM``: ``kernel`` (In x 4H), ``recurrent_kernel`` (H x 4H), ``bias`` (4H); gates i, f, c, o
  (MATLAB's order), kernels transposed.

Anything MATLAB's lstm cannot express is an error that names the attribute, never an
approximation. Each reader returns a dict of MATLAB variables (arrays, and option values as
str), which :class:`mlstm.io.MemoryFile` serves like any input file.
"""

from __future__ import annotations

import json
import os
import zipfile
from typing import Any

import numpy as np

from .errors import MlstmError
from .io.hdf5 import decode_text

FOREIGN_FORMATS = ("onnx", "pytorch", "keras")
PICKLE_ADVICE = (
    "loading a pickle runs arbitrary code, so mlstm refuses it; save the state dict as safetensors "
    "(from safetensors.torch import save_file; save_file(model.state_dict(), 'lstm.safetensors')) "
    "or as .npz (numpy.savez('lstm.npz', **{k: v.numpy() for k, v in model.state_dict().items()}))"
)

# ONNX gate blocks (i, o, f, c) -> MATLAB (i, f, g, o), and back.
ONNX_TO_MATLAB = (0, 2, 3, 1)
MATLAB_TO_ONNX = (0, 3, 1, 2)


def _blocks(a: np.ndarray, order: tuple[int, ...], axis: int = 0) -> np.ndarray:
    parts = np.split(np.asarray(a), 4, axis=axis)
    return np.concatenate([parts[k] for k in order], axis=axis)


# ---------------------------------------------------------------- sniffing


def sniff_weights(path: str, head: bytes) -> str | None:
    """'onnx', 'pytorch', 'pickle', 'keras-or-hdf5' or None (a MAT/HDF5 file read the usual way)."""
    ext = os.path.splitext(path)[1].lower()
    # safetensors first, by structure (u64 header length, then a JSON object): a header length
    # whose low byte is 0x80 (1 in 32 of them) starts the file with pickle's protocol byte.
    if len(head) >= 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") < (1 << 28):
        return "pytorch"
    if ext in (".pt", ".pth", ".pkl", ".ckpt") or head[:1] == b"\x80":
        return "pickle"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if any(n.endswith("data.pkl") for n in names):
            return "pickle"  # torch.save's zip container
        return "pytorch"  # .npz
    if ext == ".onnx":
        return "onnx"
    return None


def is_keras_file(handle: Any) -> bool:
    """An HDF5 file laid out by Keras (legacy .h5 or Keras 3 .weights.h5), not MATLAB variables."""
    if "weights" in handle and "recurrentWeights" in handle:
        return False
    return bool(_keras_candidates(handle)) or "model_weights" in handle or "layers" in handle


# ---------------------------------------------------------------- ONNX


def _onnx() -> Any:
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise MlstmError("reading .onnx files needs the onnx package: pip install 'mlstm[onnx]'", "--weights") from None
    return onnx, numpy_helper


ONNX_GATE = {"sigmoid": "sigmoid", "hardsigmoid": "hard-sigmoid"}
ONNX_STATE = {"tanh": "tanh", "softsign": "softsign", "relu": "relu"}


def read_onnx(path: str, node_name: str | None = None) -> dict[str, Any]:
    onnx, numpy_helper = _onnx()
    try:
        model = onnx.load(path)
    except Exception as exc:
        raise MlstmError(
            f"{path}: expected an ONNX model, found unreadable data ({type(exc).__name__}: {exc})"
        ) from None
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    constants[n.output[0]] = numpy_helper.to_array(a.t)
    nodes = [n for n in graph.node if n.op_type == "LSTM"]
    names = [n.name or f"#{k}" for k, n in enumerate(nodes)]
    if not nodes:
        raise MlstmError(f"{path}: expected an LSTM node, found none (ops: {sorted({n.op_type for n in graph.node})})")
    if node_name is None:
        if len(nodes) > 1:
            raise MlstmError(f"{path}: {len(nodes)} LSTM nodes ({', '.join(names)}); pick one with --node NAME")
        node, label = nodes[0], names[0]
    else:
        if node_name not in names:
            raise MlstmError(f"{path}: no LSTM node {node_name!r} (found: {', '.join(names)})", "--node")
        node, label = nodes[names.index(node_name)], node_name
    where = f"{path}: LSTM node {label!r}"
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def refuse(attribute: str, why: str) -> MlstmError:
        return MlstmError(f"{where}: attribute {attribute} {why}; MATLAB's lstm cannot express it")

    direction = attrs.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction != "forward":
        raise refuse("direction", f"is {direction!r} (only 'forward' is MATLAB's lstm)")
    if "clip" in attrs:
        raise refuse("clip", f"is {attrs['clip']} (cell clipping)")
    if attrs.get("input_forget", 0):
        raise refuse("input_forget", "is 1 (coupled input and forget gates)")
    inputs = list(node.input) + [""] * (8 - len(node.input))
    if inputs[7]:
        raise MlstmError(f"{where}: input P (peephole weights) is given; MATLAB's lstm has no peepholes")
    acts = [a.decode() if isinstance(a, bytes) else a for a in attrs.get("activations", [])] or [
        "Sigmoid",
        "Tanh",
        "Tanh",
    ]
    if len(acts) != 3:
        raise refuse("activations", f"is {acts} (expected three functions f, g, h for one direction)")
    alphas = list(attrs.get("activation_alpha", []))
    betas = list(attrs.get("activation_beta", []))
    f, g, h = (a.lower() for a in acts)
    if f not in ONNX_GATE:
        raise refuse("activations", f"has gate function f = {acts[0]} (MATLAB: Sigmoid or HardSigmoid)")
    if g != h:
        raise refuse("activations", f"uses {acts[1]} for the cell candidate but {acts[2]} for the output")
    if g not in ONNX_STATE:
        raise refuse("activations", f"has state function {acts[1]} (MATLAB: Tanh, Softsign or Relu)")
    if f == "hardsigmoid":
        alpha = alphas[0] if alphas else 0.2
        beta = betas[0] if betas else 0.5
        if not (np.isclose(alpha, 0.2, rtol=0, atol=1e-7) and np.isclose(beta, 0.5, rtol=0, atol=1e-7)):
            raise refuse(
                "activation_alpha/activation_beta", f"give HardSigmoid({alpha}, {beta}); MATLAB's is (0.2, 0.5)"
            )
    elif alphas or betas:
        raise refuse("activation_alpha/activation_beta", "are set but none of the functions takes them")
    layout = attrs.get("layout", 0)

    def tensor(index: int, what: str, required: bool = True) -> np.ndarray | None:
        name = inputs[index]
        if not name:
            if required:
                raise MlstmError(f"{where}: input {what} is missing")
            return None
        if name not in constants:
            if required:
                raise MlstmError(f"{where}: input {what} ({name!r}) is not an initializer or Constant")
            return None
        return constants[name]

    W, R, B = tensor(1, "W"), tensor(2, "R"), tensor(3, "B", required=False)
    hidden = int(attrs.get("hidden_size", R.shape[-1]))
    if W.ndim != 3 or W.shape[0] != 1 or W.shape[1] != 4 * hidden or R.shape != (1, 4 * hidden, hidden):
        raise MlstmError(
            f"{where}: expected W [1, {4 * hidden}, In] and R [1, {4 * hidden}, {hidden}], "
            f"found {list(W.shape)} and {list(R.shape)}"
        )
    bias = (
        np.zeros(4 * hidden, W.dtype)
        if B is None
        else B.reshape(8 * hidden)[: 4 * hidden] + B.reshape(8 * hidden)[4 * hidden :]
    )
    out: dict[str, Any] = {
        "weights": _blocks(W[0], ONNX_TO_MATLAB),
        "recurrentWeights": _blocks(R[0], ONNX_TO_MATLAB),
        "bias": _blocks(bias, ONNX_TO_MATLAB).reshape(-1, 1),
        "GateActivationFunction": ONNX_GATE[f],
        "StateActivationFunction": ONNX_STATE[g],
    }
    for index, role in ((5, "H0"), (6, "C0")):
        state = tensor(index, role, required=False)
        if state is not None:  # [dirs, B, H] (layout 0) or [B, dirs, H] (layout 1)
            state = state[:, 0, :] if layout else state[0]
            out[role] = np.ascontiguousarray(state.T)
    return out


def write_onnx(path: str, variables: dict[str, Any]) -> None:
    """Save :func:`onnx_model` of MATLAB-layout weights to ``path``."""
    onnx, _ = _onnx()
    model = onnx_model(variables)
    onnx.checker.check_model(model)
    onnx.save(model, path)


def onnx_model(variables: dict[str, Any]) -> Any:
    """A one-node ONNX LSTM (opset 14) from MATLAB-layout weights; X, initial_h and initial_c are
    graph inputs, so ONNX Runtime runs it on any batch and sequence length."""
    onnx, numpy_helper = _onnx()
    from onnx import TensorProto, helper

    W = np.asarray(variables["weights"])
    R = np.asarray(variables["recurrentWeights"])
    b = np.asarray(variables["bias"]).reshape(-1)
    hidden, input_size = R.shape[1], W.shape[1]
    dtype = np.float64 if W.dtype == np.float64 and R.dtype == np.float64 and b.dtype == np.float64 else np.float32
    elem = TensorProto.DOUBLE if dtype == np.float64 else TensorProto.FLOAT
    gate = variables.get("GateActivationFunction", "sigmoid")
    state = variables.get("StateActivationFunction", "tanh")
    f = {"sigmoid": "Sigmoid", "hard-sigmoid": "HardSigmoid"}[gate]
    g = {"tanh": "Tanh", "softsign": "Softsign", "relu": "Relu"}[state]
    attrs: dict[str, Any] = {"hidden_size": hidden, "activations": [f, g, g]}
    if f == "HardSigmoid":
        attrs.update(activation_alpha=[0.2], activation_beta=[0.5])
    inits = [
        numpy_helper.from_array(_blocks(W, MATLAB_TO_ONNX)[None].astype(dtype), "W"),
        numpy_helper.from_array(_blocks(R, MATLAB_TO_ONNX)[None].astype(dtype), "R"),
        numpy_helper.from_array(
            np.concatenate([_blocks(b, MATLAB_TO_ONNX), np.zeros(4 * hidden)])[None].astype(dtype), "B"
        ),
    ]
    node = helper.make_node(
        "LSTM", ["X", "W", "R", "B", "", "initial_h", "initial_c"], ["Y", "Y_h", "Y_c"], name="lstm", **attrs
    )
    graph = helper.make_graph(
        [node],
        "mlstm_lstm",
        [
            helper.make_tensor_value_info("X", elem, ["T", "B", input_size]),
            helper.make_tensor_value_info("initial_h", elem, [1, "B", hidden]),
            helper.make_tensor_value_info("initial_c", elem, [1, "B", hidden]),
        ],
        [
            helper.make_tensor_value_info("Y", elem, ["T", 1, "B", hidden]),
            helper.make_tensor_value_info("Y_h", elem, [1, "B", hidden]),
            helper.make_tensor_value_info("Y_c", elem, [1, "B", hidden]),
        ],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)], producer_name="mlstm")


# ---------------------------------------------------------------- PyTorch


def _torch_tensors(path: str, head: bytes) -> dict[str, np.ndarray]:
    if head.startswith(b"PK\x03\x04"):
        try:
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        except Exception as exc:
            raise MlstmError(
                f"{path}: expected a .npz of arrays, found unreadable data ({type(exc).__name__}: {exc})"
            ) from None
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise MlstmError(
            "reading safetensors needs the safetensors package: pip install 'mlstm[pytorch]'", "--weights"
        ) from None
    try:
        return load_file(path)
    except Exception as exc:
        raise MlstmError(
            f"{path}: expected a safetensors file, found unreadable data ({type(exc).__name__}: {exc})"
        ) from None


def read_pytorch(path: str, head: bytes, layer: str | None = None, prefix: str | None = None) -> dict[str, Any]:
    """nn.LSTM weights from a state dict (safetensors or .npz); ``layer`` K picks ``*_lK``."""
    tensors = _torch_tensors(path, head)
    k = int(layer) if layer not in (None, "") else 0
    suffix = f"weight_ih_l{k}"
    prefixes = sorted({name[: -len(suffix)] for name in tensors if name.endswith(suffix)})
    if prefix is not None:
        prefixes = [p for p in prefixes if p.rstrip(".") == prefix.rstrip(".")]
    if not prefixes:
        raise MlstmError(
            f"{path}: expected nn.LSTM keys weight_ih_l{k}, weight_hh_l{k} (layer {k}), "
            f"found {', '.join(sorted(tensors)[:12]) or 'no tensors'}"
        )
    if len(prefixes) > 1:
        raise MlstmError(
            f"{path}: several LSTM modules ({', '.join(p.rstrip('.') or '(root)' for p in prefixes)}); "
            "pick one with --node PREFIX"
        )
    p = prefixes[0]
    where = f"{path}: {p}*_l{k}"
    if f"{p}weight_hr_l{k}" in tensors:
        raise MlstmError(
            f"{where}: weight_hr_l{k} means proj_size > 0 (projected hidden state); MATLAB's lstm has none"
        )
    if f"{p}weight_ih_l{k}_reverse" in tensors:
        raise MlstmError(f"{where}: *_reverse keys mean bidirectional=True; MATLAB's lstm runs forward only")
    W = tensors[f"{p}weight_ih_l{k}"]
    R = tensors.get(f"{p}weight_hh_l{k}")
    if R is None:
        raise MlstmError(f"{where}: weight_hh_l{k} is missing")
    bias = np.zeros(W.shape[0], W.dtype)
    for name in (f"{p}bias_ih_l{k}", f"{p}bias_hh_l{k}"):
        if name in tensors:
            bias = bias + tensors[name]
    return {"weights": np.asarray(W), "recurrentWeights": np.asarray(R), "bias": bias.reshape(-1, 1)}


# ---------------------------------------------------------------- Keras


def _keras_candidates(handle: Any) -> dict[str, tuple[Any, Any, Any]]:
    """LSTM weight triples (kernel, recurrent_kernel, bias) by layer path, in both Keras layouts."""
    import h5py

    found: dict[str, tuple[Any, Any, Any]] = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Group):
            return
        keys = {k.split(":")[0]: k for k in obj.keys() if isinstance(obj[k], h5py.Dataset)}
        if "kernel" in keys and "recurrent_kernel" in keys:  # Keras 2 legacy: .../lstm_cell/kernel:0
            bias = obj[keys["bias"]] if "bias" in keys else None
            found[name] = (obj[keys["kernel"]], obj[keys["recurrent_kernel"]], bias)
        elif name.endswith("vars") and {"0", "1"} <= set(keys):  # Keras 3: layers/<name>/cell/vars/0,1,2
            k, r = obj["0"], obj["1"]
            if k.ndim == 2 and r.ndim == 2 and r.shape[1] == 4 * r.shape[0] and k.shape[1] == r.shape[1]:
                found[name[: -len("/vars")]] = (k, r, obj["2"] if "2" in keys else None)

    handle.visititems(visit)
    return found


def _keras_config(handle: Any) -> dict[str, dict[str, Any]]:
    """Layer name -> config, from a full-model legacy .h5's model_config attribute (if any)."""
    raw = handle.attrs.get("model_config")
    if raw is None:
        return {}
    try:
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError:
        return {}
    layers: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "LSTM" and isinstance(node.get("config"), dict):
                layers[node["config"].get("name", "")] = node["config"]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)
    return layers


def read_keras(path: str, handle: Any, layer: str | None = None) -> dict[str, Any]:
    candidates = _keras_candidates(handle)
    if not candidates:
        raise MlstmError(f"{path}: expected Keras LSTM weights (kernel, recurrent_kernel, bias), found none")
    if layer is not None:
        chosen = [n for n in candidates if layer in n.split("/")]
        if not chosen:
            raise MlstmError(f"{path}: no LSTM layer {layer!r} (found: {', '.join(candidates)})", "--layer")
    else:
        chosen = list(candidates)
    if len(chosen) > 1:
        raise MlstmError(f"{path}: {len(chosen)} LSTM layers ({', '.join(chosen)}); pick one with --layer NAME")
    name = chosen[0]
    kernel, recurrent, bias = (None if d is None else np.asarray(d[()]) for d in candidates[name])
    hidden = recurrent.shape[0]
    if kernel.shape[1] != 4 * hidden or recurrent.shape != (hidden, 4 * hidden):
        raise MlstmError(
            f"{path}: layer {name!r}: expected kernel (In, {4 * hidden}) and recurrent_kernel "
            f"({hidden}, {4 * hidden}), found {kernel.shape} and {recurrent.shape}"
        )
    if bias is None:
        bias = np.zeros(4 * hidden, kernel.dtype)
    out: dict[str, Any] = {
        "weights": np.ascontiguousarray(kernel.T),
        "recurrentWeights": np.ascontiguousarray(recurrent.T),
        "bias": bias.reshape(-1, 1),
    }
    config = next((c for n, c in _keras_config(handle).items() if n and n in name.split("/")), None)
    if config is not None:
        act, rec = config.get("activation", "tanh"), config.get("recurrent_activation", "sigmoid")
        keras_version = decode_text(handle.attrs.get("keras_version", "2"))
        gates = {"sigmoid": "sigmoid"}
        if not keras_version.startswith("3"):
            gates["hard_sigmoid"] = "hard-sigmoid"  # Keras 2: clip(0.2x + 0.5); Keras 3's is x/6 + 0.5
        if rec not in gates:
            raise MlstmError(
                f"{path}: layer {name!r}: recurrent_activation {rec!r} (Keras {keras_version}) is not "
                "MATLAB's sigmoid or hard-sigmoid (0.2x + 0.5)"
            )
        if act not in ("tanh", "softsign", "relu"):
            raise MlstmError(f"{path}: layer {name!r}: activation {act!r} is not tanh, softsign or relu")
        if config.get("go_backwards"):
            raise MlstmError(
                f"{path}: layer {name!r}: go_backwards = true runs backwards; MATLAB's lstm runs forward only"
            )
        out["GateActivationFunction"] = gates[rec]
        out["StateActivationFunction"] = act
    return out


# ---------------------------------------------------------------- façade


def read_foreign(
    path: str, kind: str | None = None, node: str | None = None, layer: str | None = None, hdf5_order: str = "numpy"
) -> dict[str, Any] | None:
    """MATLAB variables from a foreign weights file, or None when ``path`` is an ordinary MAT/HDF5
    file of MATLAB variables. ``kind`` forces 'onnx', 'pytorch' or 'keras'."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(64)
    except OSError as exc:
        raise MlstmError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    sniffed = sniff_weights(path, head)
    if sniffed == "pickle":
        raise MlstmError(f"{path}: a pickled PyTorch file; {PICKLE_ADVICE}")
    kind = kind or sniffed
    if kind == "onnx":
        return read_onnx(path, node)
    if kind == "pytorch":
        return read_pytorch(path, head, layer, node)
    if head.startswith(b"\x89HDF\r\n\x1a\n") or kind == "keras":
        import h5py

        try:
            with h5py.File(path, "r") as handle:
                if kind == "keras" or is_keras_file(handle):
                    return read_keras(path, handle, layer)
        except OSError as exc:
            raise MlstmError(f"{path}: expected a Keras HDF5 weights file, found unreadable data ({exc})") from None
    return None
