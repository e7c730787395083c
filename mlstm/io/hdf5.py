"""Plain HDF5 (NumPy order by default), and the checks that keep every HDF5 read inside the named file.

HDF5 can point outside the file: an external link names another file, a dataset's raw data
can live in external files (``create_dataset(..., external=[('/etc/passwd', 0, n)])``), and a
virtual dataset maps other files' datasets. mlstm reads only the files the user names, so each
of these is refused before it is followed (:func:`get_local` walks a path one link at a time,
:func:`check_local` looks at a dataset's storage); a soft link whose target is missing is an
error when the variable is used, and is listed as such by ``mlstm info``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import MlstmError
from .base import CHAR_LIMIT, LazyArray, MatrixFile, VariableInfo

OUTSIDE = "mlstm reads only the files you name; copy the data into the file"
_MAX_LINK_DEPTH = 16  # soft links to soft links: a loop is an error, not a hang


def _h5py() -> Any:
    import h5py

    return h5py


def _where(label: str, name: str | None) -> str:
    return f"{label}: variable {name!r}" if name else label


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


NULL_DATASPACE = "has a null dataspace (HDF5's H5S_NULL: no data, not even an empty array)"


def storage_problem(obj: Any, _depth: int = 0) -> str | None:
    """Why the dataset ``obj`` cannot be read: its dataspace is null (:data:`NULL_DATASPACE`), or
    reading it would read another file (external raw storage, a virtual dataset over other
    files); else None. Groups and datasets stored in the file give None."""
    h5py = _h5py()
    if not isinstance(obj, h5py.Dataset):
        return None
    if obj.shape is None:
        return NULL_DATASPACE
    external = obj.external
    if external:
        files = sorted({_text(entry[0]) for entry in external})
        return f"stored in an external file {', '.join(files)} (HDF5 external storage)"
    if obj.is_virtual:
        sources = obj.virtual_sources()
        outside = sorted({f"{_text(s.file_name)}:{_text(s.dset_name)}" for s in sources if _text(s.file_name) != "."})
        if outside:
            shown = ", ".join(outside[:3]) + (f" and {len(outside) - 3} more" if len(outside) > 3 else "")
            return f"a virtual dataset mapping {shown}"
        for source in sources:  # '.': a dataset of this same file, which must itself stay inside it
            try:
                target = _follow(obj.file["/"], _text(source.dset_name), _depth + 1)
            except _Outside as exc:
                return f"a virtual dataset mapping {_text(source.dset_name)}, which leads to {exc.detail}"
            problem = storage_problem(target, _depth + 1) if _depth < _MAX_LINK_DEPTH else "nested too deep"
            if problem:
                return f"a virtual dataset mapping {_text(source.dset_name)}, which is {problem}"
    return None


def check_local(obj: Any, label: str, name: str | None = None) -> None:
    """Raise MlstmError if reading the h5py object ``obj`` would read another file.

    For any reader of HDF5 that mlstm does not route through :func:`get_local` (for example the
    Keras weights reader): call it on each dataset before reading its data.
    """
    problem = storage_problem(obj)
    if problem:
        suffix = "" if problem == NULL_DATASPACE else f"; {OUTSIDE}"
        raise MlstmError(f"{_where(label, name)}: {problem}{suffix}")


class _Outside(Exception):
    """A path leads out of the file (external link) or nowhere (dangling soft link)."""

    def __init__(self, detail: str, kind: str, target: str):
        super().__init__(detail)
        self.detail = detail
        self.kind = kind  # the listing's class column: 'external link', 'dangling soft link', ...
        self.target = target

    @property
    def note(self) -> str:
        """What ``mlstm info`` says of the link."""
        return f"{self.detail}; not followed" if self.kind == "external link" else self.detail


def _follow(group: Any, path: str, depth: int = 0) -> Any:
    """The object at ``path`` from ``group``, following hard and soft links but never an external
    (or user-defined) link; raises _Outside where the path leaves the file or leads nowhere."""
    h5py = _h5py()
    if depth > _MAX_LINK_DEPTH:
        raise _Outside(f"a chain of more than {_MAX_LINK_DEPTH} soft links (a loop?)", "soft link loop", path)
    node = group.file["/"] if path.startswith("/") else group
    parts = [p for p in path.split("/") if p and p != "."]
    walked = ""
    for i, part in enumerate(parts):
        walked += "/" + part
        at = "" if i == len(parts) - 1 else f" (at {walked})"
        if not isinstance(node, h5py.Group):
            raise _Outside(f"a path through a dataset{at}", "dangling soft link", path)
        link = node.get(part, getlink=True)
        if link is None:
            raise _Outside(f"missing{at}", "dangling soft link", path)
        if isinstance(link, h5py.ExternalLink):
            target = f"{_text(link.filename)}:{_text(link.path)}"
            raise _Outside(f"an external link to {target}{at}", "external link", target)
        if isinstance(link, h5py.SoftLink):
            target = _text(link.path)
            try:
                node = _follow(node, target, depth + 1)
            except _Outside as exc:
                if depth > 0:  # the outermost soft link says where the chain went
                    raise
                if exc.kind == "dangling soft link":
                    raise _Outside(f"a soft link to {target}, which is not in the file{at}", exc.kind, target) from None
                detail = f"a soft link to {target}, which leads to {exc.detail}{at}"
                raise _Outside(detail, exc.kind, exc.target) from None
            continue
        if not isinstance(link, h5py.HardLink):
            raise _Outside(f"a user-defined link{at}", "user-defined link", "")
        node = node[part]
    return node


def get_local(group: Any, path: str, label: str, name: str | None = None) -> Any:
    """``group[path]``, refusing external links, dangling soft links and datasets stored outside the
    file with one MlstmError naming ``label`` and the variable ``name`` (default: ``path``)."""
    try:
        obj = _follow(group, path)
    except _Outside as exc:
        suffix = f"; {OUTSIDE}" if exc.kind == "external link" else ""
        raise MlstmError(f"{_where(label, name or path)}: {exc.detail}{suffix}") from None
    check_local(obj, label, name or path)
    return obj


def link_entry(group: Any, key: str) -> tuple[Any, _Outside | None]:
    """(object, None) for a member reached without leaving the file, or (None, why not)."""
    try:
        return _follow(group, key), None
    except _Outside as exc:
        return None, exc


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
    (``hdf5_order='numpy'``) or its reverse (``'matlab'``, files from ``h5write``).

    Lists every dataset reached through hard links, and every external link and dangling soft
    link (shown as such, an error when used); soft links to datasets of the file are not listed
    again."""

    kind = "HDF5"

    def __init__(self, label: str, handle: Any, hdf5_order: str):
        super().__init__(label)
        self._file = handle
        self._order = hdf5_order
        self._entries: list[str] = []  # paths, in the order of a depth-first walk
        self._broken: dict[str, _Outside] = {}
        h5py = _h5py()
        seen: set[Any] = set()

        def walk(group: Any, prefix: str) -> None:
            for key in group.keys():
                path = prefix + key
                link = group.get(key, getlink=True)
                if isinstance(link, h5py.HardLink):
                    obj = group[key]
                    if obj in seen:
                        continue
                    seen.add(obj)
                    if isinstance(obj, h5py.Group):
                        walk(obj, path + "/")
                    elif isinstance(obj, h5py.Dataset):
                        self._entries.append(path)
                    continue
                _, why = link_entry(group, key)
                if why is not None:
                    self._entries.append(path)
                    self._broken[path] = why

        walk(handle, "/")

    def close(self) -> None:
        self._file.close()

    def _path(self, name: str) -> str:
        return name if name.startswith("/") else "/" + name

    def names(self) -> list[str]:
        return [d[1:] if d.count("/") == 1 else d for d in self._entries]

    def has(self, name: str) -> bool:
        path = self._path(name)
        # A path under an external link is not listed (the link is not followed) but is asked
        # for by name: it is "here", so that reading it says why it cannot be read.
        return path in self._entries or any(path.startswith(b + "/") for b in self._broken)

    def _size(self, shape: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if shape is None:  # a null dataspace: no size at all
            return None
        return tuple(reversed(shape)) if self._order == "matlab" else tuple(shape)

    def describe(self, name: str) -> VariableInfo:
        broken = self._broken.get(self._path(name))
        if broken is not None:
            return VariableInfo(name, None, broken.kind, broken.note)
        ds = self._file[self._path(name)]  # reached through hard links only
        cls = _hdf5_class(ds)
        problem = storage_problem(ds)
        if problem:
            return VariableInfo(name, self._size(ds.shape), cls, f"{problem}; not read")
        if cls != "char":
            return VariableInfo(name, self._size(ds.shape), cls)
        nbytes = _fixed_text_bytes(ds)
        if nbytes is not None and nbytes > CHAR_LIMIT:
            return VariableInfo(name, (1, nbytes), cls, f"over {CHAR_LIMIT} characters; not read")
        return VariableInfo(name, (1, len(self.read(name))), cls)

    def dataset(self, name: str) -> Any:
        if not self.has(name):
            shown = ", ".join(self.names()) or "no datasets"
            raise self.error(f"no such dataset (the file has {shown})", name)
        ds = get_local(self._file, self._path(name), self.label, name)
        if not isinstance(ds, _h5py().Dataset):
            raise self.error("is a group, expected a dataset", name)
        return ds

    def lazy(self, name: str) -> LazyArray | None:
        ds = self.dataset(name)
        if _hdf5_class(ds) not in ("double", "single"):
            return None
        return LazyArray(ds, reversed_dims=self._order == "matlab")

    def read(self, name: str) -> Any:
        ds = self.dataset(name)
        cls = _hdf5_class(ds)
        if cls == "char":
            nbytes = _fixed_text_bytes(ds)
            if nbytes is not None and nbytes > CHAR_LIMIT:
                raise self.error(
                    f"holds {nbytes} bytes of text; mlstm reads char variables (option values such as 'CBT') "
                    f"of up to {CHAR_LIMIT} characters",
                    name,
                )
            return decode_text(ds[()])
        if cls not in ("double", "single", "logical") and not cls.startswith(("int", "uint")):
            raise self.error(f"holds {cls} data, expected a numeric array", name)
        try:
            data = ds[()]
        except Exception as exc:
            raise self.error(f"cannot read the dataset ({type(exc).__name__}: {exc})", name) from None
        data = np.asarray(data)
        return data.T if self._order == "matlab" else data


def _fixed_text_bytes(ds: Any) -> int | None:
    """Bytes of a fixed-length string dataset, from its metadata; None for variable-length strings
    (whose text lies in the file itself, so reading it is bounded by the file's size)."""
    if ds.dtype.kind in "SU":
        return int(ds.size) * int(ds.dtype.itemsize)
    return None


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


def storage_options(data: np.ndarray, nbytes: int | None = None) -> dict[str, Any]:
    """Chunked and compressed storage for large arrays (1 MiB and up); contiguous for small ones."""
    nbytes = data.nbytes if nbytes is None else nbytes
    if nbytes < (1 << 20):
        return {}
    return {"chunks": True, "compression": "gzip", "compression_opts": 4, "shuffle": True}
