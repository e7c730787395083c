"""The one HDF5 writer: plain HDF5, or MAT v7.3 through :class:`mlstm.io.mat73.MatlabConventions`.

Whole variables (:meth:`Hdf5Output.write`) or, for arrays larger than memory, block by block
along one dimension (:meth:`Hdf5Output.create`, used by streaming runs).

A block-by-block variable that is chunked and deflated is written by :class:`DeflatedRows`: the
blocks are gathered into whole rows of chunks, each chunk is shuffled and deflated by ``zlib`` on a
few threads (zlib runs without the GIL), and the compressed chunks are stored with HDF5's direct
chunk write. The dataset keeps its declared filters, so every HDF5 reader (MATLAB, h5py) decodes
it as usual; the chunks hold what HDF5's own filters would have made of the same data (same
shuffle, same deflate level, edge chunks padded with the fill value 0). HDF5 writing the blocks
itself compresses each chunk once per block that touches it (a partly written chunk leaves the
small chunk cache compressed, and is read back and deflated again by the next block), on one
thread, under h5py's lock.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np

from .. import signals
from .hdf5 import _h5py, storage_options
from .mat73 import MatlabConventions
from .output import GuardedFile

DEFLATE_MAX_THREADS = 4  # zlib threads per writer, at most; fewer where fewer cores are allowed


def deflate_threads() -> int:
    """Deflate threads for a writer made now: the cores this process may use (MLSTM_NUM_THREADS,
    else its CPU affinity, as the engine counts them), at most DEFLATE_MAX_THREADS."""
    from ..engines.cpu_plans import cores

    return max(1, min(DEFLATE_MAX_THREADS, cores()))


ROW_BUDGET = 64 << 20  # most bytes in one row of Y's chunks; two rows are held at most
TASK_BYTES = 1 << 20  # input bytes per deflate task: enough to make a task's overhead small


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
        self._writers: list[DeflatedRows] = []
        try:
            self.file = h5py.File(self._raw, "w", **({"userblock_size": userblock} if userblock else {}))
        except BaseException:
            self._raw.close()
            raise

    def write(self, name: str, value: Any) -> None:
        self.conventions.write(self.file, name, value)

    def create(
        self, name: str, size: tuple[int, ...], dtype: Any, compress: bool = True, axis: int | None = None
    ) -> Any:
        """A dataset of MATLAB size ``size``; returns ``write_block(axis, start, block)`` that stores
        ``block`` (MATLAB order, full size except along ``axis``) at ``start`` along ``axis``.

        Given ``axis`` (the MATLAB dimension the blocks run along, in order from 0 to the end), a
        chunked and deflated dataset is written by :class:`DeflatedRows`; the writer's ``seconds``
        then splits its time into "deflate" (CPU time, summed over its threads) and "write"."""
        stored = tuple(reversed(size)) if self.reversed_dims else tuple(size)
        nbytes = int(np.prod(stored, dtype=np.int64)) * np.dtype(dtype).itemsize
        options = storage_options(np.empty(0), nbytes=nbytes) if compress else {}
        ds = self.file.create_dataset(name, shape=stored, dtype=dtype, **options)
        self.conventions.tag(ds, dtype)
        ndim = len(stored)
        if axis is not None and axis < ndim:
            rows = DeflatedRows.for_dataset(ds, ndim - 1 - axis if self.reversed_dims else axis, self._raw.raise_error)
            if rows is not None:
                self._writers.append(rows)
                return rows.write_block if not self.reversed_dims else rows.write_reversed

        def write_block(axis: int, start: int, block: Any) -> None:
            index = [slice(None)] * ndim
            stop = start + (block.shape[axis] if axis < block.ndim else 1)
            if axis < ndim:
                index[ndim - 1 - axis if self.reversed_dims else axis] = slice(start, stop)
            ds[tuple(index)] = block.T if self.reversed_dims else block
            self._raw.raise_error()  # the disk filled: stop now, not after computing the rest

        return write_block

    def block_timings(self) -> dict[str, float]:
        """Seconds the block-by-block writers spent deflating (CPU, summed over their threads) and
        writing, and how many deflate threads each had; empty where HDF5 wrote the blocks itself."""
        if not self._writers:
            return {}
        return {
            "deflate": sum(w.seconds["deflate"] for w in self._writers),
            "write": sum(w.seconds["write"] for w in self._writers),
            "deflate_threads": float(max(w.threads for w in self._writers)),
        }

    def close(self) -> None:
        """Finish the file; raises the first write error (OSError) once everything is closed."""
        if self._raw.closed:
            return
        try:
            try:
                for writer in self._writers:  # their threads end before the file closes
                    writer.close()
            finally:  # even if a signal cut the wait short: HDF5 must close the file before we do
                self.file.close()
            self.conventions.finish(self._raw)
        finally:
            self._raw.close()
        self._raw.raise_error()

    def __enter__(self) -> Hdf5Output:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _deflate(row: Any, chunks: list[tuple[slice, ...]], shuffle: bool, level: int) -> tuple[list[bytes], float]:
    """The chunks ``row[index]`` as HDF5's shuffle (if asked) and deflate filters store them, and
    the seconds it took. HDF5's shuffle puts byte k of every element in the k-th part of the chunk:
    the chunk's bytes as an (elements, itemsize) array, transposed. (Gathering the chunk first and
    then transposing is 3 times faster than one copy through a byte-strided view.) The seconds are
    this thread's CPU time: beside the computing, on few cores, its wall time says little."""
    import zlib

    began = time.thread_time()
    out = []
    for index in chunks:
        piece = np.ascontiguousarray(row[index])
        if shuffle and piece.dtype.itemsize > 1:
            piece = np.ascontiguousarray(piece.view(np.uint8).reshape(-1, piece.dtype.itemsize).T)
        out.append(zlib.compress(piece, level))
    return out, time.thread_time() - began


class DeflatedRows:
    """Writes a chunked, deflated dataset from blocks that arrive in order along one axis.

    Blocks are copied into a row of chunks (chunk-length along ``axis``, the whole extent of the
    other axes, padded to whole chunks with zeros as HDF5 pads edge chunks); a full row (or the
    last, shorter one) goes to a pool of ``threads`` deflate threads, and its compressed chunks
    are written in order with ``write_direct_chunk`` by the thread calling :meth:`put`, once
    ready. At most two rows are held. :meth:`put` of the last block waits for every chunk;
    :meth:`close` (always call it) stops the threads. ``seconds``: "deflate" (CPU time of the
    shuffle and zlib, summed over threads) and "write" (copies into rows and HDF5 writes)."""

    def __init__(self, ds: Any, axis: int, shuffle: bool, level: int, raise_error: Any, threads: int):
        self.ds = ds
        self.axis = axis
        self.shuffle = shuffle
        self.level = level
        self.threads = threads
        self._raise_error = raise_error
        self._shape = tuple(int(n) for n in ds.shape)
        self._chunks = tuple(int(c) for c in ds.chunks)
        self._dtype = ds.dtype
        row_shape = [-(-n // c) * c for n, c in zip(self._shape, self._chunks)]
        row_shape[axis] = self._chunks[axis]
        self._row_shape = tuple(row_shape)
        self._row: Any = None
        self._filled = 0  # elements received along axis
        self._in_flight: deque[deque[tuple[list[tuple[int, ...]], Any]]] = deque()  # rows of (offsets, future)
        self._pool: Any = None
        self.seconds = {"deflate": 0.0, "write": 0.0}

    @classmethod
    def for_dataset(cls, ds: Any, axis: int, raise_error: Any) -> DeflatedRows | None:
        """A writer for ``ds`` if its filters are deflate, with or without shuffle before it, and a
        row of its chunks fits :data:`ROW_BUDGET`; else None (HDF5 then writes the blocks)."""
        h5py = _h5py()
        dcpl = ds.id.get_create_plist()
        if ds.chunks is None or ds.dtype.kind not in "fiu" or not ds.dtype.isnative:
            return None
        filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
        shuffle = bool(filters) and filters[0][0] == h5py.h5z.FILTER_SHUFFLE
        rest = filters[1:] if shuffle else filters
        if len(rest) != 1 or rest[0][0] != h5py.h5z.FILTER_DEFLATE or len(rest[0][2]) != 1:
            return None
        row_bytes = ds.dtype.itemsize * int(ds.chunks[axis])
        for k, (n, c) in enumerate(zip(ds.shape, ds.chunks)):
            row_bytes *= 1 if k == axis else -(-int(n) // int(c)) * int(c)
        if row_bytes > ROW_BUDGET:
            return None
        return cls(ds, axis, shuffle, int(rest[0][2][0]), raise_error, deflate_threads())

    def write_block(self, axis: int, start: int, block: Any) -> None:
        """:meth:`Hdf5Output.create`'s ``write_block`` for a dataset stored in MATLAB's order."""
        self.put(start, block)

    def write_reversed(self, axis: int, start: int, block: Any) -> None:
        """... for a dataset stored with the dimensions reversed (MAT v7.3)."""
        self.put(start, block.T)

    def put(self, start: int, block: Any) -> None:
        """Store ``block`` (stored order, full size except along the axis) at ``start``, which
        must be where the previous block ended."""
        if start != self._filled:
            raise ValueError(f"blocks must arrive in order: expected {self._filled}, got {start}")
        began = time.perf_counter()
        axis, length, total = self.axis, self._chunks[self.axis], self._shape[self.axis]
        count = block.shape[axis]
        done = 0
        while done < count:
            row_start = self._filled - self._filled % length
            if self._row is None:
                self._row = np.zeros(self._row_shape, self._dtype)
            take = min(count - done, row_start + length - self._filled)
            target = [slice(0, n) for n in self._shape]
            target[axis] = slice(self._filled - row_start, self._filled - row_start + take)
            source = [slice(None)] * block.ndim
            source[axis] = slice(done, done + take)
            self._row[tuple(target)] = block[tuple(source)]
            self._filled += take
            done += take
            if self._filled == min(row_start + length, total):
                self.seconds["write"] += time.perf_counter() - began
                self._dispatch(row_start)
                began = time.perf_counter()
        self.seconds["write"] += time.perf_counter() - began
        self._write_ready(wait=self._filled == total)

    def _dispatch(self, row_start: int) -> None:
        """Hand the full row to the deflate threads; then, to hold at most two rows, finish
        writing any earlier row."""
        from concurrent.futures import ThreadPoolExecutor

        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                self.threads, thread_name_prefix="mlstm-deflate", initializer=signals.block_in_this_thread
            )
        row, self._row = self._row, None
        grid = [-(-n // c) for n, c in zip(self._shape, self._chunks)]
        grid[self.axis] = 1
        per_task = max(1, TASK_BYTES // (int(np.prod(self._chunks)) * self._dtype.itemsize))
        tasks: deque[tuple[list[tuple[int, ...]], Any]] = deque()
        batch: list[tuple[int, ...]] = []
        for place in np.ndindex(*grid):
            batch.append(place)
            if len(batch) == per_task:
                tasks.append(self._submit(row, row_start, batch))
                batch = []
        if batch:
            tasks.append(self._submit(row, row_start, batch))
        self._in_flight.append(tasks)
        while len(self._in_flight) > 1:
            self._write_row(wait=True)

    def _submit(self, row: Any, row_start: int, places: list[tuple[int, ...]]) -> tuple[list[tuple[int, ...]], Any]:
        offsets, index = [], []
        for place in places:
            where = tuple(p * c for p, c in zip(place, self._chunks))
            index.append(tuple(slice(w, w + c) for w, c in zip(where, self._chunks)))
            offsets.append(tuple(row_start if k == self.axis else w for k, w in enumerate(where)))
        return offsets, self._pool.submit(_deflate, row, index, self.shuffle, self.level)

    def _write_row(self, wait: bool) -> None:
        """Write the oldest row's compressed chunks that are ready (all of them, with ``wait``)."""
        tasks = self._in_flight[0]
        while tasks and (wait or tasks[0][1].done()):
            offsets, future = tasks.popleft()
            chunks, seconds = future.result()
            began = time.perf_counter()
            for where, data in zip(offsets, chunks):
                self.ds.id.write_direct_chunk(where, data)
            self._raise_error()  # the disk filled: stop now, not after computing the rest
            self.seconds["deflate"] += seconds
            self.seconds["write"] += time.perf_counter() - began
        if not tasks:
            self._in_flight.popleft()

    def _write_ready(self, wait: bool) -> None:
        while self._in_flight and (wait or self._in_flight[0][0][1].done()):
            self._write_row(wait)

    def close(self) -> None:
        """Stop the deflate threads (work not started is dropped) and wait for them. The threads
        touch only the rows they were given and zlib, never the file: a signal that cuts this
        wait short leaves nothing unsafe behind (the pool's exit hook joins them)."""
        self._in_flight.clear()
        self._row = None
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


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
