"""Plain HDF5 (NumPy order by default) and the shared h5py reading of MAT v7.3 files."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MlstmError
from . import HDF5_ORDERS, LazyArray, MatrixFile, VariableInfo


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

    def lazy(self, name: str) -> LazyArray | None:
        ds = self.dataset(name)
        if _hdf5_class(ds) not in ("double", "single"):
            return None
        return LazyArray(ds, reversed_dims=self._order == "matlab")

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


class Hdf5Output:
    """An HDF5-based output file, MAT v7.3 (``fmt='mat73'``) or plain HDF5, written whole
    variable by whole variable (:meth:`write`) or, for arrays larger than memory, block by block
    along one dimension (:meth:`create`). Close it to finish the file (the MAT header goes in
    the user block last)."""

    def __init__(self, path: str, fmt: str, hdf5_order: str = "numpy"):
        h5py = _h5py()
        self.fmt = fmt
        self.path = path
        self.reversed_dims = fmt == "mat73" or hdf5_order == "matlab"
        # Written through a GuardedFile: a full disk or a file-size limit must not reach HDF5 (its
        # failed flush leaves the library in a state that crashes the process at exit); the error
        # is raised by close(), after HDF5 has finished. Default libver ('earliest'): MATLAB's
        # load rejects the newer superblock versions.
        from .output import GuardedFile

        self._raw = GuardedFile(path)
        try:
            self.file = h5py.File(self._raw, "w", **({"userblock_size": 512} if fmt == "mat73" else {}))
        except BaseException:
            self._raw.close()
            raise

    def write(self, name: str, value: Any) -> None:
        if self.fmt == "mat73":
            from .mat73 import write_variable

            write_variable(self.file, name, value)
            return
        if isinstance(value, str):
            # Fixed-length ASCII, not h5py's default variable-length string: MATLAB's h5read returns
            # it as char (a vlen string comes back as a cell) and Octave's load can read it.
            self.file.create_dataset(name, data=np.bytes_(value.encode("ascii", "replace")))
            return
        data = np.asarray(value)
        if self.reversed_dims:
            data = data.T
        self.file.create_dataset(name, data=np.ascontiguousarray(data), **_storage_options(data))

    def create(self, name: str, size: tuple[int, ...], dtype: Any, compress: bool = True) -> Any:
        """A dataset of MATLAB size ``size``; returns ``write_block(axis, start, block)`` that stores
        ``block`` (MATLAB order, full size except along ``axis``) at ``start`` along ``axis``."""
        stored = tuple(reversed(size)) if self.reversed_dims else tuple(size)
        nbytes = int(np.prod(stored, dtype=np.int64)) * np.dtype(dtype).itemsize
        options = _storage_options(np.empty(0), nbytes=nbytes) if compress else {}
        ds = self.file.create_dataset(name, shape=stored, dtype=dtype, **options)
        if self.fmt == "mat73":
            from .mat73 import matlab_class_attribute

            matlab_class_attribute(ds, np.dtype(dtype))
        ndim = len(stored)

        def write_block(axis: int, start: int, block: Any) -> None:
            index = [slice(None)] * ndim
            stop = start + (block.shape[axis] if axis < block.ndim else 1)
            if axis < ndim:
                index[ndim - 1 - axis if self.reversed_dims else axis] = slice(start, stop)
            ds[tuple(index)] = block.T if self.reversed_dims else block
            self._raw.raise_error()  # the disk filled: stop now, not after computing the rest

        return write_block

    def close(self) -> None:
        """Finish the file; raises the first write error (OSError) once everything is closed."""
        if self._raw.closed:
            return
        try:
            self.file.close()
            if self.fmt == "mat73":
                from .mat73 import header

                self._raw.seek(0)
                self._raw.write(header().ljust(512, b"\0"))
        finally:
            self._raw.close()
        self._raw.raise_error()

    def __enter__(self) -> Hdf5Output:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_hdf5(path: str, variables: dict[str, Any], hdf5_order: str = "numpy") -> None:
    """Plain HDF5: one dataset per variable, shape = MATLAB size (reversed for 'matlab' order)."""
    with Hdf5Output(path, "hdf5", hdf5_order) as out:
        for name, value in variables.items():
            out.write(name, value)


def _storage_options(data: np.ndarray, nbytes: int | None = None) -> dict[str, Any]:
    """Chunked and compressed storage for large arrays (1 MiB and up); contiguous for small ones."""
    nbytes = data.nbytes if nbytes is None else nbytes
    if nbytes < (1 << 20):
        return {}
    return {"chunks": True, "compression": "gzip", "compression_opts": 4, "shuffle": True}
