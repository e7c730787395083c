"""SIGINT and SIGTERM for the command line: stop promptly, write nothing, exit 130 / 143.

:func:`install` (called by the CLI's ``main`` only; the library leaves a host program's signal
handling alone) makes both signals raise :class:`Interrupted` and records them, so that an
interrupt swallowed inside a library callback (h5py turns exceptions in some callbacks into
"Exception ignored" warnings) still stops the run: :func:`check` runs between blocks of steps
and before an output is committed. Long compiled loops run on a worker thread that stops
between steps when the main thread is interrupted (see ``engines.numpy_engine``).
"""

from __future__ import annotations

import signal
import threading
from typing import Any

NAMES = {signal.SIGINT: "SIGINT", signal.SIGTERM: "SIGTERM"}
received = 0  # the last signal number seen by the handler; 0: none


class Interrupted(BaseException):
    """The run was stopped by a signal. A BaseException, as KeyboardInterrupt is, so that
    ``except Exception`` blocks in the code below do not catch it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"interrupted by {NAMES.get(signum, signum)}")

    @property
    def exit_status(self) -> int:
        return 128 + int(self.signum)


def _handler(signum: int, frame: Any) -> None:
    global received
    received = signum
    raise Interrupted(signum)


def install() -> None:
    """SIGINT and SIGTERM raise :class:`Interrupted` (main thread only)."""
    global received
    received = 0
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in NAMES:
        signal.signal(signum, _handler)


def check() -> None:
    """Raise :class:`Interrupted` if a signal arrived (even one whose exception was swallowed)."""
    if received:
        raise Interrupted(received)
