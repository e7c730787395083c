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
) -> tuple[Any, Any]:
    """Run the engine over ``steps`` in blocks of ``chunk``: ``read(start, stop)`` gives the
    canonical X block (T, B, InputSize); the engine writes into ``out[start:stop]`` when an
    output buffer is given, else ``write(start, stop, y_block)`` takes each block. Returns the
    final (hidden, cell). Checks for a pending interrupt after each block."""
    previous = getattr(runner, "plan_steps", None)
    if hasattr(runner, "plan_steps"):
        runner.plan_steps = steps
    try:
        for start in range(0, steps, chunk):
            stop = min(start + chunk, steps)
            target = out[start:stop] if out is not None else None
            y, hidden, cell = runner.run(read(start, stop), hidden, cell, y=target)
            if write is not None:
                write(start, stop, y)
            signals.check()
            if progress:
                progress(stop, steps)
    finally:
        if hasattr(runner, "plan_steps"):
            runner.plan_steps = previous
    return hidden, cell
