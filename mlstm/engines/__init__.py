"""Interchangeable engines over canonical arrays (see :class:`mlstm.formats.Problem`).

Each engine module has ``name`` and ``prepare(weights, recurrent_weights, bias,
gate_activation, state_activation, dtype)`` returning an object whose
``run(x, hidden_state, cell_state)`` maps x (T, B, InputSize) to
(Y (T, B, H), hidden (B, H), cell (B, H)). The CuPy engine is imported only
when asked for.
"""

from __future__ import annotations

from types import ModuleType

from ..errors import MlstmError

ENGINES = ("numpy", "cupy", "auto")


def cupy_unavailable_reason() -> str | None:
    """None if CuPy can run kernels on a GPU here, else why not."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising anything
        return f"CuPy is not importable ({type(exc).__name__}: {exc}); install mlstm[gpu]"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"no usable CUDA device ({type(exc).__name__}: {exc})"
    if count < 1:
        return "no CUDA device found"
    return None


def get_engine(name: str) -> ModuleType:
    """The engine module for ``numpy``, ``cupy`` or ``auto`` (CuPy when a GPU is usable)."""
    key = str(name).lower()
    if key not in ENGINES:
        raise MlstmError(f"expected one of {', '.join(ENGINES)}, found {name!r}", "engine")
    if key == "numpy":
        from . import numpy_engine

        return numpy_engine
    reason = cupy_unavailable_reason()
    if reason is None:
        from . import cupy_engine

        return cupy_engine
    if key == "auto":
        from . import numpy_engine

        return numpy_engine
    raise MlstmError(f"the cupy engine was requested but {reason}", "engine")
