"""The CuPy engine's host-side orchestration, run without a GPU.

CuPy is replaced by NumPy, and cupy.RawKernel by the same lstm_step.cu compiled as C on the host
(the MLSTM_HOST_TEST harness), so CupyLSTM.run executes its real loop: the input GEMM, one
recurrent GEMM and one kernel launch per step, h read from Y[t-1] and written into Y[t], the cell
state updated in place, chunked calls carrying h and c. Compared with the float64 reference.
tests/test_cupy_engine.py runs the real thing on a GPU.
"""

import ctypes
import re
import shutil
import subprocess
import types

import numpy as np
import pytest
from reference import random_problem, reference_lstm

from mlstm.engines import cupy_engine
from mlstm.formats import resolve

CC = shutil.which("cc") or shutil.which("gcc")
if CC is None:
    pytest.skip("no C compiler", allow_module_level=True)


@pytest.fixture
def host_cupy(monkeypatch, tmp_path):
    libraries = {}
    launches = []

    class HostKernel:
        def __init__(self, source, name, options=()):
            assert name == "lstm_step"
            defines = tuple(sorted(options))
            if defines not in libraries:
                c_file = tmp_path / "step.c"
                c_file.write_text('#define MLSTM_HOST_TEST\n#include "' + cupy_engine.KERNEL_SOURCE + '"\n')
                lib = tmp_path / f"step{len(libraries)}.so"
                subprocess.run(
                    [CC, "-O2", "-shared", "-fPIC", *defines, "-o", str(lib), str(c_file), "-lm"], check=True
                )
                libraries[defines] = ctypes.CDLL(str(lib))
            self.lib = libraries[defines]
            self.real = re.search(r"-Dreal_t=(\w+)", " ".join(options)).group(1)

        def __call__(self, grid, block, args):
            zx, zr, c, h, batch, hidden = args
            dtype = np.float32 if self.real == "float" else np.float64
            for a in (zx, zr, c, h):
                assert a.dtype == dtype and a.flags.c_contiguous
            assert zx.shape == zr.shape == (batch, 4 * hidden) and c.shape == h.shape == (batch, hidden)
            assert grid[0] * block[0] >= 1
            launches.append(1)
            p = ctypes.c_void_p
            self.lib.lstm_step_host(
                p(zx.ctypes.data),
                p(zr.ctypes.data),
                p(c.ctypes.data),
                p(h.ctypes.data),
                ctypes.c_longlong(int(batch)),
                ctypes.c_longlong(int(hidden)),
            )

    fake = types.SimpleNamespace(
        asarray=np.asarray,
        ascontiguousarray=np.ascontiguousarray,
        array=np.array,
        empty=np.empty,
        matmul=np.matmul,
        RawKernel=HostKernel,
    )
    monkeypatch.setattr(cupy_engine, "_cupy", lambda: fake)
    cupy_engine._kernel.cache_clear()
    yield launches
    cupy_engine._kernel.cache_clear()


def run_engine(args, fmt="CBT", gate="sigmoid", state="tanh", chunks=None):
    p = resolve(*args, fmt, gate_activation=gate, state_activation=state)
    runner = cupy_engine.prepare(p.weights, p.recurrent_weights, p.bias, gate, state, p.dtype)
    if chunks is None:
        y, h, c = runner.run(p.x, p.hidden_state, p.cell_state)
    else:
        y = runner.empty_output(p.num_steps, p.batch_size)
        h, c = p.hidden_state, p.cell_state
        for start in range(0, p.num_steps, chunks):
            _, h, c = runner.run(p.x[start : start + chunks], h, c, y=y[start : start + chunks])
    return p.restore(y, h, c)


@pytest.mark.parametrize("gate", ["sigmoid", "hard-sigmoid"])
@pytest.mark.parametrize("state", ["tanh", "softsign", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_engine_loop_matches_reference(host_cupy, gate, state, dtype):
    args = random_problem(np.random.default_rng(6), C=4, H=5, B=3, T=7, scale=0.6, dtype=dtype)
    Y, h, c = run_engine(args, gate=gate, state=state)
    Yr, hr, cr = reference_lstm(*args, "CBT", gate=gate, state=state)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
    for got, want in ((Y, Yr), (h, hr), (c, cr)):
        np.testing.assert_allclose(got, want, **tol)
    assert len(host_cupy) == 7  # one fused kernel launch per step


def test_engine_chunks_formats_and_inputs_untouched(host_cupy):
    X, H0, C0, W, R, b = random_problem(np.random.default_rng(7), C=3, H=4, B=5, T=11)
    X = np.transpose(X, (2, 0, 1)).copy()  # T x C x B
    H0 = H0[:, :1]
    copies = [a.copy() for a in (X, H0, C0)]
    whole = run_engine((X, H0, C0, W, R, b), fmt="TCB")
    parts = run_engine((X, H0, C0, W, R, b), fmt="TCB", chunks=4)
    for a, bb in zip(whole, parts):
        np.testing.assert_array_equal(a, bb)
    Yr, hr, cr = reference_lstm(X, H0, C0, W, R, b, "TCB")
    np.testing.assert_allclose(whole[0], Yr, rtol=1e-12, atol=1e-14)
    for a, bb in zip((X, H0, C0), copies):
        np.testing.assert_array_equal(a, bb)


def test_engine_zero_steps_returns_initial_states(host_cupy):
    X, H0, C0, W, R, b = random_problem(np.random.default_rng(8), C=3, H=2, B=2, T=1)
    Y, h, c = run_engine((np.zeros((3, 2, 0)), H0, C0, W, R, b))
    assert Y.shape == (2, 2, 0)
    np.testing.assert_array_equal(h, H0)
    np.testing.assert_array_equal(c, C0)
