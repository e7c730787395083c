"""The CuPy engine on a GPU: the whole semantic matrix against the float64 reference (docs/BEHAVIOUR.md §7
tolerances), with every kernel variant (step, persistent, single-block) forced in turn.

Skips where CuPy cannot run kernels (no GPU). On a GPU machine: ``bash benchmarks/gpu_check.sh``,
or ``PYTHONPATH=. python -m pytest tests/test_cupy_engine.py``.
"""

import numpy as np
import pytest
from reference import random_problem, reference_lstm

from mlstm import lstm
from mlstm.engines import cupy_unavailable_reason

REASON = cupy_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no usable GPU: {REASON}")

VARIANTS = ["step", "persistent", "single"]

FORMATS = [
    ("CBT", (5, 4, 9)),
    ("TCB", (9, 5, 4)),
    ("BTC", (4, 9, 5)),
    ("SCBT", (2, 3, 4, 9)),
    ("CT", (5, 9)),
    ("BT", (4, 9)),
    ("CUBT", (5, 1, 4, 9)),
    ("CBT", (5, 1, 9)),
    ("CBT", (5, 4, 1)),
]


@pytest.fixture(params=VARIANTS)
def kernel(request, monkeypatch):
    monkeypatch.setenv("MLSTM_GPU_KERNEL", request.param)
    return request.param


def _args(fmt, shape, H=6, dtype=np.float64, shared=False, seed=0):
    rng = np.random.default_rng(seed)
    sizes = dict(zip(fmt, shape))
    input_size = int(np.prod([n for lab, n in zip(fmt, shape) if lab in "SC"]))
    B = sizes.get("B", 1)
    cols = 1 if shared else B
    return (
        rng.standard_normal(shape).astype(dtype),
        (rng.standard_normal((H, cols)) * 0.5).astype(dtype),
        (rng.standard_normal((H, cols)) * 0.5).astype(dtype),
        (rng.standard_normal((4 * H, input_size)) * 0.5).astype(dtype),
        (rng.standard_normal((4 * H, H)) * 0.5).astype(dtype),
        (rng.standard_normal(4 * H) * 0.2).astype(dtype),
    )


def _compare(args, gate="sigmoid", state="tanh", **opts):
    """The GPU result against the float64 reference, class and size as MATLAB gives them."""
    fmt = opts["DataFormat"]
    got = lstm(*args, engine="cupy", GateActivationFunction=gate, StateActivationFunction=state, **opts)
    want = reference_lstm(*args, fmt, gate=gate, state=state)
    classes = lstm(*args, engine="numpy", GateActivationFunction=gate, StateActivationFunction=state, **opts)
    single = any(np.asarray(a).dtype == np.float32 for a in args)
    tol = dict(rtol=1e-5, atol=1e-6) if single else dict(rtol=1e-12, atol=1e-14)
    for g, w, c in zip(got, want, classes):
        assert isinstance(g, np.ndarray) and g.dtype == c.dtype and g.shape == c.shape == w.shape
        np.testing.assert_allclose(g, w, **tol)


@pytest.mark.parametrize("fmt,shape", FORMATS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_formats_and_classes(kernel, fmt, shape, dtype):
    _compare(_args(fmt, shape, dtype=dtype), DataFormat=fmt)


@pytest.mark.parametrize("gate", ["sigmoid", "hard-sigmoid"])
@pytest.mark.parametrize("state", ["tanh", "softsign", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_activations(kernel, gate, state, dtype):
    _compare(_args("CBT", (5, 4, 9), dtype=dtype), gate=gate, state=state, DataFormat="CBT")


def test_mixed_classes_shared_states_and_edge_sizes(kernel):
    X, H0, C0, W, R, b = _args("CBT", (5, 4, 9), shared=True)
    _compare((X.astype(np.float32), H0, C0, W, R, b), DataFormat="CBT")
    _compare(_args("CBT", (5, 1, 1), H=1), DataFormat="CBT")
    _compare(_args("CBT", (3, 7, 1), H=2, shared=True), DataFormat="CBT")


@pytest.mark.parametrize(
    "kernel_name,H,B",
    [
        ("persistent", 300, 5),
        ("persistent", 40, 70),
        ("persistent", 7, 1),
        ("persistent", 200, 300),
        ("single", 16, 64),
        ("single", 45, 1),
        ("step", 300, 5),
    ],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_larger_shapes_every_decomposition(monkeypatch, kernel_name, H, B, dtype):
    """Many blocks, partial last block, lane splits 1..32, several observation tiles."""
    monkeypatch.setenv("MLSTM_GPU_KERNEL", kernel_name)
    args = random_problem(np.random.default_rng(H * B), C=11, H=H, B=B, T=6, scale=0.5 / np.sqrt(H), dtype=dtype)
    _compare(args, DataFormat="CBT")


def test_long_sequence_contractive_and_nan(kernel):
    X, H0, C0, W, R, b = random_problem(np.random.default_rng(1), C=8, H=32, B=16, T=3000, scale=0.1)
    want = lstm(X, H0, C0, W, R, b, DataFormat="CBT")  # float64 NumPy engine (itself checked vs the reference)
    got = lstm(X, H0, C0, W, R, b, DataFormat="CBT", engine="cupy")
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-14)
    single = tuple(a.astype(np.float32) for a in (X, H0, C0, W, R, b))
    for g, w in zip(lstm(*single, DataFormat="CBT", engine="cupy"), want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)
    X[2, 3, 100] = np.nan
    got = lstm(X, H0, C0, W, R, b, DataFormat="CBT", engine="cupy")[0]
    ref = lstm(X, H0, C0, W, R, b, DataFormat="CBT")[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got[:, 3, 100:]).all()


def test_cupy_arrays_in_and_out(kernel):
    import cupy as cp

    args = _args("CBT", (5, 4, 9))
    Y, h, c = lstm(*(cp.asarray(a) for a in args), DataFormat="CBT", engine="cupy")
    assert isinstance(Y, cp.ndarray) and isinstance(h, cp.ndarray) and isinstance(c, cp.ndarray)
    Yr, hr, cr = reference_lstm(*args, "CBT")
    for g, w in ((Y, Yr), (h, hr), (c, cr)):
        np.testing.assert_allclose(g.get(), w, rtol=1e-12, atol=1e-14)


def test_zero_steps_returns_initial_states(kernel):
    X, H0, C0, W, R, b = _args("CBT", (5, 4, 9))
    Y, h, c = lstm(X[:, :, :0], H0, C0, W, R, b, DataFormat="CBT", engine="cupy")
    assert Y.shape == (6, 4, 0)
    np.testing.assert_array_equal(h, H0)
    np.testing.assert_array_equal(c, C0)


def test_time_blocks_and_chunks_equal_one_block(kernel, monkeypatch):
    from mlstm.engines import cupy_engine

    args = random_problem(np.random.default_rng(3), C=4, H=24, B=3, T=50, scale=0.3)
    whole = lstm(*args, DataFormat="CBT", engine="cupy")
    monkeypatch.setattr(cupy_engine, "BLOCK_BYTES", 3 * 4 * 24 * 8 * 7)  # 7 steps per device block
    blocked = lstm(*args, DataFormat="CBT", engine="cupy")
    for a, b in zip(whole, blocked):
        np.testing.assert_array_equal(a, b)


def test_every_variant_compiles_through_nvrtc():
    """What CuPy compiles at run time (NVRTC), for every dtype x gate x state x kernel."""
    from mlstm.engines import cupy_engine

    for dtype in ("float32", "float64"):
        for gate in cupy_engine.GATE_CODES:
            for state in cupy_engine.STATE_CODES:
                for source, names in (
                    (cupy_engine.KERNEL_SOURCE, ["lstm_step"]),
                    (cupy_engine.PERSISTENT_SOURCE, ["lstm_persistent", "lstm_single_block"]),
                ):
                    for kname in names:
                        k = cupy_engine._kernel(source, kname, dtype, gate, state)
                        assert k.attributes["num_regs"] * cupy_engine.THREADS <= 65536
                        assert k.attributes["local_size_bytes"] == 0
