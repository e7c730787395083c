"""Converting LSTM weights: ONNX, PyTorch or Keras to MATLAB's layout, and MATLAB's layout to ONNX.

What ``mlstm convert`` does, as a library call: :func:`convert_file`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import MlstmError
from .options import parse_options


def convert_file(
    source: str,
    output: str,
    *,
    from_kind: str | None = None,
    to_kind: str = "matlab",
    output_format: str | None = None,
    dtype: str | None = None,
    node: str | None = None,
    layer: str | None = None,
    hdf5_order: str = "numpy",
    notice: Callable[[str], None] | None = None,
) -> None:
    """Convert ``source`` to ``output``: to MATLAB variables (``to_kind='matlab'``, from an ONNX model,
    PyTorch state dict or Keras file; ``from_kind`` forces the reader), or to an ONNX model
    (``to_kind='onnx'``, from MATLAB-layout weights; ``dtype`` 'single' (default) or 'double')."""
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
        narrows = dtype is None and any(getattr(variables[k], "dtype", None) == "float64" for k in variables)
        if narrows and notice:
            notice(
                "writing the double weights as single (float32), the class ONNX Runtime's "
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
    """The sizes lstm itself demands (formats.check_weights), H from recurrentWeights' columns."""
    from .formats import check_class, check_weights

    W, R, b = (check_class(k, variables[k]) for k in ("weights", "recurrentWeights", "bias"))
    hidden = R.shape[1] if R.ndim == 2 and R.shape[1] > 0 else 0
    input_size = W.shape[1] if W.ndim == 2 else 0
    try:
        if hidden == 0:
            raise MlstmError(
                "expected size 4H-by-H with H >= 1, found " + "x".join(map(str, R.shape)), "recurrentWeights"
            )
        check_weights(W, R, b, hidden, input_size, "recurrentWeights", "weights")
    except MlstmError as err:
        raise MlstmError(f"{source}: variable {err.argument!r}: {err.detail}") from None
