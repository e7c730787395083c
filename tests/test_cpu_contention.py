"""The unit split beside a busy process computes what it computes on an idle machine.

Its threads claim slices of hidden units rather than own them, and a thread that finds itself
descheduled stands aside: who computes which slice then depends on the scheduler. A slice is the
same BLAS call and the same cell pass whoever computes it, so the result must not change, bit
for bit. How fast it is beside a busy core is measured, not asserted:
``benchmarks/bench_contention.py`` (RESULTS.md has the numbers).
"""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from mlstm.engines import numpy_engine

HAS_AFFINITY = hasattr(os, "sched_setaffinity")


@pytest.mark.skipif(numpy_engine.compiled_loop() is None, reason="the compiled loop is not built")
@pytest.mark.skipif(not HAS_AFFINITY or len(os.sched_getaffinity(0)) < 2, reason="needs two cores and affinity")
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unit_split_beside_a_busy_process_gives_the_idle_result_bit_for_bit(monkeypatch, dtype):
    C, H, B, T = 16, 256, 1, 1500
    rng = np.random.default_rng(1)
    w = rng.standard_normal((4 * H, C)) / np.sqrt(C)
    r = rng.standard_normal((4 * H, H)) / np.sqrt(H)
    eng = numpy_engine.prepare(w, r, rng.standard_normal(4 * H) * 0.1, "sigmoid", "tanh", dtype)
    x = rng.standard_normal((T, B, C)).astype(dtype)
    h0 = (0.1 * rng.standard_normal((B, H))).astype(dtype)
    monkeypatch.setenv("MLSTM_NUM_THREADS", "2")
    monkeypatch.setenv("MLSTM_CPU_PLAN", "units")
    idle = eng.run(x, h0, h0)
    assert eng.last_plan.startswith("units split")
    cores = sorted(os.sched_getaffinity(0))[:2]
    busy = f"import os\nos.sched_setaffinity(0, {{{cores[1]}}})\nwhile True:\n    pass\n"
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    hog = subprocess.Popen([sys.executable, "-c", busy])
    try:
        time.sleep(0.1)
        beside = [eng.run(x, h0, h0) for _ in range(3)]
    finally:
        hog.kill()
        hog.wait()
        os.sched_setaffinity(0, saved)
    for result in beside:
        for got, want in zip(result, idle):
            np.testing.assert_array_equal(got, want)


def test_a_long_slice_is_not_taken_for_a_deschedule():
    """The unit split's threads stand aside when a slice took far longer than their fastest (a
    deschedule). The bound was 4 min(fastest, 200 us) + 200 us: every slice over 1 ms counted, so
    where slices take over 1 ms (H = 512, B = 64 on an AVX2 Zen 3: 1.3 ms) a thread stood aside at
    every step and the split ran at one thread's speed. Now twice the fastest and 1 ms more (a
    time slice of another process), so the virtual machine's sub-millisecond hiccups do not
    count either."""
    import ctypes
    import importlib.util

    if importlib.util.find_spec("mlstm.engines._cpu_lstm") is None:
        pytest.skip("the compiled loop is not built")
    from mlstm.engines import _cpu_lstm

    lib = ctypes.CDLL(_cpu_lstm.__file__)
    lib.mlstm_slice_was_descheduled.argtypes = [ctypes.c_long, ctypes.c_long]
    descheduled = lib.mlstm_slice_was_descheduled
    us, none_yet = 1000, 2**63 - 1
    assert not descheduled(1300 * us, 1300 * us)  # a steady 1.3 ms slice
    assert not descheduled(2500 * us, 1300 * us)  # jitter of a long slice
    assert not descheduled(50 * us, 1300 * us)
    assert descheduled(5000 * us, 1300 * us)  # a time slice of another process in the middle
    assert not descheduled(30 * us, 20 * us) and not descheduled(900 * us, 20 * us)  # a hiccup
    assert descheduled(3000 * us, 20 * us)  # a short slice held up by a time slice elsewhere
    assert not descheduled(10**9, none_yet)  # the first slice of a thread sets its fastest
