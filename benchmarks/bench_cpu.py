"""CPU benchmark: mlstm's NumPy engine vs torch.nn.LSTM (CPU) and ONNX Runtime's LSTM, in one run.

    pip install '.[bench]' torch      # torch: the CPU build (see the README)
    python benchmarks/bench_cpu.py [--repeats 7] [--shapes small] [--json out.json]

Times the whole computation on canonical in-memory arrays (no file I/O), the median of
--repeats runs after one warm-up, each peer with the same inputs and thread count. ONNX
Runtime's LSTM has no float64 kernel, so it is float32 only. The "GEMM ceiling" is one
large matmul with the same FLOPs as the LSTM's GEMMs, (T*B, C+H) @ (C+H, 4H): how fast the
arithmetic alone could go on this machine's BLAS.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mlstm import lstm  # noqa: E402
from mlstm.foreign import onnx_model  # noqa: E402

SHAPES = [(10, 3, 32, 64), (64, 128, 32, 256), (256, 512, 64, 128), (128, 256, 1, 4096), (40, 64, 256, 1000)]


def median_time(fn, repeats):
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def problem(C, H, B, T, dtype):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((T, B, C)).astype(dtype)
    W = (rng.standard_normal((4 * H, C)) / np.sqrt(C)).astype(dtype)
    R = (rng.standard_normal((4 * H, H)) / np.sqrt(H)).astype(dtype)
    b = (rng.standard_normal(4 * H) * 0.1).astype(dtype)
    H0 = np.zeros((H, B), dtype)
    return X, H0, H0.copy(), W, R, b


def bench_mlstm(args, repeats):
    X, H0, C0, W, R, b = args
    return median_time(lambda: lstm(X, H0, C0, W, R, b, DataFormat="TBC"), repeats)


def bench_torch(args, repeats, threads):
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

    return median_time(run, repeats)


def bench_onnxruntime(args, repeats, threads):
    import onnxruntime as ort

    X, H0, C0, W, R, b = args
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    # The single-node model `mlstm convert --to onnx` writes (its conversion is tested against ORT).
    model = onnx_model({"weights": W, "recurrentWeights": R, "bias": b})
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    feed = {"X": X, "initial_h": H0.T[None].copy(), "initial_c": C0.T[None].copy()}
    return median_time(lambda: session.run(None, feed), repeats)


def bench_gemm(C, H, B, T, dtype, repeats):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((T * B, C + H)).astype(dtype)
    w = rng.standard_normal((C + H, 4 * H)).astype(dtype)
    out = np.empty((T * B, 4 * H), dtype)
    return median_time(lambda: np.matmul(a, w, out=out), repeats)


def versions():
    import scipy

    v = {"python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__}
    for mod in ("torch", "onnxruntime", "threadpoolctl"):
        try:
            v[mod] = __import__(mod).__version__
        except ImportError:
            v[mod] = None
    try:
        from threadpoolctl import threadpool_info

        v["blas"] = sorted(
            {f"{i['internal_api']} {i['version']} ({i['num_threads']} threads)" for i in threadpool_info()}
        )
    except ImportError:
        pass
    return v


def machine():
    model = platform.processor()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.machine()}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--shapes", choices=["all", "small"], default="all")
    parser.add_argument("--dtypes", default="float32,float64")
    parser.add_argument("--json", help="Also write the rows as JSON here.")
    opts = parser.parse_args()
    shapes = SHAPES if opts.shapes == "all" else SHAPES[:2]
    rows = []
    print(f"# machine: {machine()}\n# versions: {json.dumps(versions())}\n# median of {opts.repeats} runs")
    print(
        "| dtype | C,H,B,T | mlstm ms | µs/step | GFLOP/s | torch ms | ONNX RT ms | GEMM ceiling ms "
        "| mlstm/torch | mlstm/ORT | mlstm/ceiling |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for dtype_name in opts.dtypes.split(","):
        dtype = np.dtype(dtype_name)
        for C, H, B, T in shapes:
            args = problem(C, H, B, T, dtype)
            flops = 2.0 * T * B * 4 * H * (C + H)
            row = {"dtype": dtype_name, "C": C, "H": H, "B": B, "T": T}
            row["mlstm"] = bench_mlstm(args, opts.repeats)
            try:
                row["torch"] = bench_torch(args, opts.repeats, opts.threads)
            except ImportError:
                row["torch"] = None
            row["onnxruntime"] = None
            if dtype == np.float32:
                try:
                    row["onnxruntime"] = bench_onnxruntime(args, opts.repeats, opts.threads)
                except ImportError:
                    pass
            row["gemm_ceiling"] = bench_gemm(C, H, B, T, dtype, opts.repeats)
            row["gflops"] = flops / row["mlstm"] / 1e9
            rows.append(row)

            def ms(x):
                return "-" if x is None else f"{1e3 * x:.2f}"

            def ratio(x, mine=row["mlstm"]):
                return "-" if x is None else f"{mine / x:.2f}"

            print(
                f"| {dtype_name} | {C},{H},{B},{T} | {ms(row['mlstm'])} | {1e6 * row['mlstm'] / T:.1f} | "
                f"{row['gflops']:.1f} | {ms(row['torch'])} | {ms(row['onnxruntime'])} | {ms(row['gemm_ceiling'])} | "
                f"{ratio(row['torch'])} | {ratio(row['onnxruntime'])} | {ratio(row['gemm_ceiling'])} |",
                flush=True,
            )
    for dtype_name in opts.dtypes.split(","):
        sel = [r for r in rows if r["dtype"] == dtype_name]
        for peer in ("torch", "onnxruntime"):
            ratios = [r["mlstm"] / r[peer] for r in sel if r[peer]]
            if ratios:
                geo = float(np.exp(np.mean(np.log(ratios))))
                print(f"# {dtype_name}: geometric-mean time ratio mlstm/{peer} = {geo:.2f} over {len(ratios)} shapes")
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump({"machine": machine(), "versions": versions(), "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
