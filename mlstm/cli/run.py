"""``mlstm run``: one file-to-file run (:func:`mlstm.runfile.run_file`)."""

from __future__ import annotations

import click

from ..inputs import parse_var_mappings, split_tokens
from .base import (
    apply,
    cli,
    debug_option,
    echo_err,
    format_option,
    input_options,
    progress_options,
    weights_options,
)


@cli.command(context_settings={"ignore_unknown_options": False})
@click.argument("tokens", nargs=-1, metavar="INPUT... [Name=Value]...")
@click.option("-o", "--output", required=True, metavar="OUTPUT", help="Output file (.mat, .h5, .hdf5) or - for stdout.")
@format_option(None, "Output format (default: from the extension; MAT v7 for -o -).")
@apply(input_options)
@click.option(
    "--chunk-steps",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="Time steps per block (default: about 32 MB of buffers). With HDF5/MAT v7.3 input and output, "
    "X is read and Y written one block at a time, so memory does not grow with T.",
)
@weights_options
@progress_options
@click.option("-v", "--verbose", is_flag=True, help="Print engine, compute class, shapes and timing on stderr.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON summary of the run on stderr (engine, class, sizes, s)."
)
@click.option(
    "--dry-run", is_flag=True, help="Check inputs, sizes, options and the output path from metadata; write nothing."
)
@debug_option
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
    as_json: bool,
    dry_run: bool,
    debug: bool,
) -> None:
    """Run MATLAB's lstm on the variables X, H0, C0, weights, recurrentWeights, bias.

    Name=Value options may appear anywhere: DataFormat=CBT,
    StateActivationFunction=tanh|softsign|relu, GateActivationFunction=sigmoid|hard-sigmoid
    (case-insensitive; names may be shortened, DataF=CBT). Writes Y, hiddenState, cellState and YFormat.
    """
    from ..progress import Progress
    from ..runfile import run_file

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
            dry_run=dry_run,
        )
    finally:
        bar.close()  # before an Error: or interrupt line, which then starts a line of its own
    if verbose or dry_run:  # after the commit: the output exists (a dry run says what it would do)
        for note in report.notes:
            echo_err(f"mlstm: {note}")
        echo_err(report.log_line())
    if as_json:
        import json

        echo_err(json.dumps(report.to_dict()))
