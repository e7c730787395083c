"""The automatic plan under a cgroup CPU quota: mlstm counting the quota (as it does) vs counting
only the CPU affinity (as it did before; the same as MLSTM_NUM_THREADS=<the affinity's CPUs>).

    sudo python benchmarks/bench_quota.py [--quota 1] [--repeats 5] [--shapes 40,64,256,8000 ...]

Needs root and a writable cgroup cpu controller (v1 ``/sys/fs/cgroup/cpu`` or v2 with ``cpu`` in
the root's ``cgroup.subtree_control``); makes a cgroup with the quota, runs every sample in a new
process inside it (a command-line run: the plan is not known yet, the plan file is off) and
removes the cgroup at the end. Each sample times the first run of the process (which measures
the plan where the run is big enough) and a second run (the plan known), float32; the two
configurations alternate, the median of --repeats is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SHAPES = ["64,128,32,256", "40,64,256,1000", "128,256,1,4096", "40,64,256,8000", "128,256,1,32768"]

CHILD = """
import json, os, sys, time
sys.path.insert(0, {benchmarks!r})
import numpy as np
from bench_cpu import problem
from mlstm.api import compute
from mlstm.options import parse_options
from mlstm.engines import cpu_plans
args = problem(*{shape}, np.float32)
options = parse_options([("DataFormat", "TBC")])
times = []
for _ in range(2):
    started = time.perf_counter()
    result = compute(*args, options)
    times.append(time.perf_counter() - started)
print(json.dumps({{"first": times[0], "second": times[1], "cores": cpu_plans.cores(),
                  "plan": result.detail}}))
"""


def make_cgroup(quota: float) -> tuple[str, str]:
    name = f"mlstm-bench-{uuid.uuid4().hex[:8]}"
    if os.path.isfile("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
        directory = os.path.join("/sys/fs/cgroup/cpu", name)
        os.mkdir(directory)
        with open(os.path.join(directory, "cpu.cfs_quota_us"), "w") as fh:
            fh.write(str(int(quota * 100000)))
    else:
        directory = os.path.join("/sys/fs/cgroup", name)
        os.mkdir(directory)
        with open(os.path.join(directory, "cpu.max"), "w") as fh:
            fh.write(f"{int(quota * 100000)} 100000")
    return directory, os.path.join(directory, "cgroup.procs")


def sample(procs: str, shape: str, counting_quota: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLSTM_")}
    env.update(PYTHONPATH=ROOT, MLSTM_CPU_CACHE="0")
    if not counting_quota:
        env["MLSTM_NUM_THREADS"] = str(len(os.sched_getaffinity(0)))
    code = CHILD.format(benchmarks=os.path.join(ROOT, "benchmarks"), shape=tuple(int(v) for v in shape.split(",")))
    shell = f'echo $$ > "{procs}" && exec "{sys.executable}" -c "$0"'
    done = subprocess.run(["sh", "-c", shell, code], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quota", type=float, default=1.0, help="CPUs' worth of time per period")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", nargs="*", default=SHAPES, help="C,H,B,T")
    opts = parser.parse_args()
    directory, procs = make_cgroup(opts.quota)
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "?")
        print(f"CPU: {model}, {len(os.sched_getaffinity(0))} CPUs in the affinity, quota {opts.quota:g} CPUs")
        print("| C,H,B,T | affinity only: first / second run ms | quota counted: first / second run ms", end="")
        print(" | ratio (second) |")
        print("|---|---|---|---|")
        ran = []
        for shape in opts.shapes:
            runs: dict[bool, list[dict]] = {False: [], True: []}
            for _ in range(opts.repeats):
                for counting in (False, True):
                    runs[counting].append(sample(procs, shape, counting))

            def med(counting: bool, key: str, runs: dict = runs) -> float:
                return 1e3 * statistics.median(r[key] for r in runs[counting])

            print(
                f"| {shape} | {med(False, 'first'):.1f} / {med(False, 'second'):.1f} "
                f"| {med(True, 'first'):.1f} / {med(True, 'second'):.1f} "
                f"| {med(True, 'second') / med(False, 'second'):.2f} |",
                flush=True,
            )
            for counting in (False, True):  # what ran, and how it was chosen, in the last sample
                ran.append(f"{shape}, {'quota counted' if counting else 'affinity only'}: {runs[counting][-1]['plan']}")
        print("\nWhat ran (the last sample of each):\n" + "\n".join(ran))
    finally:
        os.rmdir(directory)


if __name__ == "__main__":
    main()
