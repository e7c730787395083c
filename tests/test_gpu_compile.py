"""Every GPU kernel variant compiles for the GPUs mlstm targets, without a GPU.

nvcc builds lstm_step.cu and lstm_persistent.cu for sm_80 (A100) and sm_90 (H100/H200) with the
options the engine gives NVRTC, float/double x both gate x all three state activations, and the
assembler's report (-Xptxas -v) must show: no spills and no stack frame, registers that let the
launch the engine makes run (THREADS threads x registers within a multiprocessor's 65,536), and
static plus dynamic shared memory within the architecture's per-block limit for the plans the
engine computes (tests of the planner's arithmetic against the .cu are in test_cupy_engine_host).

.ci/run sets MLSTM_REQUIRE_NVCC=1: there a missing nvcc fails instead of skipping.
"""

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from mlstm.engines import cupy_engine

NVCC = shutil.which("nvcc") or next(
    (p for p in ("/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc") if os.path.exists(p)), None
)
if NVCC is None:
    if os.environ.get("MLSTM_REQUIRE_NVCC") == "1":
        pytest.fail("MLSTM_REQUIRE_NVCC=1 but nvcc is not installed", pytrace=False)
    pytest.skip("nvcc is not installed", allow_module_level=True)

ARCHS = {"sm_80": cupy_engine.SM80, "sm_90": cupy_engine.SM90}
VARIANTS = [
    (dtype, gate, state)
    for dtype in ("float32", "float64")
    for gate in cupy_engine.GATE_CODES
    for state in cupy_engine.STATE_CODES
]
KERNEL_NAMES = ("lstm_step", "lstm_persistent", "lstm_single_block")
# Shapes (H, B) the planner is asked about: the benchmark's and the edges of each kernel.
SHAPES = [(3, 32), (128, 32), (512, 64), (256, 1), (64, 256), (768, 16), (1, 1), (45, 45), (1000, 1000), (1536, 8)]
REGISTERS_PER_SM = 65536


def compile_report(tmp_dir, arch, dtype, gate, state):
    unit = os.path.join(tmp_dir, f"all_{arch}_{dtype}_{gate}_{state}.cu")
    with open(unit, "w") as fh:
        fh.write(f'#include "{cupy_engine.KERNEL_SOURCE}"\n#include "{cupy_engine.PERSISTENT_SOURCE}"\n')
    cmd = [NVCC, "-cubin", f"-arch={arch}", "-Xptxas", "-v", *cupy_engine.compile_options(dtype, gate, state)]
    proc = subprocess.run([*cmd, "-o", unit + ".cubin", unit], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return parse_ptxas(proc.stderr)


def parse_ptxas(text):
    """{kernel: {registers, spill_stores, spill_loads, stack, smem}} from nvcc -Xptxas -v."""
    report = {}
    current = None
    for line in text.splitlines():
        m = re.search(r"Compiling entry function '(\w+)'", line)
        if m:
            current = report.setdefault(m.group(1), {"smem": 0})
            continue
        if current is None:
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            current["stack"], current["spill_stores"], current["spill_loads"] = map(int, m.groups())
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            current["smem"] = int(s.group(1)) if s else 0
    return report


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("nvcc"))
    jobs = [(arch, *variant) for arch in ARCHS for variant in VARIANTS]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(lambda job: compile_report(folder, *job), jobs))
    return dict(zip(jobs, results))


@pytest.mark.parametrize("arch", list(ARCHS))
@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(v))
def test_kernels_compile_without_spills_and_fit_their_launch(reports, arch, variant):
    report = reports[(arch, *variant)]
    assert set(report) == set(KERNEL_NAMES), report
    itemsize = 4 if variant[0] == "float32" else 8
    limits = ARCHS[arch]
    for kernel, info in report.items():
        assert info["spill_stores"] == 0 and info["spill_loads"] == 0, (kernel, info)
        assert info["stack"] == 0, (kernel, info)
        threads = cupy_engine.STEP_THREADS if kernel == "lstm_step" else cupy_engine.THREADS
        assert info["registers"] <= 255 and info["registers"] * threads <= REGISTERS_PER_SM, (kernel, info)
    for hidden, batch in SHAPES:
        chosen = cupy_engine.plan(hidden, batch, itemsize, limits)
        if chosen.kernel == "step":
            continue
        kernel = "lstm_single_block" if chosen.kernel == "single" else "lstm_persistent"
        assert chosen.smem + report[kernel]["smem"] <= limits.smem_per_block, (hidden, batch, chosen)
        assert chosen.grid <= limits.multiprocessors  # one block per multiprocessor: co-resident
        unit_groups, obs_groups = -(-hidden // chosen.units), -(-batch // chosen.bgroup)
        assert chosen.grid == unit_groups * obs_groups  # the grid the kernel decodes blockIdx.x from
        assert (unit_groups - 1) * chosen.units < hidden and (obs_groups - 1) * chosen.bgroup < batch  # none empty
        assert 1 <= chosen.btile <= chosen.bgroup
