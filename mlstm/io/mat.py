"""MAT v4, v6 and v7 files through scipy.io (read and write)."""

from __future__ import annotations

import os
import struct
from typing import Any

import numpy as np

from ..matlab_types import matlab_class, matlab_shape
from .base import MatrixFile, VariableInfo


def looks_like_mat4(head: bytes) -> bool:
    """A plausible MAT v4 matrix header: type MOPT, rows, cols, imagf, name length."""
    if len(head) < 20:
        return False
    for endian, machine in (("<", 0), (">", 1)):
        mopt, rows, cols, imagf, namelen = struct.unpack(endian + "5i", head[:20])
        m, o, p, t = mopt // 1000, (mopt // 100) % 10, (mopt // 10) % 10, mopt % 10
        if (
            0 <= mopt < 5000
            and m == machine
            and o == 0
            and p <= 5
            and t <= 2
            and rows >= 0
            and cols >= 0
            and imagf in (0, 1)
            and 1 <= namelen <= 4096
        ):
            return True
    return False


def _describe(value: Any) -> str | None:
    """Why a loaded value can't be used as data, or None if it is an ordinary array."""
    cls = type(value).__name__
    if cls == "MatlabFunction":
        return "a function handle"
    if cls == "MatlabOpaque":
        return "a MATLAB object (for example a string or a table); save it as a numeric array or char"
    if cls == "MatlabObject":
        return "a MATLAB class object"
    return None


# scipy's class names that differ from MATLAB's `whos`.
_WHOS_CLASS = {"function": "function_handle"}
_HIDDEN = ("__function_workspace__",)  # MATLAB's subsystem data (class definitions), not a variable
MCOS_MAGIC = 0xDD000000


def _opaque_info(value: Any) -> tuple[str, tuple[int, ...], str] | None:
    """(name, MATLAB size, class) of a MATLAB object stored as an opaque MCOS element (e.g. string)."""
    try:
        record = value[0] if getattr(value, "shape", ()) else value
        name, _, cls, data = (record[k] for k in range(4))
        name = name.decode("latin1") if isinstance(name, bytes) else str(name)
        cls = cls.decode("latin1") if isinstance(cls, bytes) else str(cls)
        words = np.asarray(data).ravel()
        size: tuple[int, ...] = (1, 1)
        if words.size >= 2 and int(words[0]) == MCOS_MAGIC and words.size >= 2 + int(words[1]):
            size = tuple(int(d) for d in words[2 : 2 + int(words[1])])
        return name, size, cls
    except Exception:
        return None


def list_mat5_variables(stream: Any) -> list[tuple[str, tuple[int, ...], str]]:
    """``scipy.io.whosmat`` for MAT v5/v7, one variable at a time, so that a MATLAB object that
    whosmat cannot size (a ``string``, stored as an opaque MCOS element) is listed with its class
    instead of making the whole file unreadable."""
    from scipy.io.matlab._mio5 import MatFile5Reader
    from scipy.io.matlab._mio5_params import mclass_info

    if isinstance(stream, (str, os.PathLike)):
        with open(stream, "rb") as fh:
            return list_mat5_variables(fh)
    reader = MatFile5Reader(stream, chars_as_strings=False)
    reader.mat_stream.seek(0)
    reader.initialize_read()
    reader.read_file_header()
    out = []
    while not reader.end_of_stream():
        header, next_position = reader.read_var_header()
        name = header.name.decode("latin1") if header.name is not None else None
        try:
            shape = tuple(reader._matrix_reader.shape_from_header(header))
            cls = "logical" if header.is_logical else mclass_info.get(header.mclass, "unknown")
        except Exception:
            opaque = _opaque_info(reader.read_var_array(header, process=True))
            if opaque is None:
                raise
            name, shape, cls = opaque
        out.append((name if name else "__function_workspace__", shape, cls))
        reader.mat_stream.seek(next_position)
    return out


MI_COMPRESSED = 15  # the MAT v5 data type of a zlib-compressed element (scipy's miCOMPRESSED)


def mat5_truncation(stream: Any) -> str | None:
    """Where a MAT v5/v7 file's top-level data elements run past its end, or None. whosmat reads
    only each variable's header (the start of a compressed element), so a file cut inside its
    data lists as whole: the tags say how many bytes each element has (8-byte tags; a small
    element is all tag)."""
    if isinstance(stream, (str, os.PathLike)):
        with open(stream, "rb") as fh:
            return mat5_truncation(fh)
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(126)
    endian = "<" if stream.read(2) == b"IM" else ">"
    position, element = 128, 0
    while position + 8 <= size:
        stream.seek(position)
        first, nbytes = struct.unpack(endian + "II", stream.read(8))
        element += 1
        end = position + 8 if first >> 16 else position + 8 + nbytes
        if end > size:
            return f"its data element {element} (at byte {position}) needs {end - size} more bytes than the file has"
        # a small element, or a compressed one (miCOMPRESSED, 15: not padded), ends where it ends;
        # any other is padded to 8 bytes
        position = end if first >> 16 or first == MI_COMPRESSED else position + 8 + (nbytes + 7) // 8 * 8
    return None


class MatFile(MatrixFile):
    """A MAT v4/v6/v7 file, loaded with ``scipy.io.loadmat`` one variable at a time."""

    def __init__(self, label: str, source: Any, kind: str):
        super().__init__(label)
        self.kind = {"mat4": "MAT v4", "mat5": "MAT v5/v7"}[kind]
        self._source = source
        self._cache: dict[str, Any] = {}
        try:
            import scipy.io

            try:
                whos = scipy.io.whosmat(self._rewind(), appendmat=False, chars_as_strings=False)
            except Exception:
                if kind != "mat5":
                    raise
                whos = list_mat5_variables(self._rewind())  # e.g. a MATLAB string object inside
            self._whos = [(n, tuple(shape), _WHOS_CLASS.get(c, c)) for n, shape, c in whos if n not in _HIDDEN]
            short = mat5_truncation(self._rewind()) if kind == "mat5" else None
        except Exception as exc:
            raise self.error(
                f"expected a readable {self.kind} file, found a damaged or truncated one ({type(exc).__name__}: {exc})"
            ) from None
        if short:
            raise self.error(f"expected a readable {self.kind} file, found a damaged or truncated one ({short})")

        self._classes = {name: cls for name, _, cls in self._whos}

    def _rewind(self) -> Any:
        if hasattr(self._source, "seek"):
            self._source.seek(0)
        return self._source

    def names(self) -> list[str]:
        return [name for name, _, _ in self._whos]

    def describe(self, name: str) -> VariableInfo:
        for found, shape, cls in self._whos:
            if found == name:
                return VariableInfo(name, tuple(shape), cls)
        raise self.error(f"no such variable (the file has {', '.join(self.names()) or 'no variables'})", name)

    def info(self) -> list[VariableInfo]:
        return [VariableInfo(name, tuple(shape), cls) for name, shape, cls in self._whos]

    def declared(self, name: str) -> None:
        """None: whosmat gives a complex double's class as 'double', so its listing cannot stand in
        for the data in the class checks. (Variables are read one at a time, and cached.)"""
        return None

    def read(self, name: str) -> Any:
        if name not in self._cache:
            self._cache[name] = self._load(name)
        return self._cache[name]

    def _load(self, name: str) -> Any:
        import scipy.io

        if name not in self.names():
            raise self.error(f"no such variable (the file has {', '.join(self.names()) or 'no variables'})", name)
        cls = self._classes.get(name)
        if cls == "string":
            raise self.error(
                f"holds a MATLAB string object, expected a numeric array or char vector; "
                f"save it as char in MATLAB ({name} = char({name}); save(..., '{name}'))",
                name,
            )
        try:
            loaded = scipy.io.loadmat(
                self._rewind(), variable_names=[name], appendmat=False, squeeze_me=False, chars_as_strings=True
            )
        except Exception as exc:
            raise self.error(
                f"expected a readable {self.kind} variable, "
                f"found damaged or truncated data ({type(exc).__name__}: {exc})",
                name,
            ) from None
        if name not in loaded:
            raise self.error("the variable could not be read (damaged file?)", name)
        value = loaded[name]
        problem = _describe(value)
        if problem:
            raise self.error(f"holds {problem}", name)
        if cls == "logical":
            # scipy gives MATLAB's logical as uint8; keep its class so the error names it.
            return value.astype(np.bool_)
        if cls in ("double", "single") and isinstance(value, np.ndarray) and value.dtype.kind in "iub":
            # MATLAB stores integer-valued doubles (zeros(3,1), 1:10) in small integer types; the
            # class stays double (single), as whosmat says. Complex values stay complex (an error).
            return value.astype(np.float64 if cls == "double" else np.float32)
        if isinstance(value, np.ndarray) and value.dtype.kind == "U":
            # chars_as_strings gives one string per row; a char row vector is one string.
            return "\n".join(str(row) for row in value.ravel())
        return value


def write_mat(path: str, variables: dict[str, Any], hdf5_order: str = "numpy") -> None:
    """MAT v7 (compressed v5 container), readable by MATLAB and Octave."""
    import scipy.io

    for name, value in variables.items():
        if not isinstance(value, str):
            cls = matlab_class(value)
            if cls not in ("double", "single"):
                raise ValueError(f"refusing to write {name} of class {cls}")  # pragma: no cover - internal
    shaped = {k: v if isinstance(v, str) else np.reshape(v, matlab_shape(np.shape(v))) for k, v in variables.items()}
    scipy.io.savemat(path, shaped, do_compression=True, format="5", oned_as="column")
