"""One loop over time for every run, whatever holds X and wherever Y goes.

    source block of X  ->  engine (h, c carried)  ->  sink for that block of Y

In memory (``api.compute``) the source is a slice of the canonical X and the sink a slice of
the output buffer; streaming (``stream.stream_lstm``) reads X from an HDF5 dataset and writes
Y into the output file. The block boundaries come from the engine and the run's sizes only,
never from where the data lives: every block but the last is a multiple of the engine's own
input-projection block (:meth:`block_steps`), and the engine's plan is chosen once for the
whole run (``plan_steps``). So the engine makes the same BLAS calls on the same data in every
case, and a streamed run, a run with a progress display and a run with ``chunk_steps`` give
the same bits as one call on the whole sequence, on any BLAS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import signals

CHUNK_BUDGET = 32 << 20  # bytes of X, gate and Y buffers per block when no size is asked for


def auto_chunk_steps(batch: int, input_size: int, hidden: int, itemsize: int, budget: int = CHUNK_BUDGET) -> int:
    """Steps per block so that one block's buffers (X, gates, Y) take about ``budget`` bytes."""
    per_step = batch * (input_size + 5 * hidden) * itemsize
    return max(1, budget // max(per_step, 1))


def chunk_length(runner: Any, steps: int, batch: int, requested: int | None, default: int | None) -> int:
    """Steps per call of the engine: ``requested`` (or ``default``; None: the whole run), rounded
    up to a multiple of the engine's projection block."""
    want = requested or default or steps
    unit = runner.block_steps(batch) if hasattr(runner, "block_steps") else 1
    chunk = -(-max(1, want) // unit) * unit
    return max(1, min(chunk, max(steps, 1)))


class WriteBehind:
    """Writes blocks of Y on one background thread, in order, while the next block computes: the
    compiled loop and zlib both run without the GIL, so on two cores a streamed run takes about
    max(compute, write) per block instead of their sum. At most one block waits; a write error is
    raised in the caller at the next :meth:`put` or at :meth:`finish`. ``seconds``: the thread's
    busy time."""

    def __init__(self, write: Callable[[int, int, Any], None]):
        import queue
        import threading

        self._write = write
        self._queue: Any = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._abandoned = False
        self._done = threading.Event()
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._loop, name="mlstm-write-behind", daemon=True)
        signals.start_worker(self._thread)

    def _loop(self) -> None:
        import time

        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if self._error is not None or self._abandoned:
                    continue  # drain: after an error or an interrupt nothing more is written
                began = time.perf_counter()
                try:
                    self._write(*item)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    self._error = exc
                self.seconds += time.perf_counter() - began
        finally:
            self._done.set()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, start: int, stop: int, y: Any) -> None:
        self._raise()
        self._queue.put((start, stop, y))

    def abandon(self) -> None:
        """The run is failing: write nothing more of what waits in the queue."""
        self._abandoned = True

    def finish(self) -> None:
        """Wait for every queued write; raise the first write error. Always call (``finally``):
        the file must not be closed while a write runs."""
        interrupted: BaseException | None = None
        while True:  # the end marker must go in, whatever signal arrives while the queue is full
            try:
                self._queue.put(None)
                break
            except BaseException as exc:
                interrupted = interrupted or exc
        try:
            signals.wait_for(self._done)  # an Event: Python 3.11's Thread.join can call a running thread finished
        except BaseException as exc:
            interrupted = interrupted or exc
        if interrupted is not None:
            raise interrupted
        self._raise()


class ReadAhead:
    """Reads the blocks of X on a background thread, one block ahead of the one computing: HDF5's
    read and the compiled loop both run without the GIL. At most two blocks are held (the one in
    use and the next); a read error is raised in the caller at :meth:`get`. ``seconds``: the
    thread's time reading."""

    def __init__(self, read: Callable[[int, int], Any], ranges: list[tuple[int, int]]):
        import queue
        import threading

        self._read = read
        self._ranges = ranges
        self._ready: Any = queue.Queue()
        self._permits = threading.Semaphore(1)  # blocks read ahead of the caller
        self._stop = threading.Event()
        self._done = threading.Event()
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._loop, name="mlstm-read-ahead", daemon=True)
        signals.start_worker(self._thread)

    def _loop(self) -> None:
        import time

        try:
            for start, stop in self._ranges:
                while not self._permits.acquire(timeout=0.05):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                began = time.perf_counter()
                try:
                    block = self._read(start, stop)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                    self._ready.put((None, exc))
                    return
                self.seconds += time.perf_counter() - began
                self._ready.put((block, None))
        finally:
            self._done.set()

    def get(self) -> Any:
        """The next block, in order. Drop the previous one first: its memory is the next read's."""
        import queue

        while True:  # with a timeout: a signal taken by another thread must not leave us waiting
            try:
                block, error = self._ready.get(timeout=0.05)
                break
            except queue.Empty:
                continue
        self._permits.release()
        if error is not None:
            raise error
        return block

    def close(self) -> None:
        """Stop reading and wait for the thread (at most one read in progress)."""
        self._stop.set()
        signals.wait_for(self._done)


def run_blocks(
    runner: Any,
    steps: int,
    chunk: int,
    read: Callable[[int, int], Any],
    write: Callable[[int, int, Any], None] | None,
    hidden: Any,
    cell: Any,
    out: Any = None,
    progress: Callable[[int, int], None] | None = None,
    timings: dict[str, float] | None = None,
    read_ahead: bool = False,
) -> tuple[Any, Any]:
    """Run the engine over ``steps`` in blocks of ``chunk``: ``read(start, stop)`` gives the
    canonical X block (T, B, InputSize); the engine writes into ``out[start:stop]`` when an
    output buffer is given, else ``write(start, stop, y_block)`` takes each block. Returns the
    final (hidden, cell). Checks for a pending interrupt after each block.

    With several blocks, ``write`` runs on a :class:`WriteBehind` thread and, with
    ``read_ahead``, ``read`` on a :class:`ReadAhead` thread (for reads from a file; a slice of
    an array needs none). ``timings`` (a dict) gets seconds added under "read", "compute" and
    "write" (the threads' busy time where they ran on threads), and, for those threads, the main
    thread's waits under "wait_read" (for X) and "wait_write" (for the writer to take a block)."""
    import time

    clock = time.perf_counter
    spent = timings if timings is not None else {}
    for key in ("read", "compute", "write"):
        spent.setdefault(key, 0.0)
    ranges = [(start, min(start + chunk, steps)) for start in range(0, steps, chunk)]
    previous = getattr(runner, "plan_steps", None)
    if hasattr(runner, "plan_steps"):
        runner.plan_steps = steps
    behind = WriteBehind(write) if write is not None and len(ranges) > 1 else None
    try:
        ahead = ReadAhead(read, ranges) if read_ahead and len(ranges) > 1 else None
        read_key = "wait_read" if ahead is not None else "read"  # the main thread's time in read()
        write_key = "wait_write" if behind is not None else "write"  # ... and in write()
        spent.setdefault(read_key, 0.0)
        spent.setdefault(write_key, 0.0)
        try:
            for start, stop in ranges:
                target = out[start:stop] if out is not None else None
                began = clock()
                x = ahead.get() if ahead is not None else read(start, stop)
                read_at = clock()
                y, hidden, cell = runner.run(x, hidden, cell, y=target)
                x = None  # the read-ahead's next block takes its place in memory
                computed_at = clock()
                if behind is not None:
                    behind.put(start, stop, y)  # the engine returns a new y per call: safe to hand over
                elif write is not None:
                    write(start, stop, y)
                spent[read_key] += read_at - began
                spent["compute"] += computed_at - read_at
                spent[write_key] += clock() - computed_at
                signals.check()
                if progress:
                    progress(stop, steps)
        except BaseException:
            if behind is not None:
                behind.abandon()
            raise
        finally:
            if ahead is not None:
                ahead.close()
                spent["read"] += ahead.seconds
    finally:
        try:
            if behind is not None:
                behind.finish()
                spent["write"] += behind.seconds
        finally:
            if hasattr(runner, "plan_steps"):
                runner.plan_steps = previous
    return hidden, cell
