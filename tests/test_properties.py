"""Hypothesis property tests for the format rules (docs/BEHAVIOUR.md §2-§3).

The oracle is the rule itself, not mlstm's output for another call: permuting
X's dimensions together with its DataFormat must permute Y the same way, and a
shared H x 1 state must equal the same state repeated for every observation.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from reference import reference_lstm

from mlstm import lstm

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def problems(draw):
    labels = draw(st.permutations(list("CBT")))
    n_s = draw(st.integers(0, 2))
    for _ in range(n_s):
        labels.insert(draw(st.integers(0, len(labels))), "S")
    sizes = {"C": draw(st.integers(1, 3)), "B": draw(st.integers(1, 3)), "T": draw(st.integers(1, 4))}
    shape = [sizes[lab] if lab != "S" else draw(st.integers(1, 3)) for lab in labels]
    H = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    return "".join(labels), tuple(shape), H, seed


def _arrays(fmt, shape, H, seed):
    rng = np.random.default_rng(seed)
    input_size = int(np.prod([n for lab, n in zip(fmt, shape) if lab in "SC"]))
    B = shape[fmt.index("B")]
    X = rng.standard_normal(shape)
    H0, C0 = rng.standard_normal((H, B)) * 0.5, rng.standard_normal((H, B)) * 0.5
    W = rng.standard_normal((4 * H, input_size)) * 0.5
    R = rng.standard_normal((4 * H, H)) * 0.5
    b = rng.standard_normal(4 * H) * 0.2
    return X, H0, C0, W, R, b


def _full(a, ndim):
    return a.reshape(a.shape + (1,) * (ndim - a.ndim))


@SETTINGS
@given(problems(), st.randoms(use_true_random=False))
def test_permuting_x_with_its_format_permutes_y(problem, random):
    fmt, shape, H, seed = problem
    X, H0, C0, W, R, b = _arrays(fmt, shape, H, seed)
    # Permute only the C, B, T axes among themselves: S order (and so the weights' columns) is unchanged.
    cbt_axes = [k for k, lab in enumerate(fmt) if lab != "S"]
    shuffled = cbt_axes[:]
    random.shuffle(shuffled)
    perm = list(range(len(fmt)))
    for src, dst in zip(cbt_axes, shuffled):
        perm[src] = dst
    fmt2 = "".join(fmt[p] for p in perm)
    X2 = np.transpose(X, perm)
    Y1, h1, c1 = lstm(X, H0, C0, W, R, b, DataFormat=fmt)
    Y2, h2, c2 = lstm(X2, H0, C0, W, R, b, DataFormat=fmt2)
    out1 = [lab for lab in fmt if lab != "S"]
    out2 = [lab for lab in fmt2 if lab != "S"]
    Y1 = _full(Y1, 3)
    Y2 = _full(Y2, 3)
    np.testing.assert_array_equal(np.transpose(Y1, [out1.index(lab) for lab in out2]), Y2)
    np.testing.assert_array_equal(h1, h2)
    np.testing.assert_array_equal(c1, c2)
    # And the first ordering agrees with the independent reference.
    Yr, _, _ = reference_lstm(X, H0, C0, W, R, b, fmt)
    np.testing.assert_allclose(Y1, _full(Yr, 3), rtol=1e-12, atol=1e-14)


@SETTINGS
@given(problems())
def test_shared_state_equals_repeated_state(problem):
    fmt, shape, H, seed = problem
    X, H0, C0, W, R, b = _arrays(fmt, shape, H, seed)
    B = shape[fmt.index("B")]
    h_col, c_col = H0[:, :1], C0[:, :1]
    shared = lstm(X, h_col, c_col, W, R, b, DataFormat=fmt)
    repeated = lstm(X, np.repeat(h_col, B, axis=1), np.repeat(c_col, B, axis=1), W, R, b, DataFormat=fmt)
    for a, r in zip(shared, repeated):
        np.testing.assert_array_equal(a, r)


@SETTINGS
@given(problems())
def test_lower_case_format_is_the_same_format(problem):
    fmt, shape, H, seed = problem
    args = _arrays(fmt, shape, H, seed)
    for a, r in zip(lstm(*args, DataFormat=fmt.lower()), lstm(*args, DataFormat=fmt)):
        np.testing.assert_array_equal(a, r)
