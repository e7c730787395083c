"""Matrix files in and out: one module per container, chosen by the file's bytes.

    mat.py    MAT v4, v6, v7 (scipy.io)
    mat73.py  MAT v7.3 (HDF5 with MATLAB's conventions, h5py)
    hdf5.py   plain HDF5 (h5py)

``open_matrix_file`` sniffs the content (never the extension) and returns a
reader with ``names()``, ``info()``, ``read(name)``; ``write_variables`` writes
atomically (temporary file beside the target, fsync, rename).
"""

from __future__ import annotations

import io
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import MlstmError
from .output import AtomicOutput, atomic_replace, check_output_path, is_temporary  # noqa: F401 - re-exported

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAT73_TEXT = b"MATLAB 7.3 MAT-file"
OUTPUT_FORMATS = ("mat", "mat73", "hdf5")
HDF5_ORDERS = ("numpy", "matlab")
# MAT v5 stores a variable's byte count in 32 bits; larger variables need v7.3.
MAT5_VARIABLE_LIMIT = 2**31 - 1
CHAR_VALUE_LIMIT = 256  # characters of a char variable's text that `mlstm info --json` shows


@dataclass(frozen=True)
class VariableInfo:
    name: str
    size: tuple[int, ...]  # MATLAB size
    matlab_class: str


class LazyArray:
    """A single or double HDF5 dataset read slice by slice, in MATLAB's dimension order.

    ``reversed_dims``: the dataset stores MATLAB's column-major array, so h5py's shape is the
    MATLAB size reversed (MAT v7.3, and plain HDF5 with ``--hdf5-order matlab``).
    """

    def __init__(self, dataset: Any, reversed_dims: bool):
        self.dataset = dataset
        self.reversed_dims = reversed_dims
        shape = tuple(int(d) for d in dataset.shape)
        self.size = tuple(reversed(shape)) if reversed_dims else shape
        self.dtype = dataset.dtype

    def read(self, axis: int, start: int, stop: int) -> Any:
        """Elements start:stop along MATLAB dimension ``axis`` (0-based), all of the others."""
        ndim = len(self.size)
        index = [slice(None)] * ndim
        if axis < ndim:
            index[ndim - 1 - axis if self.reversed_dims else axis] = slice(start, stop)
        block = self.dataset[tuple(index)]
        return block.T if self.reversed_dims else block


class MatrixFile(ABC):
    """Common interface of the readers. ``label`` names the file in messages."""

    kind = "?"

    def __init__(self, label: str):
        self.label = label

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def info(self) -> list[VariableInfo]: ...

    @abstractmethod
    def read(self, name: str) -> Any:
        """The variable as a NumPy array in MATLAB size, or a ``str`` for char data."""

    def has(self, name: str) -> bool:
        return name in self.names()

    def describe(self, char_limit: int = CHAR_VALUE_LIMIT) -> dict[str, Any]:
        """``mlstm info --json``: the container and, per variable, MATLAB size, class and (for
        char variables, such as a stored DataFormat) the text, cut at ``char_limit`` characters."""
        variables: dict[str, Any] = {}
        for row in self.info():
            entry: dict[str, Any] = {"size": [int(d) for d in row.size], "class": row.matlab_class}
            if row.matlab_class == "char":
                try:
                    text = self.read(row.name)
                except MlstmError as err:
                    entry["error"] = str(err)
                else:
                    if isinstance(text, str):
                        entry["value"] = text[:char_limit]
                        if len(text) > char_limit:
                            entry["value_truncated"] = True
            variables[row.name] = entry
        return {"file": self.label, "container": self.kind, "variables": variables}

    def lazy(self, name: str) -> LazyArray | None:
        """A numeric variable that can be read in slices (HDF5-based files), or None."""
        return None

    def close(self) -> None:  # noqa: B027 - readers that hold no open handle need no close
        """Release the file (readers holding an h5py handle close it)."""

    def __enter__(self) -> MatrixFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def error(self, detail: str, name: str | None = None) -> MlstmError:
        where = f"{self.label}: variable {name!r}" if name else self.label
        return MlstmError(f"{where}: {detail}")


class MemoryFile(MatrixFile):
    """Variables held in memory under a file's name: a shared --weights file read once, or
    the MATLAB-layout result of reading a foreign (ONNX, PyTorch, Keras) weights file."""

    def __init__(self, label: str, kind: str, values: dict[str, Any]):
        super().__init__(label)
        self.kind = kind
        self._values = dict(values)

    @classmethod
    def from_file(cls, source: MatrixFile, names: list[str] | None = None) -> MemoryFile:
        wanted = source.names() if names is None else [n for n in names if source.has(n)]
        return cls(source.label, source.kind, {name: source.read(name) for name in wanted})

    def names(self) -> list[str]:
        return list(self._values)

    def has(self, name: str) -> bool:
        return name in self._values

    def info(self) -> list[VariableInfo]:
        from ..formats import matlab_class

        out = []
        for name, value in self._values.items():
            if isinstance(value, str):
                out.append(VariableInfo(name, (1, len(value)), "char"))
            else:
                out.append(VariableInfo(name, tuple(getattr(value, "shape", ())), matlab_class(value)))
        return out

    def read(self, name: str) -> Any:
        if name not in self._values:
            raise self.error(f"no such variable (the file has {', '.join(self._values) or 'no variables'})", name)
        return self._values[name]


def open_weights_file(
    path: str,
    hdf5_order: str = "numpy",
    node: str | None = None,
    layer: str | None = None,
    kind: str | None = None,
    names: list[str] | None = None,
) -> MemoryFile:
    """A weights file read once into memory: MAT/HDF5 variables (``names`` of them), or an ONNX
    model, PyTorch state dict or Keras weights file converted to MATLAB's layout."""
    from ..foreign import read_foreign

    foreign = read_foreign(path, kind, node, layer, hdf5_order)
    if foreign is not None:
        return MemoryFile(path, "converted weights", foreign)
    with open_matrix_file(path, hdf5_order) as source:
        return MemoryFile.from_file(source, names)


def _hdf5_offset(head: bytes) -> int | None:
    """Where the HDF5 superblock starts (0, 512, 1024, ...), or None if not HDF5."""
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= len(head):
        if head[offset : offset + len(HDF5_SIGNATURE)] == HDF5_SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def is_matlab_header(head: bytes) -> bool:
    """MATLAB's 128-byte MAT header: descriptive text, then version and endian indicator ('IM'/'MI').

    Not the "7.3" text: MATLAB 7.4 (R2007a) writes HDF5-based MAT files whose header says
    "MATLAB 7.0 MAT-file ... HDF5 schema 0.05"; they follow the v7.3 conventions all the same.
    """
    return (
        len(head) >= 128
        and head.startswith(b"MATLAB")
        and b"MAT-file" in head[:116]
        and head[126:128] in (b"IM", b"MI")
    )


def sniff(head: bytes) -> str:
    """'mat4', 'mat5', 'mat73', 'hdf5' or 'unknown' from a file's first bytes (>= 4096 if it has them)."""
    offset = _hdf5_offset(head)
    if offset is not None:
        return "mat73" if offset == 512 and is_matlab_header(head) else "hdf5"
    if len(head) >= 128 and head[126:128] in (b"IM", b"MI") and not head.startswith(b"\0\0\0\0"):
        return "mat5"
    from .mat import looks_like_mat4

    return "mat4" if looks_like_mat4(head) else "unknown"


def _read_source(path: str, stdin: BinaryIO | None) -> tuple[str, Any, bytes]:
    """(label, path-or-BytesIO, first bytes) for a path or '-' (stdin)."""
    if path == "-":
        stream = stdin if stdin is not None else getattr(sys.stdin, "buffer", None)
        if stream is None:
            raise MlstmError("<stdin>: cannot read the input: standard input is closed")
        try:
            data = stream.read()
        except OSError as exc:
            raise MlstmError(f"<stdin>: cannot read the input ({exc.strerror or exc})") from None
        return "<stdin>", io.BytesIO(data), data[:4096]
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except IsADirectoryError:
        raise MlstmError(f"{path}: expected a MAT or HDF5 file, found a directory") from None
    except OSError as exc:
        raise MlstmError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    return path, path, head


def open_matrix_file(path: str, hdf5_order: str = "numpy", stdin: BinaryIO | None = None) -> MatrixFile:
    """Open ``path`` ('-' for stdin) with the reader its content calls for."""
    label, source, head = _read_source(path, stdin)
    kind = sniff(head)
    if kind == "unknown":
        what = "an empty file" if not head else "no MAT (v4, v6, v7, v7.3) or HDF5 signature"
        raise MlstmError(f"{label}: expected a MAT or HDF5 file, found {what}")
    if kind in ("mat4", "mat5"):
        from .mat import MatFile

        return MatFile(label, source, kind)
    from .hdf5 import open_hdf5

    return open_hdf5(label, source, kind, hdf5_order)


def output_format_for(path: str, requested: str | None) -> str:
    """The format to write: ``--format`` if given, else from the extension (.mat, .h5, .hdf5)."""
    if requested:
        key = requested.lower()
        if key not in OUTPUT_FORMATS:
            raise MlstmError(f"expected one of {', '.join(OUTPUT_FORMATS)}, found {requested!r}", "--format")
        return key
    if path == "-":
        return "mat"
    ext = os.path.splitext(path)[1].lower()
    if ext == ".mat":
        return "mat"
    if ext in (".h5", ".hdf5", ".he5"):
        return "hdf5"
    raise MlstmError(
        f"cannot tell the output format from the extension of {path!r}; expected .mat, .h5 or .hdf5, "
        "or give --format mat|mat73|hdf5",
        "--output",
    )


def needs_mat73(variables: dict[str, Any]) -> bool:
    """True if a variable is too large for MAT v7 (2 GiB per variable)."""
    return any(getattr(v, "nbytes", 0) > MAT5_VARIABLE_LIMIT for v in variables.values())


def _writer(fmt: str) -> Callable[[str, dict[str, Any], str], None]:
    if fmt == "mat":
        from .mat import write_mat

        return write_mat
    if fmt == "mat73":
        from .mat73 import write_mat73

        return write_mat73
    from .hdf5 import write_hdf5

    return write_hdf5


def write_variables(
    path: str,
    variables: dict[str, Any],
    fmt: str,
    hdf5_order: str = "numpy",
    stdout: BinaryIO | None = None,
) -> None:
    """Write ``variables`` (name -> array in MATLAB size, or str for char) to ``path`` atomically.

    ``path`` '-' writes the bytes to stdout once the whole file is complete.
    """
    with AtomicOutput(path, stdout) as target:
        write_file(target.tmp, variables, fmt, hdf5_order)


def write_file(path: str, variables: dict[str, Any], fmt: str, hdf5_order: str = "numpy") -> None:
    """Write ``variables`` to ``path`` in ``fmt`` directly (callers hold an :class:`AtomicOutput`)."""
    _writer(fmt)(path, variables, hdf5_order)
