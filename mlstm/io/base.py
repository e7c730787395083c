"""What every reader shares: the variable listing, the reader interface, slice-by-slice reads.

A leaf of the io package (it imports no reader), so each reader imports it and the façade
(``mlstm.io``) re-exports it without an import cycle.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import MlstmError
from ..matlab_types import CLASS_DTYPE, matlab_class

# A char variable is an option value ('CBT', 'hard-sigmoid'): longer ones are refused before reading.
CHAR_LIMIT = 1 << 16


@dataclass(frozen=True)
class VariableInfo:
    """A variable as ``mlstm info`` lists it. ``size`` is None where it cannot be known without
    following a link out of the file; ``note`` says why a variable cannot be read, if it cannot."""

    name: str
    size: tuple[int, ...] | None  # MATLAB size
    matlab_class: str
    note: str = ""


@dataclass(frozen=True)
class Declared:
    """A numeric variable's size (the shape :meth:`MatrixFile.read` would return) and class, from the
    file's metadata alone: stands in for the data in size checks, so nothing is read before they pass."""

    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)


ALIGNED_READ_LIMIT = 64 << 20  # most bytes held for chunk-aligned reads of a streamed X (two slabs of chunks)


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

    def for_blocks(self, axis: int) -> LazyArray:
        """This array, for reading in consecutive blocks along MATLAB dimension ``axis``.

        A chunked (say compressed) dataset is read in slabs of whole chunks along ``axis``
        (:class:`ChunkAlignedArray`), so that each chunk is read and decompressed once whatever
        the block length: HDF5's chunk cache (1 to 8 MB by version) is smaller than a row of chunks
        across a large X, so a chunk that two blocks share would be decompressed for each. A
        contiguous dataset needs nothing: a block is one slab of the file."""
        ds = self.dataset
        chunks = getattr(ds, "chunks", None)
        ndim = len(self.size)
        if chunks is None or axis >= ndim:
            return self
        stored = ndim - 1 - axis if self.reversed_dims else axis
        step_bytes = ds.dtype.itemsize
        for k, n in enumerate(ds.shape):
            step_bytes *= 1 if k == stored else int(n)
        if int(chunks[stored]) <= 1 or 2 * int(chunks[stored]) * step_bytes > ALIGNED_READ_LIMIT:
            return self  # chunks one step long are aligned already; too long ones cost too much memory
        return ChunkAlignedArray(ds, self.reversed_dims, axis, stored, int(chunks[stored]))

    def read(self, axis: int, start: int, stop: int) -> Any:
        """Elements start:stop along MATLAB dimension ``axis`` (0-based), all of the others."""
        ndim = len(self.size)
        index = [slice(None)] * ndim
        if axis < ndim:
            index[ndim - 1 - axis if self.reversed_dims else axis] = slice(start, stop)
        block = self.dataset[tuple(index)]
        return block.T if self.reversed_dims else block


class ChunkAlignedArray(LazyArray):
    """A chunked dataset read in consecutive blocks along one axis, in slabs of whole chunks: a
    read takes from the rest of the previous slab, then reads up to the next chunk boundary past
    its end. Each chunk is read once; at most a block plus one chunk length is held. A read that
    does not start where the previous one ended (or inside what is held) starts afresh."""

    def __init__(self, dataset: Any, reversed_dims: bool, axis: int, stored_axis: int, chunk_length: int):
        super().__init__(dataset, reversed_dims)
        self._axis = axis  # MATLAB dimension
        self._stored = stored_axis  # the same dimension in the dataset
        self._chunk = chunk_length
        self._held: Any = None  # stored-order data for [self._lo, self._hi) along the axis
        self._lo = self._hi = 0

    def _slab(self, start: int, stop: int) -> Any:
        index = [slice(None)] * self.dataset.ndim
        index[self._stored] = slice(start, stop)
        return self.dataset[tuple(index)]

    def read(self, axis: int, start: int, stop: int) -> Any:
        if axis != self._axis or stop <= start:  # (an empty read: nothing to hold)
            return super().read(axis, start, stop)
        if self._held is None or not self._lo <= start <= self._hi:
            self._lo = self._hi = start - start % self._chunk
            self._held = None
        if stop > self._hi:
            end = min(-(-stop // self._chunk) * self._chunk, self.dataset.shape[self._stored])
            new = self._slab(self._hi, end)
            kept = [] if self._held is None else [self._take(self._held, start - self._lo, self._hi - self._lo)]
            self._held = np.concatenate([*kept, new], axis=self._stored) if kept else new
            self._lo, self._hi = (start if kept else self._hi), end
        block = self._take(self._held, start - self._lo, stop - self._lo)
        self._held, self._lo = self._take(self._held, stop - self._lo, self._hi - self._lo), stop
        return block.T if self.reversed_dims else block

    def _take(self, data: Any, start: int, stop: int) -> Any:
        index = [slice(None)] * data.ndim
        index[self._stored] = slice(start, stop)
        return data[tuple(index)]


class MatrixFile(ABC):
    """Common interface of the readers. ``label`` names the file in messages."""

    kind = "?"

    def __init__(self, label: str):
        self.label = label

    @abstractmethod
    def names(self) -> list[str]: ...

    @abstractmethod
    def describe(self, name: str) -> VariableInfo:
        """The variable's size and class from the file's metadata; reads no array data."""

    @abstractmethod
    def read(self, name: str) -> Any:
        """The variable as a NumPy array in MATLAB size, or a ``str`` for char data."""

    def info(self) -> list[VariableInfo]:
        return [self.describe(name) for name in self.names()]

    def summary(self, char_limit: int = 256) -> dict[str, Any]:
        """``mlstm info --json``: the container and, per variable, MATLAB size, class and (for
        char variables, such as a stored DataFormat) the text, cut at ``char_limit`` characters.
        A variable whose size only another file knows (a link out of the file) has size None
        and a ``note``."""
        variables: dict[str, Any] = {}
        for row in self.info():
            size = None if row.size is None else [int(d) for d in row.size]
            entry: dict[str, Any] = {"size": size, "class": row.matlab_class}
            if row.note:
                entry["note"] = row.note
            elif row.matlab_class == "char":
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

    def declared(self, name: str) -> Declared | None:
        """Size and class of a real numeric or logical variable, from metadata; None for any other
        (char, cell, struct, complex, a link out of the file): read those to learn what they are."""
        info = self.describe(name)
        dtype = CLASS_DTYPE.get(info.matlab_class)
        if dtype is None or info.size is None or info.note:
            return None
        return Declared(tuple(info.size), dtype)

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

    def describe(self, name: str) -> VariableInfo:
        value = self.read(name)
        if isinstance(value, str):
            return VariableInfo(name, (1, len(value)), "char")
        return VariableInfo(name, tuple(getattr(value, "shape", ())), matlab_class(value))

    def read(self, name: str) -> Any:
        if name not in self._values:
            raise self.error(f"no such variable (the file has {', '.join(self._values) or 'no variables'})", name)
        return self._values[name]
