"""``mlstm convert``: weights between frameworks and MATLAB's layout (:func:`mlstm.convert.convert_file`)."""

from __future__ import annotations

import click

from .base import cli, debug_option, echo_err, format_option, hdf5_order_option, layer_options


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
@format_option(None, "Output format for --to matlab (default: from the extension).")
@click.option(
    "--dtype",
    type=click.Choice(["single", "double"], case_sensitive=False),
    default=None,
    help="Class of the weights --to onnx writes [default: single: ONNX Runtime's LSTM runs float32 only].",
)
@layer_options
@hdf5_order_option
@debug_option
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
    from ..convert import convert_file

    convert_file(
        source,
        output,
        from_kind=from_kind,
        to_kind=to_kind,
        output_format=output_format,
        dtype=dtype,
        node=node,
        layer=layer,
        hdf5_order=hdf5_order,
        notice=lambda text: echo_err(f"mlstm: notice: {text}"),
    )
