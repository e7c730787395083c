"""The ``mlstm`` command line: thin Click commands over the library.

Every failure the library reports (an :class:`MlstmError`) and every usage
error becomes one ``Error: ...`` line on stderr with exit status 2; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import traceback
from typing import Any

import click

from . import __version__
from .errors import MlstmError
from .inputs import Inputs, parse_var_mappings, shared_weights, split_tokens
from .options import parse_options
from .runfile import class_name, output_variables

# click >= 8.2 raises this for a bare `mlstm`; older click printed the help itself.
NO_COMMAND = getattr(click.exceptions, "NoArgsIsHelpError", ())
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
    from .progress import Progress
    from .runfile import run_file

    paths, pairs = split_tokens(tokens)
    bar = Progress(force=progress, quiet=quiet)
    try:
        report = run_file(
            paths,
            output,
            weights=weights_path,
            node=node,
            layer=layer,
            var=parse_var_mappings(var_mappings),
            output_format=output_format,
            hdf5_order=hdf5_order,
            engine=engine,
            chunk_steps=chunk_steps,
            progress=bar,
            notice=None if quiet else lambda text: bar.write(f"mlstm: notice: {text}"),  # above the bar
            options=pairs,
        )
    finally:
        bar.close()  # before an Error: or interrupt line, which then starts a line of its own
    if verbose:  # after the commit: the output exists
        for note in report.notes:
            _echo_err(f"mlstm: {note}")
        _echo_err(report.log_line())


@cli.command()
@click.argument("path", metavar="FILE")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object: file, container and, per variable, size, class and a char variable's text.",
)
@_hdf5_order_option
@_debug_option
def info(path: str, as_json: bool, hdf5_order: str, debug: bool) -> None:
    """List the variables of FILE with MATLAB size and class."""
    from .formats import matlab_size
    from .io import CHAR_VALUE_LIMIT, open_matrix_file

    with open_matrix_file(path, hdf5_order.lower()) as f:
        if as_json:
            import json

            click.echo(json.dumps(f.summary(CHAR_VALUE_LIMIT), indent=2))
            return
        rows = f.info()
        click.echo(f"{f.label}: {f.kind}, {len(rows)} variable(s)")
        width = max([len(r.name) for r in rows] + [4])
        for r in rows:
            size = "?" if r.size is None else matlab_size(r.size)
            note = f"  ({r.note})" if r.note else ""
            click.echo(f"  {r.name:<{width}}  {size:>16}  {r.matlab_class}{note}")


def _tolerance_options(f: Any) -> Any:
    f = click.option("--atol", type=float, default=None, help="Absolute tolerance (default by class).")(f)
    f = click.option("--rtol", type=float, default=None, help="Relative tolerance (default by class).")(f)
    return f


def _output_names(f: Any, required: bool) -> list[str]:
    from .compare import COMPARED

    names = [name for name in COMPARED if f.has(name)]
    if required and not names:
        raise MlstmError(
            f"{f.label}: expected variables {', '.join(COMPARED)}, found {', '.join(f.names()) or 'no variables'}"
        )
    return names


def _read_outputs(f: Any, required: bool, against: dict[str, Any] | None = None) -> dict[str, Any]:
    """Y, hiddenState, cellState of ``f``. A variable whose size (from metadata) differs from its
    counterpart in ``against`` is not read: its size stands in, and the comparison reports it."""
    import numpy as np

    from .formats import matlab_shape

    found = {}
    for name in _output_names(f, required):
        if against is not None and name in against:
            declared = f.declared(name)
            if declared is not None and matlab_shape(declared.shape) != matlab_shape(np.shape(against[name])):
                found[name] = declared
                continue
        found[name] = f.read(name)
    return found


def _read_layout(f: Any) -> dict[str, Any]:
    """The char variables YFormat and DataFormat, where a file holds them (the layout of Y for plots)."""
    found = {}
    for name in ("YFormat", "DataFormat"):
        if f.has(name):
            value = f.read(name)
            if isinstance(value, str):
                found[name] = value
    return found


def _plot_options(default_size: str) -> Any:
    def decorate(f: Any) -> Any:
        f = click.option("--size", metavar="WxH", help=f"Image size in pixels (default {default_size}).")(f)
        f = click.option("--obs", type=int, metavar="K", help="The observation to draw, 1-based.")(f)
        return f

    return decorate


_diagnose_option = click.option(
    "--diagnose",
    is_flag=True,
    help="On a mismatch, rerun lstm under known porting mistakes (gate order, transposed weights, bias, "
    "DataFormat, precision, activations, states) and say which one reproduces the expected outputs.",
)


@cli.command()
@click.argument("tokens", nargs=-1, metavar="ACTUAL EXPECTED [Name=Value]...")
@_tolerance_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@_diagnose_option
@click.option(
    "--inputs",
    "input_paths",
    multiple=True,
    metavar="FILE",
    help="For --diagnose: the files holding X, H0, C0, weights, recurrentWeights, bias (default: ACTUAL).",
)
@_apply(_input_options[:1])
@click.option("--plot", "plot_path", metavar="PNG", help="Draw where Y differs (needs mlstm[plot]).")
@_plot_options("1000x800")
@_hdf5_order_option
@_debug_option
def check(
    tokens: tuple[str, ...],
    rtol: float | None,
    atol: float | None,
    as_json: bool,
    diagnose: bool,
    input_paths: tuple[str, ...],
    var_mappings: tuple[str, ...],
    plot_path: str | None,
    obs: int | None,
    size: str | None,
    hdf5_order: str,
    debug: bool,
) -> None:
    """Compare Y, hiddenState and cellState of ACTUAL with EXPECTED: MATLAB size, class and values.

    Tolerances default by class (double rtol 1e-12 atol 1e-13, single rtol 1e-5 atol 1e-6).
    Exit status 0 when they agree, 1 on a mismatch, 2 when a file cannot be read.

    --diagnose reruns lstm on the inputs (from --inputs FILE..., else from ACTUAL) with options
    from Name=Value arguments or char variables in those files. --plot draws
    |actual - expected| over hidden units x time (layout of Y from YFormat in the files, else
    DataFormat=...).
    """
    import json

    from .compare import compare_outputs, format_table
    from .io import open_matrix_file

    paths, pairs = split_tokens(tokens)
    if len(paths) != 2:
        raise MlstmError(f"expected two files, ACTUAL and EXPECTED, found {len(paths)}", "ACTUAL EXPECTED")
    if pairs and not (diagnose or plot_path):
        raise MlstmError("Name=Value options are used only by --diagnose and --plot", pairs[0][0])
    if (input_paths or var_mappings) and not diagnose:
        raise MlstmError("--inputs and --var name the inputs for --diagnose; add --diagnose", "--inputs/--var")
    if plot_path is None and (obs is not None or size is not None):
        raise MlstmError("--obs and --size describe the --plot image; add --plot PNG", "--obs/--size")
    actual_path, expected_path = paths
    options = parse_options(pairs)
    order = hdf5_order.lower()
    if plot_path:
        from .io import check_output_path
        from .plot import parse_size, pyplot

        check_output_path(plot_path, paths)
        image_size = parse_size(size, (1000, 800))
        pyplot("--plot")  # no matplotlib: say so before any work
    with open_matrix_file(actual_path, order) as fa, open_matrix_file(expected_path, order) as fe:
        expected = _read_outputs(fe, required=True)
        actual = _read_outputs(fa, required=False, against=expected)
        layouts = (_read_layout(fa), _read_layout(fe))
    report = compare_outputs(actual, expected, rtol, atol)
    result = dict(report.to_dict(), actual=actual_path, expected=expected_path)
    lines = []
    if diagnose and not report.ok:
        lines, result["diagnosis"] = _diagnose_check(
            actual_path, expected_path, actual, expected, input_paths, var_mappings, pairs, order, rtol, atol
        )
    if plot_path:
        y_report = next((v for v in report.variables if v.name == "Y"), None)
        tol = (y_report.rtol, y_report.atol) if y_report and y_report.rtol else (1e-12, 1e-13)
        result["plot"] = _plot_difference(
            plot_path,
            (dict(actual, **layouts[0]), dict(expected, **layouts[1])),
            (actual_path, expected_path),
            tol,
            options.data_format,
            obs,
            image_size,
        )
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(format_table(report))
        click.echo(f"{'OK' if report.ok else 'MISMATCH'}: {actual_path} vs {expected_path}")
        for line in lines:
            click.echo(f"diagnose: {line}")
    if not report.ok:
        raise click.exceptions.Exit(1)


def _diagnose_check(
    actual_path: str,
    expected_path: str,
    actual: dict[str, Any],
    expected: dict[str, Any],
    input_paths: tuple[str, ...],
    var_mappings: tuple[str, ...],
    pairs: list[tuple[str, str]],
    order: str,
    rtol: float | None,
    atol: float | None,
) -> tuple[list[str], dict[str, Any]]:
    """Diagnose EXPECTED from the inputs; if the inputs as given reproduce it, diagnose ACTUAL instead."""
    from .diagnose import diagnose

    mapping = parse_var_mappings(var_mappings)
    with Inputs(list(input_paths) or [actual_path], order) as inputs:
        x_name = mapping.get("X", "X")
        if not input_paths and not inputs.files[0].has(x_name):
            raise MlstmError(
                f"{actual_path} holds no inputs ({x_name!r} and the rest) to rerun lstm on; give --inputs FILE "
                "with X, H0, C0, weights, recurrentWeights, bias",
                "--diagnose",
            )
        options = parse_options(inputs.option_variables(pairs))
        arguments = inputs.read_arguments(mapping)
        try:
            found = diagnose(arguments, options, expected, rtol, atol)
            lines, record = found.summary(expected_path), {"expected": found.to_dict()}
            if found.given.matches and actual:
                other = diagnose(arguments, options, actual, rtol, atol)
                lines += [f"so {actual_path} is the one that differs:"] + other.summary(actual_path)
                record["actual"] = other.to_dict()
        except MlstmError as err:
            raise inputs.locate(err) from None
    return lines, record


def _plot_difference(
    path: str,
    variables: tuple[dict[str, Any], dict[str, Any]],
    labels: tuple[str, str],
    tolerance: tuple[float, float],
    data_format: str | None,
    obs: int | None,
    size: tuple[int, int],
) -> dict[str, Any] | None:
    """Draw the difference plot atomically; None (and a notice) when Y cannot be compared element-wise."""
    from .io import AtomicOutput
    from .plot import plot_difference

    shapes = [getattr(v.get("Y"), "shape", None) for v in variables]
    if None in shapes or shapes[0] != shapes[1]:
        _echo_err(f"mlstm: notice: Y is missing from a file or its sizes differ; {path} not drawn")
        return None
    with AtomicOutput(path) as target:
        return plot_difference(*variables, target.tmp, labels, *tolerance, data_format, obs, size)


@cli.command()
@click.argument("tokens", nargs=-1, metavar="FILE... [Name=Value]...")
@_tolerance_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file, then a summary object.")
@_diagnose_option
@_apply(_input_options)
@_debug_option
def verify(
    tokens: tuple[str, ...],
    rtol: float | None,
    atol: float | None,
    as_json: bool,
    diagnose: bool,
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
    With --diagnose, a file that differs gets lines saying which known porting mistake, undone
    in its inputs, reproduces its stored outputs.
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
        notes: list[str] = []
        try:
            with Inputs([path], hdf5_order.lower()) as inputs:
                _output_names(inputs.files[0], required=True)
                result = inputs.compute(mapping, pairs, engine.lower())
                stored = _read_outputs(inputs.files[0], required=True, against=output_variables(result))
            # The file's stored outputs are checked against the recomputation.
            computed_in = class_name(result.problem.dtype)
            report = compare_outputs(stored, output_variables(result), rtol, atol, compute_class=computed_in)
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
            if diagnose and bad:
                found = _diagnose_file(path, stored, mapping, pairs, hdf5_order.lower(), rtol, atol)
                record["diagnosis"] = found.to_dict()
                notes = found.summary(os.path.basename(path))
        except Exception as err:  # noqa: BLE001 - every file gets its line, whatever happens to one
            status = "error"
            text = str(err) if isinstance(err, MlstmError) else f"internal error {type(err).__name__}: {err}"
            detail = _one_line(text)
            record.update(status=status, error=detail)
        counts[status] += 1
        if as_json:
            click.echo(json.dumps(record))
        else:
            click.echo(f"{ {'ok': 'OK', 'differ': 'DIFFER', 'error': 'ERROR'}[status]:<6} {path}: {detail}")
            for note in notes:
                click.echo(f"{'':<6} diagnose: {note}")
    summary = (
        f"{len(paths)} file(s): {counts['ok']} agree, {counts['differ']} differ, {counts['error']} could not be checked"
    )
    if as_json:
        click.echo(json.dumps({"summary": counts, "files": len(paths)}))
    else:
        click.echo(summary)
    if counts["differ"] or counts["error"]:
        raise click.exceptions.Exit(1)


def _diagnose_file(
    path: str,
    stored: dict[str, Any],
    mapping: dict[str, str],
    pairs: list[tuple[str, str]],
    order: str,
    rtol: float | None,
    atol: float | None,
) -> Any:
    """verify --diagnose: which known mistake, undone in the file's inputs, reproduces its stored outputs."""
    from .diagnose import diagnose

    with Inputs([path], order) as inputs:
        options = parse_options(inputs.option_variables(pairs))
        try:
            return diagnose(inputs.read_arguments(mapping), options, stored, rtol, atol)
        except MlstmError as err:
            raise inputs.locate(err) from None


@cli.command()
@click.argument("tokens", nargs=-1, metavar="FILE [DataFormat=...]")
@click.option("-o", "--output", required=True, metavar="PNG", help="The image (PNG), or - for stdout.")
@_plot_options("1000x600")
@_hdf5_order_option
@_debug_option
def plot(tokens: tuple[str, ...], output: str, obs: int | None, size: str | None, hdf5_order: str, debug: bool) -> None:
    """Draw Y of FILE as a heat map, hidden units x time steps, for one observation (--obs K, default 1),
    and the final hiddenState and cellState of every observation as strips (units x observations).

    The layout of Y comes from the YFormat variable mlstm run writes, else DataFormat=... (the
    format of X or of Y), else a DataFormat variable in FILE. Needs matplotlib: pip install 'mlstm[plot]'.
    """
    from .io import AtomicOutput, check_output_path, open_matrix_file
    from .plot import PLOT_SIZE, parse_size, plot_outputs, pyplot

    paths, pairs = split_tokens(tokens)
    if len(paths) != 1:
        raise MlstmError(f"expected one FILE to plot, found {len(paths)}", "FILE")
    options = parse_options(pairs)
    image_size = parse_size(size, PLOT_SIZE)
    check_output_path(output, paths)
    pyplot()
    with open_matrix_file(paths[0], hdf5_order.lower()) as f:
        variables = dict(_read_outputs(f, required=False), **_read_layout(f))
        label = f.label
    with AtomicOutput(output) as target:
        plot_outputs(variables, target.tmp, label, options.data_format, obs, image_size)


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
    from .io import AtomicOutput, check_output_path, output_format_for, write_variables

    order = hdf5_order.lower()
    if to_kind.lower() == "onnx":
        if from_kind:
            raise MlstmError("--from describes a foreign source; --to onnx reads MATLAB-layout weights", "--from")
        check_output_path(output, [source])
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
    check_output_path(output, [source])
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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def doctor(as_json: bool) -> None:
    """Report versions, the compiled CPU loop (and why not), BLAS threads, CPU, GPU and optional packages.

    Paste its output into bug reports; `mlstm run -v` says which loop or kernel a run used.
    """
    import json

    from .doctor import collect, format_text

    report = collect()
    click.echo(json.dumps(report, indent=2) if as_json else format_text(report))


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
@click.option("--summary", "summary_path", metavar="FILE.jsonl", help="Append a JSON line per input: status, shapes...")
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
    (SLURM_ARRAY_TASK_ID/_MIN/_STEP/_COUNT) each task takes its own share unless --shard is given.
    A bad input is reported and skipped. Exit status 0 if every input succeeded, 1 if any
    failed, 2 for a bad invocation.
    """
    from . import io
    from .batch import Summary, expand_inputs, parse_shard, plan, select_shard, shard_from_environment
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
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise MlstmError("the directory is not writable", f"--out-dir {out_dir}")
    sources = [job.input for job in jobs] + ([weights_path] if weights_path else [])
    for job in jobs:  # an output that is an input (or the weights) would destroy it: refuse before any work
        io.check_output_path(job.output, sources)
    shared = shared_weights(weights_path, order, mapping, node, layer)
    from .engines import get_engine

    backend = get_engine(engine.lower())  # a missing GPU is a bad invocation, before any input
    prepared: dict[Any, Any] | None = {} if weights_path else None
    summary = Summary(summary_path) if summary_path else None
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
                    bar.set_state(job.input)
                    with Inputs([job.input], order, shared) as inputs:
                        result = inputs.compute(mapping, pairs, backend.name, prepared=prepared)
                    variables = output_variables(result)
                    out_fmt = "mat73" if fmt == "mat" and io.needs_mat73(variables) else fmt
                    bar.set_state(f"writing {job.output}")
                    io.write_variables(job.output, variables, out_fmt, order)
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
                    text = str(err) if isinstance(err, MlstmError) else f"internal error {type(err).__name__}: {err}"
                    message = _one_line(text)
                    if not message.startswith(job.input):
                        message = f"{job.input}: {message}"
                    record.update(status="failed", error=message)
                    bar.write(f"Error: {message}")  # above the bar, never glued onto it
            record["seconds"] = round(time.perf_counter() - started, 6)
            counts[record["status"]] += 1
            if summary:
                summary.add(record)
            if not quiet and not bar.tty:
                bar.write(f"mlstm: {record['status']:<7} {job.input} -> {job.output}")
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


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # pragma: no cover - no stdout at all
        pass


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every error into one ``Error:`` line and exit 2."""
    from . import signals
    from .io.output import ReaderGone

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    signals.install()
    try:
        code = cli.main(args=args, prog_name="mlstm", standalone_mode=False)
        signals.check()  # a signal whose exception a library swallowed still counts
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
    except (signals.Interrupted, KeyboardInterrupt) as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        _echo_err(f"mlstm: interrupted by {signals.NAMES.get(signum, signum)}; no output was written")
        code = 128 + int(signum)
    except click.Abort:  # click's prompt interrupted (Ctrl-C or end of input)
        _echo_err("Error: aborted")
        code = 2
    except (BrokenPipeError, ReaderGone):
        # The reader went away (`mlstm run ... -o - | head -c 10`): stop quietly with the status of
        # a process killed by SIGPIPE, as cat and other Unix tools do; Python must not complain
        # again when it flushes stdout at exit.
        _silence_stdout()
        code = 128 + signal.SIGPIPE
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
