"""NumPy engine: the LSTM recurrence on the CPU over canonical arrays (docs/BEHAVIOUR.md §1).

Time is processed in blocks of steps that share one preallocated gate buffer z (about 4 MB),
so memory traffic and page faults do not grow with T:

    z[block] = x[block] W' + b        one GEMM per block
    per step: z_t += h_{t-1} R'       one BLAS gemm with beta=1, in place
              gates, states, Y[t]     one fused pass

Both GEMMs go to the BLAS scipy ships (one thread pool). The whole loop runs in compiled C
(``_cpu_lstm.c``, an optional extension built at install; its boundary, with the checks on every
argument, is :mod:`.cpu_loop`) when it is available, on one thread or split across threads by
observations or by hidden units, whichever a measurement found fastest on this machine
(:mod:`.cpu_plans`); otherwise the NumPy loop below runs. Both keep float32 in float32.
MLSTM_PURE_NUMPY=1 forces the NumPy loop.

NumPy loop: gates stored [i, f, o | g] (not MATLAB's i, f, g, o, which the C and CUDA cells and
tests/reference.py keep) so one call covers the three gate activations. Measured on the AMD EPYC
CI machine (float32 sigmoid over the gate rows, best of 5): one call over [i f o] vs two over
[i f] and [o] took 5.2 vs 11.7 µs at B = 1, H = 256, and 87 vs 157 µs at B = 256, H = 64 (28 vs
25 µs at B = 32, H = 128): the reordering pays where it matters. For the logistic sigmoid the
gate rows of W, R and b are negated once up front, so z holds -x and σ(x) = 1/(1+exp(z)) needs no
negation per step (negation is exact: no bit of the result changes).

Over 400 lines because it is one concept: the engine object that prepares weights once and runs
blocks, with its two loops (compiled and NumPy) and the per-shape choices between them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import MlstmError
from . import cpu_loop
from . import cpu_plans as plans
from .cpu_loop import CompiledLoop, _blas_threads, interruptible  # noqa: F401 - where mlstm.doctor and older code look
from .cpu_loop import extension_files as _extension_files  # noqa: F401
from .cpu_loop import load_compiled_loop as _load_compiled_loop
from .cpu_plans import Plan

name = "numpy"
BLOCK_BYTES = 4 << 20
GATE_MAJOR_MAX_H = 16  # below this H (and B >= H) the gates are laid out gate-major, loops run over B
GATE_CODES = {"sigmoid": 0, "hard-sigmoid": 1}
STATE_CODES = {"tanh": 0, "softsign": 1, "relu": 2}


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


@lru_cache(maxsize=1)
def _scipy_blas_threads() -> cpu_loop.BlasThreads | None:
    """The thread controls of scipy's OpenBLAS (None: another BLAS), found once."""
    return _blas_threads()


def compiled_loop() -> dict[np.dtype, CompiledLoop] | None:
    """The compiled step loops by dtype (see :mod:`.cpu_loop`), or None (not built, or MLSTM_PURE_NUMPY=1)."""
    return _load_compiled_loop()[0]


def compiled_loop_unavailable_reason() -> str | None:
    """None if the compiled loop is what runs, else why the NumPy loop runs instead (for -v and
    ``mlstm doctor``): MLSTM_PURE_NUMPY, the extension not built, or its import error."""
    return _load_compiled_loop()[1]


def cpu_plan(steps: int, batch: int, input_size: int, hidden: int, dtype: np.dtype) -> tuple[str, int]:
    """The plan MLSTM_CPU_PLAN forces, else the fixed rules' plan for a run of this size, as
    (kind, threads). A run with enough work measures instead (:mod:`.cpu_plans`)."""
    count = plans.cores()
    plan = plans.forced(batch, hidden, count) or plans.rule(steps, batch, input_size, hidden, dtype, count)
    return plan.kind, plan.threads


def unit_split_rows(hidden: int, threads: int) -> np.ndarray:
    """Row order for the unit split: thread k's units [j0, j1) with their i, f, g, o rows together."""
    parts = []
    for k in range(threads):
        j0, j1 = hidden * k // threads, hidden * (k + 1) // threads
        parts.extend(np.arange(g * hidden + j0, g * hidden + j1) for g in range(4))
    return np.concatenate(parts)


class NumpyLSTM:
    """Weights prepared once; :meth:`run` may be called on consecutive chunks of time.

    weights (4H, InputSize), recurrent_weights (4H, H), bias (4H,), MATLAB gate order.
    ``compiled`` False forces the NumPy loop (the tests run both).
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
        compiled: bool = True,
    ):
        self.dtype = np.dtype(dtype)
        self.hidden_size = hidden = recurrent_weights.shape[1]
        self.input_size = weights.shape[1]
        loops = compiled_loop() if compiled else None
        self.loop = loops[self.dtype] if loops else None
        self.numpy_reason = None if self.loop else (compiled_loop_unavailable_reason() if compiled else "asked for")
        self.last_plan = "serial"  # what the last call ran, in words
        self.last_kernel = "blas"  # and what computed its recurrent product (see _kernel_that_ran)
        self._packed: dict[int, np.ndarray] = {}  # R packed for the packed kernel, per slice count
        self._packed_w: np.ndarray | None = None  # W packed likewise (the batch split's per-step product)
        self.chosen_plan: Plan | None = None  # and how that plan was chosen
        self.gate_code, self.state_code = GATE_CODES[gate_activation], STATE_CODES[state_activation]
        self.gate = GATE_FUNCTIONS[gate_activation]
        self.state = STATE_FUNCTIONS[state_activation]
        if self.loop is not None:
            # C keeps MATLAB's gate order and signs: one copy each (the engine owns its weights),
            # no transposes (preparing (256, 512) weights took 12 ms with them).
            self.input_weights = np.array(weights, dtype=self.dtype, order="C")  # (4H, In)
            self.recurrent_weights = np.array(recurrent_weights, dtype=self.dtype, order="C")  # (4H, H)
            self.bias = np.array(bias, dtype=self.dtype, order="C")
        else:
            rows = _gate_rows(hidden)
            sign = np.ones((4 * hidden, 1), dtype=self.dtype)
            if gate_activation == "sigmoid":
                sign[: 3 * hidden] = -1
            # Transposed so the GEMMs are (rows, K) @ (K, 4H) on C-contiguous operands.
            self.input_weights_t = np.ascontiguousarray((weights[rows].astype(self.dtype) * sign).T)
            self.recurrent_weights_t = np.ascontiguousarray((recurrent_weights[rows].astype(self.dtype) * sign).T)
            self.bias = np.ascontiguousarray(bias[rows].astype(self.dtype) * sign[:, 0])
        self._unit_split: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._plan_steps: int | None = None
        self._run_plan: Plan | None = None

    @property
    def plan_steps(self) -> int | None:
        """The whole run's length, set (by :mod:`mlstm.pipeline`) while a run goes through
        :meth:`run` in blocks: its plan is chosen for that length at the first block, and every
        later block runs the same plan."""
        return self._plan_steps

    @plan_steps.setter
    def plan_steps(self, steps: int | None) -> None:
        self._plan_steps = steps
        self._run_plan = None  # a new run: its plan is chosen at its first block

    def block_steps(self, batch: int) -> int:
        """Steps per block of the input projection (one GEMM each, about BLOCK_BYTES of X and
        gates, and never more columns, steps x B, than the BLAS's int takes). Runs split into
        calls whose lengths, all but the last, are multiples of this (and with ``plan_steps`` set
        to the whole length) give the same bits as one call: the same GEMMs on the same data,
        whatever the BLAS."""
        per_step = batch * (self.input_size + 4 * self.hidden_size) * self.dtype.itemsize
        return max(1, min(BLOCK_BYTES // max(1, per_step), cpu_loop.BLAS_INT_MAX // max(1, batch)))

    def empty_output(self, steps: int, batch: int, like: Any = None) -> np.ndarray:
        return cpu_loop.aligned_empty((steps, batch, self.hidden_size), self.dtype)

    @property
    def detail(self) -> str:
        """What ran (for ``-v``): ``loop=compiled (plan) plan=how-chosen blas=...``, or
        ``loop=numpy (why not compiled)``."""
        if self.loop is None:
            return f"loop=numpy ({self.numpy_reason})"
        plan = self.chosen_plan
        if plan is None:
            return f"loop=compiled ({self.last_plan})"
        how = f"{plan.source} ({plan.timings})" if plan.timings else plan.source
        blas = self.loop.blas_description()
        if plan.kind != "serial":
            blas = f"{blas}, 1 per loop thread"
        return f"loop=compiled ({self.last_plan}) plan={how} recurrent={self.last_kernel} blas={blas}"

    def _check_output(self, y: np.ndarray, steps: int, batch: int) -> None:
        shape = (steps, batch, self.hidden_size)
        good = isinstance(y, np.ndarray) and y.dtype == self.dtype and y.shape == shape
        if not (good and y.flags.c_contiguous and y.flags.writeable):
            found = (
                f"{type(y).__name__} {getattr(y, 'dtype', '')} {getattr(y, 'shape', '')}"
                f"{'' if getattr(y, 'flags', None) is None or y.flags.c_contiguous else ' (not C-contiguous)'}"
                f"{'' if getattr(y, 'flags', None) is None or y.flags.writeable else ' (read-only)'}"
            )
            raise MlstmError(
                f"output buffer: expected a writable C-contiguous {self.dtype} array {shape}, found {found}"
            )

    def run(
        self, x: np.ndarray, hidden_state: np.ndarray, cell_state: np.ndarray, y: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x (T, B, InputSize) -> Y (T, B, H), final hidden and cell states (B, H).

        The inputs are not modified. ``y`` may be a preallocated (T, B, H) buffer of this
        engine's class, C-contiguous and writable (MlstmError otherwise).
        """
        steps, batch, _ = x.shape
        hidden = self.hidden_size
        cpu_loop.check_blas_dims(batch, self.input_size, hidden)
        if y is None:
            y = self.empty_output(steps, batch)
        self._check_output(y, steps, batch)
        cell = cpu_loop.aligned_empty(np.shape(cell_state), self.dtype)
        cell[...] = cell_state  # a copy, cast as astype does
        h = np.ascontiguousarray(hidden_state, dtype=self.dtype)
        for state, what in ((h, "hidden state"), (cell, "cell state")):
            if state.shape != (batch, hidden):
                raise MlstmError(f"{what}: expected shape {(batch, hidden)}, found {state.shape}")
        if steps == 0:
            return y, h.copy(), cell
        x = np.ascontiguousarray(x, dtype=self.dtype)
        block = min(steps, self.block_steps(batch))
        z_buffer = cpu_loop.aligned_empty((block, batch, 4 * hidden), self.dtype)
        if self.loop is not None:
            return self._run_compiled(x, h, cell, cell_state, y, z_buffer)
        input_gemm = self._input_projection(batch)
        with self._blas_capped(batch):
            for start in range(0, steps, block):
                stop = min(start + block, steps)
                z = z_buffer[: stop - start]
                with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # NaN/Inf in X are data
                    input_gemm(x[start:stop].reshape(-1, self.input_size), z.reshape(-1, 4 * hidden))
                h = self._numpy_steps(z, h, cell, y[start:stop])
        return y, h.copy(), cell

    @contextlib.contextmanager
    def _blas_capped(self, batch: int) -> Iterator[None]:
        """The NumPy loop's BLAS (scipy's OpenBLAS, where it calls scipy's gemm) at no more threads
        than a plan may use (:func:`.cpu_plans.cores`: MLSTM_NUM_THREADS, the CPU affinity, a
        cgroup's CPU quota), put back after: OpenBLAS counts the CPUs it can see, not the quota, so
        under ``docker --cpus 2`` on a large host it would start a thread per host CPU."""
        blas = _scipy_blas_threads() if self._scipy_gemm(batch) is not None else None
        count = blas.get() if blas is not None else 0
        limit = plans.cores()
        if count > limit:
            blas.set(limit)
        try:
            yield
        finally:
            if count > limit:
                blas.set(count)

    def _run_compiled(self, x, h, cell, cell_state, y, z_buffer):
        """The C loops under the run's plan; serially from the start if its threads cannot start."""
        plan = self.chosen_plan = self._plan(x, h, cell)
        if self._execute(plan, x, h, cell, y, z_buffer) < 0:
            cell[...] = cell_state
            self.chosen_plan = Plan("serial", 1, f"{plan.source}; {plan.label} could not start its threads")
            self._execute(self.chosen_plan, x, h, cell, y, z_buffer)
        return y, y[-1].copy(), cell

    def _plan(self, x: np.ndarray, h: np.ndarray, cell: np.ndarray) -> Plan:
        """The whole run's plan (``plan_steps`` long): forced, ruled (small runs), remembered, or
        measured here on copies of the first steps (see :mod:`.cpu_plans`)."""
        if self._plan_steps is not None and self._run_plan is not None:
            return self._run_plan  # a later block of the run
        self._run_plan = self._choose_plan(x, h, cell)
        return self._run_plan

    def _choose_plan(self, x: np.ndarray, h: np.ndarray, cell: np.ndarray) -> Plan:
        steps, batch, _ = x.shape
        hidden, loop = self.hidden_size, self.loop
        count = plans.cores()
        if loop.blas_threads is None:  # without the BLAS's thread controls, no threads of ours
            return Plan("serial", 1, "rule")
        plan = plans.forced(batch, hidden, count)
        if plan is None:
            run_steps = self.plan_steps or steps  # the whole run: every block of it runs the same plan
            step_work = float(batch) * 4 * hidden * (self.input_size + hidden)
            if count < 2 or run_steps * step_work < plans.MEASURE_MIN_WORK:
                plan = plans.rule(run_steps, batch, self.input_size, hidden, self.dtype, count)
            else:
                blas_threads = min(loop.blas_threads.get(), count)  # what the serial plan runs it at
                allowed = plans.candidates(batch, hidden, count, loop.max_unit_threads, blas_threads)
                kernel = f"packed {loop.packed.isa}" if self._use_packed(batch) else "blas"
                key = plans.plan_key(self.dtype, batch, self.input_size, hidden, count, kernel)
                plan = plans.lookup(key, allowed)
                if plan is None:
                    probe, most = plans.trial_steps(run_steps, steps, step_work)
                    measured = plans.measure(
                        allowed,
                        lambda p, budget: self._trial(p, x[:most], h, cell, probe, run_steps, budget),
                        run_steps,
                    )
                    plan = plans.remember(key, measured)
        if plan.kind == "units":  # the C side's limit: the rows are permuted for the count that runs
            plan = replace(plan, threads=min(plan.threads, loop.max_unit_threads, hidden))
        return plan

    def _trial(
        self,
        plan: Plan,
        x: np.ndarray,
        h: np.ndarray,
        cell: np.ndarray,
        probe: int,
        run_steps: int,
        budget: float | None,
    ) -> float | None:
        """Seconds a ``run_steps`` run would take under ``plan``: a warm-up on ``probe`` steps,
        then about TRIAL_SECONDS (at most all of ``x``) timed, on copies of the states, output
        thrown away. None when its threads could not start or the warm-up says the run would
        take over 4 times ``budget``; a :class:`~.cpu_plans.Starved` estimate when a threaded
        plan's threads got under STARVED_SHARE of their cores while timed (the process's CPU
        time). Inline, as the loop runs: a trial is short."""
        if plan.kind == "units":
            self._unit_split_weights(plan.threads)  # made once, not timed
        most, batch = x.shape[0], x.shape[1]
        y = cpu_loop.aligned_empty((most, batch, self.hidden_size), self.dtype)
        z_buffer = cpu_loop.aligned_empty((min(most, self.block_steps(batch)), batch, 4 * self.hidden_size), self.dtype)

        share = 1.0

        def timed(n: int) -> float | None:
            nonlocal share
            started, cpu = time.perf_counter(), time.process_time()
            status = self._execute(plan, x[:n], h, cell.copy(), y[:n], z_buffer[: min(n, len(z_buffer))], inline=True)
            wall = time.perf_counter() - started
            share = plans.cpu_share(time.process_time() - cpu, wall, plan.threads)
            return wall if status == 0 else None

        warm_up = timed(probe)
        if warm_up is None or (budget is not None and warm_up * run_steps / probe > 4 * budget):
            return None  # could not run, or hopeless: not worth the whole trial
        steps = plans.timed_steps(probe, warm_up, most)
        whole = timed(steps)
        if whole is None:
            return None
        estimate = whole * run_steps / steps
        return plans.Starved(estimate) if plan.threads > 1 and share < plans.STARVED_SHARE else estimate

    def _execute(self, plan: Plan, x, h, cell, y, z_buffer, inline: bool = False) -> int:
        """Run ``plan`` (0; -1: its threads could not start); ``inline``: on this thread."""
        loop, blas = self.loop, self.loop.blas_threads
        steps, batch, _ = x.shape
        hidden = self.hidden_size
        block = z_buffer.shape[0]
        sizes = dict(T=steps, B=batch, In=self.input_size, H=hidden)
        weights = dict(w=self.input_weights, bias=self.bias, r=self.recurrent_weights)
        common = dict(h0=h, c=cell, y=y, gate=self.gate_code, state=self.state_code, gemm_ptr=loop.gemm)
        packed = self._use_packed(batch)
        slices = plan.threads if plan.kind == "units" else 1
        work = 0.0 if inline else float(steps) * batch * 4 * hidden * (self.input_size + hidden)
        blas_count = blas.get() if blas is not None else None
        place = plans.thread_placement()  # checked whichever plan runs: a bad value is never silent
        try:
            if plan.kind == "batch":
                z_rows = cpu_loop.aligned_empty((batch, 4 * hidden), self.dtype)
                args = dict(**sizes, x=x, **weights, **common, **self._rp(packed, 1), **self._wp(packed))
                args.update(zbuf=z_rows, nthreads=plan.threads, place=place)
                status = interruptible(lambda stop: loop.parallel(**args, set_threads_ptr=blas.local, stop=stop), work)
            elif plan.kind == "units":
                w, bias, r = self._unit_split_weights(plan.threads)
                args = dict(**sizes, x=x, w=w, bias=bias, r=r, **common, **self._rp(packed, slices, r), zbuf=z_buffer)
                args["block"] = block
                args.update(nthreads=plan.threads, gemv_ptr=loop.gemv, set_threads_ptr=blas.local, place=place)
                status = interruptible(lambda stop: loop.units(**args, stop=stop), work)
            else:
                if blas is not None and blas_count is not None:
                    # single: the BLAS at one thread; serial: at most at the threads a plan may use
                    # (MLSTM_NUM_THREADS, a cgroup's CPU quota), which the BLAS does not know of
                    limit = 1 if plan.kind == "single" else plans.cores()
                    if blas_count > limit:
                        blas.set(limit)
                args = dict(**sizes, x=x, **weights, **common, zbuf=z_buffer, block=block)
                if hidden < GATE_MAJOR_MAX_H and batch >= hidden:  # loops over H too short to vectorise
                    args["state_buf"] = np.empty(2 * hidden * batch, dtype=self.dtype)
                    status = interruptible(lambda stop: loop.gate_major(**args, stop=stop), work)
                else:
                    args.update(self._rp(packed, 1), gemv_ptr=loop.gemv)
                    status = interruptible(lambda stop: loop.serial(**args, stop=stop), work)
        finally:
            if blas_count is not None:
                blas.set(blas_count)
        gate_major = plan.kind in ("serial", "single") and hidden < GATE_MAJOR_MAX_H and batch >= hidden
        self.last_plan = plan.label + (", gate-major" if gate_major else "")
        self.last_kernel = self._kernel_that_ran(plan, packed, gate_major, batch)
        return status

    def _kernel_that_ran(self, plan: Plan, packed: bool, gate_major: bool, batch: int) -> str:
        """What computed the recurrent product, in the C loops' own order: the serial loops
        multiply small products inline whatever was asked; the gate-major loop has no packed path."""
        serial = plan.kind in ("serial", "single")
        if serial and self._small_product(batch):
            return "inline"
        if packed and not gate_major:
            return f"packed {self.loop.packed.isa}"
        return "blas gemv" if batch == 1 and not gate_major and plan.kind != "batch" else "blas gemm"

    def _use_packed(self, batch: int) -> bool:
        """Whether the recurrent product goes to the packed kernel (R packed once per engine,
        see ``_cpu_lstm.c``) rather than the BLAS: MLSTM_CPU_KERNEL=packed|blas forces it; else
        the packed kernel, but for products small enough that the serial loops multiply inline.
        On the AMD EPYC measured (RESULTS.md, one thread) it was faster per step than OpenBLAS's
        gemm/gemv, MKL and BLIS at every benchmark shape but the tiny (B, H) = (32, 3)."""
        isa = os.environ.get("MLSTM_PACKED_ISA", "").strip().lower()
        if isa not in ("", "avx512", "avx2", "plain"):  # (read once per process by the C)
            raise MlstmError(f"MLSTM_PACKED_ISA: expected one of avx512, avx2, plain, found {isa!r}")
        forced = os.environ.get("MLSTM_CPU_KERNEL", "").strip().lower()
        if forced in ("packed", "blas"):
            return forced == "packed"
        if forced not in ("", "auto"):
            raise MlstmError(f"MLSTM_CPU_KERNEL: expected one of auto, packed, blas, found {forced!r}")
        return not self._small_product(batch)

    def _small_product(self, batch: int) -> bool:
        """The serial loops compute products this small inline (the C's ``SMALL_PRODUCT``)."""
        return 4 * self.hidden_size * self.hidden_size * batch <= self.loop.small_product

    def _rp(self, packed: bool, slices: int, r: np.ndarray | None = None) -> dict[str, Any]:
        """The loops' ``rp``/``rp_len`` arguments: R (or the unit split's permuted ``r``) packed in
        ``slices`` slices, made once per slice count; NULL when the BLAS computes the product."""
        if not packed:
            return dict(rp=None, rp_len=0)
        if slices not in self._packed:
            source = self.recurrent_weights if r is None else r
            self._packed[slices] = self.loop.packed.pack(source, slices)
        return dict(rp=self._packed[slices], rp_len=self._packed[slices].size)

    def _wp(self, packed: bool) -> dict[str, Any]:
        """The batch split's ``wp``/``wp_len``: W packed for the packed kernel, made once. Each of
        its threads multiplies W by one step's slice of X at a time, too small a product for a
        BLAS gemm that packs W again on every call. Whole batch-split runs, float32, AMD EPYC of
        benchmarks/RESULTS.md, interleaved A/B, median ratio packed/OpenBLAS: 0.73 at (C, H, B, T)
        = (256, 512, 64, 128), 0.76 at (64, 128, 32, 256), 0.87-0.94 at (40, 64, 256, 1000); the
        same bits there. NULL when the BLAS computes the products (or InputSize is 0)."""
        if not packed or self.input_size == 0:
            return dict(wp=None, wp_len=0)
        if self._packed_w is None:
            self._packed_w = self.loop.packed.pack_matrix(self.input_weights)
        return dict(wp=self._packed_w, wp_len=self._packed_w.size)

    def _unit_split_weights(self, threads: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """W, b, R with each thread's rows together (see :func:`unit_split_rows`), made once per
        thread count: a streamed or batched run calls :meth:`run` many times."""
        if threads not in self._unit_split:
            rows = unit_split_rows(self.hidden_size, threads)
            arrays = (self.input_weights, self.bias, self.recurrent_weights)
            self._unit_split[threads] = tuple(np.ascontiguousarray(a[rows]) for a in arrays)
        return self._unit_split[threads]

    def _scipy_gemm(self, batch: int) -> Any:
        """scipy's BLAS gemm for this class when B * 4H is large enough to pay for it, else None.
        The input projection and the recurrent product ask the same question, so they always
        use the same BLAS (two BLAS copies with two thread pools, alternating, cost up to 2x)."""
        if batch * 4 * self.hidden_size < 4096:
            return None  # tiny problems: np.matmul, and no scipy.linalg import
        from scipy.linalg import blas

        return blas.sgemm if self.dtype == np.float32 else blas.dgemm

    def _input_projection(self, batch: int):
        """``project(x_rows, z_rows)``: z = x W' + b. With the same BLAS as the per-step gemm where
        that one is used (two BLAS copies with two thread pools, alternating, cost up to 2x)."""
        w_t, bias = self.input_weights_t, self.bias
        gemm = self._scipy_gemm(batch)
        if gemm is not None:

            def project(x_rows: np.ndarray, z_rows: np.ndarray) -> None:
                z_rows[...] = bias
                out = gemm(1.0, w_t.T, x_rows.T, beta=1.0, c=z_rows.T, overwrite_c=1)
                if not np.shares_memory(out, z_rows):  # pragma: no cover - a wrapper that copied
                    z_rows[...] = out.T

            return project

        def project(x_rows: np.ndarray, z_rows: np.ndarray) -> None:
            np.matmul(x_rows, w_t, out=z_rows)
            z_rows += bias

        return project

    def _numpy_steps(self, z_block: np.ndarray, h: np.ndarray, cell: np.ndarray, y: np.ndarray) -> np.ndarray:
        steps, batch, _ = z_block.shape
        hidden = self.hidden_size
        scratch = np.empty((batch, 3 * hidden), dtype=self.dtype)
        tmp_g = np.empty((batch, hidden), dtype=self.dtype)
        tmp_c = np.empty((batch, hidden), dtype=self.dtype)
        gate, state = self.gate, self.state
        accumulate = self._recurrent_accumulator(batch, z_block[0], h)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            for t in range(steps):
                z = z_block[t]
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
        return h

    def _recurrent_accumulator(self, batch: int, z0: np.ndarray, h0: np.ndarray):
        """``accumulate(h, z)``: z += h @ R' in place.

        For larger problems this is one BLAS gemm with beta=1 writing straight into z (in
        column-major terms z' = R h' + z', on the same memory), which saves a full pass over z
        per step (about 15% at B=256, H=64). Tiny problems skip importing scipy.linalg.
        """
        r_t = self.recurrent_weights_t
        gemm = self._scipy_gemm(batch)
        if gemm is not None:
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


def prepare(weights, recurrent_weights, bias, gate_activation, state_activation, dtype, compiled=True) -> NumpyLSTM:
    return NumpyLSTM(weights, recurrent_weights, bias, gate_activation, state_activation, dtype, compiled)
