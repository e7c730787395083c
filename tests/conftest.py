import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _signal_handlers_restored():
    """Tests that call mlstm.cli.main in this process must not leave its SIGINT/SIGTERM handlers
    (or a recorded signal) behind: a CI time limit's SIGTERM must still stop pytest."""
    import signal

    from mlstm import signals

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in handlers.items():
        signal.signal(s, handler)
    signals.received = 0


@pytest.fixture(autouse=True, scope="session")
def _cpu_plan_cache(tmp_path_factory):
    """Measured CPU plans go to a file of this session (and its subprocesses), not ~/.cache."""
    if "MLSTM_CPU_CACHE" not in os.environ:
        os.environ["MLSTM_CPU_CACHE"] = str(tmp_path_factory.mktemp("cpu-plans") / "cpu-plans.json")
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


# MLSTM_TEST_SUBPROCESS=1 runs every CLI call of the suite as a real subprocess (the slow way).
ALWAYS_SUBPROCESS = os.environ.get("MLSTM_TEST_SUBPROCESS") == "1"


def run_mlstm(*args, input=None, cwd=None, env=None, check=None, allow_internal=False, subprocess_only=False):
    """Run the CLI with ARGS; returns a CompletedProcess-like result (bytes stdout, text stderr).

    In-process through click's CliRunner isolation (the test suite's speed) unless ``env`` is given
    (engine settings read once per process), ``subprocess_only`` is set (exit codes of the real
    process, the console script) or MLSTM_TEST_SUBPROCESS=1: then ``python -m mlstm ARGS``.
    """
    if env or subprocess_only or ALWAYS_SUBPROCESS:
        proc = _run_subprocess(args, input, cwd, env)
    else:
        proc = _run_in_process(args, input, cwd)
    # No input, however bad, may reach the internal-error catch-all: every failing run of the
    # suite is checked here (a test of the catch-all itself passes allow_internal=True).
    if not allow_internal:
        assert "Error: unexpected" not in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr or "--debug" in map(str, args), proc.stderr
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


def _run_subprocess(args, input, cwd, env):
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
    return proc


def _run_in_process(args, input, cwd):
    """mlstm.cli.main(ARGS) with stdin/stdout/stderr swapped for buffers (click.testing's
    isolation), in ``cwd``, with the process's signal handlers put back afterwards."""
    import signal

    from click.testing import CliRunner

    from mlstm.cli import main

    argv = [str(a) for a in args]
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    here = os.getcwd()
    code = 0
    try:
        if cwd is not None:
            os.chdir(cwd)
        with CliRunner().isolation(input=input) as streams:
            try:
                main(argv)
            except SystemExit as stop:
                code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
            out, err = streams[0].getvalue(), streams[1].getvalue()
    finally:
        os.chdir(here)
        for s, handler in handlers.items():
            signal.signal(s, handler)
    return subprocess.CompletedProcess(["mlstm", *argv], code, out, err.decode("utf-8", "replace"))


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
