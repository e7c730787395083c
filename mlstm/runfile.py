"""The file-to-file run: what ``mlstm run`` does, as a library call.

    mlstm.run_file("in.mat", "out.mat", DataFormat="CBT")

Reads the six arguments (and char options) from the input files, chooses between streaming
(X in MAT v7.3/HDF5 and a v7.3/HDF5 output: blocks of time, memory bounded) and an in-memory
run, chooses the output container (a ``.mat`` whose Y would pass MAT v7's 2 GB per variable
becomes MAT v7.3, with a notice), and writes Y, hiddenState, cellState and YFormat atomically.
Every check that can fail before computing runs before computing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import MlstmError
from .formats import check_options
from .inputs import Inputs, shared_weights
from .options import parse_options


@dataclass
class RunReport:
    """What a run did (the output itself is in the file)."""

    output: str
    format: str  # mat, mat73 or hdf5
    engine: str
    compute_class: str  # single or double
    steps: int
    batch_size: int
    input_size: int
    hidden_size: int
    y_size: tuple[int, ...]
    y_format: str
    streamed: bool
    chunk_steps: int | None
    detail: str  # which loop or kernel ran
    seconds_compute: float  # streaming: compute and write together
    seconds_write: float
    notes: list[str] = field(default_factory=list)  # which file gave which argument
    dry_run: bool = False  # nothing computed or written: what a run would do
    timings: dict[str, float] | None = None  # streamed: seconds per part, see stream.stream_lstm
    deflate_threads: int = 0  # streamed: threads deflating Y's chunks (0: HDF5 deflated them)

    def to_dict(self) -> dict[str, Any]:
        """The ``run --json`` record."""
        from dataclasses import asdict

        record = asdict(self)
        record["y_size"] = list(self.y_size)
        return record

    def log_line(self) -> str:
        """The ``-v`` line (a dry run: what would be done)."""
        if self.dry_run:
            how = f"streamed in blocks of about {self.chunk_steps} steps" if self.streamed else "in memory"
            return (
                f"mlstm: dry run: would write {self.output} ({self.format}): Y {'x'.join(map(str, self.y_size))} "
                f"{self.compute_class} ({self.y_format}), hiddenState and cellState {self.hidden_size}x"
                f"{self.batch_size}; T={self.steps} B={self.batch_size} InputSize={self.input_size} "
                f"H={self.hidden_size}, {how}, engine={self.engine}"
            )
        head = (
            f"mlstm: engine={self.engine} class={self.compute_class} T={self.steps} B={self.batch_size} "
            f"InputSize={self.input_size} H={self.hidden_size} Y={'x'.join(map(str, self.y_size))} ({self.y_format}) "
        )
        if self.streamed:
            split = f" ({self.split()})" if self.timings else ""
            timing = f"streamed in blocks of {self.chunk_steps} steps, {1e3 * self.seconds_compute:.1f} ms{split},"
        else:
            timing = f"compute={1e3 * self.seconds_compute:.1f} ms write={1e3 * self.seconds_write:.1f} ms"
        return f"{head}{timing} output={self.output} ({self.format}) {self.detail}"

    def split(self) -> str:
        """Where a streamed run's time went: "read X 3100 ms, compute 9000 ms, deflate Y 13000 ms
        CPU on 2 threads, write Y 800 ms; waited 200 ms for X, 4000 ms for the writer". Reading,
        deflating and writing run on their own threads, beside the computing, so the parts add up
        to more than the wall time; the waits say which of them held the computing back."""
        t = self.timings or {}

        def ms(key: str) -> str:
            return f"{1e3 * t[key]:.0f} ms"

        parts = [f"read X {ms('read')}", f"compute {ms('compute')}"]
        if "deflate" in t:
            threads = f" CPU on {self.deflate_threads} thread{'s' if self.deflate_threads != 1 else ''}"
            parts.append(f"deflate Y {ms('deflate')}{threads if self.deflate_threads else ''}")
        parts.append(f"write Y {ms('write')}")
        waits = [f"{ms(k)} for {what}" for k, what in (("wait_read", "X"), ("wait_write", "the writer")) if k in t]
        return ", ".join(parts) + (f"; waited {', '.join(waits)}" if waits else "")


def class_name(dtype: Any) -> str:
    return "single" if dtype.name == "float32" else "double"


def _to_host(a: Any) -> Any:
    return a.get() if hasattr(a, "get") and type(a).__module__.startswith("cupy") else a


def output_variables(result: Any) -> dict[str, Any]:
    """What an output file holds: Y, hiddenState, cellState (host arrays) and YFormat."""
    variables = {"Y": result.Y, "hiddenState": result.hiddenState, "cellState": result.cellState}
    variables = {k: _to_host(v) for k, v in variables.items()}
    variables["YFormat"] = result.y_format
    return variables


def y_too_big_for_mat5(x: Any, inputs: Inputs, mapping: Mapping[str, str]) -> bool:
    """Whether Y would pass MAT v7's 2 GB per variable: X's bytes times H / InputSize (from weights)."""
    from .io import MAT5_VARIABLE_LIMIT

    name = mapping.get("weights", "weights")
    holder = inputs.find("weights", name, required=False)
    weights = None
    if holder is not None:  # its size from metadata where the file says it (checked by check_sizes)
        weights = holder.declared(name)
        weights = holder.read(name) if weights is None else weights
    if getattr(weights, "ndim", 0) != 2 or weights.shape[1] == 0:
        return False  # the front end reports what is wrong with it
    elements = 1
    for d in x.size:
        elements *= int(d)
    y_bytes = elements // weights.shape[1] * (weights.shape[0] // 4) * x.dtype.itemsize
    return y_bytes > MAT5_VARIABLE_LIMIT


def run_file(
    inputs: str | Sequence[str],
    output: str,
    *,
    weights: str | None = None,
    node: str | None = None,
    layer: str | None = None,
    var: Mapping[str, str] | None = None,
    output_format: str | None = None,
    hdf5_order: str = "numpy",
    engine: str = "numpy",
    chunk_steps: int | None = None,
    progress: Any = None,
    notice: Callable[[str], None] | None = None,
    options: Sequence[tuple[str, str]] = (),
    dry_run: bool = False,
    **name_value: str,
) -> RunReport:
    """Run MATLAB's lstm from input files to ``output`` (.mat, .h5/.hdf5, or '-' for stdout).

    ``inputs``: one path or several ('-' for stdin); ``weights``: a file read once for the
    weights, recurrentWeights, bias (and states/options): MAT/HDF5 variables, or an ONNX, PyTorch
    or Keras file (``node``/``layer`` pick a layer). ``var``: {role: variable name}.
    Name-value options as keyword arguments (``DataFormat="CBT"``) or as ``options`` pairs.
    ``progress``: a :class:`mlstm.progress.Progress`-like callable ``(done, total)`` with
    ``enabled`` (and, if it has one, ``set_state(text)``, told when the write starts).
    ``notice``: where notices go (default: none). ``dry_run``: check everything that can be
    checked from the files' metadata (inputs, sizes, classes, options, the output path and its
    directory), read no array, write nothing, and report what a run would do.
    Raises :class:`MlstmError`.
    """
    from .io import AtomicOutput, check_output_path, needs_mat73, output_format_for, write_file

    paths = [inputs] if isinstance(inputs, str) else list(inputs)
    mapping = dict(var or {})
    pairs = [*options, *name_value.items()]
    check_options(pairs)  # bad options before touching any file
    fmt = output_format_for(output, output_format)
    check_output_path(output, [*paths, *([weights] if weights else [])])
    order = hdf5_order.lower()
    engine = engine.lower()
    shared = shared_weights(weights, order, mapping, node, layer)
    started = time.perf_counter()
    if dry_run:
        AtomicOutput(output).discard()  # the output's directory takes a file
        with Inputs(paths, order, shared, notice) as files:
            return _dry_run(files, output, fmt, mapping, pairs, engine, chunk_steps, notice)
    # The temporary output exists before any computing: an unwritable directory fails at once.
    with AtomicOutput(output) as target, Inputs(paths, order, shared, notice) as files:
        x = files.lazy_x(mapping)
        if x is not None and fmt == "mat":
            # Sizes first: a notice about Y's size is worth giving only for sizes that can run.
            files.check_sizes(mapping, parse_options(files.option_variables(pairs)).data_format)
        if x is not None and fmt == "mat" and y_too_big_for_mat5(x, files, mapping):
            if notice:
                notice("Y will be over 2 GB, which MAT v7 cannot hold; writing MAT v7.3")
            fmt = "mat73"
        if x is not None and fmt in ("mat73", "hdf5") and 0 not in x.size:
            from .io import open_hdf5_output

            with open_hdf5_output(target.tmp, fmt, order) as out:
                streamed = files.stream(x, mapping, pairs, out, engine, chunk_steps, progress)
            p = streamed.problem
            report = RunReport(
                output, fmt, streamed.engine, class_name(p.dtype), streamed.steps, p.batch_size, p.input_size,
                p.hidden_size, tuple(streamed.y_size), streamed.y_format, True, streamed.chunk_steps,
                streamed.detail, time.perf_counter() - started, 0.0, files.notes, timings=streamed.timings,
                deflate_threads=streamed.deflate_threads,
            )  # fmt: skip
        else:
            shown = progress if getattr(progress, "enabled", progress is not None) else None
            result = files.compute(mapping, pairs, engine, chunk_steps=chunk_steps, progress=shown)
            computed = time.perf_counter()
            variables = output_variables(result)
            if fmt == "mat" and needs_mat73(variables):
                if notice:
                    notice("an output is over 2 GB, which MAT v7 cannot hold; writing MAT v7.3")
                fmt = "mat73"
            if hasattr(progress, "set_state"):  # the write phase, shown after the counts
                progress.set_state(f"writing {output if output != '-' else 'standard output'}")
            write_file(target.tmp, variables, fmt, order)
            p = result.problem
            report = RunReport(
                output, fmt, result.engine, class_name(p.dtype), p.num_steps, p.batch_size, p.input_size,
                p.hidden_size, tuple(result.Y.shape), result.y_format, False, chunk_steps, result.detail,
                computed - started, 0.0, files.notes,
            )  # fmt: skip
            started = computed
    if not report.streamed:
        report.seconds_write = time.perf_counter() - started  # the commit included
    return report


def _dry_run(
    files: Inputs,
    output: str,
    fmt: str,
    mapping: dict[str, str],
    pairs: list[tuple[str, str]],
    engine: str,
    chunk_steps: int | None,
    notice: Callable[[str], None] | None,
) -> RunReport:
    """What :func:`run_file` would do, from metadata only."""
    from .engines import get_engine
    from .formats import compute_class, matlab_shape, output_format
    from .io import MAT5_VARIABLE_LIMIT
    from .pipeline import auto_chunk_steps

    options = parse_options(files.option_variables(pairs))
    sizes = files.plan_sizes(mapping, options.data_format)
    backend = get_engine(engine)  # a GPU asked for and missing is an error now, not in the real run
    dtype = compute_class(*sizes.args)
    y_labels = output_format(sizes.fmt)
    steps = sizes.fmt.size("T")
    size_of = {"C": sizes.hidden, "B": sizes.batch, "T": steps, "U": 1}
    y_size = tuple(matlab_shape(tuple(size_of[label] for label in y_labels)))
    y_bytes = steps * sizes.batch * sizes.hidden * np.dtype(sizes.args[0].dtype).itemsize
    if fmt == "mat" and y_bytes > MAT5_VARIABLE_LIMIT:
        if notice:
            notice("Y will be over 2 GB, which MAT v7 cannot hold; writing MAT v7.3")
        fmt = "mat73"
    x = files.lazy_x(mapping)
    streamed = x is not None and fmt in ("mat73", "hdf5") and 0 not in x.size
    chunk = None
    if streamed:
        chunk = chunk_steps or auto_chunk_steps(sizes.batch, sizes.input_size, sizes.hidden, dtype.itemsize)
    return RunReport(
        output, fmt, backend.name, class_name(dtype), steps, sizes.batch, sizes.input_size, sizes.hidden,
        y_size, y_labels, streamed, chunk, "", 0.0, 0.0, files.notes, dry_run=True,
    )  # fmt: skip


__all__ = ["RunReport", "run_file", "MlstmError"]
