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


def block_in_this_thread() -> None:
    """Keep SIGINT and SIGTERM away from the calling (worker) thread, so that the kernel delivers
    them to the main thread, whose waits they interrupt; a ``ThreadPoolExecutor`` initializer."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, set(NAMES))


def start_worker(thread: threading.Thread) -> None:
    """Start ``thread`` with SIGINT and SIGTERM blocked (it inherits the mask): a thread busy in C
    (zlib, HDF5) cannot run Python's handlers, and a signal it took would leave the main thread
    waiting instead of stopping."""
    if not hasattr(signal, "pthread_sigmask"):
        thread.start()
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, set(NAMES))
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def wait_for(event: threading.Event) -> None:
    """Wait until ``event`` is set, whatever signals arrive meanwhile, then raise the first of them:
    a worker thread must be finished before the buffers or the file it uses go away."""
    interrupted: BaseException | None = None
    while True:
        try:
            if event.wait(0.05):
                break
        except BaseException as exc:  # noqa: PERF203 - a signal now: still wait
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted
