"""Thread placement A/B: whole runs of the batch and unit splits (MLSTM_CPU_PLAN forced) with
MLSTM_THREAD_PLACEMENT=off and =start, interleaved (the order reversed every other round), each
after a 0.1 s pause and one untimed call; prints the median and p10/p90 ms and the cores the
process kept busy (CPU time over wall time).

    python benchmarks/bench_placement.py 64,128,32,256 float64 --rounds 15
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_cpu import problem  # noqa: E402

from mlstm.api import compute  # noqa: E402
from mlstm.options import parse_options  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("shape", help="C,H,B,T")
    parser.add_argument("dtype", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=11)
    opts = parser.parse_args()
    os.environ["MLSTM_CPU_CACHE"] = "0"
    args = problem(*(int(v) for v in opts.shape.split(",")), np.dtype(opts.dtype))
    options = parse_options([("DataFormat", "TBC")])
    configs = [(plan, place) for plan in ("batch", "units") for place in ("off", "start")]
    results: dict = {c: [] for c in configs}
    for round_ in range(opts.rounds):
        for config in configs if round_ % 2 == 0 else configs[::-1]:
            os.environ["MLSTM_CPU_PLAN"], os.environ["MLSTM_THREAD_PLACEMENT"] = config
            time.sleep(0.1)
            compute(*args, options)
            cpu, started = cpu_seconds(), time.perf_counter()
            compute(*args, options)
            wall = time.perf_counter() - started
            results[config].append((wall, (cpu_seconds() - cpu) / wall))
    print(f"# {opts.dtype} (C,H,B,T) = ({opts.shape}), {opts.rounds} rounds")
    for (plan, place), runs in results.items():
        walls = sorted(w for w, _ in runs)
        n = len(walls)
        print(
            f"{plan:6} {place:6} median {1e3 * statistics.median(walls):8.2f} ms  p10 {1e3 * walls[n // 10]:8.2f}"
            f"  p90 {1e3 * walls[min(n - 1, 9 * n // 10)]:8.2f}  cores {statistics.median(c for _, c in runs):.2f}"
        )


if __name__ == "__main__":
    main()
