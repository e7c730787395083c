"""The CuPy engine's host-side orchestration, run without a GPU.

CuPy is replaced by NumPy, and cupy.RawKernel by the .cu kernels compiled as C on the host (the
MLSTM_HOST_TEST harnesses), so CupyLSTM.run executes its real loop for every kernel variant: the
blocked input GEMM, then per block either one recurrent GEMM and one step-kernel launch per step,
or one launch of the persistent / single-block kernel (whose harness runs its blocks and threads
one after another in the device's order of operations). Compared with the float64 reference.
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

VARIANTS = ["step", "persistent", "single"]


@pytest.fixture
def host_cupy(monkeypatch, tmp_path):
    libraries = {}
    launches = []

    def library(source, options):
        key = (source, tuple(sorted(options)))
        if key not in libraries:
            c_file = tmp_path / f"k{len(libraries)}.c"
            c_file.write_text('#define MLSTM_HOST_TEST\n#include "' + source + '"\n')
            lib = tmp_path / f"k{len(libraries)}.so"
            subprocess.run([CC, "-O2", "-shared", "-fPIC", *options, "-o", str(lib), str(c_file), "-lm"], check=True)
            libraries[key] = ctypes.CDLL(str(lib))
        return libraries[key]

    p = ctypes.c_void_p
    i32 = ctypes.c_int

    class HostKernel:
        def __init__(self, code, name, options=(), enable_cooperative_groups=False):
            source = cupy_engine.KERNEL_SOURCE if name == "lstm_step" else cupy_engine.PERSISTENT_SOURCE
            assert name in ("lstm_step", "lstm_persistent", "lstm_single_block")
            self.lib = library(source, options)
            self.name = name
            self.real = (
                np.float32 if re.search(r"-Dreal_t=(\w+)", " ".join(options)).group(1) == "float" else np.float64
            )
            self.max_dynamic_shared_size_bytes = 48 * 1024

        def __call__(self, grid, block, args, shared_mem=0):
            arrays = [a for a in args if isinstance(a, np.ndarray) and a.dtype == self.real]
            for a in arrays:
                assert a.flags.c_contiguous
            assert block[0] == (cupy_engine.STEP_THREADS if self.name == "lstm_step" else cupy_engine.THREADS)
            assert shared_mem <= max(48 * 1024, self.max_dynamic_shared_size_bytes)
            launches.append(self.name)
            if self.name == "lstm_step":
                zx, zr, bias, c, h, batch, hidden = args
                assert zx.shape == zr.shape == (batch, 4 * hidden) and c.shape == h.shape == (batch, hidden)
                assert bias.shape == (4 * hidden,)
                self.lib.lstm_step_host(
                    p(zx.ctypes.data),
                    p(zr.ctypes.data),
                    p(bias.ctypes.data),
                    p(c.ctypes.data),
                    p(h.ctypes.data),
                    ctypes.c_longlong(int(batch)),
                    ctypes.c_longlong(int(hidden)),
                )
                return
            zx, R, bias, h0, c, y, steps, batch, hidden, *rest = args
            single = self.name == "lstm_single_block"
            units, bgroup, btile = (hidden, batch, batch) if single else map(int, rest[:3])
            assert grid[0] == -(-int(hidden) // units) * -(-int(batch) // bgroup)
            assert shared_mem == cupy_engine.smem_bytes(units, btile, int(hidden), zx.itemsize)
            assert zx.shape == (steps, batch, 4 * hidden) and y.shape == (steps, batch, hidden)
            self.lib.lstm_persistent_host(
                p(zx.ctypes.data),
                p(R.ctypes.data),
                p(bias.ctypes.data),
                p(h0.ctypes.data),
                p(c.ctypes.data),
                p(y.ctypes.data),
                i32(int(steps)),
                i32(int(batch)),
                i32(int(hidden)),
                i32(units),
                i32(bgroup),
                i32(btile),
                i32(cupy_engine.THREADS),
                i32(int(single)),
            )

    fake = types.SimpleNamespace(
        asarray=lambda a, dtype=None: np.asarray(a, dtype=dtype),
        ascontiguousarray=np.ascontiguousarray,
        asnumpy=lambda a, out=None: np.copyto(out, a) if out is not None else np.asarray(a),
        array=np.array,
        empty=np.empty,
        zeros=np.zeros,
        matmul=np.matmul,
        RawKernel=HostKernel,
        cuda=types.SimpleNamespace(Device=lambda: types.SimpleNamespace(id=0)),
    )
    monkeypatch.setattr(cupy_engine, "_cupy", lambda: fake)
    monkeypatch.setattr(cupy_engine, "_is_cupy", lambda a: True)  # NumPy plays the device arrays
    monkeypatch.setattr(cupy_engine, "device_limits", lambda device: cupy_engine.SM90)
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


def tolerance(dtype):
    return dict(rtol=1e-12, atol=1e-14) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel", VARIANTS)
@pytest.mark.parametrize("gate", ["sigmoid", "hard-sigmoid"])
@pytest.mark.parametrize("state", ["tanh", "softsign", "relu"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_engine_loop_matches_reference(host_cupy, monkeypatch, kernel, gate, state, dtype):
    monkeypatch.setenv("MLSTM_GPU_KERNEL", kernel)
    args = random_problem(np.random.default_rng(6), C=4, H=5, B=3, T=7, scale=0.6, dtype=dtype)
    Y, h, c = run_engine(args, gate=gate, state=state)
    Yr, hr, cr = reference_lstm(*args, "CBT", gate=gate, state=state)
    for got, want in ((Y, Yr), (h, hr), (c, cr)):
        np.testing.assert_allclose(got, want, **tolerance(dtype))
    # one fused kernel per step, or one launch for all steps
    assert host_cupy == (
        ["lstm_step"] * 7 if kernel == "step" else [f"lstm_{kernel}" if kernel != "single" else "lstm_single_block"]
    )


@pytest.mark.parametrize(
    "H,B,unit_groups,obs_groups",
    [
        (300, 5, 25, 5),  # 132 multiprocessors: 12 units and one observation per block
        (40, 70, 1, 70),  # all units in each block, one observation per block
        (7, 1, 7, 1),  # B = 1: one unit per block, 32 lanes per dot product
        (190, 300, 7, 18),  # several units and observations per block, partial last groups
    ],
)
def test_persistent_decomposition_matches_reference(host_cupy, monkeypatch, H, B, unit_groups, obs_groups):
    """Unit groups x observation groups, partial last groups, lane splits 1..32, padded rows."""
    monkeypatch.setenv("MLSTM_GPU_KERNEL", "persistent")
    chosen = cupy_engine.persistent_plan(H, B, 8, cupy_engine.SM90)
    assert (-(-H // chosen.units), -(-B // chosen.bgroup)) == (unit_groups, obs_groups), chosen
    args = random_problem(np.random.default_rng(H + B), C=3, H=H, B=B, T=3, scale=0.5 / np.sqrt(H))
    Y, h, c = run_engine(args)
    Yr, hr, cr = reference_lstm(*args, "CBT")
    for got, want in ((Y, Yr), (h, hr), (c, cr)):
        np.testing.assert_allclose(got, want, **tolerance(np.float64))


def test_persistent_observation_tiles(host_cupy, monkeypatch):
    """Observations in several shared-memory tiles (a small shared-memory limit forces them)."""
    monkeypatch.setenv("MLSTM_GPU_KERNEL", "persistent")
    small = cupy_engine.DeviceLimits(16, 12 * 1024, "small")
    monkeypatch.setattr(cupy_engine, "device_limits", lambda device: small)
    chosen = cupy_engine.persistent_plan(32, 40, 8, small)
    assert 1 <= chosen.btile < chosen.bgroup and chosen.bgroup % chosen.btile != 0, chosen  # tiles, a partial one
    args = random_problem(np.random.default_rng(11), C=3, H=32, B=40, T=5, scale=0.3)
    Y, h, c = run_engine(args)
    Yr, hr, cr = reference_lstm(*args, "CBT")
    for got, want in ((Y, Yr), (h, hr), (c, cr)):
        np.testing.assert_allclose(got, want, **tolerance(np.float64))


@pytest.mark.parametrize("kernel", VARIANTS)
def test_engine_time_blocks_chunks_formats_and_inputs_untouched(host_cupy, monkeypatch, kernel):
    monkeypatch.setenv("MLSTM_GPU_KERNEL", kernel)
    monkeypatch.setattr(cupy_engine, "BLOCK_BYTES", 3 * 5 * 4 * 4 * 8)  # three steps per device block
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
    assert host_cupy == []  # nothing launched


def test_plan_rule():
    sm90 = cupy_engine.SM90
    assert cupy_engine.plan(3, 32, 4, sm90).kernel == "single"
    assert cupy_engine.plan(128, 32, 4, sm90).kernel == "persistent"
    assert cupy_engine.plan(768, 16, 8, sm90).kernel == "persistent"
    assert cupy_engine.plan(2048, 16, 8, sm90).kernel == "step"  # 4H(H+1) doubles exceed 132 x 227 KB
    with pytest.raises(ValueError, match="MLSTM_GPU_KERNEL"):
        cupy_engine.plan(2048, 16, 8, sm90, forced="persistent")
    with pytest.raises(ValueError, match="MLSTM_GPU_KERNEL"):
        cupy_engine.plan(8, 8, 4, sm90, forced="warp")
