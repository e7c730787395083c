"""GPU benchmark: mlstm's CuPy engine (each kernel variant) vs torch.nn.LSTM on cuDNN, same GPU, one run.

    PYTHONPATH=. python benchmarks/bench_gpu.py [--repeats 15] [--json out.json] [--markdown out.md]

float32 with TF32 off on both sides (torch.backends.cudnn.allow_tf32 = False and
torch.backends.cuda.matmul.allow_tf32 = False; CuPy uses TF32 only under CUPY_TF32=1), and
float64. Device-resident random inputs (X, states, weights, bias), the same for both. Each time is
the median of ``repeats`` runs, each synchronised (host clock around run + device synchronise),
after a warm-up that compiles and loads the kernels. "host µs/step" is the time the host spends
issuing a run's work without waiting for the device, over T: the floor under a per-step-launch
design. --long runs the bounded-memory check (T = 10**6, B = 64, C = H = 128, float32, X on the
host as a broadcast view, Y into host memory) and reports the device memory the engine held.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

SHAPES = [
    (10, 3, 32, 64),
    (64, 128, 32, 256),
    (256, 512, 64, 128),
    (128, 256, 1, 4096),
    (40, 64, 256, 1000),
    (768, 768, 16, 1024),
]


def timed(fn, sync, repeats, budget_s=3.0):
    fn()
    sync()
    t = time.perf_counter()
    fn()
    sync()
    once = time.perf_counter() - t
    repeats = max(3, min(repeats, int(budget_s / max(once, 1e-6))))
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times), (max(times) - min(times)) / statistics.median(times), repeats


def long_run(cp, cupy_engine):
    """T = 10**6 with X on the host: the device memory held must not grow with T."""
    T, B, C, H = 10**6, 64, 128, 128
    rng = np.random.default_rng(1)
    x = np.broadcast_to(rng.standard_normal((1, B, C)).astype(np.float32), (T, B, C))
    W = (rng.standard_normal((4 * H, C)) * 0.1).astype(np.float32)
    R = (rng.standard_normal((4 * H, H)) * 0.1).astype(np.float32)
    b = np.zeros(4 * H, np.float32)
    h0 = np.zeros((B, H), np.float32)
    pool = cp.get_default_memory_pool()
    pool.free_all_blocks()
    runner = cupy_engine.prepare(W, R, b, "sigmoid", "tanh", np.float32)
    y = np.empty((T, B, H), np.float32)
    t = time.perf_counter()
    runner.run(x, h0, h0, y=y)
    wall = time.perf_counter() - t
    return dict(
        T=T,
        B=B,
        C=C,
        H=H,
        seconds=wall,
        device_bytes_held=pool.total_bytes(),
        y_bytes=y.nbytes,
        kernel=runner.last_plan.kernel,
        finite=bool(np.isfinite(y[-1]).all()),
    )


def main() -> None:
    import cupy as cp
    import torch

    from mlstm.engines import cupy_engine

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json")
    parser.add_argument("--markdown")
    parser.add_argument("--long", action="store_true")
    opts = parser.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    info = {
        "gpu": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
        "multiprocessors": props["multiProcessorCount"],
        "driver": cp.cuda.runtime.driverGetVersion(),
        "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        "cupy": cp.__version__,
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
    }
    lines = [
        f"# {json.dumps(info)}",
        "| dtype | C,H,B,T | kernel | mlstm ms | µs/step | host µs/step | cuDNN ms | cuDNN µs/step "
        "| mlstm/cuDNN | spread |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    print("\n".join(lines), flush=True)
    rows = []
    sync = cp.cuda.Device().synchronize
    for dtype in (np.float32, np.float64):
        for C, H, B, T in SHAPES:
            rng = np.random.default_rng(0)
            X = cp.asarray(rng.standard_normal((T, B, C)).astype(dtype))
            W = cp.asarray((rng.standard_normal((4 * H, C)) / np.sqrt(C)).astype(dtype))
            R = cp.asarray((rng.standard_normal((4 * H, H)) / np.sqrt(H)).astype(dtype))
            b = cp.asarray((rng.standard_normal(4 * H) * 0.1).astype(dtype))
            h0 = cp.asarray((rng.standard_normal((B, H)) * 0.5).astype(dtype))
            c0 = cp.asarray((rng.standard_normal((B, H)) * 0.5).astype(dtype))
            tdtype = torch.float32 if dtype == np.float32 else torch.float64
            layer = torch.nn.LSTM(C, H, dtype=tdtype, device="cuda")
            with torch.no_grad():
                layer.weight_ih_l0.copy_(torch.as_tensor(W, device="cuda"))
                layer.weight_hh_l0.copy_(torch.as_tensor(R, device="cuda"))
                layer.bias_ih_l0.copy_(torch.as_tensor(b, device="cuda"))
                layer.bias_hh_l0.zero_()
            xt = torch.as_tensor(X, device="cuda")
            state = (torch.as_tensor(h0, device="cuda")[None], torch.as_tensor(c0, device="cuda")[None])

            def peer(layer=layer, xt=xt, state=state):
                with torch.inference_mode():
                    return layer(xt, state)

            theirs, _, _ = timed(peer, torch.cuda.synchronize, opts.repeats)
            ref_y = peer()[0].double().cpu().numpy()
            auto = cupy_engine.plan(H, B, np.dtype(dtype).itemsize, cupy_engine.device_limits(dev.id)).kernel
            for kernel in cupy_engine.KERNELS:
                os.environ["MLSTM_GPU_KERNEL"] = kernel
                try:
                    runner = cupy_engine.prepare(W, R, b, "sigmoid", "tanh", np.dtype(dtype))
                    runner.plan_for(B)
                except ValueError:
                    continue  # this kernel cannot run this shape
                y = cp.empty((T, B, H), dtype)
                mine, spread, reps = timed(
                    lambda r=runner, x=X, h=h0, c=c0, y=y: r.run(x, h, c, y=y), sync, opts.repeats
                )
                y.fill(np.nan)
                sync()
                t = time.perf_counter()
                runner.run(X, h0, c0, y=y)
                host = (time.perf_counter() - t) / T
                sync()
                err = float(np.max(np.abs(y.get().astype(np.float64) - ref_y)))
                row = dict(
                    dtype=np.dtype(dtype).name,
                    C=C,
                    H=H,
                    B=B,
                    T=T,
                    kernel=kernel,
                    auto=kernel == auto,
                    plan=runner.last_plan.__dict__,
                    cooperative=runner.cooperative,
                    mlstm=mine,
                    cudnn=theirs,
                    host_per_step=host,
                    spread=spread,
                    repeats=reps,
                    max_abs_diff_vs_cudnn=err,
                )
                rows.append(row)
                line = (
                    f"| {row['dtype']} | {C},{H},{B},{T} | {kernel}{' (auto)' if row['auto'] else ''} | "
                    f"{1e3 * mine:.3f} | {1e6 * mine / T:.2f} | {1e6 * host:.2f} | {1e3 * theirs:.3f} | "
                    f"{1e6 * theirs / T:.2f} | {mine / theirs:.2f} | {spread:.0%} |"
                )
                lines.append(line)
                print(line, f"maxdiff={err:.1e}", flush=True)
            os.environ.pop("MLSTM_GPU_KERNEL", None)
    result = {"info": info, "rows": rows}
    if opts.long:
        result["long"] = long_run(cp, cupy_engine)
        lines.append(f"\nlong run: {json.dumps(result['long'])}")
        print(lines[-1], flush=True)
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump(result, fh, indent=1)
    if opts.markdown:
        with open(opts.markdown, "w") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
