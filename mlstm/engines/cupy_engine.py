"""CuPy engine: the LSTM recurrence on an NVIDIA GPU, over canonical arrays (SPEC §1).

Per run: the input projection for all steps as one cuBLAS GEMM (x W' + b). Per step: one
recurrent GEMM (h R') and ONE fused kernel (lstm_step.cu) for all gates, both activations, the
state update and the write of h into Y. Gates stay in MATLAB's order i, f, g, o.

Float32 runs in IEEE single: CuPy uses TF32 for float32 GEMMs only when the environment sets
CUPY_TF32=1, which mlstm never does. CuPy is imported when this engine is asked for.

Status: written and its kernel arithmetic unit-tested on the host; the GPU tests
(tests/test_cupy_engine.py) and benchmarks/bench_gpu.py have not been run on a GPU yet.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import numpy as np

name = "cupy"

GATE_CODES = {"sigmoid": 0, "hard-sigmoid": 1}
STATE_CODES = {"tanh": 0, "softsign": 1, "relu": 2}
KERNEL_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lstm_step.cu")


def _cupy() -> Any:
    import cupy

    return cupy


@cache
def _kernel(dtype_name: str, gate: str, state: str) -> Any:
    cp = _cupy()
    with open(KERNEL_SOURCE) as fh:
        source = fh.read()
    real = "float" if dtype_name == "float32" else "double"
    options = (f"-Dreal_t={real}", f"-DGATE_ACT={GATE_CODES[gate]}", f"-DSTATE_ACT={STATE_CODES[state]}")
    return cp.RawKernel(source, "lstm_step", options=options)


class CupyLSTM:
    """Weights prepared once on the device; :meth:`run` may be called on consecutive chunks of time.

    weights (4H, InputSize), recurrent_weights (4H, H), bias (4H,), MATLAB gate order.
    """

    name = name

    def __init__(self, weights, recurrent_weights, bias, gate_activation, state_activation, dtype):
        cp = _cupy()
        self.dtype = np.dtype(dtype)
        self.hidden_size = recurrent_weights.shape[1]
        self.input_weights_t = cp.ascontiguousarray(cp.asarray(weights, dtype=self.dtype).T)
        self.recurrent_weights_t = cp.ascontiguousarray(cp.asarray(recurrent_weights, dtype=self.dtype).T)
        self.bias = cp.asarray(bias, dtype=self.dtype)
        self.kernel = _kernel(self.dtype.name, gate_activation, state_activation)

    def empty_output(self, steps: int, batch: int) -> Any:
        return _cupy().empty((steps, batch, self.hidden_size), dtype=self.dtype)

    def run(self, x: Any, hidden_state: Any, cell_state: Any, y: Any = None) -> tuple[Any, Any, Any]:
        """x (T, B, InputSize) -> Y (T, B, H), final hidden and cell states (B, H); inputs unmodified."""
        cp = _cupy()
        x = cp.asarray(x, dtype=self.dtype)
        steps, batch, _ = x.shape
        hidden = self.hidden_size
        if y is None:
            y = self.empty_output(steps, batch)
        cell = cp.array(cell_state, dtype=self.dtype, copy=True, order="C")
        h = cp.ascontiguousarray(cp.asarray(hidden_state, dtype=self.dtype))
        if steps == 0:
            return y, h.copy(), cell
        zx = cp.matmul(x.reshape(steps * batch, -1), self.input_weights_t)
        zx += self.bias
        zx = zx.reshape(steps, batch, 4 * hidden)
        zr = cp.empty((batch, 4 * hidden), dtype=self.dtype)
        n = batch * hidden
        threads = 256
        blocks = min((n + threads - 1) // threads, 65535)
        size_b, size_h = np.int64(batch), np.int64(hidden)
        for t in range(steps):
            cp.matmul(h, self.recurrent_weights_t, out=zr)
            h = y[t]
            self.kernel((blocks,), (threads,), (zx[t], zr, cell, h, size_b, size_h))
        return y, h.copy(), cell


def prepare(weights, recurrent_weights, bias, gate_activation, state_activation, dtype) -> CupyLSTM:
    return CupyLSTM(weights, recurrent_weights, bias, gate_activation, state_activation, dtype)
