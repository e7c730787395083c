"""Streaming over time for sequences larger than memory (HDF5 / MAT v7.3 in and out).

Reads X a block of time steps at a time from its HDF5 dataset, runs the engine on the block
carrying h and c, and writes that block of Y straight into the output dataset. Memory is
bounded by the block size, not by T. The arithmetic is the engine's, block by block, as in
:func:`mlstm.api.run_in_chunks`, so the result equals an in-memory run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .api import prepare_runner
from .engines import get_engine
from .errors import MlstmError
from .formats import Problem, canonical_x, check_class, matlab_shape, parse_data_format, resolve
from .options import ARGUMENT_NAMES, Options
from .pipeline import auto_chunk_steps, chunk_length, run_blocks


@dataclass
class StreamResult:
    """What a log needs; Y itself went to the file."""

    problem: Problem
    engine: str
    y_size: tuple[int, ...]
    y_format: str
    chunk_steps: int
    steps: int
    detail: str = ""  # as :attr:`mlstm.api.Result.detail`
    timings: dict[str, float] | None = None  # seconds per part of the run, see stream_lstm
    deflate_threads: int = 0  # threads deflating Y's chunks; 0: HDF5 deflated them (or Y is not deflated)


def stream_lstm(
    x: Any,
    arguments: dict[str, Any],
    options: Options,
    output: Any,
    engine: str = "numpy",
    chunk_steps: int | None = None,
    progress: Any = None,
) -> StreamResult:
    """Run lstm on ``x`` (a :class:`mlstm.io.LazyArray`) into ``output`` (a :class:`mlstm.io.h5write.Hdf5Output`).

    ``arguments`` holds H0, C0, weights, recurrentWeights, bias as arrays. Writes Y,
    hiddenState, cellState and YFormat. ``progress(steps_done, steps)`` is called after each block.

    X is read one block ahead on a thread, Y written (and deflated, on a few threads) behind on
    another, while the engine computes. The result's ``timings``: "read" (the reading thread's
    time), "compute", "deflate" (CPU time of the shuffle and zlib, summed over its threads;
    absent where HDF5 deflates Y itself, inside "write"), "write" (Y into the file), and the
    computing thread's waits for them, "wait_read" and "wait_write".
    """
    if options.data_format is None:
        raise MlstmError(
            "X is not a formatted dlarray, so the DataFormat option is required (for example DataFormat=CBT)",
            "DataFormat",
        )
    fmt = parse_data_format(options.data_format, x.size)  # errors name X's whole size
    time_axis = fmt.axis("T")
    steps = fmt.size("T")
    backend = get_engine(engine)

    x = x.for_blocks(time_axis) if hasattr(x, "for_blocks") else x

    def block(start: int, stop: int) -> Any:
        return x.read(time_axis, start, stop)

    # Classes first (as the in-memory path checks them), so no size is derived from a char, cell,
    # integer or complex argument; every other check runs in resolve, on the first step of X.
    arguments = {name: check_class(name, arguments[name]) for name in ARGUMENT_NAMES[1:]}
    problem = resolve(
        block(0, min(1, steps)),
        *(arguments[name] for name in ARGUMENT_NAMES[1:]),
        options.data_format,
        gate_activation=options.gate_activation,
        state_activation=options.state_activation,
    )
    runner = prepare_runner(backend, problem)
    batch, itemsize = problem.batch_size, problem.dtype.itemsize
    default = auto_chunk_steps(batch, problem.input_size, problem.hidden_size, itemsize)
    chunk = chunk_length(runner, steps, batch, chunk_steps, default)
    y_labels = problem.y_format
    full_sizes = tuple(steps if label == "T" else size for label, size in zip(y_labels, problem.y_sizes))
    y_size = matlab_shape(full_sizes)
    y_time_axis = y_labels.index("T")
    write_y = output.create("Y", y_size, problem.y_class, axis=y_time_axis)

    def read(start: int, stop: int) -> Any:
        raw = block(start, stop)
        return canonical_x(raw, parse_data_format(options.data_format, raw.shape), problem.dtype)

    def write(start: int, stop: int, y: Any) -> None:
        y_block = problem.y_block(y).astype(problem.y_class, copy=False)
        if y_block.ndim > len(y_size):  # trailing singleton dimensions MATLAB drops
            y_block = y_block.reshape(y_block.shape[: len(y_size)])
        write_y(y_time_axis, start, y_block)

    timings: dict[str, float] = {}
    hidden_state, cell_state = run_blocks(
        runner,
        steps,
        chunk,
        read,
        write,
        problem.hidden_state,
        problem.cell_state,
        progress=progress,
        timings=timings,
        read_ahead=True,
    )
    split = output.block_timings() if hasattr(output, "block_timings") else {}
    threads = int(split.pop("deflate_threads", 0))
    timings.update(split)
    output.write("hiddenState", problem.restore_state(hidden_state, problem.hidden_class))
    output.write("cellState", problem.restore_state(cell_state, problem.cell_class))
    output.write("YFormat", y_labels)
    detail = getattr(runner, "detail", "")
    return StreamResult(problem, backend.name, y_size, y_labels, chunk, steps, detail, timings, threads)
