"""MATLAB's names for sizes and classes, shared by the file layer (io/) and the front end (formats.py).

A leaf module: it imports only NumPy, so any module may import it without a cycle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# MATLAB class names for the NumPy dtypes a MAT file can hold.
MATLAB_CLASS = {
    "float64": "double",
    "float32": "single",
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "bool": "logical",
    "complex64": "complex single",
    "complex128": "complex double",
}
# The NumPy dtype of each real numeric or logical MATLAB class (what a reader returns for it).
CLASS_DTYPE = {cls: np.dtype(name) for name, cls in MATLAB_CLASS.items() if not cls.startswith("complex")}


def is_sparse(a: Any) -> bool:
    return type(a).__module__.startswith(("scipy.sparse", "cupyx.scipy.sparse"))


def matlab_class(a: Any) -> str:
    """MATLAB's name for the class of ``a`` (``double``, ``single``, ``char``, ``cell``, ...)."""
    if is_sparse(a):
        return "sparse"
    dtype = getattr(a, "dtype", None)
    if dtype is None:
        a = np.asarray(a)
        dtype = a.dtype
    if dtype.kind in "US":
        return "char"
    if dtype.kind == "O":
        return "cell"
    if dtype.kind == "V":
        return "struct"
    return MATLAB_CLASS.get(dtype.name, dtype.name)


def drop_trailing_singletons(shape: tuple[int, ...]) -> tuple[int, ...]:
    dims = list(shape)
    while dims and dims[-1] == 1:
        dims.pop()
    return tuple(dims)


def matlab_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The size MATLAB reports for ``shape``: trailing singletons dropped, at least two dimensions."""
    dims = drop_trailing_singletons(tuple(int(d) for d in shape))
    return dims + (1,) * (2 - len(dims)) if len(dims) < 2 else dims


def matlab_size(shape: tuple[int, ...]) -> str:
    """MATLAB's way of writing a size, e.g. ``3x4x5``."""
    return "x".join(str(d) for d in matlab_shape(shape))
