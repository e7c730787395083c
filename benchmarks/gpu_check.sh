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
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
    nvcc --version | tail -n 2
    $PY -c 'import cupy, torch, numpy; print("cupy", cupy.__version__, "torch", torch.__version__, "cudnn", torch.backends.cudnn.version(), "numpy", numpy.__version__)'
    lscpu | grep -E "Model name|^CPU\(s\)"
} >"$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
status=0
timeout 300 $PY -m pytest -q -p no:cacheprovider --timeout 120 \
    tests/test_cupy_engine.py tests/test_gpu_compile.py tests/test_cupy_engine_host.py tests/test_cupy_kernel_source.py \
    2>&1 | tee "$OUT/tests.log" | tail -n 25 || status=1
timeout 240 $PY benchmarks/bench_gpu.py --json "$OUT/bench.json" --markdown "$OUT/bench.md" ${BENCH_ARGS:---long} \
    2>&1 | tee "$OUT/bench.log" || status=1
exit $status
