"""Plain HDF5 (NumPy order by default) and the shared h5py reading of MAT v7.3 files."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MlstmError
from . import HDF5_ORDERS, MatrixFile, VariableInfo


def _h5py() -> Any:
    import h5py

    return h5py


def open_hdf5(label: str, source: Any, kind: str, hdf5_order: str) -> MatrixFile:
    h5py = _h5py()
    try:
        handle = h5py.File(source, "r")
    except Exception as exc:
        what = "MAT v7.3" if kind == "mat73" else "HDF5"
        raise MlstmError(
            f"{label}: expected a readable {what} file, found a damaged or truncated one ({type(exc).__name__}: {exc})"
        ) from None
    if kind == "mat73":
        from .mat73 import Mat73File

        return Mat73File(label, handle)
    if hdf5_order not in HDF5_ORDERS:
        raise MlstmError(f"expected one of {', '.join(HDF5_ORDERS)}, found {hdf5_order!r}", "--hdf5-order")
    return Hdf5File(label, handle, hdf5_order)


def decode_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            return "".join(decode_text(v) for v in value.ravel())
        if value.dtype.kind == "U":
            return "".join(str(v) for v in value.ravel())
    return str(value)


class Hdf5File(MatrixFile):
    """Plain HDF5: datasets by name or path; the dataset shape is the MATLAB size
    (``hdf5_order='numpy'``) or its reverse (``'matlab'``, files from ``h5write``)."""

    kind = "HDF5"

    def __init__(self, label: str, handle: Any, hdf5_order: str):
        super().__init__(label)
        self._file = handle
        self._order = hdf5_order
        self._datasets: list[str] = []
        h5py = _h5py()

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Dataset):
                self._datasets.append("/" + name)

        handle.visititems(visit)

    def close(self) -> None:
        self._file.close()

    def _path(self, name: str) -> str:
        return name if name.startswith("/") else "/" + name

    def names(self) -> list[str]:
        return [d[1:] if d.count("/") == 1 else d for d in self._datasets]

    def has(self, name: str) -> bool:
        return self._path(name) in self._datasets

    def _size(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(reversed(shape)) if self._order == "matlab" else tuple(shape)

    def info(self) -> list[VariableInfo]:
        out = []
        for name in self.names():
            ds = self._file[self._path(name)]
            cls = _hdf5_class(ds)
            size = (1, len(self.read(name))) if cls == "char" else self._size(ds.shape)
            out.append(VariableInfo(name, size, cls))
        return out

    def dataset(self, name: str) -> Any:
        if not self.has(name):
            shown = ", ".join(self.names()) or "no datasets"
            raise self.error(f"no such dataset (the file has {shown})", name)
        return self._file[self._path(name)]

    def read(self, name: str) -> Any:
        ds = self.dataset(name)
        cls = _hdf5_class(ds)
        if cls == "char":
            return decode_text(ds[()])
        if cls not in ("double", "single", "logical") and not cls.startswith(("int", "uint")):
            raise self.error(f"holds {cls} data, expected a numeric array", name)
        try:
            data = ds[()]
        except Exception as exc:
            raise self.error(f"cannot read the dataset ({type(exc).__name__}: {exc})", name) from None
        data = np.asarray(data)
        return data.T if self._order == "matlab" else data


def _hdf5_class(ds: Any) -> str:
    dt = ds.dtype
    h5py = _h5py()
    if h5py.check_string_dtype(dt) is not None or dt.kind in "SU":
        return "char"
    if dt.kind == "O" or h5py.check_ref_dtype(dt) is not None:
        return "object references"
    if dt.names is not None:
        if set(dt.names) >= {"real", "imag"} or set(dt.names) >= {"r", "i"}:
            return "complex"
        return "compound"
    if dt.kind == "c":
        return "complex"
    if dt.kind == "b":
        return "logical"
    return {"float64": "double", "float32": "single"}.get(dt.name, dt.name)


def write_hdf5(path: str, variables: dict[str, Any], hdf5_order: str = "numpy") -> None:
    """Plain HDF5: one dataset per variable, shape = MATLAB size (reversed for 'matlab' order)."""
    h5py = _h5py()
    with h5py.File(path, "w") as f:
        for name, value in variables.items():
            if isinstance(value, str):
                # Fixed-length ASCII, not h5py's default variable-length string: MATLAB's h5read returns
                # it as char (a vlen string comes back as a cell) and Octave's load can read it.
                f.create_dataset(name, data=np.bytes_(value.encode("ascii", "replace")))
                continue
            data = np.asarray(value)
            if hdf5_order == "matlab":
                data = data.T
            f.create_dataset(name, data=np.ascontiguousarray(data), **_storage_options(data))


def _storage_options(data: np.ndarray) -> dict[str, Any]:
    """Chunked and compressed storage for large arrays; contiguous for small ones."""
    if data.nbytes < (1 << 20) or data.size == 0:
        return {}
    return {"chunks": True, "compression": "gzip", "compression_opts": 4, "shuffle": True}
