"""LSTM parameters from other frameworks, turned into MATLAB's layout, and back to ONNX.

MATLAB: ``weights`` 4H x InputSize, ``recurrentWeights`` 4H x H, ``bias`` 4H x 1, gate
blocks input, forget, cell candidate (g), output. One module per framework:

    onnx.py   ONNX LSTM nodes (and the one-node model ``convert --to onnx`` writes)
    torch.py  PyTorch nn.LSTM state dicts (safetensors, .npz; pickles are refused)
    keras.py  Keras .keras archives, .weights.h5 and legacy .h5

This module sniffs a file and dispatches. Anything MATLAB's lstm cannot express is an error
that names it, never an approximation. Each reader returns a dict of MATLAB variables (arrays,
and option values as str), which :class:`mlstm.io.MemoryFile` serves like any input file.
``mlstm.io`` knows no framework: this package imports it, never the reverse.
"""

from __future__ import annotations

import os
import zipfile
from typing import Any

from .. import io
from ..errors import MlstmError
from ..io import MemoryFile
from .keras import is_keras_file, read_keras, read_keras_archive
from .onnx import onnx_model, read_onnx, write_onnx
from .torch import read_pytorch

__all__ = [
    "PICKLE_ADVICE",
    "is_keras_file",
    "onnx_model",
    "open_weights_file",
    "read_foreign",
    "read_keras",
    "read_keras_archive",
    "read_onnx",
    "read_pytorch",
    "sniff_weights",
    "write_onnx",
]

PICKLE_ADVICE = (
    "loading a pickle runs arbitrary code, so mlstm refuses it; save the state dict as safetensors "
    "(from safetensors.torch import save_file; save_file(model.state_dict(), 'lstm.safetensors')) "
    "or as .npz (numpy.savez('lstm.npz', **{k: v.numpy() for k, v in model.state_dict().items()}))"
)
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def sniff_weights(path: str, head: bytes) -> str | None:
    """'onnx', 'pytorch', 'pickle', 'keras' (a .keras archive) or None (HDF5, MAT: looked at later)."""
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
        if "model.weights.h5" in names or "config.json" in names or ext == ".keras":
            return "keras"  # Keras 3's .keras archive (also a zip)
        return "pytorch"  # .npz
    if ext == ".onnx":
        return "onnx"
    return None


OPTION_USE = {
    "--layer": "picks a PyTorch layer index or a Keras layer name",
    "--node": "picks an ONNX LSTM node or a PyTorch module prefix",
}


def _refuse_option(path: str, option: str, value: str, kind: str, instead: str) -> MlstmError:
    return MlstmError(f"{OPTION_USE[option]}, found {value!r}, but {path} is {kind}: {instead}", option)


def read_foreign(
    path: str, kind: str | None = None, node: str | None = None, layer: str | None = None, hdf5_order: str = "numpy"
) -> dict[str, Any] | None:
    """MATLAB variables from a foreign weights file, or None when ``path`` is an ordinary MAT/HDF5
    file of MATLAB variables. ``kind`` forces 'onnx', 'pytorch' or 'keras'."""
    head = io.read_head(path, 64, "a weights file")
    sniffed = sniff_weights(path, head)
    if sniffed == "pickle":
        raise MlstmError(f"{path}: a pickled PyTorch file; {PICKLE_ADVICE}")
    kind = kind or sniffed
    if kind == "onnx":
        if layer is not None:
            raise _refuse_option(path, "--layer", layer, "an ONNX model", "pick its LSTM node with --node NAME")
        return read_onnx(path, node)
    if kind == "pytorch":
        return read_pytorch(path, head, layer, node)
    if kind == "keras" or head.startswith(HDF5_SIGNATURE):
        return _read_keras(path, head, kind, sniffed, node, layer)
    return None


def _read_keras(
    path: str, head: bytes, kind: str | None, sniffed: str | None, node: str | None, layer: str | None
) -> dict[str, Any] | None:
    if head.startswith(b"PK\x03\x04"):
        if sniffed != "keras":
            raise MlstmError(
                f"{path}: expected a Keras file (a .keras archive with model.weights.h5, or HDF5), "
                "found a zip archive without model.weights.h5"
            )
        if node is not None:
            raise _refuse_option(path, "--node", node, "a Keras archive", "pick a layer with --layer NAME")
        return read_keras_archive(path, layer)
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            if kind == "keras" or is_keras_file(handle):
                if node is not None:
                    raise _refuse_option(path, "--node", node, "a Keras file", "pick a layer with --layer NAME")
                return read_keras(path, handle, layer)
    except OSError as exc:
        raise MlstmError(f"{path}: expected a Keras HDF5 weights file, found unreadable data ({exc})") from None
    return None


def open_weights_file(
    path: str,
    hdf5_order: str = "numpy",
    node: str | None = None,
    layer: str | None = None,
    kind: str | None = None,
    names: list[str] | None = None,
) -> MemoryFile:
    """A weights file read once into memory: MAT/HDF5 variables (``names`` of them), or an ONNX
    model, PyTorch state dict or Keras weights file converted to MATLAB's layout."""
    foreign = read_foreign(path, kind, node, layer, hdf5_order)
    if foreign is not None:
        return MemoryFile(path, "converted weights", foreign)
    for option, value in (("--node", node), ("--layer", layer)):
        if value is not None:
            raise _refuse_option(path, option, value, "a file of MATLAB variables", "give the variables by name")
    with io.open_matrix_file(path, hdf5_order) as source:
        return MemoryFile.from_file(source, names)
