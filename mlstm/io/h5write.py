"""The one HDF5 writer: plain HDF5, or MAT v7.3 through :class:`mlstm.io.mat73.MatlabConventions`.

Whole variables (:meth:`Hdf5Output.write`) or, for arrays larger than memory, block by block
along one dimension (:meth:`Hdf5Output.create`, used by streaming runs).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .hdf5 import _h5py, storage_options
from .mat73 import MatlabConventions
from .output import GuardedFile


class PlainConventions:
    """Plain HDF5: one dataset per variable, shape = MATLAB size (reversed for ``hdf5_order='matlab'``)."""

    userblock_size = 0

    def __init__(self, hdf5_order: str = "numpy"):
        self.reversed_dims = hdf5_order == "matlab"

    def write(self, f: Any, name: str, value: Any) -> None:
        if isinstance(value, str):
            # Fixed-length ASCII, not h5py's default variable-length string: MATLAB's h5read returns
            # it as char (a vlen string comes back as a cell) and Octave's load can read it.
            f.create_dataset(name, data=np.bytes_(value.encode("ascii", "replace")))
            return
        data = np.asarray(value)
        if self.reversed_dims:
            data = data.T
        f.create_dataset(name, data=np.ascontiguousarray(data), **storage_options(data))

    def tag(self, ds: Any, dtype: Any) -> None:
        """Plain HDF5 needs no class attribute: the dtype says it."""

    def finish(self, fh: Any) -> None:
        """Nothing to add once the file is closed."""


class Hdf5Output:
    """An HDF5-based output file, MAT v7.3 (``fmt='mat73'``) or plain HDF5, written whole
    variable by whole variable (:meth:`write`) or block by block along one dimension
    (:meth:`create`). Close it to finish the file (the MAT header goes in the user block last)."""

    def __init__(self, path: str, fmt: str, hdf5_order: str = "numpy"):
        h5py = _h5py()
        self.fmt = fmt
        self.path = path
        self.conventions: Any = MatlabConventions() if fmt == "mat73" else PlainConventions(hdf5_order)
        self.reversed_dims = self.conventions.reversed_dims
        userblock = self.conventions.userblock_size
        # Written through a GuardedFile: a full disk or a file-size limit must not reach HDF5 (its
        # failed flush leaves the library in a state that crashes the process at exit); the error
        # is raised by close(), after HDF5 has finished. Default libver ('earliest'): MATLAB's
        # load rejects the newer superblock versions.
        self._raw = GuardedFile(path)
        try:
            self.file = h5py.File(self._raw, "w", **({"userblock_size": userblock} if userblock else {}))
        except BaseException:
            self._raw.close()
            raise

    def write(self, name: str, value: Any) -> None:
        self.conventions.write(self.file, name, value)

    def create(self, name: str, size: tuple[int, ...], dtype: Any, compress: bool = True) -> Any:
        """A dataset of MATLAB size ``size``; returns ``write_block(axis, start, block)`` that stores
        ``block`` (MATLAB order, full size except along ``axis``) at ``start`` along ``axis``."""
        stored = tuple(reversed(size)) if self.reversed_dims else tuple(size)
        nbytes = int(np.prod(stored, dtype=np.int64)) * np.dtype(dtype).itemsize
        options = storage_options(np.empty(0), nbytes=nbytes) if compress else {}
        ds = self.file.create_dataset(name, shape=stored, dtype=dtype, **options)
        self.conventions.tag(ds, dtype)
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
            self.conventions.finish(self._raw)
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


def write_mat73(path: str, variables: dict[str, Any], hdf5_order: str = "numpy") -> None:
    """Write MATLAB-loadable MAT v7.3."""
    with Hdf5Output(path, "mat73") as out:
        for name, value in variables.items():
            out.write(name, value)
