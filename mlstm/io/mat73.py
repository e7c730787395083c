"""MAT v7.3: HDF5 with MATLAB's conventions (read and write).

Conventions followed (as MATLAB writes them): a 512-byte user block holding
the MAT header; every variable a root dataset with a ``MATLAB_class``
attribute; dimensions stored reversed (HDF5 sees MATLAB's column-major data as
a row-major array of the reversed size); char as uint16 with
``MATLAB_int_decode = 2``; logical as uint8 with ``MATLAB_int_decode = 1``;
empty arrays as their size vector with ``MATLAB_empty = 1``; the HDF5
library's default (earliest) file format, since MATLAB's ``load`` rejects the
newer superblock.

The writing itself is :mod:`mlstm.io.h5write`'s; :class:`MatlabConventions` is the hook through
which it follows these conventions. Reads never leave the file (see :mod:`mlstm.io.hdf5`), and a
``MATLAB_empty`` variable's stored size vector is checked from its metadata before it is read.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from ..matlab_types import matlab_shape
from .base import CHAR_LIMIT, LazyArray, MatrixFile, VariableInfo
from .hdf5 import _h5py, get_local, link_entry, storage_options, storage_problem

_NUMERIC = {
    "double": np.float64,
    "single": np.float32,
    "int8": np.int8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "uint8": np.uint8,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
    "logical": np.bool_,
    "char": np.uint16,
}
_UNSUPPORTED = {
    "cell": "a cell array",
    "struct": "a struct",
    "function_handle": "a function handle",
    "string": "a MATLAB string object; save it as char instead",
}
_SKIP = ("#refs#", "#subsystem#")
# MATLAB_empty variables store their size vector: one entry per dimension.
_MAX_EMPTY_DIMS = 64


def _attr_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("ascii", "replace")
    if isinstance(value, np.ndarray):
        return _attr_text(value.ravel()[0]) if value.size else ""
    return str(value)


class Mat73File(MatrixFile):
    kind = "MAT v7.3"

    def __init__(self, label: str, handle: Any):
        super().__init__(label)
        self._file = handle

    def close(self) -> None:
        self._file.close()

    def names(self) -> list[str]:
        return [name for name in self._file.keys() if name not in _SKIP]

    def _class(self, obj: Any) -> str:
        if "MATLAB_sparse" in obj.attrs:
            return "sparse"
        if "MATLAB_object_decode" in obj.attrs:
            return _attr_text(obj.attrs.get("MATLAB_class", b"object")) or "object"
        cls = obj.attrs.get("MATLAB_class")
        if cls is None:
            return "struct" if isinstance(obj, _h5py().Group) else "unknown"
        return _attr_text(cls)

    def _is_empty(self, obj: Any) -> bool:
        return bool(np.asarray(obj.attrs.get("MATLAB_empty", 0)).ravel()[0]) if "MATLAB_empty" in obj.attrs else False

    def _empty_size(self, obj: Any) -> tuple[tuple[int, ...] | None, str]:
        """(MATLAB size, "") of a MATLAB_empty dataset, or (None, what is wrong): the size vector is
        checked from its metadata (a short integer vector, in the file) before it is read."""
        if obj.shape is None:  # a null dataspace: not even the size vector is there
            return None, f"{storage_problem(obj)}; not read"
        count = int(obj.size)
        if obj.dtype.kind not in "iu" or obj.ndim > 2 or count > _MAX_EMPTY_DIMS:
            shape = "x".join(str(d) for d in reversed(obj.shape)) or "scalar"
            return None, (
                f"marked empty (MATLAB_empty), so it should store its size as a vector of at most "
                f"{_MAX_EMPTY_DIMS} integers, found {shape} {obj.dtype} data; damaged file?"
            )
        problem = storage_problem(obj)
        if problem:
            return None, f"{problem}; not read"
        size = tuple(int(d) for d in np.asarray(obj[()]).ravel())
        if min(size, default=0) < 0 or 0 not in size:
            return None, f"marked empty (MATLAB_empty) but its stored size {size} has no zero dimension; damaged file?"
        return size, ""

    def describe(self, name: str) -> VariableInfo:
        obj, why = link_entry(self._file, name)
        if why is not None:
            return VariableInfo(name, None, why.kind, why.note)
        cls = self._class(obj)
        h5py = _h5py()
        if not isinstance(obj, h5py.Dataset):
            return VariableInfo(name, self._group_size(obj, cls), cls)
        if obj.dtype.names:
            cls = f"complex {cls}"
        if self._is_empty(obj):
            size, note = self._empty_size(obj)
            return VariableInfo(name, size, cls, note)
        problem = storage_problem(obj)
        size = None if obj.shape is None else tuple(reversed(obj.shape))  # None: a null dataspace
        return VariableInfo(name, size, cls, f"{problem}; not read" if problem else "")

    def _group_size(self, group: Any, cls: str) -> tuple[int, ...]:
        """MATLAB size of a variable stored as an HDF5 group, as `whos` gives it (from the members
        that are in the file: a link out of it is not followed)."""
        h5py = _h5py()
        members = {key: link_entry(group, key)[0] for key in group.keys()}
        if cls == "sparse":  # MATLAB_sparse holds the row count; jc has one entry per column, plus one
            rows = int(np.asarray(group.attrs["MATLAB_sparse"]).ravel()[0])
            jc = members.get("jc")
            cols = int(jc.shape[0]) - 1 if isinstance(jc, h5py.Dataset) and jc.shape else 0
            return (rows, max(cols, 0))
        fields = list(members.values())
        # A struct array stores each field as a dataset of references, one per element, shaped
        # like the array (reversed) and without a MATLAB_class; a scalar struct's fields carry one.
        if (
            cls == "struct"
            and fields
            and all(
                isinstance(f, h5py.Dataset)
                and f.shape is not None  # a null dataspace has no shape to give
                and f.dtype.kind == "O"
                and "MATLAB_class" not in f.attrs
                for f in fields
            )
        ):
            return tuple(reversed(fields[0].shape))
        return (1, 1)

    def dataset(self, name: str) -> Any:
        """The h5py dataset of a numeric variable (for streaming reads); shape is reversed."""
        if name not in self.names():
            shown = ", ".join(self.names()) or "no variables"
            raise self.error(f"no such variable (the file has {shown})", name)
        obj = get_local(self._file, name, self.label, name)
        cls = self._class(obj)
        if cls in _UNSUPPORTED or cls == "sparse" or cls not in _NUMERIC or not isinstance(obj, _h5py().Dataset):
            what = _UNSUPPORTED.get(cls, "a sparse matrix" if cls == "sparse" else f"MATLAB class {cls!r}")
            raise self.error(f"holds {what}, expected a numeric array", name)
        if obj.dtype.names is not None:
            raise self.error(f"holds complex {cls} data, expected a real numeric array", name)
        return obj

    def lazy(self, name: str) -> LazyArray | None:
        obj = self.dataset(name)
        if self._class(obj) not in ("double", "single") or self._is_empty(obj):
            return None
        return LazyArray(obj, reversed_dims=True)

    def read(self, name: str) -> Any:
        obj = self.dataset(name)
        cls = self._class(obj)
        dtype = _NUMERIC[cls]
        if self._is_empty(obj):
            size, problem = self._empty_size(obj)
            if size is None:
                raise self.error(problem, name)
            return "" if cls == "char" else np.zeros(size, dtype=dtype)
        if cls == "char" and obj.size > CHAR_LIMIT:
            raise self.error(
                f"holds {obj.size} characters; mlstm reads char variables (option values such as 'CBT') "
                f"of up to {CHAR_LIMIT} characters",
                name,
            )
        try:
            # h5py returns the reversed-size row-major array; .T is MATLAB's array, no copy.
            data = np.asarray(obj[()]).T
        except Exception as exc:
            raise self.error(f"cannot read the variable ({type(exc).__name__}: {exc})", name) from None
        if cls == "char":
            return "".join(chr(c) for c in data.astype(np.uint16).T.ravel())
        return data.astype(dtype, copy=False)


def header(now: float | None = None) -> bytes:
    """The 128 bytes MATLAB puts at the start of a v7.3 file's 512-byte user block."""
    stamp = time.strftime("%a %b %d %H:%M:%S %Y", time.localtime(now))
    text = f"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: {stamp} HDF5 schema 1.00 ."
    raw = text.encode("ascii").ljust(116, b" ")[:116]
    # 8 bytes of subsystem offset (none), version 0x0200, endian indicator 'IM'.
    return raw + b"\0" * 8 + b"\x00\x02" + b"IM"


class MatlabConventions:
    """The hook through which :class:`mlstm.io.h5write.Hdf5Output` writes MAT v7.3: dimensions
    reversed, the class in an attribute, the MAT header in a 512-byte user block."""

    reversed_dims = True
    userblock_size = 512

    def write(self, f: Any, name: str, value: Any) -> None:
        write_variable(f, name, value)

    def tag(self, ds: Any, dtype: Any) -> None:
        matlab_class_attribute(ds, np.dtype(dtype))

    def finish(self, fh: Any) -> None:
        """The MAT header in the user block, once HDF5 has closed the file (``fh``: the open file)."""
        fh.seek(0)
        fh.write(header().ljust(self.userblock_size, b"\0"))


def matlab_class_attribute(ds: Any, dtype: np.dtype) -> None:
    ds.attrs.create("MATLAB_class", np.bytes_({"float64": "double", "float32": "single"}[np.dtype(dtype).name]))


def write_variable(f: Any, name: str, value: Any) -> None:
    """One MATLAB variable (single/double array or char) as a root dataset of an open h5py file."""
    if isinstance(value, str):
        codes = np.array([ord(ch) for ch in value], dtype=np.uint16)
        if codes.size == 0:
            ds = f.create_dataset(name, data=np.array([0, 0], dtype=np.uint64))
            ds.attrs.create("MATLAB_empty", np.uint8(1))
        else:
            ds = f.create_dataset(name, data=codes.reshape(codes.size, 1))  # MATLAB 1xN, reversed
        ds.attrs.create("MATLAB_class", np.bytes_("char"))
        ds.attrs.create("MATLAB_int_decode", np.int32(2))
        return
    data = np.asarray(value)
    size = matlab_shape(data.shape)
    if data.size == 0:
        ds = f.create_dataset(name, data=np.array(size, dtype=np.uint64))
        ds.attrs.create("MATLAB_empty", np.uint8(1))
    else:
        stored = np.ascontiguousarray(data.reshape(size).T)
        ds = f.create_dataset(name, data=stored, **storage_options(stored))
    matlab_class_attribute(ds, data.dtype)
