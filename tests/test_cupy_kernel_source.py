"""The GPU engine's fused step kernel (mlstm/engines/lstm_step.cu), compiled as C on the host.

Without a GPU this still checks the kernel's arithmetic and memory layout: gate blocks i, f, g,
o, every activation, the state update, NaN propagation, float and double. The time loop around
it (one GEMM per step) is driven from NumPy here; tests/test_cupy_engine.py runs the real thing.
"""

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest
from conftest import REPO
from reference import random_problem, reference_lstm

CC = shutil.which("cc") or shutil.which("gcc")
if CC is None:
    pytest.skip("no C compiler", allow_module_level=True)

SOURCE = os.path.join(REPO, "mlstm", "engines", "lstm_step.cu")
GATES = {"sigmoid": 0, "hard-sigmoid": 1}
STATES = {"tanh": 0, "softsign": 1, "relu": 2}


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    folder = tmp_path_factory.mktemp("kernel")
    cache = {}

    def compile_kernel(real, gate, state):
        key = (real, gate, state)
        if key not in cache:
            c_file = folder / "host.c"
            c_file.write_text(f'#define MLSTM_HOST_TEST\n#include "{SOURCE}"\n')
            lib = folder / f"k_{real}_{gate}_{state}.so"
            subprocess.run(
                [
                    CC,
                    "-O2",
                    "-shared",
                    "-fPIC",
                    f"-Dreal_t={real}",
                    f"-DGATE_ACT={GATES[gate]}",
                    f"-DSTATE_ACT={STATES[state]}",
                    "-o",
                    str(lib),
                    str(c_file),
                    "-lm",
                ],
                check=True,
            )
            cache[key] = ctypes.CDLL(str(lib))
        return cache[key]

    return compile_kernel


def run_with_kernel(lib, X, H0, C0, W, R, b, dtype):
    """X as C x B x T; the time loop in NumPy, the cell update in the compiled kernel."""
    C_, B, T = X.shape
    H = R.shape[1]
    X, W, R, b = (np.asarray(a, dtype) for a in (X, W, R, b))
    h = np.ascontiguousarray(np.broadcast_to(H0.reshape(H, -1).T, (B, H)), dtype)
    c = np.ascontiguousarray(np.broadcast_to(C0.reshape(H, -1).T, (B, H)), dtype)
    Y = np.empty((T, B, H), dtype)
    zero_bias = np.zeros(4 * H, dtype)  # b is in zx here; the kernel adds its own bias argument
    ptr = ctypes.c_void_p
    for t in range(T):
        zx = np.ascontiguousarray(X[:, :, t].T @ W.T + b.reshape(-1))
        zr = np.ascontiguousarray(h @ R.T)
        lib.lstm_step_host(
            ptr(zx.ctypes.data),
            ptr(zr.ctypes.data),
            ptr(zero_bias.ctypes.data),
            ptr(c.ctypes.data),
            ptr(Y[t].ctypes.data),
            ctypes.c_longlong(B),
            ctypes.c_longlong(H),
        )
        h = Y[t]
    return Y.transpose(2, 1, 0), h.T, c.T


@pytest.mark.parametrize("gate", list(GATES))
@pytest.mark.parametrize("state", list(STATES))
@pytest.mark.parametrize("real,dtype", [("double", np.float64), ("float", np.float32)])
def test_kernel_cell_matches_reference(build, gate, state, real, dtype):
    lib = build(real, gate, state)
    args = random_problem(np.random.default_rng(4), C=3, H=4, B=3, T=6, scale=1.5)
    Y, h, c = run_with_kernel(lib, *args, dtype)
    Yr, hr, cr = reference_lstm(*args, "CBT", gate=gate, state=state)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for got, want in ((Y, Yr), (h, hr), (c, cr)):
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("state", list(STATES))
def test_kernel_propagates_nan_and_handles_extremes(build, state):
    lib = build("double", "sigmoid", state)
    X, H0, C0, W, R, b = random_problem(np.random.default_rng(5), C=2, H=2, B=2, T=4)
    X[0, 1, 1] = np.nan
    X[1, 0, 2] = 1e6  # exp overflows inside the sigmoid: must give exact 0/1 gates, no NaN
    Y, h, c = run_with_kernel(lib, X, H0, C0, W, R, b, np.float64)
    Yr, hr, cr = reference_lstm(X, H0, C0, W, R, b, "CBT", state=state)
    np.testing.assert_array_equal(np.isnan(Y), np.isnan(Yr))
    assert np.isnan(Y[:, 1, 1:]).all()
    np.testing.assert_allclose(Y, Yr, rtol=1e-12, atol=1e-14)
