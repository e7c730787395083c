"""Start-up: wall time of fresh `mlstm` processes, median of --repeats.

    python benchmarks/bench_startup.py [--repeats 21]

Measures `python -m mlstm --help` and a complete `python -m mlstm run` on the tiny example
(fixtures/example/input.mat -> a temporary .mat), each in a new process, as a user pays it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def wall(cmd: list[str], repeats: int) -> list[float]:
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run(cmd, check=True, capture_output=True, env=env)  # warm the page cache
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=21)
    opts = parser.parse_args()
    example = os.path.join(ROOT, "fixtures", "example", "input.mat")
    with tempfile.TemporaryDirectory() as tmp:
        cases = {
            "mlstm --help": [sys.executable, "-m", "mlstm", "--help"],
            "mlstm run (tiny .mat)": [sys.executable, "-m", "mlstm", "run", example, "-o", os.path.join(tmp, "o.mat")],
            "python -c pass (interpreter alone)": [sys.executable, "-c", "pass"],
        }
        print("| command | median s | min s | max s | runs |\n|---|---|---|---|---|")
        for name, cmd in cases.items():
            t = wall(cmd, opts.repeats)
            print(f"| {name} | {statistics.median(t):.3f} | {min(t):.3f} | {max(t):.3f} | {len(t)} |")


if __name__ == "__main__":
    main()
