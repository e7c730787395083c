"""CPU benchmark: mlstm's NumPy engine (its automatic plan and each forced plan) vs torch.nn.LSTM
(CPU) and ONNX Runtime's LSTM, in one run, on this machine.

    pip install '.[bench]' torch      # torch: the CPU build (see the README)
    python benchmarks/bench_cpu.py [--repeats 7] [--shapes small] [--wait-idle 0.9] [--markdown out.md]

Times the whole computation on canonical in-memory arrays (no file I/O), the median of
--repeats runs after one warm-up, each peer with the same inputs and thread count. "auto" is
mlstm's own choice: its first run measures the candidate plans (on a plan file of this run
only, so nothing measured earlier counts) and that first run's time is shown too; the forced
plans are MLSTM_CPU_PLAN=serial|single|batch|units. Every configuration of a shape, the peers
and the GEMM ceiling included, is timed interleaved (each round runs every one once, after the
same short pause that lets other thread pools stop spinning), so that a change in the machine's
load (other tenants of a shared VM moved single timings by 20-50% within minutes) hits mlstm and
its peers alike and their ratios stay meaningful. ONNX Runtime's LSTM has no float64 kernel,
so it is float32 only. The "GEMM ceiling" is one large matmul with the same FLOPs as the LSTM's
GEMMs, (T*B, C+H) @ (C+H, 4H): how fast the arithmetic alone could go on this machine's BLAS.
The header names the CPU, its vector instructions, the versions and the load average before
and after: read the numbers with it (RESULTS.md keeps one section per machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mlstm.api import compute  # noqa: E402
from mlstm.engines import cpu_plans, numpy_engine  # noqa: E402
from mlstm.errors import MlstmError  # noqa: E402
from mlstm.foreign import onnx_model  # noqa: E402
from mlstm.options import parse_options  # noqa: E402

SHAPES = [(10, 3, 32, 64), (64, 128, 32, 256), (256, 512, 64, 128), (128, 256, 1, 4096), (40, 64, 256, 1000)]
PLANS = ("serial", "single", "batch", "units")
ISA_FLAGS = ("avx512f", "avx512bw", "avx512vl", "avx2", "fma", "avx", "sse4_2", "asimd", "sve")
# Before each sample: OpenBLAS's threads spin ~0.1 s after a threaded call, ONNX Runtime's ~0.05 s
# (CPU time after a call, measured here), taking a core from whatever runs next.
SETTLE_S = 0.2


def problem(C, H, B, T, dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((T, B, C)).astype(dtype)
    W = (rng.standard_normal((4 * H, C)) / np.sqrt(C)).astype(dtype)
    R = (rng.standard_normal((4 * H, H)) / np.sqrt(H)).astype(dtype)
    b = (rng.standard_normal(4 * H) * 0.1).astype(dtype)
    H0 = np.zeros((H, B), dtype)
    return X, H0, H0.copy(), W, R, b


def bench_mlstm(args, repeats, plans, peers):
    """mlstm's own choice (plan None), each forced plan and each peer (name -> a function that
    runs it once), interleaved: a round times each once (in a new random order each round), after a
    pause of SETTLE_S and one untimed call, so a change in the machine's load hits them alike;
    a configuration under 20 ms is repeated within its sample and averaged. Returns {config:
    [s per round]}, the automatic plan's first run in seconds, what it ran and how its first run
    chose it."""
    X, H0, C0, W, R, b = args
    options = parse_options([("DataFormat", "TBC")])  # what mlstm.lstm does, keeping the Result
    configs = [None, *plans, *peers]
    times: dict = {config: [] for config in configs}
    details = []
    count = {config: 1 for config in configs}

    def mlstm_run(plan):
        if plan:
            os.environ["MLSTM_CPU_PLAN"] = plan
        else:
            os.environ.pop("MLSTM_CPU_PLAN", None)
        detail = compute(X, H0, C0, W, R, b, options).detail
        if plan is None:
            details.append(detail)

    def run(config, warm=True):
        time.sleep(SETTLE_S)
        fn = peers[config] if config in peers else (lambda: mlstm_run(config))
        if warm:  # one untimed call wakes the thread pools a pause put to sleep (torch's took ~10 ms)
            fn()
        started = time.perf_counter()
        for _ in range(count[config]):
            fn()
        return (time.perf_counter() - started) / count[config]

    try:
        first = run(None, warm=False)  # the automatic plan's first run measures the candidates
        for config in configs:
            # warm-up, and sizes a sample: from the fastest of three calls, since one slow call (a
            # tiny run's first after a pause took 2.5x) made a sample of few calls, and a short
            # sample keeps more of the slow start after each pause (auto vs the same forced plan:
            # 1.46x at (10,3,32,64) on the AMD EPYC)
            count[config] = max(1, int(0.02 / max(min(run(config) for _ in range(3)), 1e-6)))
        # A new order each round: rotating one order put the automatic plan after the GEMM ceiling
        # (NumPy's own OpenBLAS threads) in almost every round, which the forced plans never were.
        order = random.Random(0)
        for _ in range(repeats):
            for config in order.sample(configs, len(configs)):
                times[config].append(run(config))
    finally:
        os.environ.pop("MLSTM_CPU_PLAN", None)
    how = details[0].split("plan=", 1)[-1].split(" blas=", 1)[0]  # e.g. measured (µs/step: ...)
    return times, first, details[-1], how


def paired_ratio(mine: list[float], theirs: list[float]) -> float:
    """The median over rounds of mine/theirs, each round's two samples taken seconds apart: a
    change in the machine's load between rounds cancels, where a ratio of two medians keeps it
    (the same plan, forced and automatic, came out 10-20% apart that way on the AMD EPYC)."""
    return statistics.median(a / b for a, b in zip(mine, theirs))


def torch_runner(args, threads):
    """torch.nn.LSTM (CPU) with mlstm's weights, as a function that runs it once (ImportError
    without torch)."""
    import torch

    torch.set_num_threads(threads)
    X, H0, C0, W, R, b = args
    T, B, C = X.shape
    H = R.shape[1]
    dtype = torch.float64 if X.dtype == np.float64 else torch.float32
    layer = torch.nn.LSTM(C, H, dtype=dtype)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.from_numpy(W))
        layer.weight_hh_l0.copy_(torch.from_numpy(R))
        layer.bias_ih_l0.copy_(torch.from_numpy(b))
        layer.bias_hh_l0.zero_()
    x = torch.from_numpy(X)
    state = (torch.from_numpy(H0.T[None].copy()), torch.from_numpy(C0.T[None].copy()))

    def run():
        with torch.inference_mode():
            out, (h, c) = layer(x, state)
            out.numpy()

    return run


def onnxruntime_runner(args, threads):
    """ONNX Runtime's LSTM (CPU), as a function that runs it once (ImportError without it)."""
    import onnxruntime as ort

    X, H0, C0, W, R, b = args
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # The single-node model `mlstm convert --to onnx` writes (its conversion is tested against ORT).
    model = onnx_model({"weights": W, "recurrentWeights": R, "bias": b})
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {"X": X, "initial_h": H0.T[None].copy(), "initial_c": C0.T[None].copy()}
    return lambda: session.run(None, feed)


def gemm_runner(C, H, B, T, dtype):
    """One matmul with the LSTM's GEMM flops, (T*B, C+H) @ (C+H, 4H), through NumPy's BLAS."""
    rng = np.random.default_rng(1)
    a = rng.standard_normal((T * B, C + H)).astype(dtype)
    w = rng.standard_normal((C + H, 4 * H)).astype(dtype)
    out = np.empty((T * B, 4 * H), dtype)
    return lambda: np.matmul(a, w, out=out)


def versions():
    import scipy

    v = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__}
    for mod in ("torch", "onnxruntime", "threadpoolctl"):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:
            v[mod] = None
    loops = numpy_engine.compiled_loop()
    v["mlstm loop"] = (
        f"compiled, {loops[np.dtype(np.float32)].blas_description()}"
        if loops
        else f"numpy ({numpy_engine.compiled_loop_unavailable_reason()})"
    )
    return v


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            line = next(line for line in fh if line.startswith(("flags", "Features")))
    except (OSError, StopIteration):
        return []
    present = set(line.split(":", 1)[1].split())
    return [f for f in ISA_FLAGS if f in present]


def machine():
    return (
        f"{cpu_plans.cpu_model()} ({', '.join(cpu_flags()) or 'flags unknown'}), "
        f"{cpu_plans.cores()} usable logical CPUs of {os.cpu_count()}, {platform.system()} {platform.machine()}"
    )


def load() -> str:
    return "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def wait_for_load(limit: float, most_s: float = 600.0, every_s: float = 20.0) -> None:
    """Until the 1-minute load average is under ``limit`` (at most ``most_s``)."""
    waited = 0.0
    while os.getloadavg()[0] >= limit and waited < most_s:
        print(f"# load {load()}: waiting for the 1-minute load to fall under {limit}", flush=True)
        time.sleep(every_s)
        waited += every_s


def idle_fraction(window: float = 2.0) -> float | None:
    """Share of the CPUs' time spent idle over ``window`` seconds (this process sleeps meanwhile,
    so it is the rest of the machine: what the load average, which counts us too, cannot say)."""

    def sample() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as fh:
                values = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        return values[3] + values[4], sum(values[:8])  # idle + iowait, total (no guest time)

    first = sample()
    time.sleep(window)
    second = sample()
    if first is None or second is None or second[1] == first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1])


def wait_for_idle(least: float, most_s: float = 600.0) -> float | None:
    """Until the machine is at least ``least`` idle over 2 s (at most ``most_s``); the last share."""
    waited, idle = 0.0, idle_fraction()
    while idle is not None and idle < least and waited < most_s:
        print(f"# {100 * idle:.0f}% idle: waiting for {100 * least:.0f}%", flush=True)
        time.sleep(8.0)
        waited += 10.0
        idle = idle_fraction()
    return idle


def ms(x):
    return "-" if x is None else f"{1e3 * x:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=cpu_plans.cores())
    parser.add_argument("--shapes", choices=["all", "small"], default="all")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--no-forced", action="store_true", help="Skip the forced plans.")
    parser.add_argument(
        "--wait-load", type=float, help="First wait (up to 10 min) for the 1-minute load to fall under this."
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        help="Before each shape, wait (up to 10 min) until the machine is this idle (0-1) over 2 s.",
    )
    parser.add_argument("--json", help="Also write the rows as JSON here.")
    parser.add_argument("--markdown", help="Also write the header and the table here (Markdown).")
    opts = parser.parse_args()
    if opts.wait_load:
        wait_for_load(opts.wait_load)
    os.environ["MLSTM_CPU_CACHE"] = os.path.join(tempfile.mkdtemp(prefix="mlstm-bench-"), "cpu-plans.json")
    shapes = SHAPES if opts.shapes == "all" else SHAPES[:2]
    forced = () if opts.no_forced else PLANS
    lines = [
        f"# machine: {machine()}",
        f"# versions: {json.dumps(versions())}",
        f"# median of {opts.repeats} rounds after a warm-up, every configuration once a round (interleaved); "
        f"{opts.threads} threads for every peer; ratios are medians of the rounds' own ratios (paired)",
        f"# load average before: {load()}",
        "",
        "| dtype | C,H,B,T | auto ms | auto plan | first run ms | "
        + "".join(f"{p} ms | " for p in forced)
        + "auto/best forced | torch ms | ONNX RT ms | GEMM ceiling ms | auto/torch | auto/ORT | auto/ceiling |",
        "|---|---|---|---|---|" + "---|" * len(forced) + "---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    rows = []
    for dtype_name in opts.dtypes.split(","):
        dtype = np.dtype(dtype_name)
        for C, H, B, T in shapes:
            args = problem(C, H, B, T, dtype)
            row = {"dtype": dtype_name, "C": C, "H": H, "B": B, "T": T}
            if opts.wait_idle:
                idle = wait_for_idle(opts.wait_idle)
                row["idle_before"] = idle
                lines.append(f"<!-- {C},{H},{B},{T} {dtype_name}: {100 * (idle or 0):.0f}% idle before -->")
            peers = {"gemm_ceiling": gemm_runner(C, H, B, T, dtype)}
            try:
                peers["torch"] = torch_runner(args, opts.threads)
            except ImportError:
                pass
            if dtype == np.float32:  # ONNX Runtime's LSTM has no double kernel
                try:
                    peers["onnxruntime"] = onnxruntime_runner(args, opts.threads)
                except (ImportError, MlstmError):  # onnxruntime, or onnx (the model), not installed
                    pass
            times, row["auto_first"], row["auto_detail"], row["auto_how"] = bench_mlstm(
                args, opts.repeats, forced, peers
            )
            auto = times.pop(None)
            row["auto"] = statistics.median(auto)
            row["ratios"] = {config: paired_ratio(auto, t) for config, t in times.items()}
            for peer in ("torch", "onnxruntime", "gemm_ceiling"):
                t = times.pop(peer, None)
                row[peer] = statistics.median(t) if t else None
            row["forced"] = {plan: statistics.median(t) for plan, t in times.items()}
            rows.append(row)
            plan = row["auto_detail"].split("(", 1)[-1].split(")", 1)[0]
            how = row["auto_how"].split(" ", 1)[0]
            # against the fastest forced plan: the largest auto/plan
            row["auto_vs_best_forced"] = max(row["ratios"][p] for p in forced) if forced else None

            def ratio(config, ratios=row["ratios"]):
                return f"{ratios[config]:.2f}" if config in ratios else "-"

            line = (
                f"| {dtype_name} | {C},{H},{B},{T} | {ms(row['auto'])} | {plan} ({how}) | {ms(row['auto_first'])} | "
                + "".join(f"{ms(row['forced'][p])} | " for p in forced)
                + f"{'-' if not forced else format(row['auto_vs_best_forced'], '.2f')} | {ms(row['torch'])} | "
                + f"{ms(row['onnxruntime'])} | {ms(row['gemm_ceiling'])} | "
                + f"{ratio('torch')} | {ratio('onnxruntime')} | {ratio('gemm_ceiling')} |"
            )
            lines.append(line)
            print(line, flush=True)
    summary = [f"# load average after: {load()}"]
    summary += [
        f"# {r['dtype']} {r['C']},{r['H']},{r['B']},{r['T']}: {r['auto_how']}" for r in rows if "(" in r["auto_how"]
    ]
    for dtype_name in opts.dtypes.split(","):
        sel = [r for r in rows if r["dtype"] == dtype_name]
        for peer in ("torch", "onnxruntime"):
            ratios = [r["ratios"][peer] for r in sel if peer in r["ratios"]]
            if ratios:
                geo = float(np.exp(np.mean(np.log(ratios))))
                summary.append(
                    f"# {dtype_name}: geometric-mean time ratio mlstm/{peer} = {geo:.2f} over {len(ratios)} shapes"
                )
        if forced:
            worst = max(r["auto_vs_best_forced"] for r in sel)
            summary.append(f"# {dtype_name}: auto plan vs the best forced plan, worst shape: {worst:.2f}x")
    print("\n".join(summary))
    lines += [""] + summary
    if opts.markdown:
        with open(opts.markdown, "w") as fh:
            fh.write("\n".join(lines) + "\n")
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump({"machine": machine(), "versions": versions(), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
