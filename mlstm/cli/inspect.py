"""Looking at files: ``info``, ``check``, ``verify``, ``plot``, and ``doctor`` / ``matlab-path``
about the installation. The work is in :mod:`mlstm.checkfiles`, :mod:`mlstm.plot`, :mod:`mlstm.doctor`."""

from __future__ import annotations

import os

import click

from ..errors import MlstmError
from ..inputs import parse_var_mappings, split_tokens
from .base import (
    apply,
    cli,
    debug_option,
    diagnose_option,
    echo_err,
    hdf5_order_option,
    input_options,
    plot_options,
    tolerance_options,
)


@cli.command()
@click.argument("path", metavar="FILE")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object: file, container and, per variable, size, class and a char variable's text.",
)
@hdf5_order_option
@debug_option
def info(path: str, as_json: bool, hdf5_order: str, debug: bool) -> None:
    """List the variables of FILE with MATLAB size and class."""
    from ..checkfiles import format_info, info_file
    from ..io import CHAR_VALUE_LIMIT

    summary = info_file(path, hdf5_order, CHAR_VALUE_LIMIT)
    if as_json:
        import json

        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(format_info(summary))


@cli.command()
@click.argument("tokens", nargs=-1, metavar="ACTUAL EXPECTED [Name=Value]...")
@tolerance_options
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@diagnose_option
@click.option(
    "--inputs",
    "input_paths",
    multiple=True,
    metavar="FILE",
    help="For --diagnose: the files holding X, H0, C0, weights, recurrentWeights, bias (default: ACTUAL).",
)
@apply(input_options[:1])
@click.option("--plot", "plot_path", metavar="PNG", help="Draw where Y differs (needs mlstm[plot]).")
@plot_options("1000x800")
@hdf5_order_option
@debug_option
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

    from ..checkfiles import check_files
    from ..compare import format_table

    paths, pairs = split_tokens(tokens)
    if len(paths) != 2:
        raise MlstmError(f"expected two files, ACTUAL and EXPECTED, found {len(paths)}", "ACTUAL EXPECTED")
    result = check_files(
        *paths,
        rtol,
        atol,
        diagnose=diagnose,
        inputs=input_paths,
        var=parse_var_mappings(var_mappings),
        options=pairs,
        plot=plot_path,
        obs=obs,
        size=size,
        hdf5_order=hdf5_order,
        notice=lambda text: echo_err(f"mlstm: notice: {text}"),
    )
    if as_json:
        click.echo(json.dumps(result.record, indent=2))
    else:
        click.echo(format_table(result.report))
        click.echo(f"{'OK' if result.ok else 'MISMATCH'}: {paths[0]} vs {paths[1]}")
        for line in result.diagnosis:
            click.echo(f"diagnose: {line}")
    if not result.ok:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("tokens", nargs=-1, metavar="FILE... [Name=Value]...")
@tolerance_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per file, then a summary object.")
@diagnose_option
@apply(input_options)
@debug_option
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

    from ..checkfiles import verify_files

    paths, pairs = split_tokens(tokens)
    counts = {"ok": 0, "differ": 0, "error": 0}
    records = verify_files(
        paths,
        var=parse_var_mappings(var_mappings),
        options=pairs,
        rtol=rtol,
        atol=atol,
        engine=engine,
        hdf5_order=hdf5_order,
        diagnose=diagnose,
    )
    for one in records:
        counts[one.status] += 1
        if as_json:
            click.echo(json.dumps(one.record))
            continue
        click.echo(f"{ {'ok': 'OK', 'differ': 'DIFFER', 'error': 'ERROR'}[one.status]:<6} {one.path}: {one.detail}")
        for note in one.notes:
            click.echo(f"{'':<6} diagnose: {note}")
    if as_json:
        click.echo(json.dumps({"summary": counts, "files": len(paths)}))
    else:
        total = len(paths)
        click.echo(
            f"{total} file(s): {counts['ok']} agree, {counts['differ']} differ, {counts['error']} could not be checked"
        )
    if counts["differ"] or counts["error"]:
        raise click.exceptions.Exit(1)


@cli.command()
@click.argument("tokens", nargs=-1, metavar="FILE [DataFormat=...]")
@click.option("-o", "--output", required=True, metavar="PNG", help="The image (PNG), or - for stdout.")
@plot_options("1000x600")
@hdf5_order_option
@debug_option
def plot(tokens: tuple[str, ...], output: str, obs: int | None, size: str | None, hdf5_order: str, debug: bool) -> None:
    """Draw Y of FILE as a heat map, hidden units x time steps, for one observation (--obs K, default 1),
    and the final hiddenState and cellState of every observation as strips (units x observations).

    The layout of Y comes from the YFormat variable mlstm run writes, else DataFormat=... (the
    format of X or of Y), else a DataFormat variable in FILE. Needs matplotlib: pip install 'mlstm[plot]'.
    """
    from ..checkfiles import plot_file

    paths, pairs = split_tokens(tokens)
    if len(paths) != 1:
        raise MlstmError(f"expected one FILE to plot, found {len(paths)}", "FILE")
    plot_file(paths[0], output, obs=obs, size=size, options=pairs, hdf5_order=hdf5_order)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
def doctor(as_json: bool) -> None:
    """Report versions, the compiled CPU loop (and why not), BLAS threads, CPU, GPU and optional packages.

    Paste its output into bug reports; `mlstm run -v` says which loop or kernel a run used.
    """
    import json

    from ..doctor import collect, format_text

    report = collect()
    click.echo(json.dumps(report, indent=2) if as_json else format_text(report))


@cli.command("matlab-path")
def matlab_path() -> None:
    """Print the folder holding mlstm_lstm.m, for addpath in Octave or MATLAB."""
    click.echo(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "matlab"))
