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
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from ..errors import MlstmError

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAT73_TEXT = b"MATLAB 7.3 MAT-file"
OUTPUT_FORMATS = ("mat", "mat73", "hdf5")
HDF5_ORDERS = ("numpy", "matlab")
# MAT v5 stores a variable's byte count in 32 bits; larger variables need v7.3.
MAT5_VARIABLE_LIMIT = 2**31 - 1


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
    weights another framework's file held, already in MATLAB's layout."""

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
        stream = stdin if stdin is not None else sys.stdin.buffer
        data = stream.read()
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


class AtomicOutput:
    """A temporary file beside ``path`` that becomes ``path`` only on :meth:`commit`.

    ``path`` '-' sends the finished file's bytes to stdout instead. Whatever happens before
    the commit, an existing file at ``path`` is left as it was and the temporary is removed.
    """

    def __init__(self, path: str, stdout: BinaryIO | None = None):
        self.path = path
        self._stdout = stdout
        directory = os.path.dirname(os.path.abspath(path)) if path != "-" else None
        fd, self.tmp = tempfile.mkstemp(prefix=".mlstm-", suffix=".tmp", dir=directory)
        os.close(fd)

    def commit(self) -> None:
        if self.path == "-":
            out = self._stdout if self._stdout is not None else sys.stdout.buffer
            with open(self.tmp, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    out.write(chunk)
            out.flush()
        else:
            atomic_replace(self.tmp, self.path)
        self.discard()

    def discard(self) -> None:
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)

    def __enter__(self) -> AtomicOutput:
        return self

    def __exit__(self, exc_type: Any, *rest: object) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.discard()


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
    write = _writer(fmt)
    with AtomicOutput(path, stdout) as target:
        write(target.tmp, variables, hdf5_order)


def atomic_replace(tmp: str, path: str) -> None:
    """fsync ``tmp``, give it the permissions a new file would get, and rename it over ``path``."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    try:
        dir_fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
