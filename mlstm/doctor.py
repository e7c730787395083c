"""``mlstm doctor``: what this installation runs on, for bug reports and "why is it slow?".

Like ``numpy.show_config()`` and PyTorch's ``collect_env``: versions, whether the compiled CPU
loop was built and imports (and why not), the BLAS libraries with their thread counts, the CPU
and its vector instructions, whether CuPy can use a GPU (and why not), and which optional
packages are installed. :func:`collect` gathers it as plain data (``--json``); :func:`format_text`
prints it. Nothing here raises: a probe that fails reports its failure as a value.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

from . import __version__

CORE_PACKAGES = ("numpy", "scipy", "h5py", "click")
# Optional packages and what mlstm uses them for.
OPTIONAL_PACKAGES = {
    "onnx": "ONNX weights (--weights, convert; the onnx extra)",
    "onnxruntime": "ONNX cross-checks in tests and benchmarks",
    "torch": "torch.nn.LSTM cross-checks in tests and benchmarks",
    "safetensors": "PyTorch weights (the pytorch extra)",
    "matplotlib": "plots of benchmark results",
    "threadpoolctl": "BLAS thread report here (the bench extra)",
}
CPU_FLAGS = ("avx2", "avx512f", "fma")  # what the compiled loop's target_clones and OpenBLAS use
THREAD_VARIABLES = (
    "MLSTM_NUM_THREADS",
    "MLSTM_CPU_PLAN",
    "MLSTM_PURE_NUMPY",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
)


def _version(distribution: str) -> str | None:
    """The installed version of a distribution, without importing it (torch takes seconds)."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip().rstrip(":")


def compiled_loop_report() -> dict[str, Any]:
    """{available, path, reason, recurrent_kernel}: the compiled CPU loop is built, imports and
    binds, or why not; and the packed recurrent kernel's instruction set on this CPU."""
    try:
        from .engines import numpy_engine

        reason = numpy_engine.compiled_loop_unavailable_reason()
        files = [f for f in numpy_engine._extension_files() if not f.endswith(".c")]
        loops = numpy_engine.compiled_loop() if reason is None else None
        kernel = f"packed {next(iter(loops.values())).packed.isa}" if loops else None
    except Exception as exc:  # NumPy itself broken: still a report
        return {"available": False, "path": None, "reason": _failure(exc), "recurrent_kernel": None}
    path = files[0] if len(files) == 1 else files or None
    return {"available": reason is None, "path": path, "reason": reason, "recurrent_kernel": kernel}


def blas_report() -> dict[str, Any]:
    """The BLAS libraries loaded by NumPy and SciPy with their thread counts.

    threadpoolctl (the bench extra) when importable; otherwise the build configuration from
    ``numpy.show_config(mode='dicts')`` and SciPy's, with the thread count of SciPy's OpenBLAS
    (the one mlstm's GEMMs call) read through its own API.
    """
    try:
        import numpy as np
        import scipy.linalg  # noqa: F401 - loads SciPy's BLAS so it is listed
    except Exception as exc:
        return {"source": None, "libraries": [], "error": _failure(exc)}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        pass
    else:
        keys = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "architecture", "filepath")
        libraries = [{k: info.get(k) for k in keys} for info in threadpool_info()]
        return {"source": "threadpoolctl", "libraries": libraries}
    libraries = []
    for module in (np, _scipy()):
        try:
            config = module.show_config(mode="dicts")["Build Dependencies"]["blas"]
        except Exception:  # older releases print instead of returning a dict
            continue
        libraries.append(
            {
                "user_api": "blas",
                "internal_api": config.get("name"),
                "version": config.get("version"),
                "num_threads": _scipy_blas_threads() if module is not np else None,
                "threading_layer": None,
                "architecture": None,
                "filepath": None,  # "lib directory" is the build machine's, not this one's
                "used_by": module.__name__,
                "configuration": config.get("openblas configuration"),
            }
        )
    return {"source": "show_config", "libraries": libraries}


def _scipy() -> Any:
    import scipy

    return scipy


def _scipy_blas_threads() -> int | None:
    try:
        from .engines.numpy_engine import _blas_threads

        controls = _blas_threads()
        return int(controls.get()) if controls is not None else None
    except Exception:
        return None


def threads_report() -> dict[str, Any]:
    """Cores this process may use (CPU affinity), its cgroup's CPU quota (CPUs' worth of time,
    None: no quota), the threads mlstm's plans may use (both, and MLSTM_NUM_THREADS), and the
    variables that cap threads."""
    from .engines import cpu_plans

    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        usable: int | str = cpu_plans.cores()
    except Exception as error:  # a bad MLSTM_NUM_THREADS: doctor reports it, never fails on it
        usable = str(error)
    return {
        "cores_available": available,
        "cpu_quota": cpu_plans.process_cpu_quota(),
        "threads_for_plans": usable,
        "cpu_count": os.cpu_count(),
        "environment": {name: os.environ.get(name) for name in THREAD_VARIABLES},
    }


def cpu_report(cpuinfo_path: str = "/proc/cpuinfo") -> dict[str, Any]:
    """CPU model and the vector instructions that matter here (None where the platform does not say)."""
    model = None
    flags: set[str] | None = None
    try:
        with open(cpuinfo_path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and model is None:
                    model = value.strip()
                elif key in ("flags", "features") and flags is None:
                    flags = set(value.split())
    except OSError:
        pass
    if model is None:
        model = _sysctl("machdep.cpu.brand_string") or platform.processor() or None
    if flags is None and sys.platform == "darwin":
        features = (_sysctl("machdep.cpu.features") or "") + " " + (_sysctl("machdep.cpu.leaf7_features") or "")
        if features.strip():  # "FMA AVX1.0 ..." and "AVX2 AVX512F ..." on Intel Macs
            flags = {f.lower() for f in features.split()}
    return {
        "model": model,
        "machine": platform.machine(),
        "flags": {flag: flag in flags for flag in CPU_FLAGS} if flags is not None else None,
    }


def _sysctl(name: str) -> str | None:
    """A macOS sysctl value, or None elsewhere."""
    if sys.platform != "darwin":
        return None
    import subprocess

    try:
        done = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def gpu_report() -> dict[str, Any]:
    """Whether ``--engine cupy`` can run here, the reason when not, and the devices when it can."""
    from .engines import cupy_unavailable_reason

    try:
        reason = cupy_unavailable_reason()
    except Exception as exc:  # the probe itself failing is a reason too
        reason = _failure(exc)
    report: dict[str, Any] = {"usable": reason is None, "reason": reason, "cupy": None, "cuda_runtime": None}
    report["devices"] = []
    if "cupy" not in sys.modules:
        return report
    cupy = sys.modules["cupy"]
    report["cupy"] = getattr(cupy, "__version__", None)
    if reason is not None:
        return report
    try:
        report["cuda_runtime"] = _cuda_version(cupy.cuda.runtime.runtimeGetVersion())
        for device in range(cupy.cuda.runtime.getDeviceCount()):
            props = cupy.cuda.runtime.getDeviceProperties(device)
            name = props.get("name", b"")
            report["devices"].append(
                {
                    "name": name.decode() if isinstance(name, bytes) else str(name),
                    "compute_capability": f"{props.get('major')}.{props.get('minor')}",
                    "memory_gib": round(props.get("totalGlobalMem", 0) / 2**30, 1),
                }
            )
    except Exception as exc:
        report["reason"] = f"CUDA device query failed ({_failure(exc)})"
        report["usable"] = False
    return report


def _cuda_version(code: int) -> str:
    return f"{code // 1000}.{code % 1000 // 10}"


def collect() -> dict[str, Any]:
    """Everything ``mlstm doctor`` reports, as JSON-ready data."""
    return {
        "mlstm": {"version": __version__, "path": os.path.dirname(os.path.abspath(__file__))},
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
            "platform": platform.platform(),
        },
        "packages": {name: _version(name) for name in CORE_PACKAGES},
        "compiled_loop": compiled_loop_report(),
        "blas": blas_report(),
        "threads": threads_report(),
        "cpu": cpu_report(),
        "gpu": gpu_report(),
        "optional": {name: _version(name) for name in OPTIONAL_PACKAGES},
    }


def format_text(report: dict[str, Any]) -> str:
    """The report as aligned ``name: value`` lines in sections."""
    lines: list[str] = []

    def row(name: str, value: Any) -> None:
        lines.append(f"{name + ':':<22}{value}")

    py = report["python"]
    row("mlstm", f"{report['mlstm']['version']} ({report['mlstm']['path']})")
    row("Python", f"{py['version']} ({py['implementation']}, {py['executable']})")
    row("Platform", py["platform"])
    for name, version in report["packages"].items():
        row({"numpy": "NumPy", "scipy": "SciPy"}.get(name, name), version or "not installed")

    loop = report["compiled_loop"]
    if loop["available"]:
        row("Compiled CPU loop", f"yes ({loop['path']})")
        if loop.get("recurrent_kernel"):
            row("Recurrent product", f"{loop['recurrent_kernel']} (MLSTM_CPU_KERNEL=blas for scipy's BLAS)")
    else:
        row("Compiled CPU loop", f"no, the NumPy loop runs: {loop['reason']}")

    blas = report["blas"]
    if not blas["libraries"]:
        row("BLAS", blas.get("error") or "not found")
    for lib in blas["libraries"]:
        threads = f"{lib['num_threads']} threads" if lib["num_threads"] is not None else "threads unknown"
        extra = ", ".join(str(lib[k]) for k in ("threading_layer", "architecture") if lib.get(k))
        where = lib.get("filepath") or ""
        if "scipy.libs" in where or lib.get("used_by") == "scipy":
            owner, use = "SciPy", ", used by mlstm's GEMMs"
        elif "numpy.libs" in where or lib.get("used_by") == "numpy":
            owner, use = "NumPy", ""
        else:
            owner, use = lib.get("user_api") or "", ""
        text = f"{lib['internal_api']} {lib['version']}, {threads}" + (f" ({extra})" if extra else "") + use
        row(f"BLAS ({owner})" if owner else "BLAS", f"{text}: {where}" if where else text)
    if blas.get("source") == "show_config":
        row("BLAS threads", "from the build configuration; pip install threadpoolctl to see every library's")
    threads = report["threads"]
    quota = threads.get("cpu_quota")
    quota_text = f"; cgroup CPU quota {quota:g} CPUs" if quota is not None else ""
    row("Cores", f"{threads['cores_available']} available to this process (of {threads['cpu_count']}){quota_text}")
    row("Threads for plans", str(threads.get("threads_for_plans")))
    settings = [f"{k}={v}" for k, v in threads["environment"].items() if v is not None]
    row("Thread settings", ", ".join(settings) or "none set")

    cpu = report["cpu"]
    row("CPU", f"{cpu['model'] or 'unknown model'} ({cpu['machine']})")
    if cpu["flags"] is None:
        row("CPU flags", "unknown on this platform")
    else:
        row("CPU flags", ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in cpu["flags"].items()))

    gpu = report["gpu"]
    if gpu["usable"]:
        devices = "; ".join(
            f"{d['name']} (sm {d['compute_capability']}, {d['memory_gib']} GiB)" for d in gpu["devices"]
        )
        row("GPU (CuPy)", f"usable: CuPy {gpu['cupy']}, CUDA runtime {gpu['cuda_runtime']}, {devices}")
    else:
        row("GPU (CuPy)", f"not usable: {gpu['reason']}")

    for name, version in report["optional"].items():
        row(name, f"{version}" if version else f"not installed ({OPTIONAL_PACKAGES[name]})")
    return "\n".join(lines)
