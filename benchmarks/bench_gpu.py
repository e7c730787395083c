"""GPU benchmark: mlstm's CuPy engine vs torch.nn.LSTM on cuDNN, same GPU, one run.

    PYTHONPATH=. python benchmarks/bench_gpu.py [--repeats 20] [--json out.json]

float32 with TF32 off on both sides (torch.backends.cudnn.allow_tf32 = False and
torch.backends.cuda.matmul.allow_tf32 = False; CuPy uses TF32 only under CUPY_TF32=1), and
float64. Times are device-synchronised medians after a warm-up, on device-resident inputs.
"Host µs/step" is the time the host spends issuing one step's work (the enqueue loop without
synchronising), the floor a per-step-launch design cannot go under.
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


def timed(fn, sync, repeats):
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    import cupy as cp
    import torch

    from mlstm.engines import cupy_engine

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json")
    opts = parser.parse_args()
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = cp.cuda.Device()
    props = cp.cuda.runtime.getDeviceProperties(dev.id)
    info = {
        "gpu": props["name"].decode() if isinstance(props["name"], bytes) else props["name"],
        "driver": cp.cuda.runtime.driverGetVersion(),
        "cuda_runtime": cp.cuda.runtime.runtimeGetVersion(),
        "cupy": cp.__version__,
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
    }
    print(f"# {json.dumps(info)}")
    print("| dtype | C,H,B,T | mlstm ms | µs/step | host µs/step | cuDNN ms | mlstm/cuDNN |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for dtype in (np.float32, np.float64):
        for C, H, B, T in SHAPES:
            rng = np.random.default_rng(0)
            X = cp.asarray(rng.standard_normal((T, B, C)).astype(dtype))
            W = cp.asarray((rng.standard_normal((4 * H, C)) / np.sqrt(C)).astype(dtype))
            R = cp.asarray((rng.standard_normal((4 * H, H)) / np.sqrt(H)).astype(dtype))
            b = cp.asarray(np.zeros(4 * H, dtype))
            h0 = cp.zeros((B, H), dtype)
            runner = cupy_engine.prepare(W, R, b, "sigmoid", "tanh", np.dtype(dtype))
            sync = cp.cuda.Device().synchronize
            mine = timed(lambda r=runner, x=X, h=h0: r.run(x, h, h), sync, opts.repeats)
            t = time.perf_counter()
            runner.run(X, h0, h0)
            host = (time.perf_counter() - t) / T
            sync()
            tdtype = torch.float32 if dtype == np.float32 else torch.float64
            layer = torch.nn.LSTM(C, H, dtype=tdtype, device="cuda")
            with torch.no_grad():
                layer.weight_ih_l0.copy_(torch.as_tensor(W, device="cuda"))
                layer.weight_hh_l0.copy_(torch.as_tensor(R, device="cuda"))
                layer.bias_ih_l0.zero_()
                layer.bias_hh_l0.zero_()
            xt = torch.as_tensor(X, device="cuda")
            state = (torch.zeros(1, B, H, dtype=tdtype, device="cuda"),) * 2

            def peer(layer=layer, xt=xt, state=state):
                with torch.inference_mode():
                    layer(xt, state)

            theirs = timed(peer, torch.cuda.synchronize, opts.repeats)
            row = dict(dtype=np.dtype(dtype).name, C=C, H=H, B=B, T=T, mlstm=mine, cudnn=theirs, host_per_step=host)
            rows.append(row)
            print(
                f"| {row['dtype']} | {C},{H},{B},{T} | {1e3 * mine:.3f} | {1e6 * mine / T:.2f} | {1e6 * host:.2f} | "
                f"{1e3 * theirs:.3f} | {mine / theirs:.2f} |",
                flush=True,
            )
    if opts.json:
        with open(opts.json, "w") as fh:
            json.dump({"info": info, "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
