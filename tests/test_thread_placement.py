"""Where the threaded plans' workers start (``_cpu_lstm.c``'s start_worker): on a CPU of the
caller's mask other than the caller's, with the whole mask back once running; never a change in
what is computed; MLSTM_THREAD_PLACEMENT=start|off, anything else an error that names it."""

import ctypes
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest
from reference import random_problem, reference_lstm

from mlstm.engines import cpu_plans, numpy_engine
from mlstm.errors import MlstmError
from mlstm.formats import resolve

COMPILED = importlib.util.find_spec("mlstm.engines._cpu_lstm") is not None
pytestmark = pytest.mark.skipif(not COMPILED, reason="the compiled loop is not built")
LINUX_AFFINITY = sys.platform.startswith("linux") and hasattr(os, "sched_getaffinity")
TOL = {np.float64: dict(rtol=1e-12, atol=1e-13), np.float32: dict(rtol=1e-5, atol=1e-6)}  # BEHAVIOUR.md §7


def probe(place: int) -> list[int]:
    """[caller's CPU when placed (-1: not placed), worker's CPU as it began, CPUs in the worker's
    mask once released, CPUs in the caller's mask]."""
    from mlstm.engines import _cpu_lstm

    lib = ctypes.CDLL(_cpu_lstm.__file__)
    out = (ctypes.c_int * 4)()
    assert lib.mlstm_placement_probe(ctypes.c_int(place), out) == 0
    return list(out)


@pytest.mark.skipif(not LINUX_AFFINITY or len(os.sched_getaffinity(0)) < 2, reason="needs Linux and two CPUs")
def test_a_placed_worker_starts_on_another_allowed_cpu_and_gets_the_whole_mask_back():
    allowed = os.sched_getaffinity(0)
    for _ in range(20):  # not a matter of luck: every time
        caller, worker, released, callers = probe(cpu_plans.PLACEMENTS["start"])
        assert caller in allowed and worker in allowed and worker != caller
        assert released == callers == len(allowed)


@pytest.mark.skipif(not LINUX_AFFINITY, reason="needs Linux")
def test_off_places_nothing_and_leaves_the_mask():
    caller, worker, released, callers = probe(cpu_plans.PLACEMENTS["off"])
    assert caller == -1 and worker in os.sched_getaffinity(0)
    assert released == callers == len(os.sched_getaffinity(0))


@pytest.mark.skipif(not LINUX_AFFINITY, reason="needs Linux")
def test_a_caller_with_one_cpu_places_nothing_and_the_worker_still_runs():
    code = (
        "import os, ctypes\n"
        "from mlstm.engines import _cpu_lstm\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "out = (ctypes.c_int * 4)()\n"
        "assert ctypes.CDLL(_cpu_lstm.__file__).mlstm_placement_probe(1, out) == 0\n"
        "print(*out)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    caller, worker, released, callers = map(int, done.stdout.split())
    assert caller == -1 and worker == min(os.sched_getaffinity(0)) and released == callers == 1


@pytest.mark.parametrize("plan", ["batch", "units"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_placement_changes_no_bit_and_both_match_the_reference(monkeypatch, plan, dtype):
    args = random_problem(np.random.default_rng(5), C=6, H=48, B=9, T=30, scale=0.3, dtype=dtype)
    p = resolve(*args, "CBT")
    eng = numpy_engine.prepare(p.weights, p.recurrent_weights, p.bias, "sigmoid", "tanh", p.dtype)
    monkeypatch.setenv("MLSTM_CPU_PLAN", plan)
    monkeypatch.setenv("MLSTM_NUM_THREADS", "3")
    runs = {}
    for placement in ("start", "off"):
        monkeypatch.setenv("MLSTM_THREAD_PLACEMENT", placement)
        runs[placement] = p.restore(*eng.run(p.x, p.hidden_state, p.cell_state))
        assert eng.last_plan.startswith(f"{plan} split, 3 threads")
    for start, off, want in zip(runs["start"], runs["off"], reference_lstm(*args, "CBT")):
        np.testing.assert_allclose(start, want, **TOL[dtype])
        np.testing.assert_array_equal(start, off)


def test_an_unknown_placement_is_an_error_that_names_the_variable(monkeypatch):
    monkeypatch.setenv("MLSTM_THREAD_PLACEMENT", "pinned")
    with pytest.raises(MlstmError, match=r"MLSTM_THREAD_PLACEMENT: expected one of start, off, found 'pinned'"):
        cpu_plans.thread_placement()
    monkeypatch.setenv("MLSTM_THREAD_PLACEMENT", " OFF ")
    assert cpu_plans.thread_placement() == cpu_plans.PLACEMENTS["off"]


def test_the_command_line_refuses_an_unknown_placement_and_keeps_the_output(tmp_path):
    import scipy.io
    from conftest import assert_one_line_error, run_mlstm

    X, H0, C0, W, R, b = random_problem(np.random.default_rng(2), C=3, H=2, B=4, T=5)
    infile = tmp_path / "in.mat"
    scipy.io.savemat(infile, dict(X=X, H0=H0, C0=C0, weights=W, recurrentWeights=R, bias=b))
    out = tmp_path / "out.mat"
    out.write_bytes(b"precious")
    proc = run_mlstm("run", infile, "-o", out, "DataFormat=CBT", env={"MLSTM_THREAD_PLACEMENT": "everywhere"})
    assert_one_line_error(proc, "MLSTM_THREAD_PLACEMENT", "expected one of start, off", "'everywhere'")
    assert proc.returncode == 2 and out.read_bytes() == b"precious"
