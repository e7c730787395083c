"""The packed recurrent-product kernel (``_cpu_lstm.c``: R packed once per run, a register-blocked
FMA kernel per instruction set) against float64 products computed by NumPy, for every variant
this CPU can run (AVX-512, AVX2+FMA, plain C; MLSTM_PACKED_ISA picks one per process, so each
runs in a subprocess), on sizes with ragged tiles and panels; and the whole engine with each
variant against the independent float64 reference."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from mlstm.engines import numpy_engine

needs_c = pytest.mark.skipif(numpy_engine.compiled_loop() is None, reason="the compiled loop is not built")
HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def isa_params():
    flags = cpu_flags()
    out = [pytest.param("plain", id="plain")]
    out.append(
        pytest.param("avx2", id="avx2", marks=pytest.mark.skipif(not {"avx2", "fma"} <= flags, reason="no AVX2"))
    )
    out.append(
        pytest.param("avx512", id="avx512", marks=pytest.mark.skipif("avx512f" not in flags, reason="no AVX-512"))
    )
    return out


# Runs in a subprocess with MLSTM_PACKED_ISA set: products of random sizes through the exported
# kernel, each against NumPy in float64; prints the kernel's ISA and the worst errors.
PRODUCTS = r"""
import ctypes, json, sys
import numpy as np
from mlstm.engines import _cpu_lstm
lib = ctypes.CDLL(_cpu_lstm.__file__)
P, L = ctypes.c_void_p, ctypes.c_long
report = {}
rng = np.random.default_rng(int(sys.argv[1]))
for dtype, suffix in ((np.float32, "f32"), (np.float64, "f64")):
    size = getattr(lib, f"mlstm_packed_size_{suffix}"); size.restype = L; size.argtypes = [L, L]
    pack = getattr(lib, f"mlstm_pack_{suffix}"); pack.argtypes = [P, L, L, P]
    gemm = getattr(lib, f"mlstm_packed_gemm_{suffix}"); gemm.argtypes = [P, L, L, P, L, P, L]
    isa = getattr(lib, f"mlstm_packed_isa_{suffix}"); isa.restype = ctypes.c_char_p
    worst, independent = 0.0, True
    for _ in range(60):
        n, k, b = int(rng.integers(1, 150)), int(rng.integers(1, 70)), int(rng.integers(1, 14))
        ldz = n + int(rng.integers(0, 3))
        r = rng.standard_normal((n, k)).astype(dtype)
        h = rng.standard_normal((b, k)).astype(dtype)
        z = rng.standard_normal((b, ldz)).astype(dtype)
        packed = np.full(size(n, k), np.nan, dtype)  # every element the kernel reads must be written by pack
        pack(r.ctypes.data, n, k, packed.ctypes.data)
        got = z.copy()
        gemm(packed.ctypes.data, n, k, h.ctypes.data, b, got.ctypes.data, ldz)
        want = z.astype(np.float64)
        want[:, :n] += h.astype(np.float64) @ r.astype(np.float64).T
        scale = np.abs(z).astype(np.float64)
        scale[:, :n] += np.abs(h).astype(np.float64) @ np.abs(r).astype(np.float64).T
        worst = max(worst, float(np.max(np.abs(got - want) / scale)))
        # each row alone gives the same bits as in the batch: no dependence on B or the tile
        for i in (0, b - 1):
            alone = z[i : i + 1].copy()
            gemm(packed.ctypes.data, n, k, h[i : i + 1].ctypes.data, 1, alone.ctypes.data, ldz)
            independent &= bool(np.array_equal(alone[0], got[i]))
    report[suffix] = dict(isa=isa().decode(), worst=worst, independent=independent)
print(json.dumps(report))
"""


def run_python(code: str, *args: str, isa: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, MLSTM_PACKED_ISA=isa, PYTHONPATH=os.path.dirname(HERE))
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)


@needs_c
@pytest.mark.parametrize("isa", isa_params())
def test_packed_products_against_numpy_float64(isa):
    proc = run_python(PRODUCTS, "7", isa=isa)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    for suffix, eps in (("f32", np.finfo(np.float32).eps), ("f64", np.finfo(np.float64).eps)):
        assert report[suffix]["isa"] == isa
        # a dot product of k <= 70 terms: error within k * eps of sum |terms| (the classical bound)
        assert report[suffix]["worst"] <= 71 * eps, report
        assert report[suffix]["independent"], report


# The whole engine with one variant forced, every plan, against the float64 reference.
ENGINE = r"""
import json, os, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from reference import random_problem, reference_lstm
from mlstm import lstm
from mlstm.engines import numpy_engine
worst = {}
for plan in ("serial", "batch", "units"):
    os.environ["MLSTM_CPU_PLAN"] = plan
    for dtype in (np.float32, np.float64):
        for C, H, B, T in ((3, 37, 7, 9), (5, 64, 13, 6), (2, 17, 2, 11)):
            args = random_problem(np.random.default_rng(H + B), C=C, H=H, B=B, T=T, scale=0.3, dtype=dtype)
            got = lstm(*args, DataFormat="CBT")
            want = reference_lstm(*args, "CBT")
            # as assert_allclose measures it: 1 is the edge of rtol/atol (the tests' usual tolerances)
            rtol, atol = (1e-5, 1e-6) if dtype == np.float32 else (1e-12, 1e-14)
            err = max(float(np.max(np.abs(g - w) / (atol + rtol * np.abs(w)))) for g, w in zip(got, want))
            key = f"{plan}-{np.dtype(dtype).name}"
            worst[key] = max(worst.get(key, 0.0), err)
eng = numpy_engine.prepare(*[np.zeros(s) for s in ((8, 1), (8, 2), (8,))], "sigmoid", "tanh", np.float64)
print(json.dumps(dict(worst=worst, isa=eng.loop.packed.isa)))
"""


@needs_c
@pytest.mark.parametrize("isa", isa_params())
def test_engine_with_each_packed_variant_against_reference(isa):
    env_kernel = dict(os.environ, MLSTM_CPU_KERNEL="packed", MLSTM_NUM_THREADS="2")
    env_kernel.update(MLSTM_PACKED_ISA=isa, PYTHONPATH=os.path.dirname(HERE))
    proc = subprocess.run(
        [sys.executable, "-c", ENGINE, HERE], env=env_kernel, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["isa"] == isa
    for key, err in report["worst"].items():
        assert err <= 1.0, (key, err)


# The cell pass (the AVX-512 or AVX2 one where the kernel is, else the generic one) on pre-activations
# and cell states that are IEEE specials or far out (hard-sigmoid at exactly ±2.5 among them, where
# an FMA-contracted 0.2·x + 0.5 gave -7e-9 instead of 0 and so -Inf instead of NaN against g = Inf):
# z comes from the bias alone (W, R, X and H0
# zero, so z = b exactly), one step, every activation pair, H with a ragged tail.
CELLS = r"""
import json, os, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from reference import reference_lstm
from mlstm import lstm
from mlstm.engines import numpy_engine
special = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-39, -1e-39, 2.5, -2.5, 88.9, -103.9, 1e30, -1e30, 0.29, -0.31]
# No ±1e30 in C0: with relu, f·c0 + i·g cancels between two 1e30 terms, beyond any float32 tolerance.
special_c = [v for v in special if abs(v) != 1e30]
rng = np.random.default_rng(5)
bad = []
for plan in ("serial", "units"):
    os.environ["MLSTM_CPU_PLAN"] = plan
    for dtype in (np.float32, np.float64):
        for H, B in ((37, 3), (64, 2), (5, 1)):
            b = np.array([special[i % len(special)] if i % 3 else rng.normal(0, 4) for i in range(4 * H)], dtype)
            C0 = np.array([[special_c[(7 * i + j) % len(special_c)] if (i + j) % 2 else rng.normal(0, 4)
                            for j in range(B)] for i in range(H)], dtype)
            args = (np.zeros((1, B, 1), dtype), np.zeros((H, B), dtype), C0, np.zeros((4 * H, 1), dtype),
                    np.zeros((4 * H, H), dtype), b)
            for gate in ("sigmoid", "hard-sigmoid"):
                for state in ("tanh", "softsign", "relu"):
                    got = lstm(*args, DataFormat="CBT", GateActivationFunction=gate, StateActivationFunction=state)
                    with np.errstate(all="ignore"):
                        want = reference_lstm(*args, "CBT", gate=gate, state=state)
                    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
                    for name, g, w in zip(("Y", "hiddenState", "cellState"), got, want):
                        try:
                            np.testing.assert_allclose(g.astype(np.float64), w, **tol)
                        except AssertionError as exc:
                            bad.append(f"{plan} {np.dtype(dtype).name} H={H} B={B} {gate}/{state} {name}: {exc}"[:600])
eng = numpy_engine.prepare(*[np.zeros(s) for s in ((8, 1), (8, 2), (8,))], "sigmoid", "tanh", np.float32)
print(json.dumps(dict(bad=bad, isa=eng.loop.packed.isa)))
"""


@needs_c
@pytest.mark.parametrize("isa", isa_params())
def test_cell_pass_on_special_values_against_reference(isa):
    env = dict(os.environ, MLSTM_CPU_KERNEL="packed", MLSTM_NUM_THREADS="2", MLSTM_PACKED_ISA=isa)
    env["PYTHONPATH"] = os.path.dirname(HERE)
    proc = subprocess.run([sys.executable, "-c", CELLS, HERE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["isa"] == isa
    assert report["bad"] == [], "\n".join(report["bad"])
