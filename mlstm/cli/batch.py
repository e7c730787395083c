"""``mlstm batch``: many inputs, one set of weights (:func:`mlstm.batch.prepare_batch`)."""

from __future__ import annotations

import click

from ..inputs import parse_var_mappings, split_tokens
from .base import Shard, apply, cli, debug_option, echo_err, format_option, input_options, weights_options


@cli.command()
@click.argument("tokens", nargs=-1, metavar="INPUTS... [Name=Value]...")
@click.option("--out-dir", required=True, metavar="DIR", help="Where the outputs go, one per input, same stem.")
@format_option("mat", "Output format (.mat for mat and mat73, .h5 for hdf5).")
@click.option(
    "--shard", type=Shard(), metavar="K/N", help="Run the K-th of N disjoint shares of the sorted inputs (1-based)."
)
@click.option("--resume/--no-resume", default=True, show_default=True, help="Skip inputs whose output exists.")
@click.option("--overwrite", is_flag=True, help="Redo inputs whose output exists (same as --no-resume).")
@click.option("--summary", "summary_path", metavar="FILE.jsonl", help="Append a JSON line per input: status, shapes...")
@weights_options
@apply(input_options)
@click.option(
    "--dry-run", is_flag=True, help="Check every input from its metadata and say what would run; write nothing."
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no per-file lines (errors still print).")
@debug_option
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
    dry_run: bool,
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
    from ..batch import prepare_batch
    from ..progress import Progress

    items, pairs = split_tokens(tokens)
    run = prepare_batch(
        items,
        out_dir,
        weights=weights_path,
        node=node,
        layer=layer,
        output_format=output_format,
        shard=shard,
        var=parse_var_mappings(var_mappings),
        options=pairs,
        hdf5_order=hdf5_order,
        engine=engine,
        summary_path=summary_path,
        dry_run=dry_run,
    )
    counts = {"ok": 0, "skipped": 0, "failed": 0, "would run": 0}
    bar = Progress(total=len(run.jobs), label="files", quiet=quiet, delay=0.0)
    try:
        for done, record in enumerate(run.run(resume and not overwrite, summary_path, bar.set_state, dry_run), 1):
            counts[record["status"]] += 1
            if record["status"] == "failed":
                bar.write(f"Error: {record['error']}")  # above the bar, never glued onto it
            if dry_run or (not quiet and not bar.tty):
                bar.write(f"mlstm: {record['status']:<7} {record['input']} -> {record['output']}")
            bar(done)
    finally:
        bar.close()
    if not quiet:
        share = run.share
        echo_err(
            f"mlstm: {len(run.jobs)} input(s){f' (shard {share[0]}/{share[1]})' if share else ''}: "
            + (f"{counts['would run']} would run, " if dry_run else f"{counts['ok']} done, ")
            + f"{counts['skipped']} skipped (output exists), {counts['failed']} failed"
        )
    if counts["failed"]:
        raise click.exceptions.Exit(1)
