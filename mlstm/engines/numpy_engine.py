"""NumPy engine: the LSTM recurrence over canonical arrays (SPEC §1).

Per step, with gates stored in the order [i, f, o | g] so that one call covers
the three gate activations:

    z   = xw[t] + h @ R'          (xw = X W' + b for all steps: one GEMM up front)
    ifo = σg(z[:, :3H]);  g = σc(z[:, 3H:])
    c   = f*c + i*g;      h = o*σc(c)  (written straight into Y[t])

All work happens in preallocated buffers with in-place ufuncs, in the compute
class (float32 stays float32). For the logistic sigmoid the gate rows of W, R
and b are negated once up front, so z holds -x and σ(x) = 1/(1+exp(z)) needs no
negation per step; negation is exact, so this changes no bit of the result.
"""

from __future__ import annotations

import numpy as np

name = "numpy"


def _gate_rows(hidden: int) -> np.ndarray:
    """Row order [i, f, o, g] from MATLAB's [i, f, g, o]."""
    h = hidden
    return np.r_[0:h, h : 2 * h, 3 * h : 4 * h, 2 * h : 3 * h]


class _Activation:
    """Activations by name as ``f(src, out, tmp)``; ``out`` may be ``src``, ``tmp`` is scratch."""

    @staticmethod
    def sigmoid_of_negated(src: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> None:
        # src holds -x: σ(x) = 1 / (1 + e^{-x}); e^{-x} = inf for very negative x gives exactly 0.
        np.exp(src, out=out)
        out += 1
        np.reciprocal(out, out=out)

    @staticmethod
    def hard_sigmoid(src: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> None:
        np.multiply(src, 0.2, out=out)
        out += 0.5
        np.clip(out, 0, 1, out=out)

    @staticmethod
    def tanh(src: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> None:
        np.tanh(src, out=out)

    @staticmethod
    def softsign(src: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> None:
        np.abs(src, out=tmp)
        tmp += 1
        np.divide(src, tmp, out=out)

    @staticmethod
    def relu(src: np.ndarray, out: np.ndarray, tmp: np.ndarray) -> None:
        np.maximum(src, 0, out=out)


GATE_FUNCTIONS = {"sigmoid": _Activation.sigmoid_of_negated, "hard-sigmoid": _Activation.hard_sigmoid}
STATE_FUNCTIONS = {"tanh": _Activation.tanh, "softsign": _Activation.softsign, "relu": _Activation.relu}


class NumpyLSTM:
    """Weights prepared once; :meth:`run` may be called on consecutive chunks of time.

    weights (4H, InputSize), recurrent_weights (4H, H), bias (4H,), MATLAB gate order.
    """

    name = name

    def __init__(
        self,
        weights: np.ndarray,
        recurrent_weights: np.ndarray,
        bias: np.ndarray,
        gate_activation: str,
        state_activation: str,
        dtype: np.dtype,
    ):
        self.dtype = np.dtype(dtype)
        self.hidden_size = hidden = recurrent_weights.shape[1]
        self.input_size = weights.shape[1]
        rows = _gate_rows(hidden)
        sign = np.ones((4 * hidden, 1), dtype=self.dtype)
        if gate_activation == "sigmoid":
            sign[: 3 * hidden] = -1
        self.gate = GATE_FUNCTIONS[gate_activation]
        self.state = STATE_FUNCTIONS[state_activation]
        # Transposed so the GEMMs are (rows, K) @ (K, 4H) on C-contiguous operands.
        self.input_weights_t = np.ascontiguousarray((weights[rows].astype(self.dtype) * sign).T)
        self.recurrent_weights_t = np.ascontiguousarray((recurrent_weights[rows].astype(self.dtype) * sign).T)
        self.bias = np.ascontiguousarray(bias[rows].astype(self.dtype) * sign[:, 0])

    def empty_output(self, steps: int, batch: int) -> np.ndarray:
        return np.empty((steps, batch, self.hidden_size), dtype=self.dtype)

    def run(
        self, x: np.ndarray, hidden_state: np.ndarray, cell_state: np.ndarray, y: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x (T, B, InputSize) -> Y (T, B, H), final hidden and cell states (B, H).

        The inputs are not modified. ``y`` may be a preallocated (T, B, H) buffer.
        """
        steps, batch, _ = x.shape
        hidden = self.hidden_size
        if y is None:
            y = np.empty((steps, batch, hidden), dtype=self.dtype)
        cell = np.array(cell_state, dtype=self.dtype, copy=True, order="C")
        h = np.ascontiguousarray(hidden_state, dtype=self.dtype)
        if steps == 0:
            return y, h.copy(), cell
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # NaN/Inf in X are data, not errors
            z_all = np.matmul(x.reshape(steps * batch, -1), self.input_weights_t)
        z_all += self.bias
        z_all = z_all.reshape(steps, batch, 4 * hidden)
        scratch = np.empty((batch, 3 * hidden), dtype=self.dtype)
        tmp_g = np.empty((batch, hidden), dtype=self.dtype)
        tmp_c = np.empty((batch, hidden), dtype=self.dtype)
        gate, state = self.gate, self.state
        accumulate = self._recurrent_accumulator(batch, z_all[0], h)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            for t in range(steps):
                z = z_all[t]
                accumulate(h, z)  # z += h @ R'
                ifo, g = z[:, : 3 * hidden], z[:, 3 * hidden :]
                gate(ifo, ifo, scratch)
                state(g, g, tmp_g)
                cell *= ifo[:, hidden : 2 * hidden]
                g *= ifo[:, :hidden]
                cell += g
                state(cell, tmp_c, tmp_g)
                h = y[t]
                np.multiply(ifo[:, 2 * hidden :], tmp_c, out=h)
        return y, h.copy(), cell

    def _recurrent_accumulator(self, batch: int, z0: np.ndarray, h0: np.ndarray):
        """``accumulate(h, z)``: z += h @ R' in place.

        For larger problems this is one BLAS gemm with beta=1 writing straight into z (in
        column-major terms z' = R h' + z', on the same memory), which saves a full pass over z
        per step (about 15% at B=256, H=64). Tiny problems skip importing scipy.linalg.
        """
        r_t = self.recurrent_weights_t
        if batch * r_t.shape[1] >= 4096:
            from scipy.linalg import blas

            gemm = blas.sgemm if self.dtype == np.float32 else blas.dgemm
            r_f = r_t.T  # Fortran-contiguous (4H, H)
            probe = z0.copy()
            out = gemm(1.0, r_f, h0.T, beta=1.0, c=probe.T, overwrite_c=1)
            if np.shares_memory(out, probe):  # the wrapper wrote in place: no hidden copies

                def accumulate(h: np.ndarray, z: np.ndarray) -> None:
                    gemm(1.0, r_f, h.T, beta=1.0, c=z.T, overwrite_c=1)

                return accumulate
        rec = np.empty((batch, r_t.shape[1]), dtype=self.dtype)

        def accumulate(h: np.ndarray, z: np.ndarray) -> None:
            np.matmul(h, r_t, out=rec)
            z += rec

        return accumulate


def prepare(weights, recurrent_weights, bias, gate_activation, state_activation, dtype) -> NumpyLSTM:
    return NumpyLSTM(weights, recurrent_weights, bias, gate_activation, state_activation, dtype)
