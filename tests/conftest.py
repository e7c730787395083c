import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True, scope="session")
def _cpu_plan_cache(tmp_path_factory):
    """Measured CPU plans go to a file of this session (and its subprocesses), not ~/.cache."""
    if "MLSTM_CPU_CACHE" not in os.environ:
        os.environ["MLSTM_CPU_CACHE"] = str(tmp_path_factory.mktemp("cpu-plans") / "cpu-plans.json")
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


def run_mlstm(*args, input=None, cwd=None, env=None, check=None, allow_internal=False):
    """Run ``python -m mlstm ARGS`` as a real subprocess; returns CompletedProcess (bytes stdout, text stderr)."""
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = REPO + os.pathsep + full_env.get("PYTHONPATH", "")
    if env:
        full_env.update(env)
    proc = subprocess.run(
        [sys.executable, "-m", "mlstm", *map(str, args)],
        input=input,
        capture_output=True,
        cwd=cwd,
        env=full_env,
        timeout=300,
    )
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    # No input, however bad, may reach the internal-error catch-all: every failing run of the
    # suite is checked here (a test of the catch-all itself passes allow_internal=True).
    if not allow_internal:
        assert "Error: unexpected" not in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr or "--debug" in map(str, args), proc.stderr
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


def assert_one_line_error(proc, *fragments):
    """Exit 2, exactly one stderr line starting 'Error:', containing every fragment, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def octave_or_skip(module_level=False):
    """GNU Octave's command-line program. Missing: a skip, or a failure under MLSTM_REQUIRE_OCTAVE=1
    (which .ci/run sets, so CI cannot pass with the Octave tests silently skipped)."""
    found = shutil.which("octave-cli") or shutil.which("octave")
    if found is None:
        if os.environ.get("MLSTM_REQUIRE_OCTAVE") == "1":
            pytest.fail("MLSTM_REQUIRE_OCTAVE=1 but GNU Octave is not installed", pytrace=False)
        pytest.skip("GNU Octave is not installed", allow_module_level=module_level)
    return found
