"""CuPy engine: the LSTM recurrence on an NVIDIA GPU, over canonical arrays (docs/BEHAVIOUR.md §1).

Time runs in blocks of steps with one bounded device buffer for the gate pre-activations
(``BLOCK_BYTES``): per block, the input projection x W' of all its steps is ONE cuBLAS GEMM,
then one of three kernels runs the recurrence and adds the bias (gates in MATLAB's order i, f, g, o):

``persistent`` (lstm_persistent.cu)
    one cooperative launch for the whole block of steps. Each thread block owns a slice of hidden
    units with their four gate rows of the recurrent weights in shared memory for the whole
    launch, for a group of observations; h(t) goes through global memory (L2) and the grid
    synchronises once per step.
``single`` (lstm_single_block in lstm_persistent.cu)
    one thread block holds R, h and the gates; no grid synchronisation. For very small H*B.
``step`` (lstm_step.cu)
    per step one cuBLAS GEMM (h R') and one fused kernel for the gates and the state update.
    For sizes whose recurrent weights do not fit in the GPU's shared memory.

:func:`plan` picks the kernel per shape (rule in its docstring); ``MLSTM_GPU_KERNEL`` forces one.
Inputs on the host (NumPy) are uploaded one block of steps at a time and Y comes back block by
block, so device memory stays bounded whatever T is; CuPy inputs stay on the device.

Float32 runs in IEEE single: CuPy uses TF32 for float32 GEMMs only when the environment sets
CUPY_TF32=1, which mlstm never does. CuPy is imported when this engine is asked for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from ..errors import MlstmError

name = "cupy"

GATE_CODES = {"sigmoid": 0, "hard-sigmoid": 1}
STATE_CODES = {"tanh": 0, "softsign": 1, "relu": 2}
HERE = os.path.dirname(os.path.abspath(__file__))
KERNEL_SOURCE = os.path.join(HERE, "lstm_step.cu")
PERSISTENT_SOURCE = os.path.join(HERE, "lstm_persistent.cu")
KERNELS = ("persistent", "single", "step")
THREADS = 512  # MLSTM_THREADS in lstm_persistent.cu
STEP_THREADS = 256  # the step kernel's block
R_SMEM_SHARE = 0.75  # at most this share of a block's shared memory holds its slice of R
BLOCK_BYTES = 64 << 20  # gate pre-activations of one block of steps (plus X and Y blocks for host input)
SINGLE_MAX_CELLS = 2048  # H*B up to which one thread block runs everything (see plan)
SINGLE_MAX_SMEM = 48 << 10


@dataclass(frozen=True)
class DeviceLimits:
    """What the planner needs to know of a GPU (read off the device, or given for compile checks)."""

    multiprocessors: int
    smem_per_block: int  # the opt-in maximum of dynamic shared memory for one block, bytes
    name: str = ""


SM80 = DeviceLimits(108, 163 * 1024, "A100 (sm_80)")
SM90 = DeviceLimits(132, 227 * 1024, "H100 (sm_90)")


@dataclass(frozen=True)
class Plan:
    kernel: str
    grid: int = 0
    units: int = 0  # hidden units per thread block
    bgroup: int = 0  # observations per thread block
    btile: int = 0  # observations per shared-memory tile (<= bgroup)
    smem: int = 0  # dynamic shared memory per block, bytes


def smem_bytes(units: int, btile: int, hidden: int, itemsize: int) -> int:
    """Dynamic shared memory of the persistent/single kernels (smem_elements in the .cu)."""
    ld = hidden + 1
    return (4 * units * ld + btile * ld + 4 * units * btile) * itemsize


def persistent_plan(hidden: int, batch: int, itemsize: int, limits: DeviceLimits) -> Plan | None:
    """Blocks = unit groups x observation groups, at most one per multiprocessor; None if R does not fit.

    Fewest unit groups whose slice of R fits in R_SMEM_SHARE of a block's shared memory, then as
    many observation groups as the multiprocessors allow (each block then loads only its own
    observations' h each step), then more unit groups while multiprocessors are left (few
    observations: spread the units).
    """
    ld = hidden + 1
    rows_fit = int(limits.smem_per_block * R_SMEM_SHARE) // (4 * ld * itemsize)  # units per block
    if rows_fit < 1:
        return None
    min_groups = -(-hidden // rows_fit)
    if min_groups > limits.multiprocessors:
        return None
    obs_groups = max(1, min(batch, limits.multiprocessors // min_groups))
    unit_groups = max(min_groups, min(hidden, limits.multiprocessors // obs_groups))
    units = -(-hidden // unit_groups)
    unit_groups = -(-hidden // units)
    bgroup = -(-batch // obs_groups)
    obs_groups = -(-batch // bgroup)
    per_obs = (ld + 4 * units) * itemsize
    btile = min(bgroup, (limits.smem_per_block - 4 * units * ld * itemsize) // per_obs)
    if btile < 1:
        return None
    return Plan(
        "persistent", unit_groups * obs_groups, units, bgroup, btile, smem_bytes(units, btile, hidden, itemsize)
    )


def single_plan(hidden: int, batch: int, itemsize: int, limits: DeviceLimits, cap: int | None = None) -> Plan | None:
    smem = smem_bytes(hidden, batch, hidden, itemsize)
    if smem > min(limits.smem_per_block, cap or limits.smem_per_block):
        return None
    return Plan("single", 1, hidden, batch, batch, smem)


def plan(hidden: int, batch: int, itemsize: int, limits: DeviceLimits, forced: str | None = None) -> Plan:
    """The kernel for one shape.

    Rule: ``single`` when H*B <= SINGLE_MAX_CELLS and everything fits in 48 KB of shared memory;
    else ``persistent`` when the recurrent weights fit in the shared memory of the GPU's
    multiprocessors (4H(H+1) elements over at most one block per multiprocessor); else ``step``.
    ``forced`` (MLSTM_GPU_KERNEL) picks one, and is an error where that kernel cannot run the shape.
    """
    if forced:
        if forced not in KERNELS:
            raise MlstmError(f"expected one of {', '.join(KERNELS)}, found {forced!r}", "MLSTM_GPU_KERNEL")
        if forced == "step":
            return Plan("step")
        chosen = (single_plan if forced == "single" else persistent_plan)(hidden, batch, itemsize, limits)
        if chosen is None:
            raise MlstmError(
                f"the {forced} kernel needs the recurrent weights in shared memory, "
                f"which does not fit for H={hidden}, B={batch} on {limits.name or 'this GPU'}",
                "MLSTM_GPU_KERNEL",
            )
        return chosen
    if hidden * batch <= SINGLE_MAX_CELLS:
        chosen = single_plan(hidden, batch, itemsize, limits, SINGLE_MAX_SMEM)
        if chosen is not None:
            return chosen
    return persistent_plan(hidden, batch, itemsize, limits) or Plan("step")


def _cupy() -> Any:
    import cupy

    return cupy


def compile_options(dtype_name: str, gate: str, state: str) -> tuple[str, ...]:
    real = "float" if dtype_name == "float32" else "double"
    return (
        f"-Dreal_t={real}",
        f"-DGATE_ACT={GATE_CODES[gate]}",
        f"-DSTATE_ACT={STATE_CODES[state]}",
        f"-DMLSTM_THREADS={THREADS}",
        f"-I{HERE}",
    )


@cache
def _kernel(source: str, kernel_name: str, dtype_name: str, gate: str, state: str, cooperative: bool = False) -> Any:
    cp = _cupy()
    with open(source) as fh:
        code = fh.read()
    options = compile_options(dtype_name, gate, state)
    if cooperative:
        return cp.RawKernel(code, kernel_name, options=options, enable_cooperative_groups=True)
    return cp.RawKernel(code, kernel_name, options=options)


@cache
def device_limits(device_id: int) -> DeviceLimits:
    cp = _cupy()
    attrs = cp.cuda.runtime.getDeviceProperties(device_id)
    name_ = attrs["name"].decode() if isinstance(attrs["name"], bytes) else str(attrs["name"])
    return DeviceLimits(int(attrs["multiProcessorCount"]), int(attrs["sharedMemPerBlockOptin"]), name_)


class CupyLSTM:
    """Weights prepared once on the device; :meth:`run` may be called on consecutive chunks of time.

    weights (4H, InputSize), recurrent_weights (4H, H), bias (4H,), MATLAB gate order.
    """

    name = name

    def __init__(self, weights, recurrent_weights, bias, gate_activation, state_activation, dtype):
        cp = _cupy()
        self.dtype = np.dtype(dtype)
        self.gate, self.state = gate_activation, state_activation
        self.hidden_size = recurrent_weights.shape[1]
        self.input_size = weights.shape[1]
        self.input_weights_t = cp.ascontiguousarray(cp.asarray(weights, dtype=self.dtype).T)
        self.recurrent_weights = cp.ascontiguousarray(cp.asarray(recurrent_weights, dtype=self.dtype))
        self._recurrent_weights_t = None
        self.bias = cp.asarray(bias, dtype=self.dtype).reshape(-1)
        self.limits = device_limits(cp.cuda.Device().id)
        self.counter = cp.zeros(2, dtype=np.uint32)
        self.status = cp.zeros(1, dtype=np.int32)
        self.last_plan: Plan | None = None
        self.cooperative: bool | None = None

    @property
    def recurrent_weights_t(self) -> Any:
        if self._recurrent_weights_t is None:  # only the step kernel's GEMM needs R'
            self._recurrent_weights_t = _cupy().ascontiguousarray(self.recurrent_weights.T)
        return self._recurrent_weights_t

    def empty_output(self, steps: int, batch: int, like: Any = None) -> Any:
        xp = np if like is not None and not _is_cupy(like) else _cupy()
        return xp.empty((steps, batch, self.hidden_size), dtype=self.dtype)

    @property
    def detail(self) -> str:
        """Which kernel the last run used (for ``-v``)."""
        return f"kernel={self.last_plan.kernel}" if self.last_plan is not None else ""

    def plan_for(self, batch: int) -> Plan:
        return plan(self.hidden_size, batch, self.dtype.itemsize, self.limits, os.environ.get("MLSTM_GPU_KERNEL"))

    def block_steps(self, batch: int, on_host: bool = True) -> int:
        """Steps per block (one input-projection GEMM and one kernel launch each); a run split into
        calls whose lengths, all but the last, are multiples of this gives the same bits as one call."""
        hidden = self.hidden_size
        per_step = batch * 4 * hidden * self.dtype.itemsize
        if on_host:
            per_step += batch * (self.input_size + hidden) * self.dtype.itemsize
        block = max(1, BLOCK_BYTES // max(1, per_step))
        chosen = self.plan_for(batch)
        if chosen.kernel == "persistent":  # the barrier counter is 32-bit: steps * blocks < 2**32
            block = min(block, (2**32 - 1) // chosen.grid)
        return block

    def run(self, x: Any, hidden_state: Any, cell_state: Any, y: Any = None) -> tuple[Any, Any, Any]:
        """x (T, B, InputSize) -> Y (T, B, H), final hidden and cell states (B, H); inputs unmodified.

        NumPy x: Y, h and c come back as NumPy arrays (Y filled block by block); CuPy x: CuPy.
        """
        cp = _cupy()
        on_host = not _is_cupy(x)
        steps, batch, inputs = x.shape
        hidden = self.hidden_size
        if y is None:
            y = self.empty_output(steps, batch, like=x)
        cell = cp.array(cell_state, dtype=self.dtype, copy=True, order="C")
        h = cp.ascontiguousarray(cp.asarray(hidden_state, dtype=self.dtype))  # read only
        if steps == 0 or batch * hidden == 0:
            return self._out(y, h if on_host else h.copy(), cell, on_host)  # host h: already a copy
        chosen = self.plan_for(batch)
        self.last_plan = chosen
        block = min(steps, self.block_steps(batch, on_host))
        zx_buf = cp.empty((block, batch, 4 * hidden), dtype=self.dtype)
        y_buf = cp.empty((block, batch, hidden), dtype=self.dtype) if on_host else None
        for start in range(0, steps, block):
            stop = min(start + block, steps)
            n = stop - start
            xb = cp.asarray(x[start:stop], dtype=self.dtype)
            zx = zx_buf[:n]
            cp.matmul(xb.reshape(n * batch, inputs), self.input_weights_t, out=zx.reshape(n * batch, 4 * hidden))
            yb = y_buf[:n] if on_host else y[start:stop]
            self._recurrence(chosen, zx, h, cell, yb)
            if on_host:
                cp.asnumpy(yb, out=y[start:stop])
            h = yb[n - 1].copy() if on_host else yb[n - 1]
        if chosen.kernel == "persistent" and int(cp.asnumpy(self.status)[0]) != 0:
            self.status.fill(0)
            raise MlstmError("a grid barrier of the persistent GPU kernel timed out", "engine")
        return self._out(y, h if on_host else h.copy(), cell, on_host)  # host h: already a copy

    @staticmethod
    def _out(y: Any, h: Any, cell: Any, on_host: bool) -> tuple[Any, Any, Any]:
        if on_host:
            cp = _cupy()
            return y, cp.asnumpy(h), cp.asnumpy(cell)
        return y, h, cell

    def _recurrence(self, chosen: Plan, zx: Any, h0: Any, cell: Any, y: Any) -> None:
        """Steps of one block: zx (n, B, 4H) -> y (n, B, H), cell updated in place."""
        cp = _cupy()
        n, batch, _ = zx.shape
        hidden = self.hidden_size
        if chosen.kernel == "step":
            kernel = _kernel(KERNEL_SOURCE, "lstm_step", self.dtype.name, self.gate, self.state)
            zr = cp.empty((batch, 4 * hidden), dtype=self.dtype)
            cells = batch * hidden
            blocks = min(-(-cells // STEP_THREADS), 65535)
            h = h0
            for t in range(n):
                cp.matmul(h, self.recurrent_weights_t, out=zr)
                kernel(
                    (blocks,), (STEP_THREADS,), (zx[t], zr, self.bias, cell, y[t], np.int64(batch), np.int64(hidden))
                )
                h = y[t]
            return
        ints = (np.int32(n), np.int32(batch), np.int32(hidden))
        if chosen.kernel == "single":
            kernel = _kernel(PERSISTENT_SOURCE, "lstm_single_block", self.dtype.name, self.gate, self.state)
            _set_smem(kernel, chosen.smem)
            args = (zx, self.recurrent_weights, self.bias, h0, cell, y, *ints)
            kernel((1,), (THREADS,), args, shared_mem=chosen.smem)
            return
        self.counter.fill(0)
        sizes = (np.int32(chosen.units), np.int32(chosen.bgroup), np.int32(chosen.btile))
        args = (zx, self.recurrent_weights, self.bias, h0, cell, y, *ints, *sizes)
        args = (*args, self.counter, self.status)
        self._launch_cooperative(chosen, args)

    def _launch_cooperative(self, chosen: Plan, args: tuple) -> None:
        """A cooperative launch (co-residency guaranteed by the driver); where CuPy cannot make one
        here, a plain launch of at most one block per multiprocessor (the barrier's timeout and
        *status still keep a non-resident grid from hanging)."""
        modes = (True, False) if self.cooperative is None else (self.cooperative,)
        for cooperative in modes:
            kernel = _kernel(PERSISTENT_SOURCE, "lstm_persistent", self.dtype.name, self.gate, self.state, cooperative)
            try:
                _set_smem(kernel, chosen.smem)
                kernel((chosen.grid,), (THREADS,), args, shared_mem=chosen.smem)
            except Exception:
                if cooperative and len(modes) == 2:
                    continue
                raise
            self.cooperative = cooperative
            return


def _set_smem(kernel: Any, nbytes: int) -> None:
    if nbytes > 48 * 1024 and kernel.max_dynamic_shared_size_bytes < nbytes:
        kernel.max_dynamic_shared_size_bytes = nbytes


def _is_cupy(a: Any) -> bool:
    return type(a).__module__.startswith("cupy")


def prepare(weights, recurrent_weights, bias, gate_activation, state_activation, dtype) -> CupyLSTM:
    return CupyLSTM(weights, recurrent_weights, bias, gate_activation, state_activation, dtype)
