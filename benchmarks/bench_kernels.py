"""Recurrent-product kernels: the per-step product z (B x 4H) += h (B x H) . R' of the LSTM time
loop, through each candidate kernel, in one run on this machine; and whole LSTM runs of mlstm,
ONNX Runtime and oneDNN's LSTM primitive.

    pip install '.[kernel-peers]' # blis, mkl, onednn-cpu-gomp (+ its headers), onnxruntime
    python setup.py build_ext --inplace
    python benchmarks/bench_kernels.py [--quick] [--repeats 5] [--markdown out.md] [--json out.json]

Part 1, kernels (float32 and float64, R (4H x H) row-major, h (B x H), z (B x 4H) row-major),
for (B, H) of the five benchmark shapes of bench_cpu.py plus one large GEMM (B = 1024, H = 256)
as the machine's GEMM ceiling. Every kernel is called from a loop in C (kernel_driver.c,
compiled here with cc into a temporary folder and loaded with ctypes; the kernels come in as
function pointers), so no Python runs between steps. The candidates, each skipped with the
reason when it is not there:

- OpenBLAS: scipy's ?gemm (the pointer mlstm's compiled loop uses, from
  scipy.linalg.cython_blas), called as the loop calls it: gemm("T", "N", 4H, B, H, 1, R, H, h,
  H, 1, z, 4H); at B = 1 also ?gemv("T", H, 4H, 1, R, H, h, 1, 1, z, 1), which the loop uses there.
- MKL ?gemm: sgemm_/dgemm_ (Fortran interface, same arguments) from libmkl_rt of the mkl wheel.
- MKL packed: cblas_?gemm_pack(RowMajor, BMatrix, Trans, B, 4H, H, 1, R, H, packed) once per
  shape (its time is reported apart), then per step cblas_?gemm_compute(RowMajor, NoTrans,
  Packed, B, 4H, H, h, H, packed, H, 1, z, 4H).
- BLIS: bli_?gemm (BLIS's typed API, exported by cython-blis's blis/cy*.so, found with dlsym),
  general strides: c = z (rs 4H, cs 1) += a = h (rs H, cs 1) . b = R' (rs 1, cs H).
- mlstm packed: mlstm_pack_?(R, 4H, H, packed) once, then mlstm_packed_gemm_?(packed, 4H, H, h,
  B, z, 4H) per step, when mlstm/engines/_cpu_lstm*.so exports them.
- inline loop: the plain C loop mlstm's row-major loop uses where 4H * H * B <= 8192, at those
  shapes only (the gate-major loop's inline product, over B, is not timed).

Every kernel's result is checked against NumPy first (one step from z = 0). Single-threaded,
then with 2 threads for the libraries that thread (OpenBLAS, MKL; the BLIS build of cython-blis
has no threading). Interleaved: each round times every candidate once, a sample is about
--sample-ms of back-to-back steps, the table shows the median µs per step over --repeats rounds
and GFLOP/s = 2 B H 4H per step / time. With 2 threads a pause (--settle) comes before each
change of library, so that the previous library's spinning threads are asleep (OpenBLAS's spin
~0.1 s, MKL's OpenMP threads 0.2 s: KMP_BLOCKTIME).

Part 2, whole LSTM runs, float32 (oneDNN's and ONNX Runtime's LSTMs have no float64), the
five shapes (C, H, B, T), zero initial state, sigmoid/tanh, at 1 and 2 threads, interleaved the
same way (a run under --sample-ms repeated within its sample): mlstm.api.compute (its
automatic plan, MLSTM_NUM_THREADS = threads; its first run measures the plans and is not
counted), ONNX Runtime's LSTM (the model `mlstm convert --to onnx` writes, intra_op threads)
and oneDNN's LSTM forward-inference primitive (dnnl_lstm.c, compiled here against the installed
oneDNN and run as a child process with OMP_NUM_THREADS = threads; weights reordered once into
the primitive's layout, reported apart). oneDNN's y is checked against mlstm's.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from bench_cpu import SHAPES, load, machine, problem, wait_for_idle  # noqa: E402

from mlstm.api import compute  # noqa: E402
from mlstm.engines import cpu_loop, numpy_engine  # noqa: E402
from mlstm.errors import MlstmError  # noqa: E402
from mlstm.options import parse_options  # noqa: E402

CEILING = (1024, 256)  # (B, H) of the large GEMM that shows each kernel's ceiling
CFLAGS = ["-O3", "-fno-math-errno", "-fno-trapping-math", "-std=c99", "-fPIC"]
DNNL_DISTS = (  # (runtime, headers) wheels, in the order tried; "onednn" is the SYCL build
    ("onednn-cpu-gomp", "onednn-devel-cpu-gomp"),
    ("onednn-cpu-iomp", "onednn-devel-cpu-iomp"),
    ("onednn-cpu-tbb", "onednn-devel-cpu-tbb"),
    ("onednn", "onednn-devel"),
)
SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}


def dist_file(dist: str, endings: tuple[str, ...]) -> str | None:
    """The installed file of ``dist`` whose path ends with one of ``endings`` (None if none)."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).endswith(endings):
            path = str(f.locate())
            if os.path.exists(path):
                return os.path.realpath(path)
    return None


def dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def address(lib: Any, name: str) -> int:
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value or 0


def aligned(n: int, dtype: np.dtype, align: int = 64) -> np.ndarray:
    """A zeroed 1-D array of n elements whose data starts on an ``align``-byte boundary."""
    raw = np.zeros(n * dtype.itemsize + align, np.uint8)
    start = -raw.ctypes.data % align
    return raw[start : start + n * dtype.itemsize].view(dtype)


def compile_c(source: str, out: str, extra: list[str]) -> None:
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise RuntimeError("no C compiler (cc) to build " + os.path.basename(source))
    done = subprocess.run([cc, *CFLAGS, source, "-o", out, *extra], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{cc} {os.path.basename(source)} failed:\n{done.stderr.strip()}")


# ---------------------------------------------------------------- part 1: the kernels


@dataclass
class Kernel:
    """One candidate: ``loop(B, H, r, h, z, steps) -> seconds`` for each dtype it has, and how to
    set its threads (None: single-threaded)."""

    name: str
    loops: dict[np.dtype, Any]
    set_threads: Any = None
    family: str = ""  # the library: with 2 threads, a pause comes before a change of library
    only: Any = None  # predicate (B, H) -> bool: the shapes it applies to
    note: str = ""
    pack_s: dict[tuple, tuple] = field(default_factory=dict)  # (dtype, B, H) -> (seconds to pack R, bytes)

    def applies(self, dtype: np.dtype, B: int, H: int, threads: int) -> bool:
        if dtype not in self.loops or (self.only and not self.only(B, H)):
            return False
        return threads == 1 or self.set_threads is not None


class Driver:
    """kernel_driver.c, built into a temporary folder."""

    def __init__(self, tmp: str):
        out = os.path.join(tmp, "kernel_driver.so")
        compile_c(os.path.join(HERE, "kernel_driver.c"), out, ["-shared"])
        self.lib = ctypes.CDLL(out)

    def loop(self, name: str) -> Any:
        fn = getattr(self.lib, name)
        fn.restype = ctypes.c_double
        fn.argtypes = [ctypes.c_void_p, ctypes.c_long, ctypes.c_long] + [ctypes.c_void_p] * 3 + [ctypes.c_long]
        return fn


def openblas_kernels(driver: Driver, skipped: dict, info: dict) -> list[Kernel]:
    try:
        from scipy.linalg import cython_blas
    except ImportError as exc:
        skipped["OpenBLAS"] = f"scipy.linalg.cython_blas does not import ({exc})"
        return []
    api = ctypes.pythonapi
    api.PyCapsule_GetName.restype = ctypes.c_char_p
    api.PyCapsule_GetName.argtypes = [ctypes.py_object]
    api.PyCapsule_GetPointer.restype = ctypes.c_void_p
    api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

    def pointer(name: str) -> int:
        capsule = cython_blas.__pyx_capi__[name]
        return api.PyCapsule_GetPointer(capsule, api.PyCapsule_GetName(capsule))

    threads = cpu_loop._blas_threads()
    set_threads = threads.set if threads else None
    info["OpenBLAS"] = threads.describe() if threads else "scipy's BLAS (no OpenBLAS thread controls)"

    def bind(loop_name: str, blas: str) -> Any:
        loop, fn = driver.loop(loop_name), pointer(blas)
        return lambda B, H, r, h, z, steps: loop(fn, B, H, r.ctypes.data, h.ctypes.data, z.ctypes.data, steps)

    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    return [
        Kernel(
            "OpenBLAS gemm",
            {f32: bind("fortran_gemm_f32", "sgemm"), f64: bind("fortran_gemm_f64", "dgemm")},
            set_threads,
            family="OpenBLAS",
        ),
        Kernel(
            "OpenBLAS gemv",
            {f32: bind("fortran_gemv_f32", "sgemv"), f64: bind("fortran_gemv_f64", "dgemv")},
            set_threads,
            family="OpenBLAS",
            only=lambda B, H: B == 1,
            note="B = 1 only (mlstm's loop calls gemv there)",
        ),
    ]


class Mkl:
    """libmkl_rt of the mkl wheel, through ctypes."""

    def __init__(self) -> None:
        path = dist_file("mkl", ("libmkl_rt.so.3", "libmkl_rt.so.2", "libmkl_rt.so", "mkl_rt.2.dll", "libmkl_rt.dylib"))
        if not path:
            raise RuntimeError("not installed (pip install mkl)")
        self.lib = ctypes.CDLL(path)
        lib = self.lib
        buf = ctypes.create_string_buffer(512)
        lib.mkl_get_version_string(buf, len(buf))
        self.version = " ".join(buf.value.decode(errors="replace").split())
        lib.MKL_Set_Num_Threads.argtypes = [ctypes.c_int]
        for prefix, real in (("s", ctypes.c_float), ("d", ctypes.c_double)):
            size = getattr(lib, f"cblas_{prefix}gemm_pack_get_size")
            size.restype, size.argtypes = ctypes.c_size_t, [ctypes.c_int] * 4
            pack = getattr(lib, f"cblas_{prefix}gemm_pack")
            pack.restype = None
            pack.argtypes = [ctypes.c_int] * 6 + [real, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]

    def set_threads(self, n: int) -> None:
        self.lib.MKL_Set_Num_Threads(n)

    def code_path(self) -> str:
        """Which of MKL's CPU-specific libraries is loaded (after a call): def, mc3, avx2, avx512..."""
        with open("/proc/self/maps") as fh:
            names = {os.path.basename(line.split()[-1]) for line in fh if "libmkl_" in line}
        specific = sorted(
            n
            for n in names
            if not n.startswith(("libmkl_rt", "libmkl_core", "libmkl_intel", "libmkl_gnu", "libmkl_seq"))
        )
        return ", ".join(specific) or "?"

    def packed_buffer(self, dtype: np.dtype, B: int, H: int) -> np.ndarray:
        prefix = "s" if dtype == np.float32 else "d"
        nbytes = getattr(self.lib, f"cblas_{prefix}gemm_pack_get_size")(162, B, 4 * H, H)  # CblasBMatrix
        return aligned(-(-nbytes // dtype.itemsize), dtype)

    def pack(self, dtype: np.dtype, B: int, H: int, r: np.ndarray, packed: np.ndarray) -> None:
        """RowMajor, BMatrix, Trans: op(B) = R' (H x 4H) from R (4H x H, ld H)."""
        prefix = "s" if dtype == np.float32 else "d"
        getattr(self.lib, f"cblas_{prefix}gemm_pack")(
            101, 162, 112, B, 4 * H, H, 1.0, r.ctypes.data, H, packed.ctypes.data
        )


def mkl_kernels(driver: Driver, skipped: dict, info: dict) -> list[Kernel]:
    try:
        mkl = Mkl()
    except (RuntimeError, OSError, AttributeError) as exc:
        skipped["MKL"] = str(exc)
        return []
    info["MKL"] = f"mkl {dist_version('mkl')}: {mkl.version}"
    info["MKL object"] = mkl

    def fortran(loop_name: str, blas: str) -> Any:
        loop, fn = driver.loop(loop_name), address(mkl.lib, blas)
        return lambda B, H, r, h, z, steps: loop(fn, B, H, r.ctypes.data, h.ctypes.data, z.ctypes.data, steps)

    packed_kernel = Kernel("MKL packed", {}, mkl.set_threads, "MKL", note="R packed once per shape (pack time apart)")

    def packed(dtype: np.dtype) -> Any:
        loop = driver.loop(f"mkl_compute_{SUFFIX[dtype]}")
        fn = address(mkl.lib, f"cblas_{'s' if dtype == np.float32 else 'd'}gemm_compute")
        cache: dict = {}

        def run(B: int, H: int, r: np.ndarray, h: np.ndarray, z: np.ndarray, steps: int) -> float:
            key = (B, H, r.ctypes.data)
            if key not in cache:
                cache.clear()
                packed = mkl.packed_buffer(dtype, B, H)
                best = float("inf")
                for _ in range(4):  # the first call warms up
                    started = time.perf_counter()
                    mkl.pack(dtype, B, H, r, packed)
                    best = min(best, time.perf_counter() - started)
                cache[key] = packed
                packed_kernel.pack_s[(dtype, B, H)] = (best, packed.nbytes)
            return loop(fn, B, H, cache[key].ctypes.data, h.ctypes.data, z.ctypes.data, steps)

        return run

    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    packed_kernel.loops = {f32: packed(f32), f64: packed(f64)}
    gemm = Kernel(
        "MKL gemm",
        {f32: fortran("fortran_gemm_f32", "sgemm_"), f64: fortran("fortran_gemm_f64", "dgemm_")},
        mkl.set_threads,
        "MKL",
    )
    return [gemm, packed_kernel]


def blis_kernels(driver: Driver, skipped: dict, info: dict) -> list[Kernel]:
    try:
        import blis.cy  # cython-blis: BLIS compiled into the extension, its C API exported
    except ImportError as exc:
        skipped["BLIS"] = f"not installed (pip install blis): {exc}"
        return []
    lib = ctypes.CDLL(blis.cy.__file__)
    if not hasattr(lib, "bli_sgemm"):
        skipped["BLIS"] = f"{blis.cy.__file__} exports no bli_sgemm"
        return []
    lib.bli_info_get_version_str.restype = ctypes.c_char_p
    lib.bli_arch_string.restype = ctypes.c_char_p
    lib.bli_arch_query_id.restype = ctypes.c_int
    arch = lib.bli_arch_string(lib.bli_arch_query_id()).decode()
    threading = bool(lib.bli_info_get_enable_threading())
    info["BLIS"] = (
        f"cython-blis {dist_version('blis')} (BLIS {lib.bli_info_get_version_str().decode()}), "
        f"sub-configuration chosen on this CPU: {arch}, "
        f"threading {'on' if threading else 'off (single-threaded build)'}"
    )
    set_threads = None
    if threading:
        lib.bli_thread_set_num_threads.argtypes = [ctypes.c_int64]
        set_threads = lib.bli_thread_set_num_threads

    def bind(dtype: np.dtype) -> Any:
        loop, fn = (
            driver.loop(f"blis_gemm_{SUFFIX[dtype]}"),
            address(lib, f"bli_{'s' if dtype == np.float32 else 'd'}gemm"),
        )
        return lambda B, H, r, h, z, steps: loop(fn, B, H, r.ctypes.data, h.ctypes.data, z.ctypes.data, steps)

    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    return [Kernel("BLIS", {f32: bind(f32), f64: bind(f64)}, set_threads, "BLIS", note=f"arch {arch}")]


def mlstm_kernels(driver: Driver, skipped: dict, info: dict) -> list[Kernel]:
    built = [f for f in cpu_loop.extension_files() if not f.endswith(".c")]
    if not built:
        skipped["mlstm packed"] = "mlstm/engines/_cpu_lstm*.so not built (python setup.py build_ext --inplace)"
        return []
    lib = ctypes.CDLL(built[0])
    kernel = Kernel("mlstm packed", {}, family="mlstm", note="R packed once per shape (pack time apart)")
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    for dtype in (f32, f64):
        suf = SUFFIX[dtype]
        names = (f"mlstm_packed_size_{suf}", f"mlstm_pack_{suf}", f"mlstm_packed_gemm_{suf}")
        if not all(hasattr(lib, n) for n in names):
            continue
        size, pack = getattr(lib, names[0]), getattr(lib, names[1])
        size.restype, size.argtypes = ctypes.c_long, [ctypes.c_long, ctypes.c_long]
        pack.restype, pack.argtypes = None, [ctypes.c_void_p, ctypes.c_long, ctypes.c_long, ctypes.c_void_p]
        loop, fn = driver.loop(f"mlstm_packed_{suf}"), address(lib, names[2])
        cache: dict = {}

        def run(B, H, r, h, z, steps, dtype=dtype, size=size, pack=pack, loop=loop, fn=fn, cache=cache):
            key = (B, H, r.ctypes.data)
            if key not in cache:
                cache.clear()
                packed = aligned(size(4 * H, H), dtype)
                best = float("inf")
                for _ in range(4):  # the first call warms up
                    started = time.perf_counter()
                    pack(r.ctypes.data, 4 * H, H, packed.ctypes.data)
                    best = min(best, time.perf_counter() - started)
                cache[key] = packed
                kernel.pack_s[(dtype, B, H)] = (best, packed.nbytes)
            return loop(fn, B, H, cache[key].ctypes.data, h.ctypes.data, z.ctypes.data, steps)

        kernel.loops[dtype] = run
    if not kernel.loops:
        skipped["mlstm packed"] = f"{os.path.basename(built[0])} exports no mlstm_packed_gemm_f32/_f64 (not built yet)"
        return []
    info["mlstm packed"] = f"{os.path.basename(built[0])}: {', '.join(SUFFIX[d] for d in kernel.loops)}"
    return [kernel]


def naive_kernel(driver: Driver) -> Kernel:
    def bind(dtype: np.dtype) -> Any:
        loop = driver.loop(f"naive_{SUFFIX[dtype]}")
        return lambda B, H, r, h, z, steps: loop(None, B, H, r.ctypes.data, h.ctypes.data, z.ctypes.data, steps)

    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    return Kernel(
        "inline loop",
        {f32: bind(f32), f64: bind(f64)},
        only=lambda B, H: 4 * H * H * B <= 8192,
        note="mlstm's row-major loop where 4H*H*B <= 8192 (the gate-major one is not timed)",
    )


def check(kernel: Kernel, dtype: np.dtype, B: int, H: int, r: np.ndarray, h: np.ndarray) -> float:
    """Relative error of one step from z = 0 against NumPy (float64)."""
    z = aligned(B * 4 * H, dtype).reshape(B, 4 * H)
    kernel.loops[dtype](B, H, r, h, z, 1)
    want = h.astype(np.float64) @ r.astype(np.float64).T
    return float(np.abs(z - want).max() / max(np.abs(want).max(), 1e-30))


def bench_kernels(kernels: list[Kernel], opts: argparse.Namespace, thread_counts: list[int]) -> list[dict]:
    rows = []
    shapes = sorted({(B, H) for _, H, B, _ in SHAPES}, key=lambda s: (s[0] * s[1] * s[1], s))
    shapes += [] if opts.quick else [CEILING]
    tolerance = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-12}
    for threads in thread_counts:
        for k in kernels:
            if k.set_threads:
                k.set_threads(threads)
        for dtype in (np.dtype(np.float32), np.dtype(np.float64)):
            if opts.quick and threads > 1 and dtype == np.float64:
                continue
            if opts.wait_idle:
                wait_idle(opts)
            for B, H in shapes:
                rng = np.random.default_rng(2)
                r = aligned(4 * H * H, dtype).reshape(4 * H, H)
                r[:] = rng.standard_normal((4 * H, H)) / np.sqrt(H)
                h = aligned(B * H, dtype).reshape(B, H)
                h[:] = rng.uniform(-1, 1, (B, H))
                z = aligned(B * 4 * H, dtype).reshape(B, 4 * H)
                live = [k for k in kernels if k.applies(dtype, B, H, threads)]
                row: dict = {"dtype": dtype.name, "B": B, "H": H, "threads": threads, "us": {}, "error": {}}
                steps = {}
                for k in live:
                    row["error"][k.name] = check(k, dtype, B, H, r, h)
                    if not row["error"][k.name] <= tolerance[dtype]:
                        print(f"# {k.name} {dtype.name} B={B} H={H}: WRONG (rel. error {row['error'][k.name]:.2g})")
                    t = k.loops[dtype](B, H, r, h, z, 3) / 3  # warm-up (and packing)
                    n = max(1, int(2e-3 / max(t, 1e-9)))
                    t = k.loops[dtype](B, H, r, h, z, n) / n  # ~2 ms, to size the sample
                    steps[k.name] = max(1, int(opts.sample_ms * 1e-3 / max(t, 1e-9)))
                times: dict = {k.name: [] for k in live}
                previous = None
                for _ in rounds(opts):
                    for k in live:
                        z.fill(0)
                        if threads > 1 and k.family != previous:
                            time.sleep(opts.settle)
                        previous = k.family
                        times[k.name].append(k.loops[dtype](B, H, r, h, z, steps[k.name]) / steps[k.name])
                row["us"] = {name: 1e6 * statistics.median(t) for name, t in times.items()}
                row["pack"] = {
                    k.name: {"us": 1e6 * k.pack_s[key][0], "bytes": k.pack_s[key][1], "r_bytes": r.nbytes}
                    for k in live
                    if (key := (dtype, B, H)) in k.pack_s
                }
                rows.append(row)
                print(kernel_line(row, [k.name for k in kernels]), flush=True)
    return rows


WAITED = [0.0]  # seconds spent in wait_idle


def wait_idle(opts: argparse.Namespace) -> None:
    started = time.perf_counter()
    wait_for_idle(opts.wait_idle)
    WAITED[0] += time.perf_counter() - started


def rounds(opts: argparse.Namespace):
    """Round numbers: --repeats of them, or as many past 3 as fit --row-budget seconds (a loaded
    machine can make a threaded run 100 times slower)."""
    started = time.perf_counter()
    for n in range(opts.repeats):
        if n >= 3 and time.perf_counter() - started > opts.row_budget:
            print(f"# --row-budget ({opts.row_budget:g} s) spent: {n} rounds", flush=True)
            return
        yield n


def gflops(row: dict, us: float) -> float:
    return 2 * row["B"] * row["H"] * 4 * row["H"] / (us * 1e3)


def kernel_header(names: list[str]) -> list[str]:
    return [
        "| dtype | B,H | threads | " + " | ".join(f"{n} µs (GF/s)" for n in names) + " | fastest |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]


def kernel_line(row: dict, names: list[str]) -> str:
    def cell(name: str) -> str:
        if name not in row["us"]:
            return "-"
        us = row["us"][name]
        bad = " WRONG" if not row["error"][name] <= (1e-4 if row["dtype"] == "float32" else 1e-12) else ""
        return f"{us:.2f} ({gflops(row, us):.0f}){bad}"

    best = min(row["us"], key=row["us"].get) if row["us"] else "-"
    shape = f"{row['B']},{row['H']}" + (" (ceiling)" if (row["B"], row["H"]) == CEILING else "")
    return f"| {row['dtype']} | {shape} | {row['threads']} | " + " | ".join(cell(n) for n in names) + f" | {best} |"


# ---------------------------------------------------------------- part 2: whole LSTM runs


class Dnnl:
    """dnnl_lstm.c built against the installed oneDNN, one child process per thread count."""

    def __init__(self, tmp: str, threads: list[int]):
        self.procs: dict[int, subprocess.Popen] = {}
        self.version = ""
        self.impl = ""
        reasons = []
        for runtime, devel in DNNL_DISTS:
            lib = dist_file(runtime, ("libdnnl.so.3", "libdnnl.so.2", "libdnnl.so"))
            header = dist_file(devel, ("oneapi/dnnl/dnnl.h",))
            if not lib or not header:
                continue
            libdir, include = os.path.dirname(lib), os.path.dirname(os.path.dirname(os.path.dirname(header)))
            exe = os.path.join(tmp, f"dnnl_lstm_{runtime}")
            try:
                compile_c(os.path.join(HERE, "dnnl_lstm.c"), exe, [f"-I{include}", lib, f"-Wl,-rpath,{libdir}"])
                for n in threads:
                    env = dict(os.environ, OMP_NUM_THREADS=str(n), LD_LIBRARY_PATH=libdir)
                    env.pop("ONEDNN_VERBOSE", None)
                    self.procs[n] = subprocess.Popen(
                        [exe],
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT,
                        text=True,
                        env=env,
                    )
                    self.version = self.answer(n, "ready", [])
            except RuntimeError as exc:
                self.close()
                reasons.append(f"{runtime} {dist_version(runtime)}: {exc}")
                continue
            self.dist = f"{runtime} {dist_version(runtime)}"
            return
        raise RuntimeError("; ".join(reasons) or "not installed (pip install onednn-cpu-gomp onednn-devel-cpu-gomp)")

    def answer(self, n: int, word: str, command: list[str]) -> str:
        proc = self.procs[n]
        if command:
            assert proc.stdin is not None
            proc.stdin.write(" ".join(command) + "\n")
            proc.stdin.flush()
        assert proc.stdout is not None
        said = []
        for line in proc.stdout:
            if line.startswith((word + " ", "error")):
                if line.startswith("error"):
                    raise RuntimeError(line.strip() + "".join(f"; {s.strip()}" for s in said if "error" in s))
                return line.split(" ", 1)[1].strip()
            said.append(line)
        raise RuntimeError("the oneDNN child ended: " + "".join(said).strip()[-400:])

    def load(self, n: int, tmp: str, args: tuple) -> tuple[int, float, np.ndarray]:
        X, _, _, W, R, b = args
        T, B, C = X.shape
        H = R.shape[1]
        path_in, path_out = os.path.join(tmp, "lstm_in.bin"), os.path.join(tmp, "lstm_out.bin")
        np.concatenate([a.ravel() for a in (X, W, R, b)]).astype(np.float32).tofile(path_in)
        index, reorder, self.impl = self.answer(n, "ok", ["load", *map(str, (T, B, C, H)), path_in, path_out]).split(
            " ", 2
        )
        y = np.fromfile(path_out, np.float32).reshape(T, B, H)
        return int(index), float(reorder), y

    def run(self, n: int, index: int, count: int) -> float:
        return float(self.answer(n, "ok", ["run", str(index), str(count)]))

    def close(self) -> None:
        for proc in self.procs.values():
            try:
                if proc.stdin:
                    proc.stdin.write("quit\n")
                    proc.stdin.close()
                proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                proc.kill()
        self.procs = {}


def bench_lstm(opts: argparse.Namespace, thread_counts: list[int], tmp: str, skipped: dict, info: dict) -> list[dict]:
    options = parse_options([("DataFormat", "TBC")])
    try:
        dnnl: Dnnl | None = Dnnl(tmp, thread_counts)
        info["oneDNN"] = f"{dnnl.dist} (oneDNN {dnnl.version})"
    except RuntimeError as exc:
        dnnl = None
        skipped["oneDNN"] = str(exc)
    try:
        import onnxruntime as ort

        from mlstm.foreign import onnx_model

        onnx_model({"weights": np.zeros((4, 1)), "recurrentWeights": np.zeros((4, 1)), "bias": np.zeros(4)})
        info["ONNX Runtime"] = ort.__version__
    except (ImportError, MlstmError) as exc:  # onnxruntime, or onnx (for the model), not installed
        ort = None
        skipped["ONNX Runtime"] = f"not installed: {exc}"
    shapes = SHAPES[:2] if opts.quick else SHAPES
    blas = cpu_loop._blas_threads()  # mlstm's fixed-rule plans use OpenBLAS at its global count
    blas_count = blas.get() if blas else None
    rows = []
    try:
        for threads in thread_counts:
            if blas:
                blas.set(threads)
            for C, H, B, T in shapes:
                if opts.wait_idle:
                    wait_idle(opts)
                args = problem(C, H, B, T, np.float32)
                X, H0, C0, W, R, b = args
                peers: dict = {}
                row: dict = {"C": C, "H": H, "B": B, "T": T, "threads": threads, "ms": {}}

                def mlstm_run(X=X, H0=H0, C0=C0, W=W, R=R, b=b, threads=threads) -> float:
                    os.environ["MLSTM_NUM_THREADS"] = str(threads)
                    started = time.perf_counter()
                    compute(X, H0, C0, W, R, b, options)
                    return time.perf_counter() - started

                os.environ["MLSTM_NUM_THREADS"] = str(threads)
                result = compute(X, H0, C0, W, R, b, options)  # the first run measures mlstm's plans
                y_mlstm = np.asarray(result.Y)
                row["mlstm_detail"] = result.detail
                peers["mlstm"] = mlstm_run
                if ort is not None:
                    so = ort.SessionOptions()
                    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
                    model = onnx_model({"weights": W, "recurrentWeights": R, "bias": b}).SerializeToString()
                    session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
                    feed = {"X": X, "initial_h": H0.T[None].copy(), "initial_c": C0.T[None].copy()}

                    def ort_run(session=session, feed=feed) -> float:
                        started = time.perf_counter()
                        session.run(None, feed)
                        return time.perf_counter() - started

                    peers["ONNX Runtime"] = ort_run
                if dnnl is not None:
                    try:
                        index, row["dnnl_reorder_ms"], y = dnnl.load(threads, tmp, args)
                        row["dnnl_impl"] = dnnl.impl
                        row["dnnl_vs_mlstm"] = float(np.abs(y - y_mlstm.reshape(y.shape)).max())  # both (T, B, H)
                        row["dnnl_reorder_ms"] *= 1e3
                        peers["oneDNN"] = lambda index=index, threads=threads: dnnl.run(threads, index, 1)
                    except RuntimeError as exc:
                        skipped["oneDNN"] = str(exc)
                count = {}
                for name, fn in peers.items():
                    fn()  # warm-up
                    count[name] = max(1, int(opts.sample_ms * 1e-3 / max(fn(), 1e-6)))
                times: dict = {name: [] for name in peers}
                for _ in rounds(opts):
                    for name, fn in peers.items():
                        if threads > 1:
                            time.sleep(opts.settle)
                        times[name].append(sum(fn() for _ in range(count[name])) / count[name])
                row["ms"] = {name: 1e3 * statistics.median(t) for name, t in times.items()}
                rows.append(row)
                print(lstm_line(row), flush=True)
    finally:
        os.environ.pop("MLSTM_NUM_THREADS", None)
        if blas and blas_count:
            blas.set(blas_count)
        if dnnl is not None:
            dnnl.close()
    return rows


LSTM_PEERS = ("mlstm", "ONNX Runtime", "oneDNN")


def lstm_header() -> list[str]:
    return [
        "| C,H,B,T | threads | "
        + " | ".join(f"{p} ms (µs/step)" for p in LSTM_PEERS)
        + " | oneDNN weight reorder ms | mlstm/ORT | mlstm/oneDNN | mlstm plan |",
        "|---|---|" + "---|" * len(LSTM_PEERS) + "---|---|---|---|",
    ]


def lstm_line(row: dict) -> str:
    T = row["T"]

    def cell(p: str) -> str:
        return f"{row['ms'][p]:.2f} ({1e3 * row['ms'][p] / T:.1f})" if p in row["ms"] else "-"

    def ratio(p: str) -> str:
        return f"{row['ms']['mlstm'] / row['ms'][p]:.2f}" if p in row["ms"] and "mlstm" in row["ms"] else "-"

    plan = row.get("mlstm_detail", "").split("loop=", 1)[-1].split(" blas=", 1)[0]
    reorder = f"{row['dnnl_reorder_ms']:.2f}" if "dnnl_reorder_ms" in row else "-"
    return (
        f"| {row['C']},{row['H']},{row['B']},{T} | {row['threads']} | "
        + " | ".join(cell(p) for p in LSTM_PEERS)
        + f" | {reorder} | {ratio('ONNX Runtime')} | {ratio('oneDNN')} | {plan} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="3 rounds, 4 ms samples, no ceiling row, float32 only with 2 threads, two LSTM shapes.",
    )
    parser.add_argument("--repeats", type=int, help="Rounds (median over them); default 5, --quick 3.")
    parser.add_argument("--sample-ms", type=float, help="Length of one sample; default 20, --quick 4.")
    parser.add_argument(
        "--settle", type=float, help="Pause before a 2-thread sample of another library than the last, s (0.25)."
    )
    parser.add_argument(
        "--threads", default="1,2", help="Thread counts (default 1,2; more than the cores are dropped)."
    )
    parser.add_argument(
        "--wait-idle", type=float, help="Before each group of rows, wait (up to 10 min) until the machine is this idle."
    )
    parser.add_argument(
        "--row-budget", type=float, default=12.0, help="Stop a row's rounds after 3 once it has taken this long (s)."
    )
    parser.add_argument("--no-lstm", action="store_true", help="Only the kernels (part 1).")
    parser.add_argument("--json", help="Also write the rows as JSON here.")
    parser.add_argument("--markdown", help="Also write the header and the tables here (Markdown).")
    opts = parser.parse_args()
    opts.repeats = opts.repeats or (3 if opts.quick else 5)
    opts.sample_ms = opts.sample_ms or (4.0 if opts.quick else 20.0)
    opts.settle = 0.25 if opts.settle is None else opts.settle
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    thread_counts = [n for n in map(int, opts.threads.split(",")) if 1 <= n <= cores] or [1]
    os.environ["MLSTM_CPU_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="mlstm-kernels-"), "cpu-plans.json")
    started = time.perf_counter()
    skipped: dict = {}
    info: dict = {"numpy": np.__version__}
    loop = numpy_engine.compiled_loop()
    info["mlstm loop"] = (
        f"compiled, {loop[np.dtype(np.float32)].blas_description()}"
        if loop
        else f"numpy ({numpy_engine.compiled_loop_unavailable_reason()})"
    )
    with tempfile.TemporaryDirectory(prefix="mlstm-kernels-") as tmp:
        driver = Driver(tmp)
        kernels = (
            openblas_kernels(driver, skipped, info)
            + mkl_kernels(driver, skipped, info)
            + blis_kernels(driver, skipped, info)
            + mlstm_kernels(driver, skipped, info)
            + [naive_kernel(driver)]
        )
        mkl = info.pop("MKL object", None)
        names = [k.name for k in kernels]
        lines = [
            f"# machine: {machine()}",
            f"# load average before: {load()}",
            f"# median of {opts.repeats} interleaved rounds, samples of ~{opts.sample_ms:g} ms, "
            f"threads {thread_counts}",
            "",
            "Recurrent product z (B x 4H) += h (B x H) . R' per step: µs (GFLOP/s at 2*B*H*4H flops)",
            "",
            *kernel_header(names),
        ]
        print("\n".join(lines), flush=True)
        krows = bench_kernels(kernels, opts, thread_counts)
        lines += [kernel_line(r, names) for r in krows]
        if mkl is not None:
            info["MKL code path"] = (
                f"{mkl.code_path()} (MKL_ENABLE_INSTRUCTIONS={os.environ.get('MKL_ENABLE_INSTRUCTIONS', 'unset')})"
            )
        packs = {
            f"{r['dtype']} {r['B']},{r['H']}": {
                k: f"{v['us']:.1f} µs, {v['bytes'] / 1e3:.0f} kB (R: {v['r_bytes'] / 1e3:.1f} kB)"
                for k, v in r["pack"].items()
            }
            for r in krows
            if r["pack"] and r["threads"] == 1
        }
        lrows: list[dict] = []
        if not opts.no_lstm:
            lines += ["", "Whole LSTM runs, float32: ms per run (µs per step)", "", *lstm_header()]
            print("\n".join(lines[-4:]), flush=True)
            lrows = bench_lstm(opts, thread_counts, tmp, skipped, info)
            lines += [lstm_line(r) for r in lrows]
    tail = [
        "",
        f"# versions: {json.dumps(info)}",
        "# packing R, 1 thread (the fastest of 3 packs after a first, allocation excluded; packed size): "
        + json.dumps(packs, ensure_ascii=False),
        *(f"# skipped {name}: {why}" for name, why in skipped.items()),
        *(f"# notes: {k.name}: {k.note}" for k in kernels if k.note),
        *(
            f"# oneDNN {r['C']},{r['H']},{r['B']},{r['T']} x{r['threads']}: {r['dnnl_impl']}, "
            f"max |y - mlstm's y| over all steps {r['dnnl_vs_mlstm']:.2g}"
            for r in lrows
            if "dnnl_impl" in r
        ),
        f"# load average after: {load()}; the whole run took {time.perf_counter() - started:.0f} s"
        + (f", {WAITED[0]:.0f} s of it waiting for an idle machine" if opts.wait_idle else ""),
    ]
    lines += tail
    print("\n".join(tail), flush=True)
    if opts.markdown:
        with open(opts.markdown, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(
                {"machine": machine(), "versions": info, "skipped": skipped, "kernels": krows, "lstm": lrows},
                fh,
                indent=1,
            )


if __name__ == "__main__":
    main()
