"""Keras ``LSTM`` layers to MATLAB's layout.

Files: Keras 3 ``.keras`` archives (a zip of config.json, metadata.json and model.weights.h5,
Keras 3's default save format), Keras 3 ``.weights.h5`` (``layers/<path>/cell/vars/0, 1, 2``),
and legacy ``.h5`` from tf.keras 2 or Keras 3 (``.../lstm_cell/kernel[:0]``, the model's config in
the ``model_config`` attribute). ``kernel`` is In x 4H, ``recurrent_kernel`` H x 4H, ``bias`` 4H;
gate columns i, f, c, o, which are MATLAB's i, f, g, o, so the kernels are only transposed.

Layers are named as Keras names them ('enc'; 'bi/forward_lstm' inside a Bidirectional 'bi').
Activations come from the config where the file has one (a ``.weights.h5`` has none).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MlstmError
from ..io.hdf5 import OUTSIDE, check_local, decode_text, link_entry
from .common import check_lstm, float_weights, refuse_half

STATES = ("tanh", "softsign", "relu")
HARD_SIGMOID_3 = (
    "Keras 3's hard_sigmoid is relu6(x + 3) / 6 (slope 1/6), not MATLAB's hard-sigmoid "
    "max(0, min(1, 0.2x + 0.5)), and no MATLAB gate function equals it"
)


@dataclass
class Cell:
    """One recurrent layer's weights in the file."""

    name: str  # as Keras names it
    path: str  # HDF5 group of the layer
    kernel: Any
    recurrent: Any
    bias: Any
    backward: bool  # the backward half of a Bidirectional
    config: dict[str, Any] | None = None  # the layer's {"class_name", "config"}

    @property
    def kind(self) -> str:
        if self.config is not None:
            return str(self.config.get("class_name", "?"))
        ratio = self.recurrent.shape[1] // max(self.recurrent.shape[0], 1)
        return {4: "LSTM", 3: "GRU", 1: "SimpleRNN"}.get(ratio, "recurrent layer")

    @property
    def is_lstm(self) -> bool:
        shape = self.recurrent.shape
        return shape[1] == 4 * shape[0] and self.kind not in ("GRU", "SimpleRNN")


def snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: 'SimpleRNN' -> 'simple_rnn', 'LSTM' -> 'lstm'."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def _native_layers(config: dict[str, Any] | None) -> dict[str, tuple[str, dict[str, Any]]]:
    """HDF5 layer path -> (qualified name, layer config) for a Keras 3 model config: Keras saves
    a model's layers under layers/<snake_case class>[_N], in order, and a Bidirectional's halves
    under forward_layer and backward_layer."""
    found: dict[str, tuple[str, dict[str, Any]]] = {}

    def layer(spec: Any, path: str, qualified: str) -> None:
        if not isinstance(spec, dict):
            return
        found[path] = (qualified, spec)
        cfg = spec.get("config") if isinstance(spec.get("config"), dict) else {}
        if isinstance(cfg.get("layers"), list):
            model(cfg, path + "/", qualified + "/")
        if spec.get("class_name") == "Bidirectional":
            forward = cfg.get("layer")
            backward = cfg.get("backward_layer") or forward
            for half, sub in (("forward_layer", forward), ("backward_layer", backward)):
                if isinstance(sub, dict):
                    default = ("forward_" if half == "forward_layer" else "backward_") + _name(sub)
                    name = _name(sub) if half == "forward_layer" or sub is not forward else default
                    layer(sub, f"{path}/{half}", f"{qualified}/{name or default}")

    def model(cfg: dict[str, Any], path: str, qualified: str) -> None:
        used: dict[str, int] = {}
        for spec in cfg.get("layers", []):
            if not isinstance(spec, dict):
                continue
            key = snake_case(str(spec.get("class_name", "layer")))
            count = used.get(key, 0)
            used[key] = count + 1
            layer(spec, f"{path}layers/{key}" + (f"_{count}" if count else ""), qualified + _name(spec))

    if isinstance(config, dict) and isinstance(config.get("config"), dict):
        model(config["config"], "", "")
    return found


def _name(spec: dict[str, Any]) -> str:
    cfg = spec.get("config")
    return str(cfg.get("name", "")) if isinstance(cfg, dict) else ""


def _legacy_layers(handle: Any) -> tuple[dict[str, dict[str, Any]], str]:
    """(layer name -> layer config, the model's name) from a legacy .h5's model_config."""
    raw = handle.attrs.get("model_config")
    try:
        config = json.loads(decode_text(raw)) if raw is not None else None
    except ValueError:
        config = None
    layers: dict[str, dict[str, Any]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            name = _name(node)
            if name and node.get("class_name") and name not in layers:
                layers[name] = node
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(config)
    return layers, _name(config) if isinstance(config, dict) else ""


def _legacy_cell(parts: list[str], layers: dict[str, dict[str, Any]], model_name: str) -> tuple[str, Any]:
    """(display name, config) of a legacy group path such as model_weights/bi/sequential/bi/
    forward_lstm/lstm_cell (Keras 3) or model_weights/lstm/lstm/lstm_cell (tf.keras 2)."""
    parts = parts[1:] if parts and parts[0] == "model_weights" else list(parts)
    if len(parts) > 1 and parts[-1].endswith("cell"):
        parts = parts[:-1]
    shown: list[str] = []
    for p in parts:
        if p not in shown and (p != model_name or not shown):
            shown.append(p)
    config = None
    for p in reversed(shown):
        spec = layers.get(p)
        if spec is None:
            continue
        if spec.get("class_name") == "Bidirectional":
            cfg = spec.get("config", {})
            backward = any(s.startswith("backward_") for s in shown)
            spec = (cfg.get("backward_layer") if backward else None) or cfg.get("layer")
        config = spec
        break
    return "/".join(shown), config


def find_cells(handle: Any, config: dict[str, Any] | None = None) -> list[Cell]:
    """Every recurrent layer's weights, in both layouts."""
    import h5py

    native = _native_layers(config)
    legacy, model_name = _legacy_layers(handle)
    cells: list[Cell] = []

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Group):
            return
        data = {}
        for key in obj.keys():  # never through a link out of the file, never data stored outside it
            member, outside = link_entry(obj, key)
            if outside is not None:
                raise MlstmError(f"{handle.filename}: {name}/{key}: {outside.detail}; {OUTSIDE}")
            if isinstance(member, h5py.Dataset):
                check_local(member, handle.filename, f"{name}/{key}")
                data[key.split(":")[0]] = member
        parts = name.split("/")
        if "kernel" in data and "recurrent_kernel" in data:
            shown, spec = _legacy_cell(parts, legacy, model_name)
            backward = any(p.startswith("backward_") for p in parts)
            cells.append(Cell(shown, name, data["kernel"], data["recurrent_kernel"], data.get("bias"), backward, spec))
        elif parts[-1] == "vars" and len(parts) >= 3 and parts[-2] == "cell" and {"0", "1"} <= set(data):
            kernel, recurrent = data["0"], data["1"]
            if kernel.ndim == 2 and recurrent.ndim == 2 and kernel.shape[1] == recurrent.shape[1]:
                path = "/".join(parts[:-2])
                shown, spec = _native_name(handle, path, native)
                cells.append(Cell(shown, path, kernel, recurrent, data.get("2"), "backward_layer" in parts, spec))

    handle.visititems(visit)
    return cells


def _native_name(handle: Any, path: str, native: dict[str, tuple[str, dict[str, Any]]]) -> tuple[str, Any]:
    """A Keras 3 layer's qualified name: the names Keras stores with each enclosing layer's vars
    (Keras >= 3.10 or so), else the config's names by path, else the path itself."""
    parts = path.split("/")
    names: list[str] = []
    for k, part in enumerate(parts):
        if k == 0 or parts[k - 1] != "layers" and part not in ("forward_layer", "backward_layer"):
            continue
        group = handle.get("/".join(parts[: k + 1]) + "/vars")
        stored = decode_text(group.attrs["name"]) if group is not None and "name" in group.attrs else None
        names.append(stored or "")
    qualified, spec = native.get(path, ("", None))
    if names and all(names):
        return "/".join(names), spec
    return qualified or path, spec


def is_keras_file(handle: Any) -> bool:
    """An HDF5 file laid out by Keras (legacy .h5 or Keras 3 .weights.h5), not MATLAB variables."""

    def has(key: str) -> bool:  # the link itself: `key in handle` would open an external link's file
        return handle.get(key, getlink=True) is not None

    if has("weights") and has("recurrentWeights"):
        return False
    return bool(find_cells(handle)) or has("model_weights") or has("layers")


def read_keras_archive(path: str, layer: str | None = None) -> dict[str, Any]:
    """A Keras 3 ``.keras`` zip: config.json for activations, model.weights.h5 for the weights."""
    import h5py

    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if "model.weights.h5" not in names:
                raise MlstmError(
                    f"{path}: expected a Keras archive holding model.weights.h5, found {', '.join(names[:8])}"
                )
            config = json.loads(archive.read("config.json")) if "config.json" in names else None
            meta = json.loads(archive.read("metadata.json")) if "metadata.json" in names else {}
            data = archive.read("model.weights.h5")
    except (zipfile.BadZipFile, OSError, ValueError, KeyError) as exc:
        raise MlstmError(f"{path}: expected a Keras archive, found unreadable data ({exc})") from None
    version = str(meta.get("keras_version", "3")) if isinstance(meta, dict) else "3"
    try:
        handle = h5py.File(io.BytesIO(data), "r")
    except OSError as exc:
        raise MlstmError(f"{path}: model.weights.h5 in the archive is unreadable ({exc})") from None
    with handle:
        return read_keras(path, handle, layer, config if config is not None else {}, version)


def read_keras(
    path: str, handle: Any, layer: str | None = None, config: dict[str, Any] | None = None, version: str | None = None
) -> dict[str, Any]:
    """MATLAB variables from the (one, or ``layer``) LSTM of a Keras HDF5 handle. ``config`` and
    ``version`` come from a .keras archive; a legacy .h5 carries its own."""
    cells = find_cells(handle, config)
    if not cells:
        raise MlstmError(f"{path}: expected Keras LSTM weights (kernel, recurrent_kernel, bias), found none")
    listing = ", ".join(f"{c.name} ({c.kind})" for c in cells)
    if layer is not None:
        chosen = [c for c in cells if layer in (c.name, c.path) or layer in c.name.split("/")]
        if not chosen:
            raise MlstmError(f"{path}: no layer {layer!r} (found: {listing})", "--layer")
    else:
        chosen = [c for c in cells if c.is_lstm]
        if not chosen:
            raise MlstmError(f"{path}: not an LSTM: the recurrent layers are {listing}")
    if len(chosen) > 1:
        names = ", ".join(c.name for c in chosen)
        raise MlstmError(f"{path}: {len(chosen)} LSTM layers ({names}); pick one with --layer NAME")
    cell = chosen[0]
    where = f"{path}: layer {cell.name!r}"
    if not cell.is_lstm:
        raise MlstmError(
            f"{where}: not an LSTM: a {cell.kind} (recurrent_kernel {cell.recurrent.shape[0]}x"
            f"{cell.recurrent.shape[1]}; an LSTM's is H x 4H)"
        )
    if cell.backward:
        raise MlstmError(
            f"{where} is the backward half of a Bidirectional layer: it reads the sequence in reverse, "
            "and MATLAB's lstm runs forward only"
        )
    kernel = _array(where, "kernel", cell.kernel)
    recurrent = _array(where, "recurrent_kernel", cell.recurrent)
    hidden = check_lstm(where, "kernel (transposed)", kernel.T, "recurrent_kernel (transposed)", recurrent.T)
    bias = np.zeros(4 * hidden, kernel.dtype) if cell.bias is None else _array(where, "bias", cell.bias)
    if bias.size != 4 * hidden:
        raise MlstmError(f"{where}: expected a bias of {4 * hidden} elements, found {bias.shape}")
    out: dict[str, Any] = {
        "weights": np.ascontiguousarray(kernel.T),
        "recurrentWeights": np.ascontiguousarray(recurrent.T),
        "bias": bias.reshape(-1, 1),
    }
    if cell.config is not None:
        if version is None:
            version = decode_text(handle.attrs.get("keras_version", "2"))
        out.update(_activations(where, cell.config.get("config", {}), version))
    return out


def _array(where: str, name: str, dataset: Any) -> np.ndarray:
    if decode_text(dataset.attrs.get("dtype", "")) == "bfloat16":  # Keras 3 stores bfloat16 as uint16
        refuse_half(where, name, "bfloat16")
    return float_weights(where, name, dataset[()])


def _function(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("config"), str):
        return value["config"]  # Keras 3 serializes some functions as {"class_name": "function", ...}
    return value if isinstance(value, str) else json.dumps(value)


def _activations(where: str, config: dict[str, Any], version: str) -> dict[str, str]:
    act = _function(config.get("activation", "tanh"))
    rec = _function(config.get("recurrent_activation", "sigmoid"))
    keras3 = not version.startswith(("1", "2"))
    if config.get("go_backwards"):
        raise MlstmError(f"{where}: go_backwards = true runs backwards; MATLAB's lstm runs forward only")
    if rec == "hard_sigmoid" and keras3:
        raise MlstmError(f"{where}: recurrent_activation 'hard_sigmoid' (Keras {version}): {HARD_SIGMOID_3}")
    gates = {"sigmoid": "sigmoid"} if keras3 else {"sigmoid": "sigmoid", "hard_sigmoid": "hard-sigmoid"}
    if rec not in gates:
        raise MlstmError(
            f"{where}: recurrent_activation {rec!r} (Keras {version}) is not MATLAB's sigmoid or hard-sigmoid "
            "(0.2x + 0.5)"
        )
    if act not in STATES:
        raise MlstmError(f"{where}: activation {act!r} is not tanh, softsign or relu")
    return {"GateActivationFunction": gates[rec], "StateActivationFunction": act}
