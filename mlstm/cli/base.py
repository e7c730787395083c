"""The command group and the options several commands share (each defined once here)."""

from __future__ import annotations

from typing import Any

import click

from .. import __version__
from ..errors import MlstmError
from ..inputs import parse_var

# click >= 8.2 raises this for a bare `mlstm`; older click printed the help itself.
NO_COMMAND = getattr(click.exceptions, "NoArgsIsHelpError", ())


class VarMapping(click.ParamType):
    """``--var ROLE=NAME``: a bad value is a usage error (exit 2) naming the option."""

    name = "ROLE=NAME"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        try:
            parse_var(str(value))
        except MlstmError as err:
            self.fail(err.detail, param, ctx)
        return str(value)


class Shard(click.ParamType):
    """``--shard K/N`` (1-based)."""

    name = "K/N"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from ..batch import parse_shard

        try:
            parse_shard(str(value))
        except MlstmError as err:
            self.fail(err.detail, param, ctx)
        return str(value)


def debug_option(f: Any) -> Any:
    return click.option("--debug", is_flag=True, hidden=False, help="Show a traceback on errors.")(f)


class Group(click.Group):
    """click's group, except that a reader going away (EPIPE on printed text, as in
    ``mlstm info f.mat | head -1``) reaches ``main`` as such: click itself would exit 1, the
    status that means "mismatch" here."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            from ..errors import ReaderGone

            raise ReaderGone() from None


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlstm")
@debug_option
def cli(debug: bool) -> None:
    """MATLAB's Deep Learning Toolbox lstm, outside MATLAB.

    \b
    mlstm run in.mat -o out.mat DataFormat=CBT
    mlstm info in.mat
    mlstm check out.mat matlab_out.mat
    """


def progress_options(f: Any) -> Any:
    f = click.option("-q", "--quiet", is_flag=True, help="No progress display and no notices.")(f)
    f = click.option(
        "--progress",
        is_flag=True,
        help="Show progress from the start (by default: on a terminal, once a run takes over 2 s).",
    )(f)
    return f


def layer_options(f: Any) -> Any:
    """--node and --layer: which layer of a foreign weights file."""
    f = click.option("--layer", metavar="K|NAME", help="PyTorch layer index K (*_lK) or Keras layer name.")(f)
    f = click.option("--node", metavar="NAME", help="ONNX LSTM node name, or PyTorch module prefix.")(f)
    return f


def weights_options(f: Any) -> Any:
    f = click.option(
        "--weights",
        "weights_path",
        metavar="FILE",
        help="weights, recurrentWeights, bias (and H0, C0, options) from this file, read once: MAT/HDF5 "
        "variables, an ONNX model, a PyTorch state dict (safetensors, .npz) or Keras weights (.keras, .h5).",
    )(f)
    return layer_options(f)


def format_option(default: str | None, help: str) -> Any:
    """--format mat|mat73|hdf5 (the output container)."""
    return click.option(
        "--format",
        "output_format",
        type=click.Choice(["mat", "mat73", "hdf5"], case_sensitive=False),
        default=default,
        show_default=default is not None,
        help=help,
    )


hdf5_order_option = click.option(
    "--hdf5-order",
    type=click.Choice(["numpy", "matlab"], case_sensitive=False),
    default="numpy",
    show_default=True,
    help="Plain HDF5 dataset order: numpy (shape is the MATLAB size) or matlab (reversed, as h5write writes).",
)

input_options = [
    click.option(
        "--var",
        "var_mappings",
        multiple=True,
        type=VarMapping(),
        metavar="ROLE=NAME",
        help="Read a MATLAB argument (X, H0, C0, weights, recurrentWeights, bias) from another variable "
        "or HDF5 path, e.g. --var X=signals or --var X=/data/x.",
    ),
    hdf5_order_option,
    click.option(
        "--engine",
        type=click.Choice(["numpy", "cupy", "auto"], case_sensitive=False),
        default="numpy",
        show_default=True,
        help="Compute engine; auto takes cupy when a GPU is usable.",
    ),
]


def apply(options: list[Any]) -> Any:
    def decorate(f: Any) -> Any:
        for option in reversed(options):
            f = option(f)
        return f

    return decorate


def tolerance_options(f: Any) -> Any:
    f = click.option("--atol", type=float, default=None, help="Absolute tolerance (default by class).")(f)
    f = click.option("--rtol", type=float, default=None, help="Relative tolerance (default by class).")(f)
    return f


def plot_options(default_size: str) -> Any:
    def decorate(f: Any) -> Any:
        f = click.option("--size", metavar="WxH", help=f"Image size in pixels (default {default_size}).")(f)
        f = click.option("--obs", type=int, metavar="K", help="The observation to draw, 1-based.")(f)
        return f

    return decorate


diagnose_option = click.option(
    "--diagnose",
    is_flag=True,
    help="On a mismatch, rerun lstm under known porting mistakes (gate order, transposed weights, bias, "
    "DataFormat, precision, activations, states) and say which one reproduces the expected outputs.",
)


def echo_err(message: str) -> None:
    click.echo(message, err=True)
