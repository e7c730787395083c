"""How the compiled CPU loop uses the cores, chosen by measurement and remembered per machine.

Plans (every one computes the same function; results differ at most in the last bits, within
docs/BEHAVIOUR.md §7):

- ``serial``: one loop thread, the BLAS with its own threads;
- ``single``: one loop thread, the BLAS at one thread (no BLAS synchronisation per step);
- ``batch``: observations split across threads (no synchronisation);
- ``units``: hidden units split across threads (a barrier per step).

Which is fastest depends on the CPU, the BLAS and the load, not only on the sizes: constants
tuned on one machine were 3.6x off on another. So a run with enough work
(:data:`MEASURE_MIN_WORK` multiply-adds) whose plan is not known yet times the candidates on a
copy of its first steps, keeps the fastest for the whole run, and remembers it per (CPU model,
threads, class, shape class) in a small JSON file (FFTW's "measure" and "wisdom"). The trial
output is thrown away, so what a run returns is always the output of one plan from its first
step to its last; once the plan of a shape class is known (in this process, or from the file),
every later run of that class uses it, and gives the same bits. Smaller runs follow fixed rules
(:func:`rule`) and never measure.

A measurement sees the machine of its moment: a trial of the unit split while another process
holds a core says "slow" for a plan that is fastest the rest of the time. So the file trusts a
plan only once two measurements, in two processes, agreed (:data:`CONFIRMATIONS`): a process that
finds an unconfirmed entry measures again and either confirms it or replaces it. (Within one
process the first plan chosen is kept, as always.)

- ``MLSTM_CPU_PLAN=serial|single|batch|units`` forces a plan;
- ``MLSTM_CPU_CACHE`` unset or empty: the file is ``$XDG_CACHE_HOME/mlstm/cpu-plans.json``
  (``~/.cache/mlstm/cpu-plans.json``); ``0`` (or off/no/false): no file, each process measures
  once per shape class; anything else: that file. A corrupt file is replaced; a file that is
  JSON but not ours, or of a newer version, is ignored and left alone; an older version's is
  replaced.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from ..errors import MlstmError

KINDS = ("serial", "single", "batch", "units")
UNIT_SPLIT_MIN_H = 64  # rules: at least 32 hidden units per thread for the unit split
PARALLEL_MIN_WORK = 5_000_000  # rules: multiply-adds in a run below which no threads are started
BATCH_SPLIT_MIN_H = 16  # rules: no batch split below this H (the serial loop's gate-major layout wins)
MEASURE_MIN_WORK = 4e8  # multiply-adds in a run from which its plan is measured (about 20-100 ms)
TRIAL_SECONDS = 0.01  # a trial's timed part lasts about this long (a hiccup of the OS is ~1-3 ms) ...
TRIAL_MAX_FRACTION = 1 / 4  # ... but takes at most this share of the run's steps
PROBE_WORK = 2e7  # multiply-adds of the warm-up before each trial (about 1 ms), which also sizes it
TRIAL_ROUNDS = 3  # each candidate timed up to 3 times (the order reversed each time), best kept
ALL_ROUNDS = 2  # rounds in which every candidate runs: an idle core can take ~0.1 s to come up to speed
SIMPLER_WINS_WITHIN = 0.03  # a plan earlier in the candidate list wins within 3% of the fastest
CUT_OFF = 2.0  # a trial's budget: this many times the fastest so far (see measure)
RETRY_WITHIN = 1.5  # plans slower than this many times the fastest are not timed again
# A threaded trial whose threads got less of their cores than this was starved ... (two threads on
# one vCPU give 0.5; the unit split's barriers block, so unstarved it got 0.66-0.97 on the AMD EPYC)
STARVED_SHARE = 0.6
STARVED_RETRIES = 2  # ... and its plan is tried again this many times more, after every other trial
# Plans this close to the fastest after the rounds get more trials each: on the Intel Xeon of
# benchmarks/RESULTS.md a unit split's 10 ms trials ranged 830-1300 µs/step against 700 in whole
# runs (one 4 ms scheduler tick stalled at a barrier is +40% of a trial), and one measurement in
# ten kept the batch split, 5-14% slower than the unit split there.
PLAYOFF_WITHIN = 1.25
PLAYOFF_TRIALS = 2
# Version 2: plans measured with the packed recurrent kernel (version 1's were measured with the
# BLAS's gemm for every product: stale, replaced). Version 3: with the threads placed at start
# (thread_placement), which made the splits up to 1.5x faster on the AMD EPYC: older plans judged
# them slow.
CACHE_FORMAT, CACHE_VERSION = "mlstm-cpu-plans", 3
CACHE_MAX_ENTRIES = 512
CONFIRMATIONS = 2  # agreeing measurements (in separate processes) before the file's plan is used
OFF = ("0", "off", "no", "false")


@dataclass(frozen=True)
class Plan:
    kind: str  # one of KINDS
    threads: int = 1
    source: str = "rule"  # rule | forced | measured | cached
    timings: str = ""  # for a measured plan: what each candidate took, for -v

    @property
    def label(self) -> str:
        if self.kind in ("batch", "units"):
            return f"{self.kind} split, {self.threads} threads"
        return "serial" if self.kind == "serial" else "serial, BLAS at 1 thread"


def cores() -> int:
    """Threads a plan may use: MLSTM_NUM_THREADS, else the cores this process may run on (its CPU
    affinity: taskset, a cpuset, SLURM's --cpus-per-task), fewer where its cgroup's CPU quota
    allows fewer CPUs' worth of time (docker --cpus, Kubernetes CPU limits, systemd CPUQuota),
    rounded up."""
    if os.environ.get("MLSTM_NUM_THREADS"):
        try:
            return max(1, int(os.environ["MLSTM_NUM_THREADS"]))
        except ValueError:
            raise MlstmError(
                f"MLSTM_NUM_THREADS: expected a whole number of threads, found {os.environ['MLSTM_NUM_THREADS']!r}"
            ) from None
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    quota = process_cpu_quota()
    return count if quota is None else max(1, min(count, math.ceil(quota - 1e-9)))


CGROUP_ROOT = "/sys/fs/cgroup"
CGROUP_V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")


@lru_cache(maxsize=1)
def process_cpu_quota() -> float | None:
    """:func:`cgroup_cpu_quota` of this process, read once (the files are read in ~50 µs; a run
    asks for every call)."""
    return cgroup_cpu_quota()


if hasattr(os, "register_at_fork"):  # a forked child may be moved to another cgroup: read again
    os.register_at_fork(after_in_child=process_cpu_quota.cache_clear)


def cgroup_cpu_quota(root: str = CGROUP_ROOT, self_cgroup: str = "/proc/self/cgroup") -> float | None:
    """The CPUs' worth of time per period that the cgroup quota allows this process (quota /
    period), the smallest over its cgroup and the cgroup's ancestors; None where there is no
    quota or nothing can be read. Threads beyond it are stopped for the rest of each period once
    the quota is spent, and a plan's 10 ms trials, short enough to fit in the quota, judge them
    fast. On the 2-vCPU AMD EPYC of benchmarks/RESULTS.md with a one-CPU quota, counting it made
    a process's first run faster in 12 of 15 cases (0.64-1.15x) and long runs at B = 1 1.10-1.32x
    slower (two threads each holding half of R in cache did more per CPU-second than one); the
    many-core node with a quota of a few CPUs, where it matters most, was not measured.

    cgroup v2 (``cpu.max``: ``max 100000`` or ``150000 100000``) and v1 (``cpu.cfs_quota_us``,
    -1 for none, over ``cpu.cfs_period_us``), at the usual mounts under ``root``; the process's
    cgroup is its path in ``self_cgroup`` below the mount, or the mount itself where that path
    is not there (a container that sees its own cgroup as the root). Only the hierarchies that
    ``self_cgroup`` names are read (v2 for a ``0::`` line, v1 for a line with the ``cpu``
    controller), so a sibling cgroup that happens to be called ``cpu`` is not taken for v1's
    mount; every mount is read where the file names neither (or cannot be read)."""
    try:
        with open(self_cgroup, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError:
        lines = []
    root = os.path.normpath(root)
    v1_mounts = [os.path.join(root, mount) for mount in CGROUP_V1_CPU_MOUNTS]
    paths: list[tuple[str, str]] = []  # (mount, cgroup path below it)
    for line in lines:
        number, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if number == "0" and controllers == "":  # the v2 hierarchy
            paths.append((root, path))
        elif "cpu" in controllers.split(","):  # the v1 hierarchy of the cpu controller
            paths.extend((mount, path) for mount in v1_mounts)
    if not paths:  # nothing to go by (no file, or no line for the cpu controller): the mounts themselves
        paths = [(root, "/")] + [(mount, "/") for mount in v1_mounts]
    quotas = []
    seen: set[str] = set()
    for mount, path in paths:
        # this cgroup and its ancestors up to the mount; a path that leaves the mount (".."), or
        # is not there (a container that sees its own cgroup as the mount), ends at the mount
        directory = os.path.normpath(os.path.join(mount, path.lstrip("/")))
        if not (directory == mount or directory.startswith(mount + os.sep)):
            directory = mount
        while directory not in seen:
            seen.add(directory)
            quota = _read_quota(directory)
            if quota is not None:
                quotas.append(quota)
            if directory == mount:
                break
            directory = os.path.dirname(directory)
    return min(quotas) if quotas else None


def _read_quota(directory: str) -> float | None:
    """quota / period of one cgroup directory (v2's cpu.max, else v1's pair), or None."""

    def read(name: str) -> list[str] | None:
        try:
            with open(os.path.join(directory, name), encoding="ascii", errors="replace") as fh:
                return fh.read().split()
        except OSError:
            return None

    fields = read("cpu.max")
    if fields is None:
        quota, period = read("cpu.cfs_quota_us"), read("cpu.cfs_period_us")
        fields = quota + period if quota and period else None
    if not fields or len(fields) != 2:
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])  # "max" (no quota) is not a number
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


PLACEMENTS = {"start": 1, "off": 0}  # the C loops' PLACE_START and PLACE_OFF


def thread_placement() -> int:
    """Where the threaded plans' workers start (``_cpu_lstm.c``'s start_worker), as the C code's
    number: MLSTM_THREAD_PLACEMENT=start (the default: each on a CPU of this thread's mask other
    than this thread's, free to move once it runs) or off (wherever the OS puts it)."""
    name = os.environ.get("MLSTM_THREAD_PLACEMENT", "").strip().lower() or "start"
    if name not in PLACEMENTS:
        raise MlstmError(f"MLSTM_THREAD_PLACEMENT: expected one of {', '.join(PLACEMENTS)}, found {name!r}")
    return PLACEMENTS[name]


def forced(batch: int, hidden: int, cores: int) -> Plan | None:
    """The plan MLSTM_CPU_PLAN names, or None."""
    name = os.environ.get("MLSTM_CPU_PLAN", "").strip().lower()
    if name in ("", "auto"):
        return None
    if name == "units":
        return Plan("units", max(2, min(cores, hidden)), "forced")
    if name == "batch":
        return Plan("batch", max(2, min(cores, batch)), "forced")
    if name in ("serial", "single"):
        return Plan(name, 1, "forced")
    raise MlstmError(f"MLSTM_CPU_PLAN: expected one of auto, {', '.join(KINDS)}, found {name!r}")


def worker_threads(batch: int, hidden: int, cores: int) -> int:
    """Rules: threads for the batch split (1: no batch split), at least 8 observations each and
    H >= BATCH_SPLIT_MIN_H (below it the serial loop's gate-major layout is faster).

    AMD EPYC Zen 5 of benchmarks/RESULTS.md, threads placed, runs of 30-420 M multiply-adds (under
    MEASURE_MIN_WORK, so ruled), every plan forced, median of 7 interleaved: at B = 16, 32, 64 and
    H = 16..128 (24 shapes in each class, InputSize H and 4H) the batch split took 0.65-0.95x
    (float32) and 0.47-1.07x (float64) the time of the rule before (which excluded InputSize + H
    > 160 / 320 and B * H < 4096, from the Intel Xeon, when the batch split still multiplied W
    through the BLAS per step), within 1.06x (float32) and 1.11x (float64) of the best other plan;
    at H = 8 it took 1.2-2.6x the serial loop's. A second float32 grid 40 minutes later
    (``benchmarks/bench_rules.py``), every plan 1.2-1.5x slower than in the first (other
    tenants): 0.52-1.24x the old rule's time, median 0.89. The input size and class no longer
    enter (the Xeon's rules were kept where this CPU could not check them: the unit split for
    B < 16, H >= 64)."""
    if cores < 2 or batch < 16 or hidden < BATCH_SPLIT_MIN_H:
        return 1
    return min(cores, batch // 8)


def rule(steps: int, batch: int, input_size: int, hidden: int, dtype: np.dtype, cores: int) -> Plan:
    """The plan for a run too small to measure (fixed rules, from the Intel Xeon and the AMD EPYC
    of benchmarks/RESULTS.md): one thread, the BLAS's included, where one core is allowed; no
    threads (the BLAS's neither) under about 5 million multiply-adds; the batch split at B >= 16
    and H >= 16 (:func:`worker_threads`); the unit split for few observations and H >= 64."""
    if cores < 2:  # one core allowed (MLSTM_NUM_THREADS=1, a one-CPU cgroup): the BLAS at one thread too
        return Plan("single")
    if steps * batch * 4 * hidden * (input_size + hidden) < PARALLEL_MIN_WORK:
        # not the BLAS's threads either: waking them costs more than they give. AMD EPYC of
        # benchmarks/RESULTS.md, float32, 0.3-5.5 M multiply-adds, one call 0.2 s after the last
        # (as a command-line run sees it): 0.86-0.88x the time of the BLAS at 2 threads; calls
        # back to back: 0.92-1.05x.
        return Plan("single")
    threads = worker_threads(batch, hidden, cores)
    if threads > 1:
        return Plan("batch", threads)
    if hidden >= UNIT_SPLIT_MIN_H:
        return Plan("units", min(cores, hidden // 32))
    return Plan("serial")


def candidates(batch: int, hidden: int, cores: int, max_unit_threads: int, blas_threads: int) -> list[Plan]:
    """The plans a measurement tries, simplest first (the first within SIMPLER_WINS_WITHIN of
    the fastest wins): one thread, the BLAS's threads, the batch split over every core, and
    the unit split at 2, 4, 8, ... and all cores (at least 4 units per thread)."""
    plans = [Plan("single")] if blas_threads > 1 else []
    plans.append(Plan("serial"))
    if cores >= 2 and batch >= 2:
        plans.append(Plan("batch", min(cores, batch)))
    most = min(cores, max_unit_threads, hidden // 4)
    counts = sorted({2**k for k in range(1, 7)} | {cores})
    plans.extend(Plan("units", n) for n in counts if 2 <= n <= most)
    return plans


def _bucket(n: int) -> str:
    """Powers of two: 1, 2-3, 4-7, ..."""
    if n <= 1:
        return str(max(n, 0))
    low = 1 << (n.bit_length() - 1)
    return f"{low}-{2 * low - 1}"


@lru_cache(maxsize=1)
def cpu_model() -> str:
    """The CPU as /proc/cpuinfo names it, with x86's family, model and stepping: virtual machines
    often show only "AMD EPYC", and 2-vCPU VMs of one machine kind here were Zen 4 (family 25
    model 17) one day and Zen 5 (family 26 model 2) another, with different fastest plans."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            return describe_cpu(fh.read())
    except OSError:
        return platform.processor() or platform.machine() or "unknown CPU"


def describe_cpu(cpuinfo: str) -> str:
    """``cpu_model()`` from the text of /proc/cpuinfo (each entry's first occurrence)."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        key, value = key.strip(), " ".join(value.split())
        if sep and key:
            fields.setdefault(key, value)  # the first processor's (ARM puts "Model" after them all)
    name = next((fields[k] for k in ("model name", "Model", "cpu model") if fields.get(k)), "")
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    ids = [
        f"{label} {fields[key]}"
        for key, label in (("cpu family", "family"), ("model", "model"), ("stepping", "stepping"))
        if fields.get(key)
    ]
    return f"{name} ({' '.join(ids)})" if "cpu family" in fields else name


def plan_key(dtype: np.dtype, batch: int, input_size: int, hidden: int, cores: int, kernel: str = "blas") -> str:
    """Where a measured plan is remembered: CPU model, threads, class, shape class, and what
    computes the recurrent product (``blas`` or ``packed ISA``: the plans' speeds depend on it)."""
    shape = f"B {_bucket(batch)}, InputSize {_bucket(input_size)}, H {_bucket(hidden)}"
    return f"{cpu_model()} | {cores} threads | {np.dtype(dtype).name} | {shape} | recurrent {kernel}"


def trial_steps(run_steps: int, available: int, step_work: float) -> tuple[int, int]:
    """(warm-up steps, most steps) of a trial: the warm-up about PROBE_WORK, the trial at most
    TRIAL_MAX_FRACTION of the run and what the first call of the run holds."""
    most = max(1, min(available, math.ceil(run_steps * TRIAL_MAX_FRACTION)))
    return max(1, min(most, math.ceil(PROBE_WORK / max(step_work, 1.0)))), most


def timed_steps(probe: int, probe_seconds: float, most: int) -> int:
    """Steps of a trial's timed part: about TRIAL_SECONDS at the warm-up's pace, within [probe, most]."""
    return max(probe, min(most, math.ceil(probe * TRIAL_SECONDS / max(probe_seconds, 1e-6))))


class Starved(float):
    """A trial's estimate (seconds, as a float) from a trial whose threads got under STARVED_SHARE
    of the cores they asked for: the process's CPU time over the wall time times the threads.
    On the AMD EPYC of benchmarks/RESULTS.md such trials and runs took up to twice as long, with
    the second vCPU away for 0.1 s and more at a time (other tenants); a plan is judged by one
    again only if its retries, later, are starved too (then the cores really are busy)."""


def cpu_share(cpu_seconds: float, wall_seconds: float, threads: int) -> float:
    """How much of ``threads`` cores a stretch of ``wall_seconds`` got (1: all of them)."""
    return cpu_seconds / max(wall_seconds * threads, 1e-9)


def measure(plans: list[Plan], trial: Callable[[Plan, float | None], float | None], steps: int) -> Plan:
    """The plan to keep for a run of ``steps`` steps: the simplest within SIMPLER_WINS_WITHIN of
    the fastest. ``trial(plan, budget)`` returns the seconds the run would take under ``plan``
    (estimated from a trial on its first steps), or None when the plan could not run or its
    warm-up says it would take more than 4 times ``budget``, CUT_OFF times the fastest so far (a plan
    that crawls on a loaded machine costs the measurement little). Each plan is tried
    TRIAL_ROUNDS times, the order reversed each round, the BLAS-threaded one after all the
    others; after ALL_ROUNDS rounds, a plan RETRY_WITHIN of the fastest or slower is not tried
    again. (The first round also warms the cores up: on a virtual machine whose second core was
    idle, threaded plans ran at half speed for the first ~0.1 s.) A plan whose best trial was
    :class:`Starved` (and that is not hopeless) is tried up to STARVED_RETRIES times more, after
    every other trial: later, when a core that was away for a moment may be back. Plans within
    PLAYOFF_WITHIN of the fastest, when there are two or more, get PLAYOFF_TRIALS more trials
    each: those of our own threads close to each other right after their rounds (before the
    BLAS's), the others last.
    """
    best = [math.inf] * len(plans)
    # The BLAS's own threads spin for a while (OpenBLAS: ~0.1 s) after each threaded call, taking
    # cores from whatever runs next: the plan that uses them has its trials after all the others.
    own = [i for i, p in enumerate(plans) if p.kind != "serial"]
    blas = [i for i, p in enumerate(plans) if p.kind == "serial"]
    schedule = [(r, i) for r in range(TRIAL_ROUNDS) for i in (own if r % 2 == 0 else own[::-1])]
    schedule += [(r, i) for r in range(TRIAL_ROUNDS) for i in blas]
    starved = [False] * len(plans)

    def attempt(i: int) -> None:
        fastest = min(best)
        seconds = trial(plans[i], None if math.isinf(fastest) else fastest * CUT_OFF)
        if seconds is not None and seconds < best[i]:
            best[i], starved[i] = seconds, isinstance(seconds, Starved)

    def close(pool: list[int]) -> list[int]:  # the plans of pool within PLAYOFF_WITHIN of its fastest
        fastest = min((best[i] for i in pool), default=math.inf)
        return [i for i in pool if not math.isinf(best[i]) and best[i] <= fastest * PLAYOFF_WITHIN]

    def playoff(contenders: list[int]) -> None:  # the BLAS-threaded plan's trials last, as above
        threaded = [i for i in contenders if plans[i].kind != "serial"]
        for i in [i for _ in range(PLAYOFF_TRIALS) for i in threaded]:
            attempt(i)
        for i in [i for i in contenders if plans[i].kind == "serial"] * PLAYOFF_TRIALS:
            attempt(i)

    def rounds(part: list[tuple[int, int]]) -> None:
        for round_, i in part:
            if round_ >= ALL_ROUNDS and best[i] > min(best) * RETRY_WITHIN:
                continue
            attempt(i)

    rounds(schedule[: len(own) * TRIAL_ROUNDS])
    played = close(own)
    if len(played) < 2:
        played = []
    playoff(played)  # our own threads' close plans: now, before the BLAS's threads linger
    rounds(schedule[len(own) * TRIAL_ROUNDS :])
    for _ in range(STARVED_RETRIES):
        for i in range(len(plans)):
            if starved[i] and best[i] <= min(best) * CUT_OFF:
                attempt(i)
    contenders = close(list(range(len(plans))))
    if len(contenders) >= 2:
        playoff([i for i in contenders if i not in played])
    fastest = min(best)
    if math.isinf(fastest):
        return Plan("serial", 1, "measured", "no candidate ran")
    chosen = next(i for i, t in enumerate(best) if t <= fastest * (1 + SIMPLER_WINS_WITHIN))
    names = [p.kind + (f"x{p.threads}" if p.threads > 1 else "") for p in plans]
    timings = ", ".join(
        f"{n} {1e6 * t / steps:.3g}{' (starved)' if s else ''}"
        if not math.isinf(t)
        else f"{n} >{1e6 * fastest * CUT_OFF / steps:.3g}"
        for n, t, s in zip(names, best, starved)
    )
    return replace(plans[chosen], source="measured", timings=f"µs/step: {timings}")


# ---------------------------------------------------------------- remembered plans

_memo: dict[str, Plan] = {}
_lock = threading.Lock()


def cache_path() -> str | None:
    """The cache file (see the module), or None when MLSTM_CPU_CACHE turns it off."""
    setting = os.environ.get("MLSTM_CPU_CACHE", "").strip()
    if setting.lower() in OFF:
        return None
    if setting:
        return os.path.expanduser(setting)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mlstm", "cpu-plans.json")


def _read(path: str) -> tuple[str, dict]:
    """('ours', plans) | ('absent' | 'corrupt' | 'foreign', {})."""
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return "absent", {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "corrupt", {}
    if not isinstance(data, dict) or data.get("format") != CACHE_FORMAT:
        return "foreign", {}
    version = data.get("version")
    if type(version) is int and version < CACHE_VERSION:
        return "stale", {}  # an older mlstm's: ours to replace
    if version != CACHE_VERSION or not isinstance(data.get("plans"), dict):
        return "foreign", {}  # a newer mlstm's, or damaged: left alone
    return "ours", data["plans"]


def _confirmations(entry: dict) -> int:
    """How many agreeing measurements stand behind a stored entry (a hand-written entry without
    the field is trusted)."""
    count = entry.get("confirmations", CONFIRMATIONS)
    return count if type(count) is int else 0


def _entry_plan(entry: object, allowed: list[Plan], confirmed: bool = True) -> Plan | None:
    """A stored entry as a plan, if it is one of ``allowed`` (a batch split uses this run's count)
    and, with ``confirmed``, enough measurements agreed on it."""
    if not isinstance(entry, dict) or entry.get("plan") not in KINDS or type(entry.get("threads")) is not int:
        return None
    if confirmed and _confirmations(entry) < CONFIRMATIONS:
        return None
    for plan in allowed:
        if plan.kind == entry["plan"] and (plan.kind == "batch" or plan.threads == entry["threads"]):
            return replace(plan, source="cached")
    return None


def lookup(key: str, allowed: list[Plan]) -> Plan | None:
    """The plan remembered for ``key``: first this process's, then the file's."""
    with _lock:
        if key in _memo:
            return replace(_memo[key], source="cached", timings="")
        path = cache_path()
        if path is None:
            return None
        plan = _entry_plan(_read(path)[1].get(key), allowed)
        if plan is not None:
            _memo[key] = plan
        return plan


def remember(key: str, plan: Plan) -> Plan:
    """Keep ``plan`` for ``key`` in this process (the first one kept stays: every later run of the
    class, and every block of a run, uses the same plan) and in the file. Returns the kept plan."""
    with _lock:
        if key in _memo:
            return replace(_memo[key], source="cached", timings="")
        _memo[key] = plan
        path = cache_path()
        if path is not None:
            _write(path, key, plan)
        return plan


def _write(path: str, key: str, plan: Plan) -> None:
    state, plans = _read(path)
    if state == "foreign":
        return  # someone else's file: left alone
    previous = plans.pop(key, None)
    agrees = isinstance(previous, dict) and (previous.get("plan"), previous.get("threads")) == (plan.kind, plan.threads)
    plans[key] = {
        "plan": plan.kind,
        "threads": plan.threads,
        "confirmations": min(CONFIRMATIONS, _confirmations(previous) + 1) if agrees else 1,
        "measured": time.strftime("%Y-%m-%d"),
        "why": plan.timings,
        "load average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    while len(plans) > CACHE_MAX_ENTRIES:
        plans.pop(next(iter(plans)))
    data = {"format": CACHE_FORMAT, "version": CACHE_VERSION, "plans": plans}
    directory = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(directory, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=directory, prefix=".cpu-plans-", suffix=".json")
    except OSError:
        return  # not writable: the plan stays this process's
    try:
        with os.fdopen(handle, "w") as fh:
            json.dump(data, fh, indent=1)
        os.replace(temporary, path)  # readers see the old file or the new one, never half of one
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def forget() -> None:
    """Forget this process's plans (tests; the file stays)."""
    with _lock:
        _memo.clear()
