#!/usr/bin/env bash
# The GPU run in one command, for a machine with an NVIDIA GPU, CuPy and PyTorch (installs nothing):
#   bash benchmarks/gpu_check.sh        # logs and tables under $OUT (default ./gpu_out)
# 1. the GPU tests: every kernel variant forced in turn against the float64 reference, NVRTC
#    compiles, nvcc compile checks, the host harnesses; 2. benchmarks/bench_gpu.py (each variant
#    vs cuDNN, plus the T = 10**6 bounded-memory run). Each part has a time limit so the whole
#    finishes inside 9 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_out}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
{  # each with a limit too: the whole must finish inside 9 minutes (10 + 5 + 15 + 280 + 230 = 540 s)
    timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
    timeout 5 nvcc --version | tail -n 2
    timeout 15 $PY -c 'import cupy, torch, numpy; print("cupy", cupy.__version__, "torch", torch.__version__, "cudnn", torch.backends.cudnn.version(), "numpy", numpy.__version__)'
    lscpu | grep -E "Model name|^CPU\(s\)"
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
status=0
# A test that hangs (a kernel that never returns) is cut at 120 s where pytest-timeout is there
# (the GPU machines' image has it; this script installs nothing).
per_test=()
$PY -c 'import pytest_timeout' 2>/dev/null && per_test=(--timeout 120)
timeout 280 $PY -m pytest -q -p no:cacheprovider "${per_test[@]}" \
    tests/test_cupy_engine.py tests/test_gpu_compile.py tests/test_cupy_engine_host.py tests/test_cupy_kernel_source.py \
    2>&1 | tee "$OUT/tests.log" | tail -n 25 || status=1
timeout 230 $PY benchmarks/bench_gpu.py --json "$OUT/bench.json" --markdown "$OUT/bench.md" ${BENCH_ARGS:---long} \
    2>&1 | tee "$OUT/bench.log" || status=1
exit $status
