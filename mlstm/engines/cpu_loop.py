"""The boundary with the compiled CPU loop (``_cpu_lstm.c``): loading it, typing its calls, and
checking every argument before C sees it.

The C file exports each loop's prototype as text (``<name>_signature``, from the same macro that
declares the function), and the ctypes signatures are built from that text: they cannot drift
from the C. A call names its arguments; :class:`Entry` checks each array against the prototype
(dtype from the C type, C order, writable unless ``const``) and against the shape it must have
(:data:`ARRAY_SHAPES`, in terms of the call's sizes), each ``int`` against C's range, and every
dimension the loop passes to the BLAS (32-bit ``int`` in the LP64 BLAS that scipy ships)
against :data:`BLAS_INT_MAX`. A violation is an :class:`~mlstm.errors.MlstmError`, never a
wrong pointer or a silent overflow inside the BLAS.
"""

from __future__ import annotations

import ctypes
import glob
import math
import os
import re
import signal
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import MlstmError

BLAS_INT_MAX = 2**31 - 1  # the BLAS's dimensions and leading dimensions are C ints
C_INT = (-(2**31), 2**31 - 1)
BAD_ARGUMENT = -2  # what a loop returns when it refuses its arguments (see _cpu_lstm.c)
ENTRY_POINTS = ("run", "run_gm", "run_parallel", "run_units")

# The shape each array argument must have, from the call's sizes (the C loops index them so).
ARRAY_SHAPES: dict[str, Callable[[dict[str, int]], tuple[int, ...]]] = {
    "x": lambda n: (n["T"], n["B"], n["In"]),
    "w": lambda n: (4 * n["H"], n["In"]),
    "bias": lambda n: (4 * n["H"],),
    "r": lambda n: (4 * n["H"], n["H"]),
    "h0": lambda n: (n["B"], n["H"]),
    "c": lambda n: (n["B"], n["H"]),
    "y": lambda n: (n["T"], n["B"], n["H"]),
    # gate buffer: a block of steps, or (batch split) one step's rows
    "zbuf": lambda n: (n["block"], n["B"], 4 * n["H"]) if "block" in n else (n["B"], 4 * n["H"]),
    "state_buf": lambda n: (2 * n["H"] * n["B"],),
    # R packed for the packed kernel (mlstm_pack_rows_*); the C loop also checks rp_len is what it reads
    "rp": lambda n: (n["rp_len"],),
    # W packed the same way, one slice (batch split; mlstm_pack_*), wp_len checked by the C too
    "wp": lambda n: (n["wp_len"],),
}
OPTIONAL_ARRAYS = ("rp", "wp")  # None passes NULL (with length 0): the loop then calls the BLAS
ADDRESSES = ("gemm_ptr", "gemv_ptr", "set_threads_ptr", "stop")  # raw addresses (or NULL), not arrays
REQUIRED_ADDRESSES = ("gemm_ptr",)
C_TYPES = {"float": np.dtype(np.float32), "double": np.dtype(np.float64)}


CACHE_LINE = 64
ALIGN_FROM_BYTES = 16384


def aligned_empty(shape: int | tuple[int, ...], dtype: Any) -> np.ndarray:
    """``np.empty`` whose data starts on a cache line. NumPy's large arrays start 16 bytes past
    one (seen on Linux x86-64), so every 64-byte vector load of the packed kernel's panels, and of
    rows of z, c and h whose length is a multiple of 64 bytes, straddles two lines. A small gain,
    measured on the AMD EPYC of benchmarks/RESULTS.md (serial loop, float32, C harness, the two
    placements interleaved, median of 31): 53.6 against 55.8 µs per step at B = 32, H = 128;
    140.5 against 144.1 at B = 256, H = 64; none at B = 64, H = 512."""
    dtype = np.dtype(dtype)
    count = math.prod(shape) if isinstance(shape, tuple) else int(shape)
    if count * dtype.itemsize < ALIGN_FROM_BYTES:
        return np.empty(shape, dtype)  # a few lines: not worth the microseconds of the view
    raw = np.empty(count * dtype.itemsize + CACHE_LINE, dtype=np.uint8)
    start = -raw.ctypes.data % CACHE_LINE
    return raw[start : start + count * dtype.itemsize].view(dtype).reshape(shape)


def check_blas_dims(batch: int, input_size: int, hidden: int, block: int = 1) -> None:
    """MlstmError unless every dimension the loops pass to the BLAS fits its 32-bit int: 4H (rows
    of the gate products), InputSize, and block * B (columns of one input-projection GEMM)."""
    limit = BLAS_INT_MAX
    for what, value in (
        ("4 x NumHiddenUnits", 4 * hidden),
        ("InputSize", input_size),
        ("the batch size", batch),
        ("steps x batch size in one input-projection block", block * batch),
    ):
        if value > limit:
            raise MlstmError(
                f"{what} is {value}, past the BLAS's 32-bit dimension limit ({limit}); "
                "split the batch or the input into smaller problems"
            )


class Param:
    """One parameter of an exported C function, from its prototype text."""

    def __init__(self, text: str):
        match = re.fullmatch(r"\s*(.*?)\s*\b(\w+)\s*", text)
        if not match:
            raise ValueError(f"cannot read the parameter {text!r}")
        self.ctype, self.name = " ".join(match.group(1).split()), match.group(2)
        self.pointer = "*" in self.ctype
        self.const = self.ctype.startswith("const ")
        base = self.ctype.replace("const", "").replace("*", "").strip()
        self.dtype = C_TYPES.get(base) if self.pointer else None
        if self.pointer:
            self.ctypes_type: Any = ctypes.c_void_p
        elif base == "long":
            self.ctypes_type = ctypes.c_long
        elif base == "int":
            self.ctypes_type = ctypes.c_int
        else:
            raise ValueError(f"no ctypes type for {self.ctype!r}")


def parse_signature(text: str) -> tuple[str, str, list[Param]]:
    """``int name(long T, const float *x, ...)`` -> ("int", "name", params)."""
    match = re.fullmatch(r"\s*(\w+)\s+(\w+)\s*\((.*)\)\s*", text, re.S)
    if not match:
        raise ValueError(f"cannot read the prototype {text!r}")
    return match.group(1), match.group(2), [Param(p) for p in match.group(3).split(",")]


class Entry:
    """One exported loop, called with named arguments that are checked first (see the module)."""

    def __init__(self, lib: Any, name: str):
        prototype = ctypes.c_char_p.in_dll(lib, f"{name}_signature").value
        if prototype is None:
            raise ValueError(f"{name}_signature is empty")
        restype, parsed_name, self.params = parse_signature(prototype.decode())
        if parsed_name != name or restype != "int":
            raise ValueError(f"{name}_signature declares {restype} {parsed_name}")
        self.name = name
        self.function = getattr(lib, name)
        self.function.restype = ctypes.c_int
        self.function.argtypes = [p.ctypes_type for p in self.params]
        self._names = {p.name: None for p in self.params}.keys()  # compared with a call's keys
        self._sizes = [p.name for p in self.params if not p.pointer]

    def check(self, args: dict[str, Any]) -> list[Any]:
        """The C arguments, in order, once every one passed (MlstmError otherwise)."""
        if args.keys() != self._names:
            names = set(self._names)
            missing, extra = sorted(names - set(args)), sorted(set(args) - names)
            raise MlstmError(f"compiled loop {self.name}: missing arguments {missing}, unknown {extra}")
        sizes = {name: int(args[name]) for name in self._sizes}
        for name, value in sizes.items():
            if not C_INT[0] <= value <= C_INT[1]:
                raise MlstmError(f"compiled loop {self.name}: {name} = {value} does not fit a C int")
        if sizes.get("block", 1) < 1 or min(sizes["T"], sizes["B"], sizes["In"], sizes["H"]) < 0:
            raise MlstmError(f"compiled loop {self.name}: sizes {sizes} out of range")
        check_blas_dims(sizes["B"], sizes["In"], sizes["H"], sizes.get("block", 1))
        values = []
        for param in self.params:
            value = args[param.name]
            if not param.pointer:
                values.append(sizes[param.name])
            elif param.name in ADDRESSES:
                if value is not None and not isinstance(value, int):
                    raise MlstmError(f"compiled loop {self.name}: {param.name} must be an address, found {value!r}")
                if param.name in REQUIRED_ADDRESSES and not value:
                    raise MlstmError(f"compiled loop {self.name}: {param.name} is NULL")
                values.append(value)
            elif value is None and param.name in OPTIONAL_ARRAYS:
                if sizes.get(f"{param.name}_len", 0) != 0:
                    raise MlstmError(f"compiled loop {self.name}: {param.name} is NULL with a nonzero length")
                values.append(None)
            else:
                values.append(self._checked_array(param, value, ARRAY_SHAPES[param.name](sizes)))
        return values

    def _checked_array(self, param: Param, value: Any, shape: tuple[int, ...]) -> int:
        # The messages are built only on failure: formatting a dtype costs microseconds, and a
        # small run's nine arrays are checked on every call.
        if (
            type(value) is np.ndarray
            and value.dtype == param.dtype
            and value.shape == shape
            and value.flags.c_contiguous
            and (param.const or value.flags.writeable)
        ):
            return value.ctypes.data
        where = f"compiled loop {self.name}: argument {param.name}"
        expected = f"a C-contiguous{'' if param.const else ' writable'} {param.dtype} array of shape {shape}"
        if not isinstance(value, np.ndarray):
            raise MlstmError(f"{where}: expected {expected}, found {type(value).__name__}")
        ok = value.dtype == param.dtype and value.shape == shape and value.flags.c_contiguous
        if ok and (param.const or value.flags.writeable):
            return value.ctypes.data  # an ndarray subclass that passes
        found = (
            f"{'' if value.flags.c_contiguous else 'non-contiguous '}"
            f"{'' if value.flags.writeable else 'read-only '}{value.dtype} array of shape {value.shape}"
        )
        raise MlstmError(f"{where}: expected {expected}, found {found}")

    def __call__(self, **args: Any) -> int:
        status = int(self.function(*self.check(args)))
        if status == BAD_ARGUMENT:  # pragma: no cover - check() refuses first
            raise MlstmError(f"compiled loop {self.name} refused its sizes (a dimension past the BLAS's int)")
        return status


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
        self.config = self.corename = ""
        for attr in ("config", "corename"):
            function = getattr(lib, f"{prefix}openblas_get_{attr}", None)
            if function is not None:
                function.restype = ctypes.c_char_p
                setattr(self, attr, (function() or b"").decode(errors="replace"))

    def describe(self) -> str:
        """``OpenBLAS 0.3.30 (SkylakeX kernels, 2 threads)``, for ``-v``."""
        if not hasattr(self, "_described"):
            version = next((w for w in self.config.split() if w[:1].isdigit()), "")
            kernels = f"{self.corename} kernels, " if self.corename else ""
            self._described = f"OpenBLAS {version} ({kernels}".replace("  ", " ")
        return f"{self._described}{self.get()} threads)"


def _blas_threads() -> BlasThreads | None:
    """The thread controls of scipy's OpenBLAS, or None (another BLAS, or an older OpenBLAS)."""
    import scipy

    root = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
    for path in sorted(glob.glob(os.path.join(root, "scipy.libs", "libscipy_openblas*.so*"))):
        try:
            return BlasThreads(ctypes.CDLL(path))
        except (OSError, AttributeError):
            continue
    return None


class CompiledLoop:
    """The C entry points for one class (``run``, ``run_gm``, ``run_parallel``, ``run_units``,
    each an :class:`Entry`), with the BLAS gemm/gemv they call and the BLAS's thread controls."""

    def __init__(self, entries: dict[str, Entry], gemm: int, gemv: int, blas_threads: BlasThreads | None):
        self.serial, self.gate_major = entries["run"], entries["run_gm"]
        self.parallel, self.units = entries["run_parallel"], entries["run_units"]
        self.gemm, self.gemv, self.blas_threads = gemm, gemv, blas_threads
        self.max_unit_threads = 1  # set from the library by the loader
        self.small_product = 0  # 4H * H * B up to which the serial loops multiply inline: the loader
        self.packed: PackedKernel | None = None  # set by the loader

    def blas_description(self) -> str:
        return self.blas_threads.describe() if self.blas_threads else "scipy's BLAS (no OpenBLAS thread controls)"


class PackedKernel:
    """The packed recurrent-product kernel of one class (see ``_cpu_lstm.c``): packing R for the
    loops' ``rp`` argument, and which instruction set the kernel uses on this CPU."""

    def __init__(self, lib: Any, suffix: str, dtype: np.dtype):
        self.dtype = dtype
        self._size = getattr(lib, f"mlstm_packed_rows_size_{suffix}")
        self._size.restype, self._size.argtypes = ctypes.c_long, [ctypes.c_long, ctypes.c_int]
        self._pack = getattr(lib, f"mlstm_pack_rows_{suffix}")
        self._pack.restype = None
        self._pack.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_int, ctypes.c_void_p]
        self._matrix_size = getattr(lib, f"mlstm_packed_size_{suffix}")
        self._matrix_size.restype, self._matrix_size.argtypes = ctypes.c_long, [ctypes.c_long, ctypes.c_long]
        self._pack_matrix = getattr(lib, f"mlstm_pack_{suffix}")
        self._pack_matrix.restype = None
        self._pack_matrix.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
        isa = getattr(lib, f"mlstm_packed_isa_{suffix}")
        isa.restype = ctypes.c_char_p
        self.isa = isa().decode()

    def pack(self, r: np.ndarray, slices: int) -> np.ndarray:
        """R (4H, H) of this class, C order, packed in ``slices`` slices as the unit split cuts it
        (1 for the other loops)."""
        hidden = r.shape[1]
        if r.dtype != self.dtype or r.shape != (4 * hidden, hidden) or not r.flags.c_contiguous or slices < 1:
            raise MlstmError(
                f"cannot pack R: expected a C-contiguous {self.dtype} (4H, H) array, found {r.dtype} {r.shape}"
            )
        packed = aligned_empty(self._size(hidden, slices), self.dtype)
        self._pack(r.ctypes.data, hidden, slices, packed.ctypes.data)
        return packed

    def pack_matrix(self, a: np.ndarray) -> np.ndarray:
        """A (n, k) of this class, C order, packed whole (W for the batch split's ``wp``)."""
        if a.dtype != self.dtype or a.ndim != 2 or not a.flags.c_contiguous:
            raise MlstmError(f"cannot pack: expected a C-contiguous {self.dtype} matrix, found {a.dtype} {a.shape}")
        packed = aligned_empty(self._matrix_size(*a.shape), self.dtype)
        self._pack_matrix(a.ctypes.data, a.shape[0], a.shape[1], packed.ctypes.data)
        return packed


def _bind(path: str, cython_blas: Any) -> dict[np.dtype, CompiledLoop]:
    """The C entry points of the extension at ``path``, typed from their prototypes, with scipy's
    BLAS gemm/gemv."""
    lib = ctypes.CDLL(path)
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
    blas_threads = _blas_threads()
    max_unit_threads = ctypes.c_int.in_dll(lib, "mlstm_max_unit_threads").value
    small_product = ctypes.c_long.in_dll(lib, "mlstm_small_product").value

    def blas_function(name: str) -> int:
        capsule = cython_blas.__pyx_capi__[name]
        return api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))

    loops = {}
    for dtype, suffix, prefix in ((np.float32, "f32", "s"), (np.float64, "f64", "d")):
        entries = {e: Entry(lib, f"mlstm_{e}_{suffix}") for e in ENTRY_POINTS}
        loop = CompiledLoop(entries, blas_function(prefix + "gemm"), blas_function(prefix + "gemv"), blas_threads)
        loop.max_unit_threads = max_unit_threads
        loop.small_product = small_product
        loop.packed = PackedKernel(lib, suffix, np.dtype(dtype))
        loops[np.dtype(dtype)] = loop
    return loops


def extension_files() -> list[str]:
    return sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "_cpu_lstm*")))


def _not_importable(exc: BaseException) -> str:
    """Why ``import _cpu_lstm`` failed, in words a user can act on."""
    from importlib.machinery import EXTENSION_SUFFIXES

    built = [f for f in extension_files() if not f.endswith(".c")]
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
def load_compiled_loop() -> tuple[dict[np.dtype, CompiledLoop] | None, str | None]:
    """The compiled loops by dtype, or None and why not (see :func:`compiled_loop`)."""
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
        except BaseException as exc:  # an MlstmError from the boundary checks
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
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return int(outcome[0])
