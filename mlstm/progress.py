"""Progress of a long run on stderr: steps (``run``) or files (``batch``) done, rate, time left.

Shown on a terminal once a run has taken more than ``delay`` seconds; with ``force`` (the
``--progress`` flag) from the start, and on a pipe as plain lines, at most one a second, each
line once. Never shown with ``quiet``.

- On a terminal the bar is tqdm's when tqdm is installed (the ``progress`` extra), else one
  line redrawn in place and cut to the terminal's width.
- Messages (``Error:`` lines, notices) go through :meth:`Progress.write`: printed on a line of
  their own above the bar, never glued onto it.
- :meth:`Progress.set_state` shows what the run is doing besides counting (``writing out.mat``).
- The time left comes from the rate over the last ``RATE_WINDOW`` seconds, not from the
  average since the start, which a slow start or a change of pace skews for the rest of the run.

tqdm is optional (core dependencies are numpy, scipy, click and h5py). Not ``click.progressbar``:
on a pipe it prints only its label, and its time left is an average since the start.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TextIO

RATE_WINDOW = 10.0  # seconds of recent updates the rate (and so the time left) is taken over


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class RecentRate:
    """Units per second over about the last ``window`` seconds of ``add(time, done)`` samples."""

    def __init__(self, window: float = RATE_WINDOW):
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, now: float, done: int) -> None:
        self.samples.append((now, done))
        # Keep the newest sample at or before now - window: the span then covers the window.
        while len(self.samples) > 2 and self.samples[1][0] <= now - self.window:
            self.samples.popleft()

    def rate(self) -> float:
        if len(self.samples) < 2:
            return 0.0
        (t0, d0), (t1, d1) = self.samples[0], self.samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0


class Progress:
    """``progress(done, total)`` after each block; :meth:`close` (or ``with``) at the end."""

    def __init__(
        self,
        total: int = 0,
        label: str = "steps",
        stream: TextIO | None = None,
        force: bool = False,
        quiet: bool = False,
        delay: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
        use_tqdm: bool = True,
    ):
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = not quiet and (force or self.tty)
        self.delay = 0.0 if force else delay
        self.clock = clock
        self.start = clock()
        self.rate = RecentRate()
        self.rate.add(self.start, 0)
        self.done = 0
        self.state = ""
        self.shown = False
        self._use_tqdm = use_tqdm and self.tty
        self._tqdm: Any = None
        self._last_render = -float("inf")
        self._last_shown: tuple[int, int, str] | None = None  # what the last line said
        self._on_line = False  # a redrawn bar occupies the terminal's current line

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.update(done)

    def update(self, done: int) -> None:
        self.done = done
        self.rate.add(self.clock(), done)
        self._show()

    def set_state(self, text: str) -> None:
        """What the run does now, shown after the counts (``""``: nothing)."""
        if text != self.state:
            self.state = text
            self._show(now=True)

    def write(self, message: str) -> None:
        """Print ``message`` on a line of its own, above the bar (or plainly when none shows)."""
        if self._tqdm is not None:
            self._tqdm.write(message, file=self.stream)
            return
        if self._on_line:
            self.stream.write("\r\033[K")
        self.stream.write(message + "\n")
        self.stream.flush()
        if self._on_line:
            self._render()

    def close(self) -> None:
        """The final counts; on a terminal without the state, which is over (on a pipe its line
        stays as it was printed)."""
        if self.tty:
            self.state = ""
        if self._tqdm is not None:
            self._sync_tqdm()
            self._tqdm.close()
            self._tqdm = None
        elif self.shown and self._last_shown != self._snapshot():
            self._render()
        if self._on_line:
            self.stream.write("\n")
            self.stream.flush()
            self._on_line = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- drawing

    def _snapshot(self) -> tuple[int, int, str]:
        return self.done, self.total, self.state

    def _show(self, now: bool = False) -> None:
        if not self.enabled or self.clock() - self.start < self.delay:
            return
        if self._use_tqdm and self._start_tqdm():
            self._sync_tqdm()
            return
        interval = 0.2 if self.tty else 1.0
        finished = self.total and self.done >= self.total
        if self._last_shown == self._snapshot():
            return  # each line once
        if now or finished or self.clock() - self._last_render >= interval:
            self._render()

    def line(self, columns: int | None = None) -> str:
        """The plain display line: bar, counts, rate, time left and state. Fitted to ``columns``:
        the bar narrows to 10 (then goes), and the state loses its start."""
        total, done = self.total, self.done
        pct = 100.0 * done / total if total else 100.0
        rate = self.rate.rate()
        left = _duration((total - done) / rate) if rate > 0 else "?"
        speed = f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"
        body = f"{done}/{total} {self.label} ({pct:.0f}%) {speed} {self.label}/s ETA {left}"
        state = f" {self.state}" if self.state else ""
        width = 24
        if columns is not None:
            fixed = len(f"mlstm: [] {body}")
            width = max(min(24, columns - fixed - len(state)), 10)
            if columns - fixed < width:
                width, fixed = 0, len(f"mlstm: {body}")
            room = columns - fixed - width
            if len(state) > room:
                state = " ..." + state[len(state) - room + 4 :] if room >= 12 else ""
        filled = (min(int(width * done / total), width) if total else width) if width else 0
        bar = f"[{'#' * filled}{'-' * (width - filled)}] " if width else ""
        return f"mlstm: {bar}{body}{state}"[:columns]

    def _render(self) -> None:
        if self.tty:
            try:
                columns = os.get_terminal_size(self.stream.fileno()).columns
            except (AttributeError, OSError, ValueError):
                columns = 80
            self.stream.write("\r" + self.line(max(columns - 1, 20)) + "\033[K")
            self._on_line = True
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()
        self._last_render = self.clock()
        self._last_shown = self._snapshot()
        self.shown = True

    def _start_tqdm(self) -> bool:
        if self._tqdm is None:
            try:
                from tqdm import tqdm
            except ImportError:
                self._use_tqdm = False
                return False
            self._tqdm = tqdm(
                total=self.total or None,
                desc="mlstm",
                unit=self.label.rstrip("s"),
                initial=self.done,
                file=self.stream,
                dynamic_ncols=True,
                mininterval=0.2,
                leave=True,
            )
            self.shown = True
        return True

    def _sync_tqdm(self) -> None:
        bar = self._tqdm
        if self.total and bar.total != self.total:
            bar.total = self.total
        if self.state != (bar.postfix or ""):
            bar.set_postfix_str(self.state)  # redrawn now: a state lasts, a count soon changes
        bar.update(self.done - bar.n)
