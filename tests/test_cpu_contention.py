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
