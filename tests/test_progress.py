"""The progress display: time left from the recent rate, each line once on a pipe, messages on
lines of their own above the bar (tqdm's and the fallback without tqdm), the write phase."""

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import numpy as np
import pytest
import scipy.io
from conftest import REPO, run_mlstm
from reference import random_problem

from mlstm.progress import Progress, RecentRate


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class Tty(io.StringIO):
    def isatty(self):
        return True


def screen(raw):
    """The lines a terminal shows for ``raw``: \\r goes back to column 0, ESC[K clears to the end
    of the line, other escape sequences move nothing here, \\n ends a line."""
    lines, line, col = [], [], 0
    for token in re.split(r"(\r|\n|\x1b\[[0-9;?]*[A-Za-z])", raw):
        if token == "\n":
            lines.append("".join(line).rstrip())
            line, col = [], 0
        elif token == "\r":
            col = 0
        elif token.startswith("\x1b["):
            if token.endswith("K"):
                del line[col:]
        else:
            for ch in token:
                if col < len(line):
                    line[col] = ch
                else:
                    line.append(ch)
                col += 1
    if line:
        lines.append("".join(line).rstrip())
    return lines


def test_time_left_comes_from_the_recent_rate():
    clock = FakeClock()
    bar = Progress(total=100, stream=io.StringIO(), force=True, clock=clock)
    for step in range(1, 51):  # a fast start: 50 steps in the first second ...
        clock.now = step / 50
        bar(step)
    for step in range(51, 61):  # ... then 1 step a second for 10 s
        clock.now += 1.0
        bar(step)
    # 40 steps left at 1 step/s. The average since the start (60 in 11 s) would say 7s.
    assert "60/100 steps (60%) 1 steps/s ETA 40s" in bar.line()
    clock.now += 30.0  # stalled: the rate over the last 10 s is 0, the time left unknown
    bar(60)
    assert bar.line().endswith("0 steps/s ETA ?")
    rate = RecentRate(window=10.0)
    for t, done in ((0, 0), (1, 100), (20, 110), (25, 120)):
        rate.add(t, done)
    assert rate.rate() == pytest.approx((120 - 100) / (25 - 1))  # from the newest sample before t-10 on


def test_each_line_once_on_a_pipe():
    clock = FakeClock()
    stream = io.StringIO()
    bar = Progress(stream=stream, force=True, clock=clock)
    for step in range(1, 41):  # 4 s in steps of 0.1 s: a line a second at most
        clock.now = step / 10
        bar(step, 40)
    bar.set_state("writing out.mat")
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == len(set(lines)) and len(lines) == 6, lines
    assert [int(re.search(r"(\d+)/40", line).group(1)) for line in lines] == [1, 11, 21, 31, 40, 40]
    assert lines[-2].endswith("ETA 0s") and lines[-1].endswith("ETA 0s writing out.mat")


def test_forced_progress_of_a_run_on_a_pipe(tmp_path):
    names = ("X", "H0", "C0", "weights", "recurrentWeights", "bias")
    scipy.io.savemat(tmp_path / "in.mat", dict(zip(names, random_problem(np.random.default_rng(2), T=40))))
    proc = run_mlstm("run", tmp_path / "in.mat", "-o", tmp_path / "o.mat", "DataFormat=CBT", "--progress", check=0)
    lines = proc.stderr.splitlines()
    assert len(lines) == len(set(lines)), proc.stderr
    assert "40/40 steps (100%)" in lines[-2] and lines[-1].endswith(f"writing {tmp_path / 'o.mat'}")


@pytest.mark.parametrize("use_tqdm", [False, True], ids=["fallback", "tqdm"])
def test_messages_go_above_the_bar_on_a_terminal(use_tqdm):
    if use_tqdm:
        pytest.importorskip("tqdm")
    stream = Tty()
    bar = Progress(total=3, label="files", stream=stream, delay=0.0, use_tqdm=use_tqdm)
    bar.set_state("a.mat")
    bar(1)
    bar.write("Error: b.mat: bad")
    bar(2)
    bar.set_state("writing out/c.mat")
    shown = screen(stream.getvalue())
    assert shown[0] == "Error: b.mat: bad" and len(shown) == 2, shown
    assert "2/3" in shown[1] and "writing out/c.mat" in shown[1], shown  # the write phase
    bar(3)
    bar.close()
    shown = screen(stream.getvalue())
    assert shown[0] == "Error: b.mat: bad" and len(shown) == 2, shown
    assert "3/3" in shown[1] and "writing" not in shown[1], shown  # done: the state is over
    assert stream.getvalue().endswith("\n")
    quiet = Tty()
    bar = Progress(total=3, stream=quiet, quiet=True, delay=0.0, use_tqdm=use_tqdm)
    bar(1)
    bar.write("Error: b.mat: bad")  # quiet silences the bar, not the errors
    bar.close()
    assert quiet.getvalue() == "Error: b.mat: bad\n"


def run_on_a_terminal(args, env):
    """Run ``python -m mlstm ARGS`` with stderr on a 100-column pseudo-terminal; (status, screen)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlstm", *map(str, args)], stdout=subprocess.DEVNULL, stderr=slave, env=env
    )
    os.close(slave)
    raw = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: every writer is gone
            break
        if not chunk:
            break
        raw += chunk
    os.close(master)
    return proc.wait(timeout=120), screen(raw.decode("utf-8", "replace"))


@pytest.mark.parametrize("with_tqdm", [False, True], ids=["fallback", "tqdm"])
def test_batch_error_lines_stand_on_their_own_on_a_terminal(tmp_path, with_tqdm):
    if with_tqdm:
        pytest.importorskip("tqdm")
    rng = np.random.default_rng(4)
    scipy.io.savemat(
        tmp_path / "w.mat",
        {
            "weights": rng.standard_normal((8, 3)),
            "recurrentWeights": rng.standard_normal((8, 2)),
            "bias": np.zeros((8, 1)),
            "H0": np.zeros((2, 1)),
            "C0": np.zeros((2, 1)),
            "DataFormat": "CBT",
        },
    )
    for i in range(4):
        C = 5 if i == 1 else 3  # a wrong InputSize: an Error: line mid-run
        scipy.io.savemat(tmp_path / f"s{i}.mat", {"X": rng.standard_normal((C, 2, 6))})
    hide = tmp_path / "no-tqdm"
    (hide / "tqdm").mkdir(parents=True)
    (hide / "tqdm" / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    path = [REPO] if with_tqdm else [str(hide), REPO]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path + [os.environ.get("PYTHONPATH", "")])}
    pattern = str(tmp_path / "s*.mat")
    status, shown = run_on_a_terminal(
        ["batch", pattern, "--weights", tmp_path / "w.mat", "--out-dir", tmp_path / "out"], env
    )
    assert status == 1, shown
    errors = [line for line in shown if "Error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"Error: {tmp_path / 's1.mat'}: "), shown
    assert shown[-1] == "mlstm: 4 input(s): 3 done, 0 skipped (output exists), 1 failed", shown
    assert "4/4" in shown[-2] and "file" in shown[-2] and "Error" not in shown[-2], shown
