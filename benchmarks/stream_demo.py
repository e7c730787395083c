"""Streaming demo: a MAT v7.3 X of >= 4 GB on disk through `mlstm run`, with peak memory measured.

    python benchmarks/stream_demo.py [--dir /tmp/mlstm-stream] [--keep]

Writes big.mat (X of MATLAB size 256 x 64 x 65536, single: 4.3 GB, uncompressed) and the small
arguments, runs `python -m mlstm run big.mat -o out.mat --format mat73` under /usr/bin/time -v,
reports wall time and peak RSS, and checks the first and last 64 steps of Y against in-memory runs.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from mlstm import lstm  # noqa: E402
from mlstm.io.h5write import Hdf5Output  # noqa: E402

C, B, T, H = 256, 64, 65536, 32


def make_input(path: str) -> None:
    rng = np.random.default_rng(0)
    with Hdf5Output(path, "mat73") as out:
        write_x = out.create("X", (C, B, T), np.float32, compress=False)  # >= 4 GB on disk
        for start in range(0, T, 2048):
            block = rng.standard_normal((C, B, 2048), dtype=np.float32)
            write_x(2, start, block)
        out.write("H0", np.zeros((H, 1), np.float32))
        out.write("C0", np.zeros((H, 1), np.float32))
        out.write("weights", (rng.standard_normal((4 * H, C)) / 16).astype(np.float32))
        out.write("recurrentWeights", (rng.standard_normal((4 * H, H)) / 8).astype(np.float32))
        out.write("bias", np.zeros((4 * H, 1), np.float32))
        out.write("DataFormat", "CBT")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", default="/tmp/mlstm-stream")
    parser.add_argument("--keep", action="store_true")
    opts = parser.parse_args()
    os.makedirs(opts.dir, exist_ok=True)
    big = os.path.join(opts.dir, "big.mat")
    out = os.path.join(opts.dir, "out.mat")
    if not os.path.exists(big):
        t = time.perf_counter()
        make_input(big)
        print(f"wrote {big}: {os.path.getsize(big) / 1e9:.2f} GB in {time.perf_counter() - t:.0f} s")
    print(f"X on disk: {os.path.getsize(big) / 1e9:.2f} GB (MATLAB size {C}x{B}x{T} single)")
    cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "mlstm", "run", big, "-o", out, "--format", "mat73", "-v"]
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", proc.stderr).group(1)
    print(next(line for line in proc.stderr.splitlines() if line.startswith("mlstm:")))
    print(f"peak RSS {rss_kb / 1024:.0f} MiB, wall {wall}")
    with h5py.File(big, "r") as f, h5py.File(out, "r") as g:
        args = [f[n][()].T for n in ("H0", "C0", "weights", "recurrentWeights", "bias")]
        x_head = f["X"][:64].T
        y_head = g["Y"][:64].T
        Y, _, _ = lstm(x_head, *args, DataFormat="CBT")
        assert np.array_equal(Y, y_head), "first 64 steps differ from an in-memory run"
        print(
            f"Y is {g['Y'].shape[::-1]} {g['Y'].attrs['MATLAB_class'].decode()}; first 64 steps equal an in-memory run"
        )
    if not opts.keep:
        shutil.rmtree(opts.dir)


if __name__ == "__main__":
    main()
