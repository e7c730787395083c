"""Many inputs, one set of weights: input expansion, deterministic sharding, resumable outputs
and the summary file.

The CLI's ``mlstm batch`` is built from these pieces; they print nothing and exit nothing.
"""

from __future__ import annotations

import glob
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import MlstmError, failure_text

EXTENSIONS = {"mat": ".mat", "mat73": ".mat", "hdf5": ".h5"}


def expand_inputs(items: tuple[str, ...] | list[str]) -> list[str]:
    """Files, glob patterns and ``@list.txt`` files (one path per line, ``#`` comments) -> sorted,
    de-duplicated paths. A pattern that matches nothing or a missing list file is an error."""
    found: list[str] = []
    for item in items:
        if item.startswith("@"):
            list_path = item[1:]
            try:
                with open(list_path) as fh:
                    lines = [line.strip() for line in fh]
            except OSError as exc:
                raise MlstmError(f"cannot read the list file ({exc.strerror or exc})", item) from None
            except UnicodeDecodeError:
                raise MlstmError("expected a text file with one path per line, found binary data", item) from None
            found.extend(line for line in lines if line and not line.startswith("#"))
        elif glob.has_magic(item):
            matches = glob.glob(item)
            if not matches:
                raise MlstmError("the pattern matches no file", item)
            found.extend(matches)
        else:
            found.append(item)
    if not found:
        raise MlstmError("expected at least one input file, pattern or @list", "INPUTS")
    return sorted(set(found))


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` (1-based) -> (K, N)."""
    k, sep, n = text.partition("/")
    try:
        shard, count = int(k), int(n)
    except ValueError:
        shard = count = 0
    if not sep or count < 1 or not 1 <= shard <= count:
        raise MlstmError(f"expected K/N with 1 <= K <= N, found {text!r}", "--shard")
    return shard, count


ARRAY_VARIABLES = (
    "SLURM_ARRAY_TASK_ID",
    "SLURM_ARRAY_TASK_COUNT",
    "SLURM_ARRAY_TASK_MIN",
    "SLURM_ARRAY_TASK_MAX",
    "SLURM_ARRAY_TASK_STEP",
)


def shard_from_environment(env: Mapping[str, str]) -> tuple[int, int] | None:
    """(K, N) from a SLURM job array, or None outside one.

    Task ids MIN, MIN+STEP, ..., MAX (``--array=MIN-MAX:STEP``; STEP 1 when absent) are shares
    1..COUNT. Ids that are not evenly spaced (``--array=0,2,7``) would leave shares unrun: an error.
    """
    if "SLURM_ARRAY_TASK_ID" not in env or "SLURM_ARRAY_TASK_COUNT" not in env:
        return None
    try:
        task, count = int(env["SLURM_ARRAY_TASK_ID"]), int(env["SLURM_ARRAY_TASK_COUNT"])
        first = int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
        step = int(env.get("SLURM_ARRAY_TASK_STEP", "1"))
        last = int(env["SLURM_ARRAY_TASK_MAX"]) if "SLURM_ARRAY_TASK_MAX" in env else None
    except ValueError:
        found = ", ".join(f"{k}={env[k]!r}" for k in ARRAY_VARIABLES if k in env)
        raise MlstmError(f"expected integer array variables, found {found}", "SLURM") from None
    offset = task - first
    if step < 1 or count < 1 or offset < 0 or offset % step or offset // step >= count:
        raise MlstmError(
            f"task {task} is not one of the {count} array tasks {first}-{first + (count - 1) * step}"
            + (f":{step}" if step != 1 else "")
            + "; use --array=A-B or A-B:STEP, or give --shard K/N",
            "SLURM",
        )
    if last is not None and last - first != (count - 1) * step:
        raise MlstmError(
            f"array task ids {first} to {last} are not {count} evenly spaced ids (step {step}), so some shares "
            "would not run; use --array=A-B or A-B:STEP, or give --shard K/N",
            "SLURM",
        )
    return offset // step + 1, count


def select_shard(paths: list[str], shard: tuple[int, int] | None) -> list[str]:
    """Every N-th path of the sorted list, starting at the K-th: shards are disjoint and cover all."""
    if shard is None:
        return paths
    k, n = shard
    return [p for i, p in enumerate(paths) if i % n == k - 1]


@dataclass(frozen=True)
class Job:
    input: str
    output: str


def plan(paths: list[str], out_dir: str, fmt: str) -> list[Job]:
    """One output per input, named by the input's stem; two inputs with one stem are an error."""
    jobs: list[Job] = []
    by_output: dict[str, str] = {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        output = os.path.join(out_dir, stem + EXTENSIONS[fmt])
        if output in by_output:
            raise MlstmError(f"{by_output[output]} and {path} would both write {output}; rename one", "INPUTS")
        by_output[output] = path
        jobs.append(Job(path, output))
    return jobs


# What a record says about the output it wrote; a later run that skips the input repeats them.
RESULT_FIELDS = ("engine", "format", "compute_class", "T", "B", "input_size", "H", "Y_size", "YFormat")


class Summary:
    """``--summary FILE.jsonl``: one JSON line per input, appended as each input finishes.

    A rerun appends to the file, so the records of earlier runs stay; several processes may
    share one file (each line is a single ``O_APPEND`` write). A rerun that skips an input
    because its output exists repeats, in its ``skipped`` record, the result fields (engine,
    format, class, shapes) of the latest earlier record that wrote that output: the last record
    for an input always describes its output.
    """

    def __init__(self, path: str):
        self.path = path
        self.written: dict[tuple[str, str], dict[str, Any]] = {}
        try:
            data = _read_regular_file(path)
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        except OSError as exc:
            raise self._error(exc) from None
        for line in data.splitlines():
            self._remember(line)
        if data and not data.endswith(b"\n"):
            self._append(b"\n")  # a line cut short by a killed run stays on its own

    def _error(self, exc: OSError) -> MlstmError:
        return MlstmError(f"cannot write the file: {os.strerror(exc.errno or 5)}", f"--summary {self.path}")

    def _remember(self, line: bytes) -> None:
        try:
            record = json.loads(line)
        except ValueError:
            return
        if isinstance(record, dict) and record.get("status") in ("ok", "skipped") and "Y_size" in record:
            self.written[(record.get("input"), record.get("output"))] = record

    def _append(self, data: bytes) -> None:
        try:
            while data:
                data = data[os.write(self.fd, data) :]
        except OSError as exc:
            raise self._error(exc) from None

    def add(self, record: dict[str, Any]) -> dict[str, Any]:
        """Append ``record`` (a skipped one completed from the earlier record of its output)."""
        key = (record["input"], record["output"])
        if record["status"] == "skipped" and key in self.written:
            earlier = self.written[key]
            record.update({k: earlier[k] for k in RESULT_FIELDS if k in earlier})
        if record["status"] == "ok":
            self.written[key] = record
        self._append((json.dumps(record) + "\n").encode())
        return record

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Summary:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_regular_file(path: str) -> bytes:
    """The file's bytes; nothing for a missing file, a FIFO or a device (never block reading)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return b""
    except FileNotFoundError:
        return b""
    with open(path, "rb") as fh:
        return fh.read()


class Batch:
    """``mlstm batch`` as a library object: :func:`prepare_batch` checks the invocation and plans the
    jobs (every error that concerns the whole batch is raised there, before any input runs);
    :meth:`run` yields one record per input, a failure of one input (foreseen or not) being that
    input's record."""

    def __init__(self, jobs: list[Job], share: tuple[int, int] | None, settings: dict[str, Any]):
        self.jobs = jobs
        self.share = share
        self._settings = settings

    def run(
        self,
        resume: bool = True,
        summary_path: str | None = None,
        state: Any = None,
        dry_run: bool = False,
    ) -> Any:
        """Run every job; yields records (dicts: input, output, engine, status ok/skipped/failed, and
        shapes or error). ``summary_path``: a JSON-lines file the records are appended to.
        ``state(text)``: told which input is in hand and when its output is written.
        ``dry_run``: check each input from its metadata (status "would run"), write nothing."""
        import time

        from . import io
        from .inputs import Inputs
        from .runfile import class_name, output_variables

        s = self._settings
        summary = Summary(summary_path) if summary_path and not dry_run else None
        try:
            for job in self.jobs:
                record: dict[str, Any] = {"input": job.input, "output": job.output, "engine": s["engine"]}
                started = time.perf_counter()
                if resume and os.path.exists(job.output):
                    record["status"] = "skipped"
                else:
                    try:
                        if state:
                            state(job.input)
                        if dry_run:
                            from .options import parse_options

                            with Inputs([job.input], s["order"], s["shared"]) as inputs:
                                options = parse_options(inputs.option_variables(s["pairs"]))
                                sizes = inputs.plan_sizes(s["mapping"], options.data_format)
                            record.update(status="would run", T=sizes.fmt.size("T"), B=sizes.batch, H=sizes.hidden)
                            yield record
                            continue
                        with Inputs([job.input], s["order"], s["shared"]) as inputs:
                            result = inputs.compute(s["mapping"], s["pairs"], s["engine"], prepared=s["prepared"])
                        variables = output_variables(result)
                        out_fmt = "mat73" if s["fmt"] == "mat" and io.needs_mat73(variables) else s["fmt"]
                        if state:
                            state(f"writing {job.output}")
                        io.write_variables(job.output, variables, out_fmt, s["order"])
                        p = result.problem
                        record.update(
                            status="ok",
                            format=out_fmt,
                            compute_class=class_name(p.dtype),
                            T=p.num_steps,
                            B=p.batch_size,
                            input_size=p.input_size,
                            H=p.hidden_size,
                            Y_size=list(result.Y.shape),
                            YFormat=result.y_format,
                        )
                    except Exception as err:  # noqa: BLE001 - one input's failure never stops the others
                        message = failure_text(err)
                        if not message.startswith(job.input):
                            message = f"{job.input}: {message}"
                        record.update(status="failed", error=message)
                record["seconds"] = round(time.perf_counter() - started, 6)
                if summary:
                    summary.add(record)
                yield record
        finally:
            if summary:
                summary.close()


def _check_creatable(out_dir: str) -> None:
    """MlstmError unless ``out_dir`` (not a directory) could be created: it does not exist, and
    its nearest existing ancestor is a writable directory."""
    if os.path.lexists(out_dir):
        raise MlstmError("cannot create the directory (a file of that name exists)", f"--out-dir {out_dir}")
    parent = os.path.dirname(os.path.abspath(out_dir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise MlstmError(f"cannot create the directory ({parent} is not a directory)", f"--out-dir {out_dir}")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MlstmError(f"cannot create the directory ({parent} is not writable)", f"--out-dir {out_dir}")


def prepare_batch(
    items: list[str] | tuple[str, ...],
    out_dir: str,
    *,
    weights: str | None = None,
    node: str | None = None,
    layer: str | None = None,
    output_format: str = "mat",
    shard: str | None = None,
    environ: Mapping[str, str] | None = None,
    var: Mapping[str, str] | None = None,
    options: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    hdf5_order: str = "numpy",
    engine: str = "numpy",
    summary_path: str | None = None,
    dry_run: bool = False,
    **name_value: str,
) -> Batch:
    """Check a batch invocation and plan its jobs (files, globs and @lists in ``items``; the K-th of
    N shares from ``shard`` 'K/N' or a SLURM job array in ``environ``); creates ``out_dir``, or
    with ``dry_run`` only checks that it could be created."""
    from . import io
    from .engines import get_engine
    from .formats import check_options
    from .inputs import shared_weights

    mapping = dict(var or {})
    pairs = [*options, *name_value.items()]
    check_options(pairs)
    fmt = output_format.lower()
    if fmt not in EXTENSIONS:
        raise MlstmError(f"expected one of {', '.join(EXTENSIONS)}, found {output_format!r}", "--format")
    order = hdf5_order.lower()
    share = parse_shard(shard) if shard is not None else shard_from_environment(environ or os.environ)
    every = expand_inputs(items)
    plan(every, out_dir, fmt)  # two inputs with one stem are an error even when shards part them
    jobs = plan(select_shard(every, share), out_dir, fmt)
    if not os.path.isdir(out_dir) and dry_run:  # a dry run writes nothing, directories included
        _check_creatable(out_dir)
    elif not os.path.isdir(out_dir):
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise MlstmError(f"cannot create the directory ({exc.strerror or exc})", f"--out-dir {out_dir}") from None
    if os.path.isdir(out_dir) and not os.access(out_dir, os.W_OK | os.X_OK):
        raise MlstmError("the directory is not writable", f"--out-dir {out_dir}")
    sources = [job.input for job in jobs] + ([weights] if weights else [])
    for job in jobs if os.path.isdir(out_dir) else ():  # (a dry run's new directory holds nothing yet)
        # an output that is an input (or the weights) would destroy it: refuse before any work
        io.check_output_path(job.output, sources)
    if summary_path is not None:  # appended to: never an input, the weights or an output
        io.check_output_path(summary_path, sources)
        if any(os.path.abspath(summary_path) == os.path.abspath(job.output) for job in jobs):
            raise MlstmError("is also an output of this batch", f"--summary {summary_path}")
    shared = shared_weights(weights, order, mapping, node, layer)
    backend = get_engine(engine.lower())  # a missing GPU is a bad invocation, before any input
    settings = {
        "mapping": mapping,
        "pairs": pairs,
        "fmt": fmt,
        "order": order,
        "shared": shared,
        "engine": backend.name,
        "prepared": {} if weights else None,  # the engine's prepared weights, shared by every input
    }
    return Batch(jobs, share, settings)
