"""Everything MATLAB-specific about the arguments, resolved once, in one place.

``resolve`` turns the six MATLAB arguments plus a DataFormat into a
:class:`Problem`: canonical, time-major, contiguous arrays that any engine can
run, and the recipe (:meth:`Problem.restore`) that puts the engine's outputs
back into MATLAB's sizes, order and classes. Engines never see a format
string; nothing here loops over time.

Shapes here are MATLAB sizes: an array's ``.shape`` is read as its MATLAB
size, so a NumPy ``(C, B, T)`` array with ``DataFormat="CBT"`` is MATLAB's
C-by-B-by-T array. Works on NumPy arrays and, for the GPU engine, on CuPy
arrays (through the array's own module).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import MlstmError, MlstmTypeError
from .matlab_types import drop_trailing_singletons as _drop_trailing_singletons
from .matlab_types import is_sparse as _is_sparse
from .matlab_types import matlab_class, matlab_shape, matlab_size
from .options import ARGUMENT_NAMES

FORMAT_LABELS = "SCBTU"
_SINGLE, _DOUBLE = np.dtype(np.float32), np.dtype(np.float64)


def array_module(a: Any) -> Any:
    """NumPy, or CuPy for a CuPy array (imported only when such an array is seen)."""
    if type(a).__module__.startswith("cupy"):
        import cupy

        return cupy
    return np


def check_class(name: str, a: Any) -> Any:
    """Return ``a`` as an array if it is single or double, else raise MlstmTypeError."""
    if type(a) is np.ndarray and (a.dtype == _SINGLE or a.dtype == _DOUBLE):
        return a  # the common case, without the checks below (dtype.name alone costs ~2 µs)
    if _is_sparse(a):
        raise MlstmTypeError("expected a full single or double array, found a sparse array", name)
    if isinstance(a, (str, bytes)):
        raise MlstmTypeError(f"expected a single or double array, found char {a!r}", name)
    if not hasattr(a, "dtype"):
        try:
            a = np.asarray(a)
        except Exception as exc:  # ragged lists and the like
            raise MlstmTypeError(f"expected a single or double array, found {type(a).__name__}", name) from exc
    if a.dtype.name not in ("float32", "float64"):
        raise MlstmTypeError(f"expected a single or double array, found {matlab_class(a)}", name)
    return a


@dataclass(frozen=True)
class DataFormat:
    """A parsed DataFormat, fitted to an array's size.

    ``labels`` has one letter per dimension (the format's own length, at least
    the array's number of dimensions); ``sizes`` the matching sizes.
    """

    labels: str
    sizes: tuple[int, ...]

    def axis(self, label: str) -> int | None:
        return self.labels.index(label) if label in self.labels else None

    def size(self, label: str) -> int:
        axis = self.axis(label)
        return 1 if axis is None else self.sizes[axis]


def check_format_labels(data_format: str) -> str:
    """The labels of ``data_format`` (upper case), checked on their own: a string of S, C, B, T
    and U with C, B and T at most once and a T. Checks that need X's size are
    :func:`parse_data_format`'s."""
    if not isinstance(data_format, str):
        raise MlstmError(
            f"expected a character vector or string scalar, found {type(data_format).__name__}", "DataFormat"
        )
    stripped = data_format.strip()
    if not stripped:
        raise MlstmError("expected a format such as 'CBT', found an empty format", "DataFormat")
    # ASCII letters only: Unicode case folding would turn 'ſCBT' (long s) into 'SCBT'.
    bad = sorted({ch for ch in stripped if not ch.isascii() or ch.upper() not in FORMAT_LABELS})
    labels = stripped.upper()
    if bad:
        raise MlstmError(
            f"expected only the labels S, C, B, T, U in {data_format!r}, found {', '.join(repr(b) for b in bad)}",
            "DataFormat",
        )
    for once in "CBT":
        if labels.count(once) > 1:
            raise MlstmError(f"label {once!r} may appear at most once, found {data_format!r}", "DataFormat")
    if "T" not in labels:
        raise MlstmError(f"expected a time dimension 'T' in the format, found {data_format!r}", "DataFormat")
    return labels


def check_options(pairs: Any) -> Any:
    """:func:`mlstm.options.parse_options` of ``(name, value)`` pairs, a DataFormat's labels
    checked too: for commands that run many files, so that a bad option given once is one
    error up front and not every file's failure."""
    from .options import parse_options

    options = parse_options(pairs)
    if options.data_format is not None:
        check_format_labels(options.data_format)
    return options


def parse_data_format(data_format: str, shape: tuple[int, ...], argument: str = "X") -> DataFormat:
    """Check ``data_format`` against an array of MATLAB size ``shape``."""
    labels = check_format_labels(data_format)
    dims = _drop_trailing_singletons(tuple(int(d) for d in shape))
    if len(labels) < len(dims):
        raise MlstmError(
            f"format {data_format!r} labels {len(labels)} dimension(s) but {argument} has {len(dims)} "
            f"(size {matlab_size(shape)})",
            "DataFormat",
        )
    sizes = dims + (1,) * (len(labels) - len(dims))
    for axis, (label, size) in enumerate(zip(labels, sizes)):
        if label == "U" and size != 1:
            raise MlstmError(
                f"'U' dimensions must be singleton, found size {size} in dimension {axis + 1} of {argument} "
                f"(size {matlab_size(shape)}, format {data_format!r})",
                "DataFormat",
            )
    return DataFormat(labels, sizes)


def output_format(fmt: DataFormat) -> str:
    """The format of Y: the input's labels minus S, with C first if the input had none."""
    labels = "".join(label for label in fmt.labels if label != "S")
    return labels if "C" in labels else "C" + labels


def canonical_y(Y: Any, y_format: str) -> Any:
    """Y of MATLAB size in the layout ``y_format`` (labels C, B, T, U, as ``YFormat``) -> (T, B, H).

    The inverse of :meth:`Problem.restore_y`, for reading outputs back (``mlstm check --plot``,
    ``--diagnose``). A view where the order allows.
    """
    fmt = parse_data_format(y_format, tuple(np.shape(Y)), "Y")
    if "S" in fmt.labels:
        raise MlstmError(f"expected the format of Y (labels C, B, T, U), found {y_format!r} with S", "DataFormat")
    arr = np.asarray(Y).reshape(fmt.sizes)
    labels = fmt.labels
    for missing in "CB":
        if missing not in labels:
            arr = arr.reshape(arr.shape + (1,))
            labels += missing
    order = [labels.index("T"), labels.index("B"), labels.index("C")]
    order += [axis for axis, label in enumerate(labels) if label == "U"]
    arr = arr.transpose(order)
    return arr.reshape(arr.shape[:3])


def _state_columns(name: str, a: Any) -> tuple[int, int | None]:
    """(H, N) of an initial state: N is None for one state used for every observation."""
    dims = _drop_trailing_singletons(tuple(a.shape))
    if len(dims) == 0:
        return 1, None
    if len(dims) == 1:
        return dims[0], None
    if len(dims) == 2:
        return dims[0], dims[1]
    raise MlstmError(f"expected an H-by-1 or H-by-B matrix, found size {matlab_size(a.shape)}", name)


@dataclass
class Problem:
    """Canonical arrays for an engine, and how to give its results back.

    Shapes (compute class ``dtype``, C-contiguous):
      x (T, B, InputSize); hidden_state, cell_state (B, H);
      weights (4H, InputSize); recurrent_weights (4H, H); bias (4H,).
    Gate blocks are in MATLAB's order: input, forget, cell candidate, output.
    """

    x: Any
    hidden_state: Any
    cell_state: Any
    weights: Any
    recurrent_weights: Any
    bias: Any
    gate_activation: str
    state_activation: str
    dtype: np.dtype
    y_format: str
    y_class: np.dtype
    hidden_class: np.dtype
    cell_class: np.dtype
    _y_sizes: tuple[int, ...]

    @property
    def hidden_size(self) -> int:
        return self.recurrent_weights.shape[1]

    @property
    def batch_size(self) -> int:
        return self.x.shape[1]

    @property
    def num_steps(self) -> int:
        return self.x.shape[0]

    @property
    def input_size(self) -> int:
        return self.x.shape[2]

    @property
    def y_sizes(self) -> tuple[int, ...]:
        """Y's size with one entry per label of ``y_format`` (no singleton dropped)."""
        return self._y_sizes

    def y_block(self, y: Any) -> Any:
        """Canonical (t, B, H) -> a block of Y in the input's dimension order, one axis per label of
        ``y_format``, ``t`` steps long on the T axis (a view where the order allows, compute class)."""
        steps, batch, hidden = y.shape
        present = [label for label in self.y_format if label in "CBT"]
        canonical = {"T": 0, "B": 1, "C": 2}
        if "B" not in present:
            y = y.reshape(steps, hidden)
            canonical = {"T": 0, "C": 1}
        y = y.transpose([canonical[label] for label in present])
        return y.reshape([steps if label == "T" else size for label, size in zip(self.y_format, self._y_sizes)])

    def restore_y(self, y: Any) -> Any:
        """Canonical (T, B, H) -> Y in the input's dimension order and class, MATLAB's size."""
        # MATLAB drops trailing singleton dimensions (a C-by-B-by-1 Y is C-by-B).
        block = self.y_block(y)
        return block.reshape(matlab_shape(block.shape)).astype(self.y_class, copy=False)

    def restore_state(self, state: Any, dtype: np.dtype) -> Any:
        """Canonical (B, H) -> MATLAB's H-by-B."""
        return state.T.astype(dtype, copy=False)

    def restore(self, y: Any, hidden_state: Any, cell_state: Any) -> tuple[Any, Any, Any]:
        return (
            self.restore_y(y),
            self.restore_state(hidden_state, self.hidden_class),
            self.restore_state(cell_state, self.cell_class),
        )


def compute_class(*arrays: Any) -> np.dtype:
    """MATLAB's mixed-class rule: single if any input is single, else double."""
    return np.dtype(np.float32) if any(a.dtype == np.float32 for a in arrays) else np.dtype(np.float64)


def canonical_x(X: Any, fmt: DataFormat, dtype: np.dtype) -> Any:
    """X as a C-contiguous (T, B, InputSize) array of class ``dtype``, in at most one copy.

    S and C are merged column-major: element (s1, s2, ..., c) is feature
    s1 + S1*(s2 + S2*(... + c)), i.e. C-order axes (c, ..., s2, s1).
    """
    xp = array_module(X)
    arr = X.reshape(fmt.sizes)
    labels = fmt.labels
    for missing in "CB":
        if missing not in labels:
            arr = arr.reshape(arr.shape + (1,))
            labels += missing
    spatial = [axis for axis, label in enumerate(labels) if label == "S"]
    unspecified = [axis for axis, label in enumerate(labels) if label == "U"]  # all singleton
    order = [labels.index("T"), labels.index("B")] + unspecified + [labels.index("C")] + spatial[::-1]
    arr = arr.transpose(order)
    steps, batch = arr.shape[0], arr.shape[1]
    input_size = math.prod(arr.shape[2:])
    if arr.dtype == dtype and arr.flags.c_contiguous:
        return arr.reshape(steps, batch, input_size)
    out = xp.empty((steps, batch, input_size), dtype=dtype)
    xp.copyto(out.reshape(arr.shape), arr, casting="same_kind")
    return out


@dataclass(frozen=True)
class Sizes:
    """What :func:`check_arguments` derives: the arguments as arrays, X's format and the sizes."""

    args: tuple[Any, ...]  # X, H0, C0, weights, recurrentWeights, bias
    fmt: DataFormat
    batch: int
    input_size: int
    hidden: int


def check_weights(
    weights: Any,
    recurrentWeights: Any,
    bias: Any,
    hidden: int,
    input_size: int,
    hidden_from: str = "H0",
    input_from: str = "X",
) -> None:
    """weights 4H-by-InputSize, recurrentWeights 4H-by-H, bias 4H: the sizes lstm demands, given H
    (from ``hidden_from``) and InputSize (from ``input_from``)."""
    gates = 4 * hidden
    expected = {
        "weights": (
            (gates, input_size),
            f"4H-by-InputSize = {gates}x{input_size} "
            f"(H = {hidden} from {hidden_from}, InputSize = {input_size} from {input_from})",
        ),
        "recurrentWeights": ((gates, hidden), f"4H-by-H = {gates}x{hidden} (H = {hidden} from {hidden_from})"),
    }
    for name, a in (("weights", weights), ("recurrentWeights", recurrentWeights)):
        want, text = expected[name]
        if matlab_shape(a.shape) != want:
            raise MlstmError(f"expected size {text}, found {matlab_size(a.shape)}", name)
    bias_dims = _drop_trailing_singletons(tuple(bias.shape))
    if bias_dims not in ((gates,), (1, gates)):
        raise MlstmError(
            f"expected a vector of length 4H = {gates} ({gates}x1 or 1x{gates}, H = {hidden} from {hidden_from}), "
            f"found size {matlab_size(bias.shape)}",
            "bias",
        )


def check_arguments(
    X: Any, H0: Any, C0: Any, weights: Any, recurrentWeights: Any, bias: Any, data_format: str | None
) -> Sizes:
    """Check the six arguments' classes and sizes against one another and the DataFormat.

    Only ``.shape`` and ``.dtype`` are looked at, so a stand-in that has just those (a variable's
    size and class from a file's metadata, :class:`mlstm.io.Declared`) is checked before its data
    is read, with the very errors the data itself would get.
    """
    args = tuple(check_class(name, a) for name, a in zip(ARGUMENT_NAMES, (X, H0, C0, weights, recurrentWeights, bias)))
    X, H0, C0, weights, recurrentWeights, bias = args
    if data_format is None:
        raise MlstmError(
            "X is not a formatted dlarray, so the DataFormat option is required (for example DataFormat=CBT)",
            "DataFormat",
        )
    fmt = parse_data_format(data_format, tuple(X.shape))
    batch = fmt.size("B")
    input_size = fmt.size("C") * math.prod(s for s, lab in zip(fmt.sizes, fmt.labels) if lab == "S")

    hidden, h_cols = _state_columns("H0", H0)
    if hidden == 0:
        raise MlstmError(
            f"expected at least one hidden unit (H-by-1 or H-by-B with H >= 1), found size {matlab_size(H0.shape)}",
            "H0",
        )
    c_hidden, c_cols = _state_columns("C0", C0)
    if c_hidden != hidden:
        raise MlstmError(
            f"expected {hidden} rows (the number of hidden units, from the first dimension of H0), "
            f"found size {matlab_size(C0.shape)}",
            "C0",
        )
    for name, a, cols in (("H0", H0, h_cols), ("C0", C0, c_cols)):
        if cols is not None and cols != batch:
            raise MlstmError(
                f"expected size {hidden}x1 or {hidden}x{batch} (H-by-1 or H-by-B, B = {batch} from X), "
                f"found {matlab_size(a.shape)}",
                name,
            )

    check_weights(weights, recurrentWeights, bias, hidden, input_size)
    return Sizes(args, fmt, batch, input_size, hidden)


def resolve(
    X: Any,
    H0: Any,
    C0: Any,
    weights: Any,
    recurrentWeights: Any,
    bias: Any,
    data_format: str | None,
    gate_activation: str = "sigmoid",
    state_activation: str = "tanh",
) -> Problem:
    """Check the six MATLAB arguments and build the canonical :class:`Problem`."""
    sizes = check_arguments(X, H0, C0, weights, recurrentWeights, bias, data_format)
    args = sizes.args
    X, H0, C0, weights, recurrentWeights, bias = args
    fmt, batch, input_size, hidden = sizes.fmt, sizes.batch, sizes.input_size, sizes.hidden
    gates = 4 * hidden

    dtype = compute_class(*args)
    xp = array_module(X)

    def state(a: Any) -> Any:
        out = xp.empty((batch, hidden), dtype=dtype)
        out[...] = a.reshape(hidden, -1).T  # (1 or B, H), broadcast and cast as astype does
        return out

    y_labels = output_format(fmt)
    size_of = {"C": hidden, "B": batch, "T": fmt.size("T"), "U": 1}
    return Problem(
        x=canonical_x(X, fmt, dtype),
        hidden_state=state(H0),
        cell_state=state(C0),
        weights=xp.ascontiguousarray(weights.reshape(gates, input_size), dtype=dtype),
        recurrent_weights=xp.ascontiguousarray(recurrentWeights.reshape(gates, hidden), dtype=dtype),
        bias=xp.ascontiguousarray(bias.reshape(gates), dtype=dtype),
        gate_activation=gate_activation,
        state_activation=state_activation,
        dtype=dtype,
        y_format=y_labels,
        y_class=X.dtype,
        hidden_class=H0.dtype,
        cell_class=C0.dtype,
        _y_sizes=tuple(size_of[label] for label in y_labels),
    )
