"""An independent float64 reference for MATLAB's lstm, written plainly from docs/BEHAVIOUR.md §1-§3.

It shares no code with mlstm: its own DataFormat handling (element by element,
with the column-major S/C index formula written out), its own activations, and
a loop over observations and time steps with the gate blocks sliced in MATLAB's
order i, f, g, o. Slow on purpose; use small sizes.
"""

from __future__ import annotations

import itertools

import numpy as np


def sigmoid(x):
    # Stable in both directions: exp of a non-positive number never overflows.
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def hard_sigmoid(x):
    return np.where(x < -2.5, 0.0, np.where(x > 2.5, 1.0, 0.2 * x + 0.5))


def softsign(x):
    return x / (1.0 + np.abs(x))


def relu(x):
    return np.maximum(x, 0.0)  # IEEE maximum: NaN propagates


GATE = {"sigmoid": sigmoid, "hard-sigmoid": hard_sigmoid}
STATE = {"tanh": np.tanh, "softsign": softsign, "relu": relu}


def _drop_trailing_ones(shape):
    shape = list(shape)
    while shape and shape[-1] == 1:
        shape.pop()
    return shape


def reference_lstm(X, H0, C0, W, R, b, data_format, gate="sigmoid", state="tanh"):
    """Return (Y, hiddenState, cellState) as float64 arrays in MATLAB sizes."""
    fmt = data_format.upper()
    X = np.asarray(X, dtype=np.float64)
    dims = _drop_trailing_ones(X.shape)
    assert len(fmt) >= len(dims)
    full = tuple(dims) + (1,) * (len(fmt) - len(dims))
    X = X.reshape(full)

    def size(label):
        return full[fmt.index(label)] if label in fmt else 1

    spatial_axes = [k for k, ch in enumerate(fmt) if ch == "S"]
    spatial_sizes = [full[k] for k in spatial_axes]
    C, B, T = size("C"), size("B"), size("T")
    input_size = C * int(np.prod(spatial_sizes))

    def x_vector(bi, ti):
        v = np.zeros(input_size)
        for c in range(C):
            for s in itertools.product(*[range(n) for n in spatial_sizes]):
                # column-major merge of (s1, s2, ..., c)
                col, stride = 0, 1
                for sk, nk in zip(s, spatial_sizes):
                    col += sk * stride
                    stride *= nk
                col += c * stride
                index = [0] * len(fmt)
                for k, sk in zip(spatial_axes, s):
                    index[k] = sk
                if "C" in fmt:
                    index[fmt.index("C")] = c
                if "B" in fmt:
                    index[fmt.index("B")] = bi
                index[fmt.index("T")] = ti
                v[col] = X[tuple(index)]
        return v

    W = np.asarray(W, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64).ravel()
    H = R.shape[1]
    H0 = np.asarray(H0, dtype=np.float64).reshape(H, -1)
    C0 = np.asarray(C0, dtype=np.float64).reshape(H, -1)
    sg, sc = GATE[gate], STATE[state]

    Y = np.zeros((H, B, T))
    h_out = np.zeros((H, B))
    c_out = np.zeros((H, B))
    for bi in range(B):
        h = H0[:, bi if H0.shape[1] > 1 else 0].copy()
        c = C0[:, bi if C0.shape[1] > 1 else 0].copy()
        for ti in range(T):
            z = W @ x_vector(bi, ti) + R @ h + b
            i = sg(z[0:H])
            f = sg(z[H : 2 * H])
            g = sc(z[2 * H : 3 * H])
            o = sg(z[3 * H : 4 * H])
            c = f * c + i * g
            h = o * sc(c)
            Y[:, bi, ti] = h
        h_out[:, bi] = h
        c_out[:, bi] = c

    # Y in the input's order minus S; C first if the input had none; U singleton.
    out_labels = [ch for ch in fmt if ch != "S"]
    if "C" not in out_labels:
        out_labels = ["C"] + out_labels
    sizes = {"C": H, "B": B, "T": T, "U": 1}
    out = np.zeros([sizes[lab] for lab in out_labels])
    for hi, bi, ti in itertools.product(range(H), range(B), range(T)):
        where = {"C": hi, "B": bi, "T": ti, "U": 0}
        out[tuple(where[lab] for lab in out_labels)] = Y[hi, bi, ti]
    shape = _drop_trailing_ones(out.shape)
    while len(shape) < 2:
        shape.append(1)
    return out.reshape(shape), h_out, c_out


def random_problem(rng, C=3, H=2, B=2, T=4, scale=0.5, dtype=np.float64):
    """Random canonical-size arguments (X as C x B x T) with moderately contractive weights."""
    X = rng.standard_normal((C, B, T)).astype(dtype)
    H0 = (rng.standard_normal((H, B)) * 0.5).astype(dtype)
    C0 = (rng.standard_normal((H, B)) * 0.5).astype(dtype)
    W = (rng.standard_normal((4 * H, C)) * scale).astype(dtype)
    R = (rng.standard_normal((4 * H, H)) * scale).astype(dtype)
    b = (rng.standard_normal(4 * H) * 0.2).astype(dtype)
    return X, H0, C0, W, R, b
