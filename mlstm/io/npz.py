"""NumPy .npz archives read member by member, each checked against its zip entry before it is read.

``numpy.load`` on an .npz is lazy per member, but a reader that builds ``{k: data[k] for k in
data.files}`` decompresses every member, used or not. :class:`NpzArchive` is a read-only mapping
(name -> array) that lists the members from the zip directory, decompresses a member only when it
is looked up, and first checks the shape and dtype in its .npy header against the entry's
stored size, so that a member declaring more data than it holds is an error, not an allocation.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ..errors import MlstmError
from .base import Declared

_SUFFIX = ".npy"


class NpzArchive(Mapping[str, np.ndarray]):
    """The arrays of an .npz file, by name (the member name without ``.npy``), read on lookup."""

    def __init__(self, path: str, label: str | None = None):
        self.path = path
        self.label = label or path
        try:
            with zipfile.ZipFile(path) as archive:
                self._members = {
                    info.filename[: -len(_SUFFIX)]: info
                    for info in archive.infolist()
                    if info.filename.endswith(_SUFFIX)
                }
        except (zipfile.BadZipFile, OSError) as exc:
            raise MlstmError(f"{self.label}: expected a .npz of arrays, found unreadable data ({exc})") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, key: object) -> bool:
        return key in self._members

    def _header(self, archive: zipfile.ZipFile, key: str) -> tuple[Declared, bool, Any]:
        """(shape and dtype, Fortran order, the open member positioned at its data), checked."""
        info = self._members[key]
        fh = archive.open(info)
        try:
            version = np.lib.format.read_magic(fh)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            )
            shape, fortran, dtype = read_header(fh)
        except Exception as exc:
            fh.close()
            raise MlstmError(f"{self.label}: member {key!r}: expected a .npy array, found {exc}") from None
        if dtype.hasobject:
            fh.close()
            raise MlstmError(f"{self.label}: member {key!r}: holds Python objects (pickled), expected numbers")
        declared = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        held = info.file_size - fh.tell()
        if declared != held:
            fh.close()
            raise MlstmError(
                f"{self.label}: member {key!r}: its header declares shape {tuple(shape)} {dtype} "
                f"({declared} bytes) but it holds {held} bytes; damaged file?"
            )
        return Declared(tuple(int(d) for d in shape), dtype), fortran, fh

    def declared(self, key: str) -> Declared:
        """A member's shape and dtype from its header, without reading its data."""
        if key not in self._members:
            raise KeyError(key)
        with zipfile.ZipFile(self.path) as archive:
            declared, _, fh = self._header(archive, key)
            fh.close()
        return declared

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._members:
            raise KeyError(key)
        with zipfile.ZipFile(self.path) as archive:
            declared, fortran, fh = self._header(archive, key)
            flat = np.empty(int(np.prod(declared.shape, dtype=np.int64)), dtype=declared.dtype)
            with fh:
                view, filled = memoryview(flat).cast("B"), 0
                while filled < len(view):
                    got = fh.readinto(view[filled:])
                    if not got:
                        raise MlstmError(f"{self.label}: member {key!r}: ends early; damaged file?")
                    filled += got
        shape = declared.shape
        return flat.reshape(shape[::-1]).T if fortran else flat.reshape(shape)
