"""A small progress display for long runs, on stderr.

Shown on a terminal once a run has taken more than ``delay`` seconds; with ``force`` (the
``--progress`` flag) from the start, and on a pipe as plain lines at most once a second.
Never shown with ``--quiet``. Steps done, steps/s and the time left.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class Progress:
    def __init__(
        self,
        total: int = 0,
        label: str = "steps",
        stream: TextIO | None = None,
        force: bool = False,
        quiet: bool = False,
        delay: float = 2.0,
    ):
        self.total = max(int(total), 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.enabled = not quiet and (force or self.tty)
        self.delay = 0.0 if force else delay
        self.start = time.perf_counter()
        self.last = 0.0
        self.shown = False
        self.done = 0

    def __call__(self, done: int, total: int | None = None) -> None:
        if total is not None:
            self.total = total
        self.update(done)

    def update(self, done: int) -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.perf_counter()
        elapsed = now - self.start
        interval = 0.2 if self.tty else 1.0
        if elapsed < self.delay or (now - self.last < interval and done < self.total):
            return
        self.last = now
        rate = done / elapsed if elapsed > 0 else 0.0
        left = (self.total - done) / rate if rate > 0 else 0.0
        pct = 100.0 * done / self.total if self.total else 100.0
        width = 24
        filled = int(width * done / self.total) if self.total else width
        bar = "#" * filled + "-" * (width - filled)
        text = (
            f"mlstm: [{bar}] {done}/{self.total} {self.label} ({pct:.0f}%) "
            f"{rate:,.0f} {self.label}/s ETA {_duration(left)}"
        )
        self.stream.write(("\r" + text + "\033[K") if self.tty else text + "\n")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.enabled and self.shown:
            self.last = 0.0
            self.update(self.done)
            if self.tty:
                self.stream.write("\n")
                self.stream.flush()
