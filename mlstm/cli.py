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
    """Separate INPUT files from Name=Value tokens (a token whose part before '=' is a word)."""
    inputs: list[str] = []
    pairs: list[tuple[str, str]] = []
    for token in tokens:
        head = token.partition("=")[0]
        if "=" in token and head.replace("-", "").isalnum() and head[:1].isalpha():
            pairs.append(split_name_value(token))
        else:
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

    def __init__(self, paths: list[str], hdf5_order: str):
        from .io import open_matrix_file

        if not paths:
            raise MlstmError("expected at least one INPUT file (or - for standard input)", "INPUT")
        if paths.count("-") > 1:
            raise MlstmError("standard input ('-') can be read only once", "INPUT")
        self.files = []
        try:
            for path in paths:
                self.files.append(open_matrix_file(path, hdf5_order))
        except BaseException:
            self.close()
            raise
        self.sources: dict[str, tuple[Any, str]] = {}  # role -> (file, variable name)

    def close(self) -> None:
        for f in self.files:
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

    def compute(self, mapping: dict[str, str], pairs: list[tuple[str, str]], engine: str) -> Any:
        """Read the six arguments and the options, and run lstm; errors name the file and variable."""
        from .api import compute

        options = parse_options(self.option_variables(pairs))
        arguments = self.read_arguments(mapping)
        try:
            return compute(*(arguments[r] for r in ARGUMENT_NAMES), options=options, engine=engine)
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


def _echo_err(message: str) -> None:
    click.echo(message, err=True)


_input_options = [
    click.option(
        "--var",
        "var_mappings",
        multiple=True,
        metavar="ROLE=NAME",
        help="Read a MATLAB argument (X, H0, C0, weights, recurrentWeights, bias) from another variable "
        "or HDF5 path, e.g. --var X=signals or --var X=/data/x.",
    ),
    click.option(
        "--hdf5-order",
        type=click.Choice(["numpy", "matlab"], case_sensitive=False),
        default="numpy",
        show_default=True,
        help="Plain HDF5 dataset order: numpy (shape is the MATLAB size) or matlab (reversed, as h5write writes).",
    ),
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
@click.option("-v", "--verbose", is_flag=True, help="Print engine, compute class, shapes and timing on stderr.")
@_debug_option
def run(
    tokens: tuple[str, ...],
    output: str,
    output_format: str | None,
    var_mappings: tuple[str, ...],
    hdf5_order: str,
    engine: str,
    verbose: bool,
    debug: bool,
) -> None:
    """Run MATLAB's lstm on the variables X, H0, C0, weights, recurrentWeights, bias.

    Name=Value options may appear anywhere: DataFormat=CBT,
    StateActivationFunction=tanh|softsign|relu, GateActivationFunction=sigmoid|hard-sigmoid
    (case-insensitive; names may be shortened, DataF=CBT). Writes Y, hiddenState, cellState and YFormat.
    """
    from .io import needs_mat73, output_format_for, write_variables

    paths, pairs = split_tokens(tokens)
    mapping = parse_var_mappings(var_mappings)
    parse_options(pairs)  # reject bad command-line options before touching any file
    fmt = output_format_for(output, output_format)
    _check_output_path(output)
    started = time.perf_counter()
    with Inputs(paths, hdf5_order.lower()) as inputs:
        result = inputs.compute(mapping, pairs, engine.lower())
    computed = time.perf_counter()
    variables = {"Y": result.Y, "hiddenState": result.hiddenState, "cellState": result.cellState}
    variables = {k: _to_host(v) for k, v in variables.items()}
    variables["YFormat"] = result.y_format
    if fmt == "mat" and needs_mat73(variables):
        _echo_err("mlstm: notice: an output is over 2 GB, which MAT v7 cannot hold; writing MAT v7.3")
        fmt = "mat73"
    write_variables(output, variables, fmt, hdf5_order.lower())
    if verbose:
        p = result.problem
        _echo_err(
            f"mlstm: engine={result.engine} class={'single' if p.dtype.name == 'float32' else 'double'} "
            f"T={p.num_steps} B={p.batch_size} InputSize={p.input_size} H={p.hidden_size} "
            f"Y={'x'.join(map(str, result.Y.shape))} ({result.y_format}) "
            f"compute={1e3 * (computed - started):.1f} ms write={1e3 * (time.perf_counter() - computed):.1f} ms "
            f"output={output} ({fmt})"
        )


def _to_host(a: Any) -> Any:
    return a.get() if hasattr(a, "get") and type(a).__module__.startswith("cupy") else a


@cli.command()
@click.argument("path", metavar="FILE")
@click.option(
    "--hdf5-order",
    type=click.Choice(["numpy", "matlab"], case_sensitive=False),
    default="numpy",
    show_default=True,
    help="How plain HDF5 shapes map to MATLAB sizes.",
)
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
@click.option(
    "--hdf5-order", type=click.Choice(["numpy", "matlab"], case_sensitive=False), default="numpy", show_default=True
)
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
            recomputed = {"Y": result.Y, "hiddenState": result.hiddenState, "cellState": result.cellState}
            # The file's stored outputs are checked against the recomputation.
            computed_in = "single" if result.problem.dtype.name == "float32" else "double"
            report = compare_outputs(
                stored, {k: _to_host(v) for k, v in recomputed.items()}, rtol, atol, compute_class=computed_in
            )
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
