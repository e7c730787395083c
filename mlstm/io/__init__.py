"""Matrix files in and out: one module per container, chosen by the file's bytes.

    base.py     what the readers share (VariableInfo, MatrixFile, LazyArray, MemoryFile)
    mat.py      MAT v4, v6, v7 (scipy.io)
    hdf5.py     plain HDF5 (h5py), and the checks that keep every HDF5 read inside the named file
    mat73.py    MAT v7.3 (HDF5 with MATLAB's conventions, h5py): the reader and the writer's conventions
    h5write.py  the one HDF5 writer (plain HDF5, or MAT v7.3 through mat73's conventions)

``open_matrix_file`` sniffs the content (never the extension) and returns a
reader with ``names()``, ``info()``, ``read(name)``; ``write_variables`` writes
atomically (temporary file beside the target, fsync, rename). Imports run one way:
this façade imports the modules above, none of them imports it.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Callable
from typing import Any, BinaryIO

from ..errors import MlstmError
from .base import Declared, LazyArray, MatrixFile, MemoryFile, VariableInfo
from .output import AtomicOutput, atomic_replace, check_output_path, is_temporary

__all__ = [
    "AtomicOutput",
    "Declared",
    "LazyArray",
    "MatrixFile",
    "MemoryFile",
    "VariableInfo",
    "atomic_replace",
    "check_output_path",
    "is_temporary",
    "write_file",
    "needs_mat73",
    "open_hdf5_output",
    "open_matrix_file",
    "output_format_for",
    "sniff",
    "write_variables",
]

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
MAT73_TEXT = b"MATLAB 7.3 MAT-file"
OUTPUT_FORMATS = ("mat", "mat73", "hdf5")
HDF5_ORDERS = ("numpy", "matlab")
# MAT v5 stores a variable's byte count in 32 bits; larger variables need v7.3.
MAT5_VARIABLE_LIMIT = 2**31 - 1
CHAR_VALUE_LIMIT = 256  # characters of a char variable's text that `mlstm info --json` shows


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
    return path, path, read_head(path, 4096)


def read_head(path: str, size: int, expected: str = "a MAT or HDF5 file") -> bytes:
    """The first ``size`` bytes of ``path`` (to sniff its kind); errors name the file."""
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except IsADirectoryError:
        raise MlstmError(f"{path}: expected {expected}, found a directory") from None
    except OSError as exc:
        raise MlstmError(f"{path}: cannot read the file ({exc.strerror or exc})") from None


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
    return _open_hdf5(label, source, kind, hdf5_order)


def _open_hdf5(label: str, source: Any, kind: str, hdf5_order: str) -> MatrixFile:
    import h5py

    if kind == "hdf5" and hdf5_order not in HDF5_ORDERS:
        raise MlstmError(f"expected one of {', '.join(HDF5_ORDERS)}, found {hdf5_order!r}", "--hdf5-order")
    try:
        handle = h5py.File(source, "r")
    except Exception as exc:
        what = "MAT v7.3" if kind == "mat73" else "HDF5"
        raise MlstmError(
            f"{label}: expected a readable {what} file, found a damaged or truncated one ({type(exc).__name__}: {exc})"
        ) from None
    try:
        if kind == "mat73":
            from .mat73 import Mat73File

            return Mat73File(label, handle)
        from .hdf5 import Hdf5File

        return Hdf5File(label, handle, hdf5_order)
    except BaseException:
        handle.close()
        raise


def open_hdf5_output(path: str, fmt: str, hdf5_order: str = "numpy") -> Any:
    """An :class:`mlstm.io.h5write.Hdf5Output` for ``fmt`` 'hdf5' or 'mat73' (MATLAB's conventions)."""
    from .h5write import Hdf5Output

    return Hdf5Output(path, fmt, hdf5_order)


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
    from .h5write import write_hdf5, write_mat73

    return write_mat73 if fmt == "mat73" else write_hdf5


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
