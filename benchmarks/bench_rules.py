"""The fixed rules for runs too small to measure, against every forced plan: a grid of shapes
(B 8..64, H 8..128, InputSize H and 4H) at about 30 M multiply-adds each (T >= 20), every plan
forced in turn, interleaved (the order reversed every other round), median of --rounds; prints
what the rules pick, the fastest plan, and their ratios.

    python benchmarks/bench_rules.py float32 --rounds 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench_cpu import problem  # noqa: E402

from mlstm.api import compute  # noqa: E402
from mlstm.engines import numpy_engine  # noqa: E402
from mlstm.options import parse_options  # noqa: E402

PLANS = ("serial", "single", "batch", "units")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("dtype", choices=["float32", "float64"])
    parser.add_argument("--rounds", type=int, default=7)
    opts = parser.parse_args()
    os.environ["MLSTM_CPU_CACHE"] = "0"
    dtype = np.dtype(opts.dtype)
    options = parse_options([("DataFormat", "TBC")])
    print("| B | H | InputSize | T | rule | fastest | fastest/rule | batch/rule | " + " | ".join(PLANS) + " |")
    print("|---" * (8 + len(PLANS)) + "|")
    for B in (8, 16, 32, 64):
        for H in (8, 16, 32, 64, 128):
            for C in (H, 4 * H):
                T = max(20, int(3e7 / (B * 4 * H * (C + H))))
                args = problem(C, H, B, T, dtype)
                os.environ.pop("MLSTM_CPU_PLAN", None)
                rule = numpy_engine.cpu_plan(T, B, C, H, dtype)[0]
                times: dict = {plan: [] for plan in PLANS}
                for round_ in range(opts.rounds):
                    for plan in PLANS if round_ % 2 == 0 else PLANS[::-1]:
                        os.environ["MLSTM_CPU_PLAN"] = plan
                        time.sleep(0.02)
                        compute(*args, options)
                        started = time.perf_counter()
                        compute(*args, options)
                        times[plan].append(time.perf_counter() - started)
                os.environ.pop("MLSTM_CPU_PLAN", None)
                med = {plan: statistics.median(t) for plan, t in times.items()}
                best = min(med, key=med.get)
                cells = " | ".join(f"{1e3 * med[p]:.2f}" for p in PLANS)
                print(
                    f"| {B} | {H} | {C} | {T} | {rule} | {best} | {med[best] / med[rule]:.2f} | "
                    f"{med['batch'] / med[rule]:.2f} | {cells} |"
                )


if __name__ == "__main__":
    main()
