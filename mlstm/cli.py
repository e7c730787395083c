"""The ``mlstm`` command line: thin Click commands over the library.

Every failure the library reports (an :class:`MlstmError`) and every usage
error becomes one ``Error: ...`` line on stderr with exit status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from typing import Any

import click

from . import __version__
from .errors import MlstmError
from .options import ARGUMENT_NAMES, OPTION_CHOICES, parse_options, split_name_value

# click >= 8.2 raises this for a bare `mlstm`; older click printed the help itself.
NO_COMMAND = getattr(click.exceptions, "NoArgsIsHelpError", ())
ROLE_LOOKUP = {role.lower(): role for role in ARGUMENT_NAMES}
OUTPUT_NAMES = ("Y", "hiddenState", "cellState")


def _debug_option(f: Any) -> Any:
    return click.option("--debug", is_flag=True, hidden=False, help="Show a traceback on errors.")(f)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlstm")
@_debug_option
def cli(debug: bool) -> None:
    """MATLAB's Deep Learning Toolbox lstm, outside MATLAB.

    \b
    mlstm run in.mat -o out.mat DataFormat=CBT
    mlstm info in.mat
    mlstm check out.mat matlab_out.mat
    """


def split_tokens(tokens: tuple[str, ...]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separate INPUT files from Name=Value tokens: a token with '=' is Name=Value unless it is an
    existing file. A bare option name (``DataFormat`` with no ``=``) that is not a file is an error."""
    from .options import resolve_name

    inputs: list[str] = []
    pairs: list[tuple[str, str]] = []
    for token in tokens:
        if "=" in token and not os.path.exists(token):
            pairs.append(split_name_value(token))
            continue
        if token != "-" and not os.path.exists(token) and token.isalpha():
            try:
                name = resolve_name(token)
            except MlstmError:
                name = None
            if name is not None:
                raise MlstmError(f"expected Name=Value (for example {name}=...), found {token!r} with no value")
        inputs.append(token)
    return inputs, pairs


def parse_var_mappings(mappings: tuple[str, ...]) -> dict[str, str]:
    """``--var ROLE=NAME`` values -> {role: variable name}."""
    out: dict[str, str] = {}
    for item in mappings:
        role, sep, name = item.partition("=")
        key = ROLE_LOOKUP.get(role.strip().lower())
        if not sep or not name or key is None:
            raise MlstmError(
                f"expected ROLE=NAME with ROLE one of {', '.join(ARGUMENT_NAMES)}, found {item!r}", "--var"
            )
        if key in out:
            raise MlstmError(f"role {key} mapped twice ({out[key]!r} and {name!r})", "--var")
        out[key] = name
    return out


class Inputs:
    """The input files of one command, and where each MATLAB argument comes from."""

    def __init__(self, paths: list[str], hdf5_order: str, shared: list[Any] | None = None):
        from . import io

        if not paths:
            raise MlstmError("expected at least one INPUT file (or - for standard input)", "INPUT")
        if paths.count("-") > 1:
            raise MlstmError("standard input ('-') can be read only once", "INPUT")
        self.files = []
        try:
            for path in paths:
                self.files.append(io.open_matrix_file(path, hdf5_order))
        except BaseException:
            self.close()
            raise
        self.files.extend(shared or [])  # already open, e.g. batch's --weights (not closed here)
        self._own = len(self.files) - len(shared or [])
        self.sources: dict[str, tuple[Any, str]] = {}  # role -> (file, variable name)

    def close(self) -> None:
        for f in self.files[: getattr(self, "_own", len(self.files))]:
            f.close()

    def __enter__(self) -> Inputs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def find(self, role: str, name: str, required: bool = True) -> Any | None:
        """The file holding variable ``name`` for ``role``; error if none or several do."""
        holders = [f for f in self.files if f.has(name)]
        if len(holders) > 1:
            raise MlstmError(
                f"variable {name!r} ({role}) is in more than one input: {', '.join(f.label for f in holders)}"
            )
        if not holders:
            if not required:
                return None
            labels = ", ".join(f.label for f in self.files)
            found = sorted({n for f in self.files for n in f.names()})
            hint = f"; map another variable with --var {role}=NAME" if role in ARGUMENT_NAMES else ""
            raise MlstmError(
                f"{labels}: no variable {name!r} for {role} (found: {', '.join(found) or 'nothing'}){hint}"
            )
        self.sources[role] = (holders[0], name)
        return holders[0]

    def read_arguments(self, mapping: dict[str, str], roles: tuple[str, ...] = ARGUMENT_NAMES) -> dict[str, Any]:
        values = {}
        for role in roles:
            name = mapping.get(role, role)
            values[role] = self.find(role, name).read(name)
        return values

    def option_variables(self, given: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Name-value options stored as char variables, for the options the command line leaves out."""
        from .options import resolve_name

        named = {resolve_name(name) for name, _ in given}
        pairs = list(given)
        for option in OPTION_CHOICES:
            if option in named:
                continue
            holder = self.find(option, option, required=False)
            if holder is None:
                continue
            value = holder.read(option)
            if not isinstance(value, str):
                raise MlstmError(
                    f"{holder.label}: variable {option!r}: expected a char vector such as 'CBT', found a numeric array"
                )
            pairs.append((option, value))
        return pairs

    def compute(
        self,
        mapping: dict[str, str],
        pairs: list[tuple[str, str]],
        engine: str,
        chunk_steps: int | None = None,
        progress: Any = None,
        prepared: dict[Any, Any] | None = None,
    ) -> Any:
        """Read the six arguments and the options, and run lstm; errors name the file and variable."""
        from .api import compute

        options = parse_options(self.option_variables(pairs))
        arguments = self.read_arguments(mapping)
        try:
            return compute(
                *(arguments[r] for r in ARGUMENT_NAMES),
                options=options,
                engine=engine,
                chunk_steps=chunk_steps,
                progress=progress,
                prepared=prepared,
            )
        except MlstmError as err:
            raise self.locate(err) from None

    def lazy_x(self, mapping: dict[str, str]) -> Any:
        """X as a :class:`mlstm.io.LazyArray` when its file can be read in slices (HDF5-based), else None."""
        name = mapping.get("X", "X")
        return self.find("X", name).lazy(name)

    def stream(
        self,
        x: Any,
        mapping: dict[str, str],
        pairs: list[tuple[str, str]],
        output: Any,
        engine: str,
        chunk_steps: int | None,
        progress: Any,
    ) -> Any:
        """Run lstm block by block from ``x`` into ``output``; errors name the file and variable."""
        from .stream import stream_lstm

        options = parse_options(self.option_variables(pairs))
        arguments = self.read_arguments(mapping, ARGUMENT_NAMES[1:])
        try:
            return stream_lstm(x, arguments, options, output, engine, chunk_steps, progress)
        except MlstmError as err:
            raise self.locate(err) from None

    def locate(self, err: MlstmError) -> MlstmError:
        """Put the file and variable in front of an error about a MATLAB argument."""
        if err.argument in self.sources:
            f, name = self.sources[err.argument]
            where = f"{f.label}: variable {name!r}"
            if name != err.argument:
                where += f" ({err.argument})"
            return MlstmError(f"{where}: {err.detail}")
        return err


def _check_output_path(output: str) -> None:
    if output == "-":
        return
    directory = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(directory):
        raise MlstmError(f"the directory {os.path.dirname(output) or '.'!r} does not exist", f"-o {output}")
    if os.path.isdir(output):
        raise MlstmError("expected a file name, found a directory", f"-o {output}")


def _progress_options(f: Any) -> Any:
    f = click.option("-q", "--quiet", is_flag=True, help="No progress display and no notices.")(f)
    f = click.option(
        "--progress",
        is_flag=True,
        help="Show progress from the start (by default: on a terminal, once a run takes over 2 s).",
    )(f)
    return f


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


SHARED_ROLES = ("weights", "recurrentWeights", "bias", "H0", "C0")


def _shared_weights(
    path: str | None, order: str, mapping: dict[str, str], node: str | None, layer: str | None
) -> list[Any]:
    """[the --weights file, read once] or []: MATLAB variables, or ONNX/PyTorch/Keras weights converted."""
    if not path:
        if node or layer:
            raise MlstmError(
                "--node and --layer pick a layer of a --weights file; give --weights FILE", "--node/--layer"
            )
        return []
    from .foreign import open_weights_file

    names = [mapping.get(role, role) for role in SHARED_ROLES] + list(OPTION_CHOICES)
    return [open_weights_file(path, order, node, layer, names=names)]


def _weights_options(f: Any) -> Any:
    f = click.option(
        "--weights",
        "weights_path",
        metavar="FILE",
        help="weights, recurrentWeights, bias (and H0, C0, options) from this file, read once: MAT/HDF5 "
        "variables, an ONNX model, a PyTorch state dict (safetensors, .npz) or Keras weights (.keras, .h5).",
    )(f)
    f = click.option("--layer", metavar="K|NAME", help="PyTorch layer index K (*_lK) or Keras layer name.")(f)
    f = click.option("--node", metavar="NAME", help="ONNX LSTM node name, or PyTorch module prefix.")(f)
    return f


_hdf5_order_option = click.option(
    "--hdf5-order",
    type=click.Choice(["numpy", "matlab"], case_sensitive=False),
    default="numpy",
    show_default=True,
    help="Plain HDF5 dataset order: numpy (shape is the MATLAB size) or matlab (reversed, as h5write writes).",
)

_input_options = [
    click.option(
        "--var",
        "var_mappings",
        multiple=True,
        metavar="ROLE=NAME",
        help="Read a MATLAB argument (X, H0, C0, weights, recurrentWeights, bias) from another variable "
        "or HDF5 path, e.g. --var X=signals or --var X=/data/x.",
    ),
    _hdf5_order_option,
    click.option(
        "--engine",
        type=click.Choice(["numpy", "cupy", "auto"], case_sensitive=False),
        default="numpy",
        show_default=True,
        help="Compute engine; auto takes cupy when a GPU is usable.",
    ),
]


def _apply(options: list[Any]) -> Any:
    def decorate(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("tokens", nargs=-1, metavar="INPUT... [Name=Value]...")
@click.option("-o", "--output", required=True, metavar="OUTPUT", help="Output file (.mat, .h5, .hdf5) or - for stdout.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["mat", "mat73", "hdf5"], case_sensitive=False),
    default=None,
    help="Output format (default: from the extension; MAT v7 for -o -).",
)
@_apply(_input_options)
@click.option(
    "--chunk-steps",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Time steps per block (default: about 32 MB of buffers). With HDF5/MAT v7.3 input and output, "
    "X is read and Y written one block at a time, so memory does not grow with T.",
)
@_weights_options
@_progress_options
@click.option("-v", "--verbose", is_flag=True, help="Print engine, compute class, shapes and timing on stderr.")
@_debug_option
def run(
    tokens: tuple[str, ...],
    output: str,
    output_format: str | None,
    var_mappings: tuple[str, ...],
    hdf5_order: str,
    engine: str,
    chunk_steps: int | None,
    weights_path: str | None,
    node: str | None,
    layer: str | None,
    progress: bool,
    quiet: bool,
    verbose: bool,
    debug: bool,
) -> None:
    """Run MATLAB's lstm on the variables X, H0, C0, weights, recurrentWeights, bias.

    Name=Value options may appear anywhere: DataFormat=CBT,
    StateActivationFunction=tanh|softsign|relu, GateActivationFunction=sigmoid|hard-sigmoid
    (case-insensitive; names may be shortened, DataF=CBT). Writes Y, hiddenState, cellState and YFormat.
    """
    from .io import AtomicOutput, needs_mat73, output_format_for, write_variables
    from .progress import Progress

    paths, pairs = split_tokens(tokens)
    mapping = parse_var_mappings(var_mappings)
    parse_options(pairs)  # reject bad command-line options before touching any file
    fmt = output_format_for(output, output_format)
    _check_output_path(output)
    order = hdf5_order.lower()
    shared = _shared_weights(weights_path, order, mapping, node, layer)
    bar = Progress(force=progress, quiet=quiet)
    started = time.perf_counter()
    with Inputs(paths, order, shared) as inputs:
        x = inputs.lazy_x(mapping)
        if x is not None and fmt == "mat" and _too_big_for_mat5(x, inputs, mapping):
            if not quiet:
                _echo_err("mlstm: notice: Y will be over 2 GB, which MAT v7 cannot hold; writing MAT v7.3")
            fmt = "mat73"
        if x is not None and fmt in ("mat73", "hdf5") and 0 not in x.size:
            from .io.hdf5 import Hdf5Output

            with AtomicOutput(output) as target:
                with Hdf5Output(target.tmp, fmt, order) as out:
                    result = inputs.stream(x, mapping, pairs, out, engine.lower(), chunk_steps, bar)
            bar.close()
            if verbose:
                p = result.problem
                _echo_err(
                    f"mlstm: engine={result.engine} class={_class_name(p.dtype)} T={result.steps} "
                    f"B={p.batch_size} InputSize={p.input_size} H={p.hidden_size} "
                    f"Y={'x'.join(map(str, result.y_size))} ({result.y_format}) streamed in blocks of "
                    f"{result.chunk_steps} steps, {1e3 * (time.perf_counter() - started):.1f} ms, "
                    f"output={output} ({fmt})"
                )
            return
        shown = bar if bar.enabled else None  # blocks only when someone watches
        result = inputs.compute(mapping, pairs, engine.lower(), chunk_steps=chunk_steps, progress=shown)
    bar.close()
    computed = time.perf_counter()
    variables = _output_variables(result)
    if fmt == "mat" and needs_mat73(variables):
        if not quiet:
            _echo_err("mlstm: notice: an output is over 2 GB, which MAT v7 cannot hold; writing MAT v7.3")
        fmt = "mat73"
    write_variables(output, variables, fmt, order)
    if verbose:
        p = result.problem
        _echo_err(
            f"mlstm: engine={result.engine} class={_class_name(p.dtype)} "
            f"T={p.num_steps} B={p.batch_size} InputSize={p.input_size} H={p.hidden_size} "
            f"Y={'x'.join(map(str, result.Y.shape))} ({result.y_format}) "
            f"compute={1e3 * (computed - started):.1f} ms write={1e3 * (time.perf_counter() - computed):.1f} ms "
            f"output={output} ({fmt})"
        )


def _to_host(a: Any) -> Any:
    return a.get() if hasattr(a, "get") and type(a).__module__.startswith("cupy") else a


def _output_variables(result: Any) -> dict[str, Any]:
    """What an output file holds: Y, hiddenState, cellState (host arrays) and YFormat."""
    variables = {"Y": result.Y, "hiddenState": result.hiddenState, "cellState": result.cellState}
    variables = {k: _to_host(v) for k, v in variables.items()}
    variables["YFormat"] = result.y_format
    return variables


def _class_name(dtype: Any) -> str:
    return "single" if dtype.name == "float32" else "double"


def _too_big_for_mat5(x: Any, inputs: Inputs, mapping: dict[str, str]) -> bool:
    """Whether Y would pass MAT v7's 2 GB per variable: X's bytes times H / InputSize (from weights)."""
    from .io import MAT5_VARIABLE_LIMIT

    name = mapping.get("weights", "weights")
    holder = inputs.find("weights", name, required=False)
    weights = holder.read(name) if holder is not None else None
    if getattr(weights, "ndim", 0) != 2 or weights.shape[1] == 0:
        return False  # the front end reports what is wrong with it
    elements = 1
    for d in x.size:
        elements *= int(d)
    y_bytes = elements // weights.shape[1] * (weights.shape[0] // 4) * x.dtype.itemsize
    return y_bytes > MAT5_VARIABLE_LIMIT


@cli.command()
@click.argument("path", metavar="FILE")
@_hdf5_order_option
@_debug_option
def info(path: str, hdf5_order: str, debug: bool) -> None:
    """List the variables of FILE with MATLAB size and class."""
    from .formats import matlab_size
    from .io import open_matrix_file

    with open_matrix_file(path, hdf5_order.lower()) as f:
        rows = f.info()
        click.echo(f"{f.label}: {f.kind}, {len(rows)} variable(s)")
        width = max([len(r.name) for r in rows] + [4])
        for r in rows:
            click.echo(f"  {r.name:<{width}}  {matlab_size(r.size):>16}  {r.matlab_class}")


def _tolerance_options(f: Any) -> Any:
    f = click.option("--atol", type=float, default=None, help="Absolute tolerance (default by class).")(f)
    f = click.option("--rtol", type=float, default=None, help="Relative tolerance (default by class).")(f)
    return f


def _read_outputs(f: Any, required: bool) -> dict[str, Any]:
    from .compare import COMPARED

    found = {name: f.read(name) for name in COMPARED if f.has(name)}
    if required and not found:
        raise MlstmError(
            f"{f.label}: expected variables {', '.join(COMPARED)}, found {', '.join(f.names()) or 'no variables'}"
        )
    return found


@cli.command()
@click.argument("actual_path", metavar="ACTUAL")
@click.argument("expected_path", metavar="EXPECTED")
@_tolerance_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_hdf5_order_option
@_debug_option
def check(
    actual_path: str,
    expected_path: str,
    rtol: float | None,
    atol: float | None,
    as_json: bool,
    hdf5_order: str,
    debug: bool,
) -> None:
    """Compare Y, hiddenState and cellState of ACTUAL with EXPECTED: MATLAB size, class and values.

    Tolerances default by class (double rtol 1e-12 atol 1e-13, single rtol 1e-5 atol 1e-6).
    Exit status 0 when they agree, 1 on a mismatch, 2 when a file cannot be read.
    """
    import json

    from .compare import compare_outputs, format_table
    from .io import open_matrix_file

    with (
        open_matrix_file(actual_path, hdf5_order.lower()) as fa,
        open_matrix_file(expected_path, hdf5_order.lower()) as fe,
    ):
        expected = _read_outputs(fe, required=True)
        actual = _read_outputs(fa, required=False)
    report = compare_outputs(actual, expected, rtol, atol)
    if as_json:
        click.echo(json.dumps(dict(report.to_dict(), actual=actual_path, expected=expected_path), indent=2))
    else:
        click.echo(format_table(report))
        click.echo(f"{'OK' if report.ok else 'MISMATCH'}: {actual_path} vs {expected_path}")
    if not report.ok:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("tokens", nargs=-1, metavar="FILE... [Name=Value]...")
@_tolerance_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file, then a summary object.")
@_apply(_input_options)
@_debug_option
def verify(
    tokens: tuple[str, ...],
    rtol: float | None,
    atol: float | None,
    as_json: bool,
    var_mappings: tuple[str, ...],
    hdf5_order: str,
    engine: str,
    debug: bool,
) -> None:
    """Recompute lstm from the inputs stored in each FILE and compare with the outputs stored beside them.

    Each FILE holds X, H0, C0, weights, recurrentWeights, bias and MATLAB's Y, hiddenState,
    cellState; options come from Name=Value arguments or char variables DataFormat,
    StateActivationFunction, GateActivationFunction in the file. One line per file, then a
    summary. Exit status 0 when every file agrees, 1 when any differs or cannot be checked.
    """
    import json

    from .compare import compare_outputs

    paths, pairs = split_tokens(tokens)
    if not paths:
        raise MlstmError("expected at least one FILE", "FILE")
    mapping = parse_var_mappings(var_mappings)
    parse_options(pairs)
    counts = {"ok": 0, "differ": 0, "error": 0}
    for path in paths:
        record: dict[str, Any] = {"file": path}
        try:
            with Inputs([path], hdf5_order.lower()) as inputs:
                stored = _read_outputs(inputs.files[0], required=True)
                result = inputs.compute(mapping, pairs, engine.lower())
            # The file's stored outputs are checked against the recomputation.
            computed_in = _class_name(result.problem.dtype)
            report = compare_outputs(stored, _output_variables(result), rtol, atol, compute_class=computed_in)
            status = "ok" if report.ok else "differ"
            record.update(status=status, **report.to_dict())
            worst = max(report.variables, key=lambda v: v.max_rel_error or 0.0, default=None)
            bad = [v for v in report.variables if not v.ok]
            if bad:
                detail = "; ".join(
                    f"{v.name}: {v.problem}" + (f", worst {v.name}{v.worst}" if v.worst else "") for v in bad
                )
            elif worst is not None:
                detail = f"max rel err {worst.max_rel_error:.3g} ({worst.name})"
            else:
                detail = ""
        except MlstmError as err:
            status = "error"
            detail = _one_line(str(err))
            record.update(status=status, error=detail)
        counts[status] += 1
        if as_json:
            click.echo(json.dumps(record))
        else:
            click.echo(f"{ {'ok': 'OK', 'differ': 'DIFFER', 'error': 'ERROR'}[status]:<6} {path}: {detail}")
    summary = (
        f"{len(paths)} file(s): {counts['ok']} agree, {counts['differ']} differ, {counts['error']} could not be checked"
    )
    if as_json:
        click.echo(json.dumps({"summary": counts, "files": len(paths)}))
    else:
        click.echo(summary)
    if counts["differ"] or counts["error"]:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("source", metavar="IN")
@click.option("-o", "--output", required=True, metavar="OUT", help="weights.mat / .h5, or model.onnx with --to onnx.")
@click.option(
    "--from",
    "from_kind",
    type=click.Choice(["onnx", "pytorch", "keras"], case_sensitive=False),
    default=None,
    help="What IN is (default: from its content and extension).",
)
@click.option(
    "--to",
    "to_kind",
    type=click.Choice(["matlab", "onnx"], case_sensitive=False),
    default="matlab",
    show_default=True,
    help="matlab: MATLAB-layout variables; onnx: a one-node ONNX LSTM from MATLAB-layout weights in IN.",
)
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["mat", "mat73", "hdf5"], case_sensitive=False),
    default=None,
    help="Output format for --to matlab (default: from the extension).",
)
@click.option(
    "--dtype",
    type=click.Choice(["single", "double"], case_sensitive=False),
    default=None,
    help="Class of the weights --to onnx writes [default: single: ONNX Runtime's LSTM runs float32 only].",
)
@click.option("--node", metavar="NAME", help="ONNX LSTM node name, or PyTorch module prefix.")
@click.option("--layer", metavar="K|NAME", help="PyTorch layer index K (*_lK) or Keras layer name.")
@_hdf5_order_option
@_debug_option
def convert(
    source: str,
    output: str,
    from_kind: str | None,
    to_kind: str,
    output_format: str | None,
    dtype: str | None,
    node: str | None,
    layer: str | None,
    hdf5_order: str,
    debug: bool,
) -> None:
    """Convert LSTM weights between frameworks and MATLAB's layout.

    \b
    mlstm convert --from onnx model.onnx -o weights.mat   (pytorch: .safetensors/.npz; keras: .keras/.h5)
    mlstm convert --to onnx weights.mat -o model.onnx     (float32; --dtype double keeps double)

    MATLAB layout: weights 4H x InputSize, recurrentWeights 4H x H, bias 4H x 1, gates i, f, g, o,
    plus StateActivationFunction and GateActivationFunction as char variables when the source says.
    """
    from .foreign import open_weights_file, read_foreign, write_onnx
    from .io import AtomicOutput, output_format_for, write_variables

    order = hdf5_order.lower()
    if to_kind.lower() == "onnx":
        if from_kind:
            raise MlstmError("--from describes a foreign source; --to onnx reads MATLAB-layout weights", "--from")
        _check_output_path(output)
        weights = open_weights_file(source, order, node, layer)
        variables: dict[str, Any] = {}
        for role in ("weights", "recurrentWeights", "bias", "GateActivationFunction", "StateActivationFunction"):
            if weights.has(role):
                variables[role] = weights.read(role)
        missing = [r for r in ("weights", "recurrentWeights", "bias") if r not in variables]
        if missing:
            raise MlstmError(
                f"{source}: expected variables weights, recurrentWeights, bias, missing {', '.join(missing)}"
            )
        options = parse_options(
            [(k, variables.pop(k)) for k in ("GateActivationFunction", "StateActivationFunction") if k in variables]
        )
        _check_weight_shapes(source, variables)
        variables.update(
            GateActivationFunction=options.gate_activation, StateActivationFunction=options.state_activation
        )
        if dtype is None and any(getattr(variables[k], "dtype", None) == "float64" for k in variables):
            _echo_err(
                "mlstm: notice: writing the double weights as single (float32), the class ONNX Runtime's "
                "LSTM runs; --dtype double keeps them double"
            )
        with AtomicOutput(output) as target:
            write_onnx(target.tmp, variables, (dtype or "single").lower())
        return
    if dtype is not None:
        raise MlstmError("sets the class of the weights --to onnx writes; --to matlab keeps the source's", "--dtype")
    fmt = output_format_for(output, output_format)
    _check_output_path(output)
    converted = read_foreign(source, from_kind.lower() if from_kind else None, node, layer, order)
    if converted is None:
        raise MlstmError(
            f"{source}: expected an ONNX model, a PyTorch state dict (safetensors, .npz) or Keras weights "
            "(.keras, .h5), "
            "found MATLAB variables (nothing to convert); give --from to force a reader"
        )
    write_variables(output, converted, fmt, order)


def _check_weight_shapes(source: str, variables: dict[str, Any]) -> None:
    """weights 4H x In, recurrentWeights 4H x H, bias 4H: the sizes lstm itself would demand."""
    import numpy as np

    from .formats import check_class, matlab_size

    W, R, b = (check_class(k, variables[k]) for k in ("weights", "recurrentWeights", "bias"))
    hidden = R.shape[1] if R.ndim == 2 else 0
    if R.ndim != 2 or R.shape[0] != 4 * hidden or hidden == 0:
        raise MlstmError(f"{source}: variable 'recurrentWeights': expected size 4H-by-H, found {matlab_size(R.shape)}")
    if W.ndim != 2 or W.shape[0] != 4 * hidden:
        raise MlstmError(
            f"{source}: variable 'weights': expected size {4 * hidden}-by-InputSize, found {matlab_size(W.shape)}"
        )
    if np.size(b) != 4 * hidden:
        raise MlstmError(f"{source}: variable 'bias': expected {4 * hidden} elements, found {matlab_size(np.shape(b))}")


@cli.command("matlab-path")
def matlab_path() -> None:
    """Print the folder holding mlstm_lstm.m, for addpath in Octave or MATLAB."""
    click.echo(os.path.join(os.path.dirname(os.path.abspath(__file__)), "matlab"))


@cli.command()
@click.argument("tokens", nargs=-1, metavar="INPUTS... [Name=Value]...")
@click.option("--out-dir", required=True, metavar="DIR", help="Where the outputs go, one per input, same stem.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["mat", "mat73", "hdf5"], case_sensitive=False),
    default="mat",
    show_default=True,
    help="Output format (.mat for mat and mat73, .h5 for hdf5).",
)
@click.option("--shard", metavar="K/N", help="Run the K-th of N disjoint shares of the sorted inputs (1-based).")
@click.option("--resume/--no-resume", default=True, show_default=True, help="Skip inputs whose output exists.")
@click.option("--overwrite", is_flag=True, help="Redo inputs whose output exists (same as --no-resume).")
@click.option("--summary", "summary_path", metavar="FILE.jsonl", help="One JSON object per input: status, shapes, ...")
@_weights_options
@_apply(_input_options)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-file lines (errors still print).")
@_debug_option
def batch(
    tokens: tuple[str, ...],
    out_dir: str,
    weights_path: str | None,
    output_format: str,
    shard: str | None,
    resume: bool,
    overwrite: bool,
    summary_path: str | None,
    node: str | None,
    layer: str | None,
    var_mappings: tuple[str, ...],
    hdf5_order: str,
    engine: str,
    quiet: bool,
    debug: bool,
) -> None:
    """Run lstm on many INPUTS (files, globs, @list.txt) with one set of weights.

    Each input gives OUT_DIR/<stem>.mat (or .h5). Outputs are written atomically, so an
    existing output means done: a rerun finishes only the rest. Under a SLURM job array
    (SLURM_ARRAY_TASK_ID/_COUNT/_MIN) each task takes its own share unless --shard is given.
    A bad input is reported and skipped. Exit status 0 if every input succeeded, 1 if any
    failed, 2 for a bad invocation.
    """
    import json

    from . import io
    from .batch import expand_inputs, parse_shard, plan, select_shard, shard_from_environment
    from .progress import Progress

    items, pairs = split_tokens(tokens)
    mapping = parse_var_mappings(var_mappings)
    parse_options(pairs)
    fmt = output_format.lower()
    order = hdf5_order.lower()
    share = parse_shard(shard) if shard is not None else shard_from_environment(os.environ)
    jobs = plan(select_shard(expand_inputs(items), share), out_dir, fmt)
    if not os.path.isdir(out_dir):
        try:
            os.makedirs(out_dir, exist_ok=True)
        except OSError as exc:
            raise MlstmError(f"cannot create the directory ({exc.strerror or exc})", f"--out-dir {out_dir}") from None
    shared = _shared_weights(weights_path, order, mapping, node, layer)
    from .engines import get_engine

    backend = get_engine(engine.lower())  # a missing GPU is a bad invocation, before any input
    prepared: dict[Any, Any] | None = {} if weights_path else None
    summary = open(summary_path, "w") if summary_path else None  # noqa: SIM115 - closed below
    counts = {"ok": 0, "skipped": 0, "failed": 0}
    bar = Progress(total=len(jobs), label="files", quiet=quiet, delay=0.0)
    try:
        for done, job in enumerate(jobs, 1):
            record: dict[str, Any] = {"input": job.input, "output": job.output, "engine": backend.name}
            started = time.perf_counter()
            if resume and not overwrite and os.path.exists(job.output):
                record["status"] = "skipped"
            else:
                try:
                    with Inputs([job.input], order, shared) as inputs:
                        result = inputs.compute(mapping, pairs, backend.name, prepared=prepared)
                    variables = _output_variables(result)
                    out_fmt = "mat73" if fmt == "mat" and io.needs_mat73(variables) else fmt
                    io.write_variables(job.output, variables, out_fmt, order)
                    p = result.problem
                    record.update(
                        status="ok",
                        format=out_fmt,
                        compute_class=_class_name(p.dtype),
                        T=p.num_steps,
                        B=p.batch_size,
                        input_size=p.input_size,
                        H=p.hidden_size,
                        Y_size=list(result.Y.shape),
                        YFormat=result.y_format,
                    )
                except MlstmError as err:
                    message = _one_line(str(err))
                    if not message.startswith(job.input):
                        message = f"{job.input}: {message}"
                    record.update(status="failed", error=message)
                    _echo_err(f"Error: {message}")
            record["seconds"] = round(time.perf_counter() - started, 6)
            counts[record["status"]] += 1
            if summary:
                summary.write(json.dumps(record) + "\n")
                summary.flush()
            if not quiet and not bar.tty:
                _echo_err(f"mlstm: {record['status']:<7} {job.input} -> {job.output}")
            bar(done)
    finally:
        bar.close()
        if summary:
            summary.close()
    if not quiet:
        _echo_err(
            f"mlstm: {len(jobs)} input(s){f' (shard {share[0]}/{share[1]})' if share else ''}: "
            f"{counts['ok']} done, {counts['skipped']} skipped (output exists), {counts['failed']} failed"
        )
    if counts["failed"]:
        raise click.exceptions.Exit(1)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every error into one ``Error:`` line and exit 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        code = cli.main(args=args, prog_name="mlstm", standalone_mode=False)
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except NO_COMMAND:
        commands = ", ".join(cli.list_commands(click.Context(cli)))
        _echo_err(f"Error: mlstm: expected a command ({commands}); see mlstm --help")
        code = 2
    except click.ClickException as exc:
        if debug:
            traceback.print_exc()
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None and ctx.command_path else ""
        _echo_err(f"Error: {where}{_one_line(exc.format_message())}")
        code = 2
    except MlstmError as exc:
        if debug:
            traceback.print_exc()
        _echo_err(f"Error: {_one_line(str(exc))}")
        code = 2
    except click.Abort:
        _echo_err("Error: aborted")
        code = 2
    except BrokenPipeError:
        code = 0
    except MemoryError:
        if debug:
            traceback.print_exc()
        _echo_err("Error: out of memory; for long sequences use MAT v7.3/HDF5 input with --chunk-steps")
        code = 2
    except Exception as exc:  # a failure we did not foresee: still one line, never a traceback
        if debug:
            traceback.print_exc()
        _echo_err(f"Error: unexpected {type(exc).__name__}: {_one_line(str(exc))} (rerun with --debug for details)")
        code = 2
    sys.exit(code if isinstance(code, int) else 0)
