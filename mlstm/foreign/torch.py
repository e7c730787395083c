"""PyTorch ``nn.LSTM`` state dicts (safetensors or .npz) to MATLAB's layout.

``weight_ih_lK`` (4H x In), ``weight_hh_lK`` (4H x H), ``bias_ih_lK`` + ``bias_hh_lK``; gate blocks
i, f, g, o: MATLAB's order, so only the two biases are added. Pickles (.pt, .pth, torch.save's
zip) are never loaded: unpickling runs arbitrary code.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from ..errors import MlstmError
from .common import check_lstm, float_weights, refuse_half

HINT = " (model.float() before saving)"
KEY = re.compile(r"^(?P<prefix>.*?)weight_ih_l(?P<layer>\d+)(?P<reverse>_reverse)?$")


def _tensors(path: str, head: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(float arrays by name, dtype names of the tensors NumPy cannot hold, e.g. BF16)."""
    if head.startswith(b"PK\x03\x04"):
        from ..io.npz import NpzArchive

        # Members are read (and their headers checked against their stored sizes) on lookup:
        # only the LSTM's tensors are ever decompressed.
        return NpzArchive(path), {}  # type: ignore[return-value]
    try:
        from safetensors import safe_open
    except ImportError:
        raise MlstmError(
            "reading safetensors needs the safetensors package: pip install 'mlstm[pytorch]'", "--weights"
        ) from None
    arrays: dict[str, np.ndarray] = {}
    unreadable: dict[str, str] = {}
    try:
        with safe_open(path, framework="numpy") as f:
            for name in f.keys():
                kind = f.get_slice(name).get_dtype()
                if kind in ("F32", "F64"):
                    arrays[name] = f.get_tensor(name)
                else:  # F16/BF16/integers: refused only if it is one of the LSTM's tensors
                    unreadable[name] = kind
    except Exception as exc:
        raise MlstmError(
            f"{path}: expected a safetensors file, found unreadable data ({type(exc).__name__}: {exc})"
        ) from None
    return arrays, unreadable


def _layer_index(path: str, layer: str | None, found: list[int], label: str) -> int:
    listing = ", ".join(f"{label}weight_ih_l{k}" for k in found)
    if layer is None:
        if len(found) > 1:
            raise MlstmError(
                f"{path}: {len(found)} stacked LSTM layers ({listing}); pick one with --layer K "
                f"(K = {', '.join(map(str, found))})"
            )
        return found[0]
    text = str(layer).strip()
    if not text.isdigit():
        raise MlstmError(
            f"{path} is a PyTorch state dict, whose LSTM layers are numbered ({listing}): expected a layer "
            f"index K, found {layer!r}",
            "--layer",
        )
    if int(text) not in found:
        raise MlstmError(f"{path}: no LSTM layer {int(text)} (found: {listing})", "--layer")
    return int(text)


def read_pytorch(path: str, head: bytes, layer: str | None = None, prefix: str | None = None) -> dict[str, Any]:
    """nn.LSTM weights from a state dict; ``layer`` K picks ``*_lK``, ``prefix`` a module."""
    tensors, unreadable = _tensors(path, head)
    layers: dict[str, set[int]] = {}
    for name in list(tensors) + list(unreadable):
        match = KEY.match(name)
        if match:
            layers.setdefault(match["prefix"], set()).add(int(match["layer"]))
    if prefix is not None:
        layers = {p: k for p, k in layers.items() if p.rstrip(".") == prefix.rstrip(".")}
    if not layers:
        names = sorted(list(tensors) + list(unreadable))
        wanted = f"module {prefix!r} with " if prefix is not None else ""
        raise MlstmError(
            f"{path}: expected nn.LSTM keys ({wanted}weight_ih_lK, weight_hh_lK), "
            f"found {', '.join(names[:12]) or 'no tensors'}"
        )
    if len(layers) > 1:
        raise MlstmError(
            f"{path}: several LSTM modules ({', '.join(p.rstrip('.') or '(root)' for p in sorted(layers))}); "
            "pick one with --node PREFIX"
        )
    ((p, found),) = layers.items()
    k = _layer_index(path, layer, sorted(found), p)
    where = f"{path}: {p}*_l{k}"

    def get(name: str, required: bool = True) -> np.ndarray | None:
        key = f"{p}{name}"
        if key in unreadable:
            kind = unreadable[key]
            if kind in ("F16", "BF16"):
                refuse_half(where, f"tensor {key!r}", kind, HINT)
            raise MlstmError(f"{where}: tensor {key!r} is {kind}; expected float32 or float64 weights")
        if key not in tensors:
            if required:
                raise MlstmError(f"{where}: {name} is missing")
            return None
        return float_weights(where, f"tensor {key!r}", tensors[key], HINT)

    if f"{p}weight_hr_l{k}" in tensors or f"{p}weight_hr_l{k}" in unreadable:
        raise MlstmError(
            f"{where}: weight_hr_l{k} means proj_size > 0 (projected hidden state); MATLAB's lstm has none"
        )
    if f"{p}weight_ih_l{k}_reverse" in tensors or f"{p}weight_ih_l{k}_reverse" in unreadable:
        raise MlstmError(f"{where}: *_reverse keys mean bidirectional=True; MATLAB's lstm runs forward only")
    W, R = get(f"weight_ih_l{k}"), get(f"weight_hh_l{k}")
    hidden = check_lstm(where, f"weight_ih_l{k}", W, f"weight_hh_l{k}", R)
    bias = np.zeros(4 * hidden, np.result_type(W, R))
    for name in (f"bias_ih_l{k}", f"bias_hh_l{k}"):
        b = get(name, required=False)
        if b is not None:
            if b.size != 4 * hidden:
                raise MlstmError(f"{where}: expected {name} of {4 * hidden} elements, found {b.shape}")
            bias = bias + b.reshape(-1)
    return {"weights": np.asarray(W), "recurrentWeights": np.asarray(R), "bias": bias.reshape(-1, 1)}
