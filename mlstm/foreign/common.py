"""What the framework readers share: MATLAB's gate order, the LSTM shape test, the float classes."""

from __future__ import annotations

from typing import Any, NoReturn

import numpy as np

from ..errors import MlstmError

# ONNX gate blocks (i, o, f, c) -> MATLAB (i, f, g, o), and back. PyTorch and Keras already
# stack MATLAB's order (i, f, g/c, o).
ONNX_TO_MATLAB = (0, 2, 3, 1)
MATLAB_TO_ONNX = (0, 3, 1, 2)

HALF_TYPES = {"float16": "float16 (half precision)", "bfloat16": "bfloat16", "F16": "float16", "BF16": "bfloat16"}


def blocks(a: np.ndarray, order: tuple[int, ...], axis: int = 0) -> np.ndarray:
    """The four gate blocks of ``a`` along ``axis``, reordered."""
    parts = np.split(np.asarray(a), 4, axis=axis)
    return np.concatenate([parts[k] for k in order], axis=axis)


def size_text(shape: tuple[int, ...]) -> str:
    return "x".join(str(int(d)) for d in shape) or "a scalar"


def float_weights(where: str, name: str, value: Any, hint: str = "") -> np.ndarray:
    """``value`` as a float32/float64 array; half precision and other classes are errors."""
    array = np.asarray(value)
    if array.dtype in (np.float32, np.float64):
        return array
    if array.dtype.name in HALF_TYPES:
        refuse_half(where, name, array.dtype.name, hint)
    raise MlstmError(f"{where}: {name} is {array.dtype.name}; expected float32 or float64 weights")


def refuse_half(where: str, name: str, kind: str, hint: str = "") -> NoReturn:
    """Half precision (float16, bfloat16) is always an error: MATLAB's lstm runs single or double."""
    raise MlstmError(
        f"{where}: {name} is {HALF_TYPES.get(kind, kind)}; MATLAB's lstm computes in single or double, "
        f"so save the weights as float32{hint}"
    )


def check_lstm(where: str, w_name: str, W: np.ndarray, r_name: str, R: np.ndarray) -> int:
    """Hidden size H of weights in MATLAB orientation (W 4H x In, R 4H x H); anything else is
    'not an LSTM' (a GRU stacks 3H rows, a plain RNN H)."""
    if R.ndim != 2 or W.ndim != 2 or R.shape[1] == 0:
        raise MlstmError(
            f"{where}: not an LSTM: expected 2-D {w_name} and {r_name}, found {size_text(W.shape)} "
            f"and {size_text(R.shape)}"
        )
    hidden = R.shape[1]
    if R.shape[0] != 4 * hidden or W.shape[0] != R.shape[0]:
        rows = R.shape[0] if R.shape[0] != 4 * hidden else W.shape[0]
        guess = {3 * hidden: " (3H rows: a GRU's weights)", hidden: " (H rows: a plain RNN's weights)"}.get(rows, "")
        raise MlstmError(
            f"{where}: not an LSTM: {r_name} is {size_text(R.shape)} and {w_name} {size_text(W.shape)}; an "
            f"LSTM's are 4H x H and 4H x InputSize, 4H = {4 * hidden} rows for gates i, f, g, o{guess}"
        )
    return hidden
