"""The NumPy engine's two loops (compiled C and pure NumPy), its batch-parallel split, and the C
exp/tanh against NumPy's. Each compared with the independent reference or with NumPy's libm."""

import ctypes
import importlib.util
import os

import numpy as np
import pytest
from reference import random_problem, reference_lstm

from mlstm.engines import numpy_engine
from mlstm.formats import resolve

COMPILED = importlib.util.find_spec("mlstm.engines._cpu_lstm") is not None
if not COMPILED and os.environ.get("MLSTM_REQUIRE_COMPILED") == "1":
    # .ci/run sets this: there, a missing extension means the compiled loop went untested.
    pytest.fail("MLSTM_REQUIRE_COMPILED=1 but mlstm.engines._cpu_lstm is not built", pytrace=False)


def run_engine(args, compiled, gate="sigmoid", state="tanh"):
    p = resolve(*args, "CBT", gate_activation=gate, state_activation=state)
    eng = numpy_engine.prepare(p.weights, p.recurrent_weights, p.bias, gate, state, p.dtype, compiled=compiled)
    if compiled:
        assert eng.loop is not None
    else:
        assert eng.loop is None
    return p.restore(*eng.run(p.x, p.hidden_state, p.cell_state)), eng


LOOPS = [
    pytest.param(True, marks=pytest.mark.skipif(not COMPILED, reason="extension not built"), id="compiled"),
    pytest.param(False, id="numpy"),
]


# (H, B): batch-major loop with gemm and (B = 1) gemv; gate-major (H < 16, B >= H), inline and BLAS product.
SHAPES = [(40, 4), (40, 1), (3, 9), (12, 40)]


@pytest.mark.parametrize("compiled", LOOPS)
@pytest.mark.parametrize("gate", ["sigmoid", "hard-sigmoid"])
@pytest.mark.parametrize("state", ["tanh", "softsign", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("H,B", SHAPES)
def test_both_loops_match_reference(compiled, gate, state, dtype, H, B):
    args = random_problem(np.random.default_rng(8), C=5, H=H, B=B, T=9, scale=0.3, dtype=dtype)  # contractive
    (Y, h, c), _ = run_engine(args, compiled, gate, state)
    Yr, hr, cr = reference_lstm(*args, "CBT", gate=gate, state=state)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for got, want in ((Y, Yr), (h, hr), (c, cr)):
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.skipif(not COMPILED, reason="extension not built")
@pytest.mark.parametrize("plan", ["batch", "units"])
@pytest.mark.parametrize("threads", ["2", "3"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("H,B", [(8, 19), (37, 1), (40, 3), (256, 20)])
@pytest.mark.parametrize("kernel", ["blas", "packed"])
def test_threaded_splits_match_reference(monkeypatch, plan, threads, dtype, H, B, kernel):
    # Threads split the batch (each runs whole observations) or the hidden units (a barrier per step);
    # 3 threads on 2 cores also checks that the barrier survives a descheduled partner.
    monkeypatch.setenv("MLSTM_CPU_KERNEL", kernel)
    monkeypatch.setenv("MLSTM_NUM_THREADS", threads)
    monkeypatch.setenv("MLSTM_CPU_PLAN", plan)
    args = random_problem(np.random.default_rng(9), C=4, H=H, B=B, T=12, scale=0.4 if H < 100 else 0.08, dtype=dtype)
    X, H0, C0, W, R, b = args
    H0 = H0[:, :1]  # shared initial state, broadcast
    before = numpy_engine.compiled_loop()[np.dtype(dtype)].blas_threads.get()
    (Y, h, c), eng = run_engine((X, H0, C0, W, R, b), True)
    assert numpy_engine.cpu_plan(12, B, 4, H, np.dtype(dtype))[0] == plan
    blas = eng.loop.blas_threads
    assert blas, "openblas_set_num_threads_local not found: the threaded loops would be skipped"
    assert blas.get() == before, "the threaded loops must leave the BLAS thread count as they found it"
    Yr, hr, cr = reference_lstm(X, H0, C0, W, R, b, "CBT")
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for got, want in ((Y, Yr), (h, hr), (c, cr)):
        np.testing.assert_allclose(got, want, **tol)


def test_plan_choice_follows_the_measurements(monkeypatch):
    monkeypatch.delenv("MLSTM_CPU_PLAN", raising=False)
    monkeypatch.setenv("MLSTM_NUM_THREADS", "2")
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    assert numpy_engine.cpu_plan(1000, 256, 40, 64, f32) == ("batch", 2)
    assert numpy_engine.cpu_plan(4096, 1, 128, 256, f32) == ("units", 2)
    assert numpy_engine.cpu_plan(256, 32, 64, 128, f64)[0] == "batch"
    assert numpy_engine.cpu_plan(128, 64, 256, 512, f32) == ("batch", 2)  # W packed: InputSize no longer counts
    assert numpy_engine.cpu_plan(200, 32, 16, 16, f32) == ("batch", 2)  # B * H = 512
    assert numpy_engine.cpu_plan(2000, 64, 8, 8, f32) == ("serial", 1)  # H < 16: the gate-major loop
    assert numpy_engine.cpu_plan(200, 8, 128, 128, f32) == ("units", 2)  # B < 16
    assert numpy_engine.cpu_plan(64, 32, 10, 3, f32) == ("single", 1)  # too little work for threads, the BLAS's too
    monkeypatch.setenv("MLSTM_NUM_THREADS", "1")
    assert numpy_engine.cpu_plan(1000, 256, 40, 64, f32) == ("single", 1)  # the BLAS at one thread too


@pytest.mark.skipif(not COMPILED, reason="extension not built")
def test_compiled_loop_is_what_runs_by_default():
    loops = numpy_engine.compiled_loop()
    assert loops is not None and set(loops) == {np.dtype(np.float32), np.dtype(np.float64)}


@pytest.mark.skipif(not COMPILED, reason="extension not built")
@pytest.mark.parametrize("dtype,name,ulps", [(np.float64, "f64", 4), (np.float32, "f32", 4)])
def test_c_exp_and_tanh_against_numpy(dtype, name, ulps):
    from mlstm.engines import _cpu_lstm

    lib = ctypes.CDLL(_cpu_lstm.__file__)
    rng = np.random.default_rng(0)
    lim = 760 if dtype == np.float64 else 110
    x = np.concatenate(
        [
            np.linspace(-lim, lim, 200001),
            rng.standard_normal(100000) * 3,
            rng.standard_normal(20000) * 1e-4,
            [np.nan, np.inf, -np.inf, 0.0, -0.0],
        ]
    ).astype(dtype)
    eps = np.finfo(dtype).eps
    for fn, ref in (("exp", np.exp), ("tanh", np.tanh)):
        y = np.empty_like(x)
        getattr(lib, f"mlstm_{fn}_{name}")(
            ctypes.c_void_p(x.ctypes.data), ctypes.c_void_p(y.ctypes.data), ctypes.c_long(x.size)
        )
        with np.errstate(over="ignore"):
            want = ref(x.astype(np.float64))
        tiny = np.finfo(dtype).tiny
        normal = np.isfinite(want) & (np.abs(want) > tiny) & (np.abs(want) < np.finfo(dtype).max)
        rel = np.abs(y[normal] - want[normal]) / np.abs(want[normal])
        assert rel.max() <= ulps * eps, (fn, rel.max() / eps)
        # IEEE special values: NaN stays NaN, overflow is Inf, underflow is 0, tanh(+-Inf) = +-1.
        with np.errstate(over="ignore"):
            cast = want.astype(dtype)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(y), np.isinf(cast))
        if fn == "tanh":  # tanh keeps the sign of zero
            assert np.array_equal(np.signbit(y[-2:]), [False, True]) and not y[-2:].any()
        else:
            assert np.array_equal(y[-2:], [1, 1])


@pytest.mark.skipif(not COMPILED, reason="extension not built")
def test_random_shapes_every_plan_against_reference(monkeypatch):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=40, deadline=None)
    @given(
        st.integers(1, 6),
        st.integers(1, 40),
        st.integers(1, 20),
        st.integers(1, 6),
        st.sampled_from(["serial", "batch", "units"]),
        st.sampled_from(["sigmoid", "hard-sigmoid"]),
        st.sampled_from(["tanh", "softsign", "relu"]),
        st.sampled_from([np.float64, np.float32]),
        st.integers(0, 2**31),
        st.sampled_from(["blas", "packed"]),
    )
    def check(C, H, B, T, plan, gate, state, dtype, seed, kernel):
        monkeypatch.setenv("MLSTM_CPU_PLAN", plan)
        monkeypatch.setenv("MLSTM_CPU_KERNEL", kernel)
        monkeypatch.setenv("MLSTM_NUM_THREADS", "2")
        args = random_problem(np.random.default_rng(seed), C=C, H=H, B=B, T=T, scale=0.3, dtype=dtype)
        (Y, h, c), _ = run_engine(args, True, gate, state)
        Yr, hr, cr = reference_lstm(*args, "CBT", gate=gate, state=state)
        tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
        for got, want in ((Y, Yr), (h, hr), (c, cr)):
            np.testing.assert_allclose(got, want, **tol)

    check()


@pytest.mark.parametrize("threads", ["80", "128"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_unit_split_beyond_the_c_thread_limit_stays_right(monkeypatch, threads, dtype):
    """More threads than the C unit split allows (64): the Python side must permute R's rows for
    the count that actually runs (it once permuted for 80 while C ran 64: max error 0.4)."""
    from reference import random_problem, reference_lstm

    from mlstm import lstm

    monkeypatch.setenv("MLSTM_CPU_PLAN", "units")
    monkeypatch.setenv("MLSTM_NUM_THREADS", threads)
    args = random_problem(np.random.default_rng(int(threads)), C=3, H=160, B=1, T=5, scale=0.05, dtype=dtype)
    got = lstm(*args, DataFormat="CBT")
    want = reference_lstm(*args, "CBT")
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, **tol)
