"""mlstm's NumPy engine (through the full front end) against the independent float64 reference."""

import numpy as np
import pytest
from reference import random_problem, reference_lstm

from mlstm import lstm

# (format, X size) pairs covering every DataFormat rule.
FORMAT_CASES = [
    ("CBT", (3, 2, 5)),
    ("CTB", (3, 5, 2)),
    ("TCB", (5, 3, 2)),
    ("TBC", (5, 2, 3)),
    ("BCT", (2, 3, 5)),
    ("BTC", (2, 5, 3)),
    ("CT", (3, 5)),
    ("TC", (5, 3)),
    ("BT", (2, 5)),  # no C: C of size 1 is added
    ("T", (5,)),  # only time
    ("TB", (5, 2)),
    ("SCBT", (2, 3, 2, 4)),
    ("SSCBT", (2, 3, 2, 2, 4)),
    ("SBT", (3, 2, 4)),  # S without C
    ("CSBT", (2, 3, 2, 4)),  # S after C
    ("TSBSC", (4, 2, 2, 3, 2)),  # S dims scattered
    ("CUBT", (3, 1, 2, 4)),  # singleton U
    ("UCBTU", (1, 3, 2, 4, 1)),
    ("cbt", (3, 2, 5)),  # lower case
    ("CBT", (3, 2, 1)),  # T = 1 (trailing singleton dropped by MATLAB)
    ("CBT", (3, 1, 5)),  # B = 1
    ("CBTU", (3, 2, 5)),  # format longer than the array: trailing singleton U
]


def _args(rng, fmt, xshape, H=3, dtype=np.float64, batch_states=True):
    labels = fmt.upper()
    sizes = dict(zip(labels, list(xshape) + [1] * (len(labels) - len(xshape))))
    spatial = int(np.prod([n for lab, n in zip(labels, list(xshape) + [1] * 9) if lab == "S"]))
    input_size = sizes.get("C", 1) * spatial
    B = sizes.get("B", 1)
    X = rng.standard_normal(xshape).astype(dtype)
    cols = B if batch_states else 1
    H0 = (rng.standard_normal((H, cols)) * 0.5).astype(dtype)
    C0 = (rng.standard_normal((H, cols)) * 0.5).astype(dtype)
    W = (rng.standard_normal((4 * H, input_size)) * 0.5).astype(dtype)
    R = (rng.standard_normal((4 * H, H)) * 0.5).astype(dtype)
    b = (rng.standard_normal((4 * H, 1)) * 0.2).astype(dtype)
    return X, H0, C0, W, R, b


@pytest.mark.parametrize("fmt,xshape", FORMAT_CASES)
@pytest.mark.parametrize("batch_states", [True, False])
def test_formats_match_reference_double(rng, fmt, xshape, batch_states):
    args = _args(rng, fmt, xshape, batch_states=batch_states)
    Y, h, c = lstm(*args, DataFormat=fmt)
    Yr, hr, cr = reference_lstm(*args, fmt)
    assert Y.shape == Yr.shape
    assert Y.dtype == np.float64 and h.dtype == np.float64 and c.dtype == np.float64
    np.testing.assert_allclose(Y, Yr, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, hr, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c, cr, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("gate", ["sigmoid", "hard-sigmoid"])
@pytest.mark.parametrize("state", ["tanh", "softsign", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_activations_match_reference(rng, gate, state, dtype):
    args = random_problem(rng, C=4, H=3, B=3, T=7, scale=1.5, dtype=dtype)
    Y, h, c = lstm(*args, DataFormat="CBT", StateActivationFunction=state, GateActivationFunction=gate)
    Yr, hr, cr = reference_lstm(*args, "CBT", gate=gate, state=state)
    assert Y.dtype == dtype
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for got, want in ((Y, Yr), (h, hr), (c, cr)):
        np.testing.assert_allclose(got, want, **tol)


def test_hard_sigmoid_regions_are_exercised(rng):
    # Large pre-activations reach both clipped regions and the linear one.
    args = random_problem(rng, C=4, H=3, B=3, T=6, scale=4.0)
    Y, h, c = lstm(*args, DataFormat="CBT", GateActivationFunction="hard-sigmoid")
    Yr, hr, cr = reference_lstm(*args, "CBT", gate="hard-sigmoid")
    np.testing.assert_allclose(Y, Yr, rtol=1e-12, atol=1e-14)
    X, H0, C0, W, R, b = args
    z = W @ X[:, :, 0] + R @ H0 + b[:, None]
    assert (z < -2.5).any() and (z > 2.5).any() and (np.abs(z) < 2.5).any()


def test_sigmoid_extreme_inputs_no_overflow_or_warning(rng):
    X, H0, C0, W, R, b = random_problem(rng, C=2, H=2, B=2, T=3)
    X = X * 1e4  # drives gate pre-activations far past exp's range
    with np.errstate(all="raise"):
        Y, h, c = lstm(X, H0, C0, W, R, b, DataFormat="CBT")
    Yr, hr, cr = reference_lstm(X, H0, C0, W, R, b, "CBT")
    assert np.isfinite(Y).all()
    np.testing.assert_allclose(Y, Yr, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mixed_classes(rng, dtype):
    X, H0, C0, W, R, b = random_problem(rng, C=3, H=2, B=2, T=5)
    other = np.float32 if dtype == np.float64 else np.float64
    # One single input makes the whole computation single.
    Y, h, c = lstm(X.astype(dtype), H0.astype(other), C0, W, R, b.astype(np.float32), DataFormat="CBT")
    assert Y.dtype == dtype and h.dtype == other and c.dtype == np.float64
    Yr, hr, cr = reference_lstm(X, H0, C0, W, R, b, "CBT")
    np.testing.assert_allclose(Y, Yr, rtol=1e-5, atol=1e-6)
    # The double outputs hold single-precision values: not equal to the double computation.
    assert not np.array_equal(c, cr)
    assert np.array_equal(c, c.astype(np.float32).astype(np.float64))


def test_all_double_computes_in_double(rng):
    args = random_problem(rng, C=3, H=2, B=2, T=5)
    Y, h, c = lstm(*args, DataFormat="CBT")
    Yr, _, _ = reference_lstm(*args, "CBT")
    np.testing.assert_allclose(Y, Yr, rtol=1e-13, atol=1e-15)


def test_long_sequence_single_vs_double_reference():
    rng = np.random.default_rng(7)
    C, H, B, T = 4, 5, 2, 2000
    X = rng.standard_normal((C, B, T))
    W = rng.standard_normal((4 * H, C)) * 0.3
    R = rng.standard_normal((4 * H, H)) * (0.5 / np.sqrt(H))  # contractive
    b = rng.standard_normal(4 * H) * 0.1
    H0 = np.zeros((H, 1))
    C0 = np.zeros((H, 1))
    Yr, hr, cr = reference_lstm(X, H0, C0, W, R, b, "CBT")
    Yd, hd, cd = lstm(X, H0, C0, W, R, b, DataFormat="CBT")
    np.testing.assert_allclose(Yd, Yr, rtol=1e-12, atol=1e-14)
    single = [a.astype(np.float32) for a in (X, H0, C0, W, R, b)]
    Ys, hs, cs = lstm(*single, DataFormat="CBT")
    assert Ys.dtype == np.float32
    np.testing.assert_allclose(Ys, Yr, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cs, cr, rtol=1e-5, atol=1e-6)


def test_nan_and_inf_propagate(rng):
    X, H0, C0, W, R, b = random_problem(rng, C=3, H=2, B=3, T=6)
    X[1, 0, 2] = np.nan
    X[0, 1, 3] = np.inf
    X[2, 2, 1] = -np.inf
    Y, h, c = lstm(X, H0, C0, W, R, b, DataFormat="CBT")
    Yr, hr, cr = reference_lstm(X, H0, C0, W, R, b, "CBT")
    np.testing.assert_array_equal(np.isnan(Y), np.isnan(Yr))
    assert np.isnan(Y[:, 0, 2:]).all()  # NaN reaches every later step of that observation
    assert not np.isnan(Y[:, 0, :2]).any()
    np.testing.assert_allclose(Y, Yr, rtol=1e-12, atol=1e-14)  # assert_allclose treats NaN == NaN
    np.testing.assert_allclose(h, hr, rtol=1e-12, atol=1e-14)


def test_zero_time_steps_return_initial_states(rng):
    X, H0, C0, W, R, b = random_problem(rng, C=3, H=2, B=2, T=1)
    X = np.zeros((3, 2, 0))
    Y, h, c = lstm(X, H0, C0, W, R, b, DataFormat="CBT")
    assert Y.shape == (2, 2, 0)
    np.testing.assert_array_equal(h, H0)
    np.testing.assert_array_equal(c, C0)


@pytest.mark.parametrize("H,B,T", [(1, 1, 1), (1, 4, 3), (5, 1, 1), (1, 1, 9)])
def test_edge_sizes(rng, H, B, T):
    args = random_problem(rng, C=2, H=H, B=B, T=T)
    Y, h, c = lstm(*args, DataFormat="CBT")
    Yr, hr, cr = reference_lstm(*args, "CBT")
    assert Y.shape == Yr.shape and h.shape == (H, B)
    np.testing.assert_allclose(Y, Yr, rtol=1e-12, atol=1e-14)


def test_row_vector_states_mean_one_hidden_unit_per_observation(rng):
    X, H0, C0, W, R, b = random_problem(rng, C=2, H=1, B=4, T=3)
    H0row = H0.reshape(1, 4)
    Y, h, c = lstm(X, H0row, C0.reshape(1, 4), W, R, b, DataFormat="CBT")
    Yr, hr, cr = reference_lstm(X, H0row, C0.reshape(1, 4), W, R, b, "CBT")
    np.testing.assert_allclose(Y, Yr, rtol=1e-12, atol=1e-14)


def test_inputs_are_not_modified(rng):
    args = random_problem(rng, C=3, H=2, B=2, T=4)
    copies = [a.copy() for a in args]
    lstm(*args, DataFormat="CBT")
    for a, b in zip(args, copies):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_larger_problem_on_the_blas_path(dtype):
    # B * 4H >= 4096 takes the in-place BLAS gemm path of the NumPy engine.
    rng = np.random.default_rng(3)
    X, H0, C0, W, R, b = random_problem(rng, C=6, H=40, B=32, T=4, scale=0.3, dtype=dtype)
    Y, h, c = lstm(X, H0, C0, W, R, b, DataFormat="CBT")
    Yr, hr, cr = reference_lstm(X, H0, C0, W, R, b, "CBT")
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for got, want in ((Y, Yr), (h, hr), (c, cr)):
        np.testing.assert_allclose(got, want, **tol)
