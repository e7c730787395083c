"""`mlstm doctor` and what `mlstm run -v` says about the compiled CPU loop, including when the
compiled extension is missing or does not import (a failed build at install must be visible)."""

import importlib.util
import json
import os
import platform
import shutil
import sys
import tomllib
from importlib import metadata

import pytest
from conftest import REPO, run_mlstm

import mlstm.engines
from mlstm import doctor
from mlstm.engines import numpy_engine

EXAMPLE = os.path.join(REPO, "fixtures", "example", "input.mat")
BUILT = importlib.util.find_spec("mlstm.engines._cpu_lstm") is not None
OPTIONAL = ("onnx", "onnxruntime", "torch", "safetensors", "matplotlib")


def installed(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def project_version():
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as fh:
        return tomllib.load(fh)["project"]["version"]


def text_rows(text):
    """{label: value} of the doctor's 'label: value' lines."""
    rows = {}
    for line in text.splitlines():
        label, sep, value = line.partition(":")
        assert sep, line
        rows[label.strip()] = value.strip()
    return rows


def test_doctor_text_has_every_field():
    proc = run_mlstm("doctor", check=0)
    rows = text_rows(proc.stdout.decode())
    assert rows["mlstm"] == f"{project_version()} ({os.path.join(REPO, 'mlstm')})"
    assert rows["Python"].startswith(platform.python_version())
    for label, dist in (("NumPy", "numpy"), ("SciPy", "scipy"), ("h5py", "h5py"), ("click", "click")):
        assert rows[label] == metadata.version(dist), label
    assert rows["Compiled CPU loop"].startswith("yes" if BUILT and not os.environ.get("MLSTM_PURE_NUMPY") else "no")
    if rows["Compiled CPU loop"].startswith("yes"):  # the packed kernel's ISA, as this CPU's flags allow
        flags = rows["CPU flags"]
        isa = "avx512" if "avx512f yes" in flags else "avx2" if "avx2 yes" in flags and "fma yes" in flags else "plain"
        assert rows["Recurrent product"].startswith(f"packed {isa}")
    assert any(label.startswith("BLAS") for label in rows)
    assert "CPU" in rows and "CPU flags" in rows and "Cores" in rows
    assert rows["GPU (CuPy)"].startswith(("usable", "not usable"))
    if importlib.util.find_spec("cupy") is None:
        assert "CuPy is not importable" in rows["GPU (CuPy)"]
    for name in OPTIONAL:
        version = installed(name)
        assert rows[name] == version if version else rows[name].startswith("not installed"), name


def test_doctor_json_parses_and_agrees_with_the_environment():
    report = json.loads(run_mlstm("doctor", "--json", check=0).stdout)
    assert report["python"]["version"] == platform.python_version()
    assert report["python"]["executable"] == sys.executable
    assert report["packages"] == {name: metadata.version(name) for name in ("numpy", "scipy", "h5py", "click")}
    assert report["mlstm"]["version"] == project_version()
    for name in OPTIONAL:
        assert report["optional"][name] == installed(name), name
    loop = report["compiled_loop"]
    assert loop["available"] is (BUILT and not os.environ.get("MLSTM_PURE_NUMPY"))
    assert (loop["reason"] is None) is loop["available"]
    assert report["threads"]["cores_available"] >= 1
    assert report["blas"]["libraries"], "no BLAS found"
    if importlib.util.find_spec("threadpoolctl") is not None:
        assert report["blas"]["source"] == "threadpoolctl"
        assert all(lib["num_threads"] >= 1 for lib in report["blas"]["libraries"])
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            words = set(fh.read().split())
        if report["cpu"]["machine"] in ("x86_64", "AMD64"):
            assert report["cpu"]["flags"] == {f: f in words for f in ("avx2", "avx512f", "fma")}
    gpu = report["gpu"]
    assert gpu["usable"] is (gpu["reason"] is None)
    if importlib.util.find_spec("cupy") is None:
        assert not gpu["usable"] and "CuPy" in gpu["reason"]


def test_blas_report_without_threadpoolctl(monkeypatch):
    """The fallback: NumPy's and SciPy's build configuration, and SciPy's OpenBLAS thread count."""
    monkeypatch.setitem(sys.modules, "threadpoolctl", None)
    report = doctor.blas_report()
    assert report["source"] == "show_config"
    assert {lib["used_by"] for lib in report["libraries"]} <= {"numpy", "scipy"}
    assert "from the build configuration" in doctor.format_text({**doctor.collect(), "blas": report})


def test_cpu_report_reads_flags_and_model(tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nmodel name\t: Test CPU 9000\nflags\t\t: fpu sse avx2 fma\n\n")
    report = doctor.cpu_report(str(fake))
    assert report["model"] == "Test CPU 9000"
    assert report["flags"] == {"avx2": True, "avx512f": False, "fma": True}


def without_extension(tmp_path):
    """A copy of the mlstm package without the compiled loop: what a failed optional build installs."""
    target = tmp_path / "site" / "mlstm"
    shutil.copytree(os.path.join(REPO, "mlstm"), target, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    return {"PYTHONPATH": str(target.parent), "MLSTM_PURE_NUMPY": ""}


def test_failed_build_is_visible_in_doctor_and_run_v(tmp_path):
    env = without_extension(tmp_path)
    rows = text_rows(run_mlstm("doctor", env=env, cwd=tmp_path, check=0).stdout.decode())
    assert rows["Compiled CPU loop"].startswith("no, the NumPy loop runs")
    assert "was not built at install" in rows["Compiled CPU loop"]
    report = json.loads(run_mlstm("doctor", "--json", env=env, cwd=tmp_path, check=0).stdout)
    assert report["compiled_loop"]["available"] is False and "not built" in report["compiled_loop"]["reason"]
    proc = run_mlstm("run", EXAMPLE, "-o", tmp_path / "o.mat", "-v", env=env, cwd=tmp_path, check=0)
    assert "loop=numpy (the compiled loop was not built at install" in proc.stderr


def test_import_error_is_shown(monkeypatch):
    """The extension is there but does not import: the import error is the reason."""
    monkeypatch.delenv("MLSTM_PURE_NUMPY", raising=False)
    monkeypatch.setitem(sys.modules, "mlstm.engines._cpu_lstm", None)
    monkeypatch.delattr(mlstm.engines, "_cpu_lstm", raising=False)
    numpy_engine._load_compiled_loop.cache_clear()
    try:
        report = doctor.compiled_loop_report()
        assert report["available"] is False
        if BUILT:
            assert "does not import: ModuleNotFoundError" in report["reason"], report["reason"]
        assert report["reason"] in doctor.format_text(doctor.collect())
        import numpy as np

        from mlstm import api, options

        args = (np.zeros((2, 3, 4)), np.zeros((5, 1)), np.zeros((5, 1)), np.ones((20, 2)), np.ones((20, 5)))
        result = api.compute(*args, np.zeros(20), options.parse_options([("DataFormat", "CBT")]))
        assert result.detail == f"loop=numpy ({report['reason']})"
    finally:
        numpy_engine._load_compiled_loop.cache_clear()


def test_pure_numpy_variable_is_the_reason_in_run_v(tmp_path):
    proc = run_mlstm("run", EXAMPLE, "-o", tmp_path / "o.mat", "-v", env={"MLSTM_PURE_NUMPY": "1"}, check=0)
    assert "loop=numpy (MLSTM_PURE_NUMPY=1 forces the NumPy loop)" in proc.stderr


def test_run_v_says_the_compiled_loop_ran(tmp_path):
    if not BUILT:
        pytest.skip("the compiled loop is not built here")
    proc = run_mlstm("run", EXAMPLE, "-o", tmp_path / "o.mat", "-v", env={"MLSTM_PURE_NUMPY": ""}, check=0)
    assert "loop=compiled (serial" in proc.stderr
    proc = run_mlstm(
        "run",
        EXAMPLE,
        "-o",
        tmp_path / "o.mat",
        "-v",
        env={"MLSTM_PURE_NUMPY": "", "MLSTM_CPU_PLAN": "batch", "MLSTM_NUM_THREADS": "2"},
        check=0,
    )
    assert "loop=compiled (batch split, 2 threads)" in proc.stderr


def test_gpu_report_lists_devices_and_driver_errors(monkeypatch):
    """The device listing, with a stand-in for CuPy (no GPU here): name, compute capability, memory;
    and a CUDA error from the device count is the reason, not a crash."""
    import types

    props = {"name": b"NVIDIA H100 80GB HBM3", "major": 9, "minor": 0, "totalGlobalMem": 80 * 2**30}
    runtime = types.SimpleNamespace(
        getDeviceCount=lambda: 1, getDeviceProperties=lambda i: props, runtimeGetVersion=lambda: 12040
    )
    fake = types.SimpleNamespace(__version__="13.9.9", cuda=types.SimpleNamespace(runtime=runtime))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    report = doctor.gpu_report()
    assert report["usable"] and report["reason"] is None
    assert (report["cupy"], report["cuda_runtime"]) == ("13.9.9", "12.4")
    assert report["devices"] == [{"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "memory_gib": 80.0}]
    assert "usable: CuPy 13.9.9, CUDA runtime 12.4, NVIDIA H100 80GB HBM3 (sm 9.0, 80.0 GiB)" in doctor.format_text(
        {**doctor.collect(), "gpu": report}
    )

    def no_driver():
        raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient")

    runtime.getDeviceCount = no_driver
    report = doctor.gpu_report()
    assert not report["usable"] and "InsufficientDriver" in report["reason"] and report["cupy"] == "13.9.9"
