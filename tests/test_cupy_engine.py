"""The CuPy engine against the NumPy engine at SPEC §7 tolerances, on a GPU.

Skips where CuPy cannot run kernels (no GPU). Run on a GPU machine with:
    PYTHONPATH=. python -m pytest tests/test_cupy_engine.py
"""

import numpy as np
import pytest
from reference import random_problem

from mlstm import lstm
from mlstm.engines import cupy_unavailable_reason

REASON = cupy_unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"no usable GPU: {REASON}")

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


def _compare(args, **opts):
    want = lstm(*args, engine="numpy", **opts)
    got = lstm(*args, engine="cupy", **opts)
    single = any(np.asarray(a).dtype == np.float32 for a in args)
    tol = dict(rtol=1e-5, atol=1e-6) if single else dict(rtol=1e-12, atol=1e-14)
    for g, w in zip(got, want):
        assert isinstance(g, np.ndarray) and g.dtype == w.dtype and g.shape == w.shape
        np.testing.assert_allclose(g, w, **tol)


@pytest.mark.parametrize("fmt,shape", FORMATS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_formats_and_classes(fmt, shape, dtype):
    _compare(_args(fmt, shape, dtype=dtype), DataFormat=fmt)


@pytest.mark.parametrize("gate", ["sigmoid", "hard-sigmoid"])
@pytest.mark.parametrize("state", ["tanh", "softsign", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_activations(gate, state, dtype):
    _compare(
        _args("CBT", (5, 4, 9), dtype=dtype),
        DataFormat="CBT",
        GateActivationFunction=gate,
        StateActivationFunction=state,
    )


def test_mixed_classes_shared_states_and_edge_sizes():
    X, H0, C0, W, R, b = _args("CBT", (5, 4, 9), shared=True)
    _compare((X.astype(np.float32), H0, C0, W, R, b), DataFormat="CBT")
    _compare(_args("CBT", (5, 1, 1), H=1), DataFormat="CBT")


def test_long_sequence_contractive_and_nan():
    X, H0, C0, W, R, b = random_problem(np.random.default_rng(1), C=8, H=32, B=16, T=3000, scale=0.1)
    _compare((X, H0, C0, W, R, b), DataFormat="CBT")
    _compare(tuple(a.astype(np.float32) for a in (X, H0, C0, W, R, b)), DataFormat="CBT")
    X[2, 3, 100] = np.nan
    got = lstm(X, H0, C0, W, R, b, DataFormat="CBT", engine="cupy")[0]
    want = lstm(X, H0, C0, W, R, b, DataFormat="CBT")[0]
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))


def test_cupy_arrays_in_and_out():
    import cupy as cp

    args = _args("CBT", (5, 4, 9))
    Y, h, c = lstm(*(cp.asarray(a) for a in args), DataFormat="CBT", engine="cupy")
    assert isinstance(Y, cp.ndarray) and isinstance(h, cp.ndarray)
    np.testing.assert_allclose(Y.get(), lstm(*args, DataFormat="CBT")[0], rtol=1e-12, atol=1e-14)
