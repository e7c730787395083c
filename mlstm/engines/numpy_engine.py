"""NumPy engine: the LSTM recurrence on the CPU over canonical arrays (docs/BEHAVIOUR.md §1).

Time is processed in blocks of steps that share one preallocated gate buffer z (about 4 MB),
so memory traffic and page faults do not grow with T:

    z[block] = x[block] W' + b        one GEMM per block
    per step: z_t += h_{t-1} R'       one BLAS gemm with beta=1, in place
              gates, states, Y[t]     one fused pass

Both GEMMs go to the BLAS scipy ships (one thread pool). The whole loop runs in compiled C
(``_cpu_lstm.c``, an optional extension built at install) when it is available, serially or
split across threads by observations or by hidden units (:func:`cpu_plan`); otherwise the NumPy
loop below runs. Both keep float32 in float32. MLSTM_PURE_NUMPY=1 forces the NumPy loop.

NumPy loop: gates stored [i, f, o | g] so one call covers the three gate activations; for the
logistic sigmoid the gate rows of W, R and b are negated once up front, so z holds -x and
σ(x) = 1/(1+exp(z)) needs no negation per step (negation is exact: no bit of the result changes).
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

name = "numpy"
BLOCK_BYTES = 4 << 20
GATE_MAJOR_MAX_H = 16  # below this H (and B >= H) the gates are laid out gate-major, loops run over B
UNIT_SPLIT_MIN_H = 64  # at least 32 hidden units per thread for the unit split
PARALLEL_MIN_WORK = 5_000_000  # multiply-adds in a run below which no threads are started
PARALLEL_MIN_CELLS = 4096  # B * H below this: one thread (thread start-up would cost more)
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


# Multiply-adds below which a compiled run is called inline: it ends within milliseconds anyway.
INLINE_WORK = 2e7


def interruptible(call: Callable[[int | None], int], work: float) -> int:
    """``call(stop)``, a compiled loop, such that SIGINT/SIGTERM stop it within a step.

    A thread inside a C call cannot run Python's signal handlers, so a long run started from the
    main thread goes to a worker thread while the main thread waits (its waits are interrupted
    by signals). When the handler raises (KeyboardInterrupt, or the CLI's Interrupted), the main
    thread sets the loop's stop flag, which the C loops check once per step, waits for the
    worker to return, and lets the exception go on: the unfinished result is never used.
    Short runs, and calls from other threads (which receive no signals), run inline.
    """
    if work < INLINE_WORK or threading.current_thread() is not threading.main_thread():
        return call(None)
    stop = ctypes.c_int(0)
    outcome: list[Any] = []
    done = threading.Event()

    def target() -> None:
        try:
            outcome.append(call(ctypes.addressof(stop)))
        except BaseException as exc:  # pragma: no cover - ctypes calls do not raise
            outcome.append(exc)
        finally:
            done.set()

    # Waiting on an Event, not Thread.join: Python 3.11's join marks a thread finished when a
    # signal interrupts it, while the loop still runs on buffers about to be freed.
    worker = threading.Thread(target=target, name="mlstm-compiled-loop", daemon=True)
    try:
        # Started with SIGINT/SIGTERM blocked: the worker inherits the mask (signals go to the main
        # thread only), and Thread.start's own wait cannot be cut short while the loop runs.
        masks = hasattr(signal, "pthread_sigmask")
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}) if masks else None
        try:
            worker.start()
        finally:
            if masks:
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        while not done.wait(0.05):
            pass
    except BaseException:
        stop.value = 1  # first: no check for signals comes before this store
        if worker.ident is None:
            raise  # the worker never started: no loop to wait for
        while True:  # the loop must end before its buffers go: wait, whatever else arrives
            try:
                if done.wait(0.05):
                    break
            except BaseException:  # noqa: S112 - a second Ctrl-C while the loop winds down
                continue
        raise
    if isinstance(outcome[0], BaseException):  # pragma: no cover
        raise outcome[0]
    return int(outcome[0])


def compiled_loop() -> Any:
    """The compiled step loop with BLAS gemm pointers, or None (not built, or MLSTM_PURE_NUMPY=1)."""
    return _load_compiled_loop()[0]


def compiled_loop_unavailable_reason() -> str | None:
    """None if the compiled loop is what runs, else why the NumPy loop runs instead (for -v and
    ``mlstm doctor``): MLSTM_PURE_NUMPY, the extension not built, or its import error."""
    return _load_compiled_loop()[1]


def _extension_files() -> list[str]:
    import glob

    return sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_cpu_lstm*")))


def _not_importable(exc: BaseException) -> str:
    """Why ``import _cpu_lstm`` failed, in words a user can act on."""
    from importlib.machinery import EXTENSION_SUFFIXES

    built = [f for f in _extension_files() if not f.endswith(".c")]
    matching = [f for f in built if f.endswith(tuple(EXTENSION_SUFFIXES))]
    if not built:
        return (
            "the compiled loop was not built at install, which needs a C compiler: reinstall with one, "
            "or run 'python setup.py build_ext --inplace' in a source checkout"
        )
    if not matching:
        names = ", ".join(os.path.basename(f) for f in built)
        return f"the compiled loop was built for another Python ({names}; this one loads {EXTENSION_SUFFIXES[0]})"
    return f"the compiled loop does not import: {type(exc).__name__}: {exc}"


@lru_cache(maxsize=1)
def _load_compiled_loop() -> tuple[dict[np.dtype, CompiledLoop] | None, str | None]:
    if os.environ.get("MLSTM_PURE_NUMPY", "") not in ("", "0"):
        return None, f"MLSTM_PURE_NUMPY={os.environ['MLSTM_PURE_NUMPY']} forces the NumPy loop"
    try:
        from scipy.linalg import cython_blas
    except ImportError as exc:
        return None, f"scipy.linalg.cython_blas does not import: {type(exc).__name__}: {exc}"
    try:
        from . import _cpu_lstm
    except ImportError as exc:
        return None, _not_importable(exc)
    try:
        return _bind(_cpu_lstm.__file__, cython_blas), None
    except (OSError, AttributeError, KeyError, ValueError) as exc:  # a stale build missing an entry point
        return None, f"the compiled loop is out of date or damaged, rebuild it: {type(exc).__name__}: {exc}"


def _bind(path: str, cython_blas: Any) -> dict[np.dtype, CompiledLoop]:
    """The C entry points of the extension at ``path``, typed, with scipy's BLAS gemm/gemv."""
    lib = ctypes.CDLL(path)
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    loops = {}
    blas_threads = _blas_threads()

    def blas_function(name: str) -> int:
        capsule = cython_blas.__pyx_capi__[name]
        return api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))

    for dtype, suffix, prefix in ((np.float32, "f32", "s"), (np.float64, "f64", "d")):
        gemm, gemv = blas_function(prefix + "gemm"), blas_function(prefix + "gemv")
        serial = getattr(lib, f"mlstm_run_{suffix}")
        serial.restype = ctypes.c_int
        serial.argtypes = [ctypes.c_long] * 4 + [ctypes.c_void_p] * 8 + [ctypes.c_long, ctypes.c_int, ctypes.c_int]
        serial.argtypes += [ctypes.c_void_p] * 3  # gemm, gemv, stop flag
        parallel = getattr(lib, f"mlstm_run_parallel_{suffix}")
        parallel.restype = ctypes.c_int
        parallel.argtypes = [ctypes.c_long] * 4 + [ctypes.c_void_p] * 8 + [ctypes.c_int] * 3 + [ctypes.c_void_p] * 3
        gate_major = getattr(lib, f"mlstm_run_gm_{suffix}")
        gate_major.restype = ctypes.c_int
        gate_major.argtypes = (
            [ctypes.c_long] * 4
            + [ctypes.c_void_p] * 8
            + [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
        )
        units = getattr(lib, f"mlstm_run_units_{suffix}")
        units.restype = ctypes.c_int
        units.argtypes = (
            [ctypes.c_long] * 4 + [ctypes.c_void_p] * 8 + [ctypes.c_long] + [ctypes.c_int] * 3 + [ctypes.c_void_p] * 3
        )
        loops[np.dtype(dtype)] = CompiledLoop(serial, parallel, gate_major, units, gemm, gemv, blas_threads)
        loops[np.dtype(dtype)].max_unit_threads = ctypes.c_int.in_dll(lib, "mlstm_max_unit_threads").value
    return loops


class CompiledLoop:
    """The C entry points for one class, with the BLAS gemm they call."""

    def __init__(
        self,
        serial: Any,
        parallel: Any,
        gate_major: Any,
        units: Any,
        gemm: int,
        gemv: int,
        blas_threads: BlasThreads | None,
    ):
        self.serial, self.parallel, self.gate_major, self.units = serial, parallel, gate_major, units
        self.gemm, self.gemv, self.blas_threads = gemm, gemv, blas_threads
        self.max_unit_threads = 1  # set from the library by the loader


class BlasThreads:
    """Thread controls of the OpenBLAS that scipy ships: ``local`` (openblas_set_num_threads_local,
    OpenBLAS >= 0.3.27) for the workers, and the global getter/setter to put the count back, since
    in the builds seen here the "local" setting also changes what every later call uses."""

    def __init__(self, lib: Any):
        self.local = ctypes.cast(lib.openblas_set_num_threads_local, ctypes.c_void_p).value
        prefix = "scipy_" if hasattr(lib, "scipy_openblas_get_num_threads") else ""
        self.get = getattr(lib, f"{prefix}openblas_get_num_threads")
        self.get.restype = ctypes.c_int
        self.set = getattr(lib, f"{prefix}openblas_set_num_threads")
        self.set.argtypes = [ctypes.c_int]


def _blas_threads() -> BlasThreads | None:
    """The thread controls of scipy's OpenBLAS, or None (another BLAS, or an older OpenBLAS)."""
    import glob

    import scipy

    root = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
    for path in sorted(glob.glob(os.path.join(root, "scipy.libs", "libscipy_openblas*.so*"))):
        try:
            return BlasThreads(ctypes.CDLL(path))
        except (OSError, AttributeError):
            continue
    return None


def worker_threads(batch: int, input_size: int, hidden: int, dtype: np.dtype, cores: int) -> int:
    """Threads for the batch split (1: no batch split).

    The split pays where the elementwise work (single-threaded in the serial loop) is a large
    share: per cell, the gate arithmetic against 8 (InputSize + H) GEMM flops. Measured on the
    2-core benchmark machine (benchmarks/RESULTS.md): a win at (C, H, B) = (40, 64, 256) in both
    classes and at (64, 128, 32) in double; a loss at (256, 512, 64), where the GEMMs dominate,
    and for B * H under 4096.
    """
    gemm_heavy = input_size + hidden > (160 if dtype == np.float32 else 320)
    if cores < 2 or batch < 16 or batch * hidden < PARALLEL_MIN_CELLS or gemm_heavy:
        return 1
    return min(cores, batch // 8)


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_plan(steps: int, batch: int, input_size: int, hidden: int, dtype: np.dtype) -> tuple[str, int]:
    """How to use the cores: ('batch' | 'units' | 'serial', threads).

    Measured on the 2-core benchmark machine (benchmarks/RESULTS.md, median of 5): splitting the
    hidden units across threads (each keeps its slice of R in its own cache; a spin barrier per
    step) won at B = 1, H = 256 (f32 62 -> 29 ms, f64 171 -> 89 ms), at (64, 128, 32) and at
    (256, 512, 64) in f64, and tied at (256, 512, 64) in f32; splitting the batch won at
    (40, 64, 256) (f32 141 -> 95 ms, units 114). Problems under about 5 million multiply-adds
    stay serial: starting threads would cost more. MLSTM_NUM_THREADS caps the threads;
    MLSTM_CPU_PLAN forces a plan (tests, tuning).
    """
    forced = os.environ.get("MLSTM_CPU_PLAN", "")
    cores = int(os.environ.get("MLSTM_NUM_THREADS") or _cores())
    if forced == "units":
        return "units", max(2, min(cores, hidden))
    if forced == "batch":
        return "batch", max(2, min(cores, batch))
    if forced == "serial" or cores < 2 or steps * batch * 4 * hidden * (input_size + hidden) < PARALLEL_MIN_WORK:
        return "serial", 1
    threads = worker_threads(batch, input_size, hidden, dtype, cores)
    if threads > 1:
        return "batch", threads
    if hidden >= UNIT_SPLIT_MIN_H:
        return "units", min(cores, hidden // 32)
    return "serial", 1


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
        self.last_plan = "serial"
        self.gate_code, self.state_code = GATE_CODES[gate_activation], STATE_CODES[state_activation]
        if self.loop is not None:  # C keeps MATLAB's gate order and signs
            rows = np.arange(4 * hidden)
            sign = np.ones((4 * hidden, 1), dtype=self.dtype)
        else:
            rows = _gate_rows(hidden)
            sign = np.ones((4 * hidden, 1), dtype=self.dtype)
            if gate_activation == "sigmoid":
                sign[: 3 * hidden] = -1
        self.gate = GATE_FUNCTIONS[gate_activation]
        self.state = STATE_FUNCTIONS[state_activation]
        # Transposed so the GEMMs are (rows, K) @ (K, 4H) on C-contiguous operands.
        self.input_weights_t = np.ascontiguousarray((weights[rows].astype(self.dtype) * sign).T)
        self.recurrent_weights_t = np.ascontiguousarray((recurrent_weights[rows].astype(self.dtype) * sign).T)
        self.recurrent_weights = np.ascontiguousarray(self.recurrent_weights_t.T)  # (4H, H), for C
        self.input_weights = np.ascontiguousarray(self.input_weights_t.T)  # (4H, In), for C
        self.bias = np.ascontiguousarray(bias[rows].astype(self.dtype) * sign[:, 0])
        self._unit_split: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.plan_steps: int | None = None  # set by a run split into blocks: the plan is the whole run's

    def block_steps(self, batch: int) -> int:
        """Steps per block of the input projection (one GEMM each, about BLOCK_BYTES of X and
        gates). Runs split into calls whose lengths, all but the last, are multiples of this
        (and with ``plan_steps`` set to the whole length) give the same bits as one call: the
        same GEMMs on the same data, whatever the BLAS."""
        per_step = batch * (self.input_size + 4 * self.hidden_size) * self.dtype.itemsize
        return max(1, BLOCK_BYTES // max(1, per_step))

    def empty_output(self, steps: int, batch: int, like: Any = None) -> np.ndarray:
        return np.empty((steps, batch, self.hidden_size), dtype=self.dtype)

    @property
    def detail(self) -> str:
        """Which loop ran (for ``-v``): ``loop=compiled (plan)``, or ``loop=numpy (why not compiled)``."""
        if self.loop is not None:
            return f"loop=compiled ({self.last_plan})"
        return f"loop=numpy ({self.numpy_reason})"

    def run(
        self, x: np.ndarray, hidden_state: np.ndarray, cell_state: np.ndarray, y: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """x (T, B, InputSize) -> Y (T, B, H), final hidden and cell states (B, H).

        The inputs are not modified. ``y`` may be a preallocated (T, B, H) buffer.
        """
        steps, batch, _ = x.shape
        hidden = self.hidden_size
        if y is None:
            y = self.empty_output(steps, batch)
        cell = np.array(cell_state, dtype=self.dtype, copy=True, order="C")
        h = np.ascontiguousarray(hidden_state, dtype=self.dtype)
        if steps == 0:
            return y, h.copy(), cell
        x = np.ascontiguousarray(x, dtype=self.dtype)
        block = min(steps, self.block_steps(batch))
        z_buffer = np.empty((block, batch, 4 * hidden), dtype=self.dtype)
        if self.loop is not None:
            return self._run_compiled(x, h, cell, cell_state, y, z_buffer, block)
        input_gemm = self._input_projection(batch)
        for start in range(0, steps, block):
            stop = min(start + block, steps)
            z = z_buffer[: stop - start]
            with np.errstate(over="ignore", invalid="ignore", under="ignore"):  # NaN/Inf in X are data
                input_gemm(x[start:stop].reshape(-1, self.input_size), z.reshape(-1, 4 * hidden))
            h = self._numpy_steps(z, h, cell, y[start:stop])
        return y, h.copy(), cell

    def _run_compiled(self, x, h, cell, cell_state, y, z_buffer, block):
        """The C loops: batch split or unit split across threads, gate-major for small H, or serial."""
        loop = self.loop
        steps, batch, _ = x.shape
        hidden = self.hidden_size
        weights = (self.input_weights.ctypes.data, self.bias.ctypes.data, self.recurrent_weights.ctypes.data)
        states = (h.ctypes.data, cell.ctypes.data, y.ctypes.data)
        shape = (steps, batch, self.input_size, hidden, x.ctypes.data)
        codes = (self.gate_code, self.state_code, loop.gemm)
        blas = loop.blas_threads
        plan_steps = self.plan_steps or steps  # the whole run's length: every block of it runs the same plan
        plan, threads = cpu_plan(plan_steps, batch, self.input_size, hidden, self.dtype) if blas else ("serial", 1)
        if plan == "units":  # the C side's limit, so the rows are permuted for the count that runs
            threads = min(threads, loop.max_unit_threads, hidden)
        work = float(steps) * batch * 4 * hidden * (self.input_size + hidden)
        if plan in ("batch", "units"):
            blas_count = blas.get()
            try:
                if plan == "batch":
                    z_rows = np.empty((batch, 4 * hidden), dtype=self.dtype)
                    status = interruptible(
                        lambda stop: loop.parallel(
                            *shape, *weights, *states, z_rows.ctypes.data, threads, *codes, blas.local, stop
                        ),
                        work,
                    )
                else:
                    split = self._unit_split_weights(threads)
                    status = interruptible(
                        lambda stop: loop.units(
                            *shape,
                            *(a.ctypes.data for a in split),
                            *states,
                            z_buffer.ctypes.data,
                            block,
                            threads,
                            *codes,
                            blas.local,
                            stop,
                        ),
                        work,
                    )
            finally:
                blas.set(blas_count)
            if status == 0:
                self.last_plan = f"{plan} split, {threads} threads"
                return y, y[-1].copy(), cell
            cell[...] = cell_state  # threads could not start: run serially from the start
        if hidden < GATE_MAJOR_MAX_H and batch >= hidden:  # loops over H too short to vectorise
            self.last_plan = "serial, gate-major"
            scratch = np.empty(2 * hidden * batch, dtype=self.dtype)
            interruptible(
                lambda stop: loop.gate_major(
                    *shape, *weights, *states, z_buffer.ctypes.data, block, scratch.ctypes.data, *codes, stop
                ),
                work,
            )
        else:
            self.last_plan = "serial"
            interruptible(
                lambda stop: loop.serial(
                    *shape, *weights, *states, z_buffer.ctypes.data, block, *codes, loop.gemv, stop
                ),
                work,
            )
        return y, y[-1].copy(), cell

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
