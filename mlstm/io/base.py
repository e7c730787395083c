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
