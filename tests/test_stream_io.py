"""Streaming at I/O speed: Y's chunks deflated on threads and written whole (io.h5write.DeflatedRows),
X read one block ahead (pipeline.ReadAhead) and, when chunked, in slabs of whole chunks
(io.base.ChunkAlignedArray). Each is checked against an independent reference: an in-memory run,
HDF5's own filters writing the same array, plain h5py reads."""

import os
import signal
import threading
import zlib

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import assert_one_line_error, run_mlstm
from reference import reference_lstm
from test_faults import _interrupt, _run_limited, _temporaries

from mlstm.errors import MlstmError
from mlstm.io import LazyArray, h5write, write_variables
from mlstm.io.base import ChunkAlignedArray
from mlstm.io.h5write import DeflatedRows, Hdf5Output
from mlstm.options import Options
from mlstm.stream import stream_lstm

NAMES = ("X", "H0", "C0", "weights", "recurrentWeights", "bias")
HDF5_FILTERS = {"chunks": True, "compression": "gzip", "compression_opts": 4, "shuffle": True}  # the writer's


def _arguments(rng, shape, fmt, hidden, dtype):
    input_size = int(np.prod([n for label, n in zip(fmt, shape) if label in "SC"]))
    batch = shape[fmt.index("B")] if "B" in fmt else 1
    return {
        "X": rng.standard_normal(shape).astype(dtype),
        "H0": (0.5 * rng.standard_normal((hidden, batch))).astype(dtype),
        "C0": (0.5 * rng.standard_normal((hidden, batch))).astype(dtype),
        "weights": (0.4 * rng.standard_normal((4 * hidden, input_size))).astype(dtype),
        "recurrentWeights": (0.3 * rng.standard_normal((4 * hidden, hidden))).astype(dtype),
        "bias": (0.1 * rng.standard_normal((4 * hidden, 1))).astype(dtype),
    }


def _payloads(ds):
    """{chunk offset: the chunk's bytes before the filters}: each chunk read raw and decoded here
    with zlib and a NumPy unshuffle, not through the writer under test."""
    out = {}
    itemsize = ds.dtype.itemsize
    for i in range(ds.id.get_num_chunks()):
        offset = ds.id.get_chunk_info(i).chunk_offset
        mask, raw = ds.id.read_direct_chunk(offset)
        assert mask == 0  # every filter applied
        data = np.frombuffer(zlib.decompress(raw), np.uint8)
        out[offset] = data.reshape(itemsize, -1).T.tobytes() if ds.shuffle else data.tobytes()
    return out


# Y over 1 MB (so chunked and deflated), several blocks, and chunks that do not divide Y's size
# along T or along the other dimensions: the last row of chunks and the edge chunks are ragged.
CASES = [
    ("CBT", (5, 7, 3001), np.float32),  # v7.3 stores Y as 3001x7x33, chunks 376x2x9
    ("CBT", (5, 7, 3001), np.float64),
    ("TCB", (2999, 4, 7), np.float32),  # time first in MATLAB: last in the v7.3 file
    ("SCBT", (2, 3, 5, 2011), np.float64),
]


@pytest.mark.parametrize("fmt,shape,dtype", CASES)
@pytest.mark.parametrize("out_format", ["mat73", "hdf5"])
def test_deflated_stream_equals_in_memory_run_and_hdf5s_own_chunks(tmp_path, fmt, shape, dtype, out_format):
    args = _arguments(np.random.default_rng(sum(shape)), shape, fmt, 33, dtype)
    v73 = str(tmp_path / "in73.mat")
    write_variables(v73, dict(args, DataFormat=fmt), "mat73")
    v7 = str(tmp_path / "in7.mat")
    scipy.io.savemat(v7, dict(args, DataFormat=fmt))
    streamed = tmp_path / "streamed.out"
    proc = run_mlstm(
        "run", v73, "-o", streamed, "--format", out_format, "--chunk-steps", "40", "-v", check=0
    )  # fmt: skip
    assert "deflate Y" in proc.stderr and "thread" in proc.stderr  # the -v split names the deflating
    memory = tmp_path / "memory.mat"
    run_mlstm("run", v7, "-o", memory, check=0)
    want = scipy.io.loadmat(memory)
    y_ref, _, _ = reference_lstm(*(args[n] for n in NAMES), fmt)
    with h5py.File(streamed, "r") as f:
        y = f["Y"]
        got = y[()].T if out_format == "mat73" else y[()]  # as MATLAB's load / h5read read it
        np.testing.assert_array_equal(got, want["Y"])
        np.testing.assert_allclose(got, y_ref, rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-6)
        for name in ("hiddenState", "cellState"):
            np.testing.assert_array_equal(f[name][()].T if out_format == "mat73" else f[name][()], want[name])
        assert (y.compression, y.compression_opts, y.shuffle) == ("gzip", 4, True)
        # HDF5's own filters on the same array: same chunk shape, same bytes in every chunk.
        with h5py.File(tmp_path / "hdf5.h5", "w") as g:
            own = g.create_dataset("Y", data=y[()], **HDF5_FILTERS)
            assert own.chunks == y.chunks
            mine, theirs = _payloads(y), _payloads(own)
        labels = fmt.replace("S", "")
        along = y.ndim - 1 - labels.index("T") if out_format == "mat73" else labels.index("T")
        assert y.shape[along] % y.chunks[along] != 0 < y.shape[along] // y.chunks[along]  # rows, a ragged last
    assert mine == theirs and len(mine) > 8


def _dataset_pair(tmp_path, shape, chunks, dtype=np.float32, **filters):
    out = Hdf5Output(str(tmp_path / "rows.h5"), "hdf5")
    ds = out.file.create_dataset("Y", shape=shape, dtype=dtype, chunks=chunks, **filters)
    return out, ds


@pytest.mark.parametrize(
    "shape,chunks,axis,blocks",
    [
        ((1000, 8, 40), (250, 3, 7), 0, [1, 7, 300, 250, 2, 440]),  # blocks across row boundaries
        ((8, 1000, 5), (3, 128, 5), 1, [999, 1]),
        ((6, 2, 3, 777), (4, 1, 2, 100), 3, [100] * 7 + [77]),
        ((513,), (64,), 0, [513]),
    ],
)
@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("shuffle", [True, False])
def test_deflated_rows_store_what_hdf5_would(tmp_path, monkeypatch, shape, chunks, axis, blocks, threads, shuffle):
    monkeypatch.setenv("MLSTM_NUM_THREADS", str(threads))  # the writer's threads follow the allowance
    data = np.random.default_rng(3).standard_normal(shape).astype(np.float32).round(2)
    out, ds = _dataset_pair(tmp_path, shape, chunks, compression="gzip", compression_opts=6, shuffle=shuffle)
    rows = DeflatedRows.for_dataset(ds, axis, out._raw.raise_error)
    assert rows is not None and rows.level == 6 and rows.shuffle == shuffle and rows.threads == threads
    start = 0
    for length in blocks:
        index = [slice(None)] * len(shape)
        index[axis] = slice(start, start + length)
        rows.put(start, data[tuple(index)])
        start += length
    rows.close()
    np.testing.assert_array_equal(ds[()], data)
    with h5py.File(tmp_path / "own.h5", "w") as g:
        own = g.create_dataset("Y", data=data, chunks=chunks, compression="gzip", compression_opts=6, shuffle=shuffle)
        assert _payloads(ds) == _payloads(own)
    out.close()


def test_deflated_rows_only_where_the_filters_and_memory_allow(tmp_path, monkeypatch):
    out = Hdf5Output(str(tmp_path / "f.h5"), "hdf5")
    f = out.file
    check = out._raw.raise_error
    assert DeflatedRows.for_dataset(
        f.create_dataset("a", (100, 10), "f4", chunks=(10, 10), compression="gzip"), 0, check
    )
    assert DeflatedRows.for_dataset(f.create_dataset("b", (100, 10), "f4"), 0, check) is None  # contiguous
    lzf = f.create_dataset("c", (100, 10), "f4", chunks=(10, 10), compression="lzf")
    assert DeflatedRows.for_dataset(lzf, 0, check) is None
    checked = f.create_dataset("d", (100, 10), "f4", chunks=(10, 10), compression="gzip", fletcher32=True)
    assert DeflatedRows.for_dataset(checked, 0, check) is None
    monkeypatch.setattr(h5write, "ROW_BUDGET", 10 * 10 * 4 - 1)  # one row of chunks is 10x10 singles
    assert DeflatedRows.for_dataset(f["a"], 0, check) is None
    out.close()


def test_deflate_threads_follow_the_cores_allowed(monkeypatch):
    monkeypatch.setenv("MLSTM_NUM_THREADS", "1")  # a SLURM task's share: no extra zlib threads
    assert h5write.deflate_threads() == 1
    monkeypatch.setenv("MLSTM_NUM_THREADS", "64")
    assert h5write.deflate_threads() == h5write.DEFLATE_MAX_THREADS


def test_an_empty_read_of_chunked_x(tmp_path):
    path, _ = _chunked_x(tmp_path, (100, 3, 5), (50, 2, 5))
    with h5py.File(path, "r") as f:
        aligned = LazyArray(f["X"], reversed_dims=False).for_blocks(0)
        assert isinstance(aligned, ChunkAlignedArray)
        assert aligned.read(0, 50, 50).shape == (0, 3, 5)  # at a chunk boundary, nothing held yet
        np.testing.assert_array_equal(aligned.read(0, 0, 60), f["X"][0:60])


def test_blocks_must_arrive_in_order(tmp_path):
    out, ds = _dataset_pair(tmp_path, (100, 4), (10, 4), compression="gzip")
    rows = DeflatedRows.for_dataset(ds, 0, out._raw.raise_error)
    rows.put(0, np.zeros((5, 4), np.float32))
    with pytest.raises(ValueError, match="expected 5, got 6"):
        rows.put(6, np.zeros((5, 4), np.float32))
    out.close()  # stops the threads even though Y is unfinished


def _chunked_x(tmp_path, shape, chunks):
    data = np.random.default_rng(4).standard_normal(shape)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=data, chunks=chunks, compression="gzip")
    return path, data


@pytest.mark.parametrize("reversed_dims", [True, False])
def test_chunked_x_is_read_in_whole_chunks_each_once(tmp_path, reversed_dims, monkeypatch):
    path, data = _chunked_x(tmp_path, (403, 3, 5), (50, 2, 5))  # time first in the file
    slabs = []
    original = ChunkAlignedArray._slab

    def recording(self, start, stop):
        slabs.append((start, stop))
        return original(self, start, stop)

    monkeypatch.setattr(ChunkAlignedArray, "_slab", recording)
    axis = 2 if reversed_dims else 0  # the file's first dimension, in MATLAB's order
    with h5py.File(path, "r") as f:
        plain = LazyArray(f["X"], reversed_dims)
        aligned = plain.for_blocks(axis)
        assert isinstance(aligned, ChunkAlignedArray)
        got = [aligned.read(axis, 0, 1)]  # the first step alone (stream_lstm's checks), then blocks
        edges = [0, 37, 111, 150, 151, 333, 403]
        got += [aligned.read(axis, a, b) for a, b in zip(edges, edges[1:])]
        want = [plain.read(axis, 0, 1)] + [plain.read(axis, a, b) for a, b in zip(edges, edges[1:])]
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)
    # Whole chunks, each once, after the first step's slab (re-read when the blocks start over).
    assert slabs == [(0, 50), (0, 50), (50, 150), (150, 200), (200, 350), (350, 403)]


def test_contiguous_or_huge_chunk_x_reads_as_before(tmp_path, monkeypatch):
    path, _ = _chunked_x(tmp_path, (100, 3, 5), (100, 3, 5))
    with h5py.File(path, "r") as f:
        monkeypatch.setattr("mlstm.io.base.ALIGNED_READ_LIMIT", 100)
        lazy = LazyArray(f["X"], reversed_dims=True)
        assert lazy.for_blocks(2) is lazy
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["X"] = np.zeros((10, 3))
        lazy = LazyArray(f["X"], reversed_dims=True)
        assert lazy.for_blocks(1) is lazy


@pytest.mark.parametrize("order", ["numpy", "matlab"])
def test_stream_from_chunked_x_equals_in_memory_run(tmp_path, order):
    args = _arguments(np.random.default_rng(9), (6, 5, 997), "CBT", 20, np.float64)
    with h5py.File(tmp_path / "in.h5", "w") as f:  # X deflated in chunks of 37 steps, as MATLAB would
        for name, value in args.items():
            stored = value.T if order == "matlab" else value
            chunks = (37, 5, 3) if order == "matlab" else (3, 5, 37)
            f.create_dataset(name, data=stored, **({"chunks": chunks, "compression": "gzip"} if name == "X" else {}))
    extra = ["DataFormat=CBT", "--hdf5-order", order, "--format", "mat73", "--chunk-steps", "50"]
    run_mlstm("run", tmp_path / "in.h5", "-o", tmp_path / "s.mat", *extra, check=0)
    scipy.io.savemat(tmp_path / "in7.mat", dict(args, DataFormat="CBT"))
    run_mlstm("run", tmp_path / "in7.mat", "-o", tmp_path / "m.mat", check=0)
    want = scipy.io.loadmat(tmp_path / "m.mat")
    with h5py.File(tmp_path / "s.mat", "r") as f:
        for name in ("Y", "hiddenState", "cellState"):
            np.testing.assert_array_equal(f[name][()].T, want[name])


# ------------------------------------------------------------------ failures mid-stream


def _mlstm_threads():
    return [t.name for t in threading.enumerate() if t.name.startswith("mlstm-")]


class FailingRead(LazyArray):
    def __init__(self, dataset, reversed_dims, fail_at):
        super().__init__(dataset, reversed_dims)
        self.fail_at = fail_at

    def read(self, axis, start, stop):
        if start >= self.fail_at:
            raise MlstmError("x.h5: variable 'X': cannot read the dataset (damaged)")
        return super().read(axis, start, stop)


class FailingOutput:
    """Collects blocks; raises OSError (a full disk) at the block starting at ``fail_at``."""

    def __init__(self, fail_at):
        self.fail_at = fail_at
        self.blocks = []

    def create(self, name, size, dtype, axis=None):
        def write_block(axis, start, block):
            if start >= self.fail_at:
                raise OSError(28, "No space left on device")
            self.blocks.append(start)

        return write_block

    def write(self, name, value):
        raise AssertionError("not reached: the run failed")


def _stream_problem(tmp_path):
    args = _arguments(np.random.default_rng(6), (6, 32, 120), "CBT", 40, np.float64)
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["X"] = args["X"].T
    return path, {n: args[n] for n in NAMES[1:]}


def test_a_read_error_mid_stream_is_raised_and_every_thread_ends(tmp_path):
    path, args = _stream_problem(tmp_path)
    before = _mlstm_threads()
    with h5py.File(path, "r") as f:
        x = FailingRead(f["X"], True, fail_at=30)
        out = FailingOutput(fail_at=10**9)
        with pytest.raises(MlstmError, match="damaged"):
            stream_lstm(x, args, Options("CBT"), out, chunk_steps=15)
    assert all(start < 30 for start in out.blocks)
    assert _mlstm_threads() == before


def test_a_write_error_mid_stream_is_raised_and_every_thread_ends(tmp_path):
    path, args = _stream_problem(tmp_path)
    before = _mlstm_threads()
    with h5py.File(path, "r") as f:
        out = FailingOutput(fail_at=45)
        with pytest.raises(OSError, match="No space left"):
            stream_lstm(LazyArray(f["X"], True), args, Options("CBT"), out, chunk_steps=15)
    assert all(start < 45 for start in out.blocks)
    assert _mlstm_threads() == before


@pytest.fixture
def deflated_inputs(tmp_path):
    """An HDF5 X whose streamed Y (5 MB of doubles) is chunked and deflated by DeflatedRows."""
    args = _arguments(np.random.default_rng(8), (6, 8, 2000), "CBT", 40, np.float64)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        for name, value in args.items():
            f[name] = value
    return tmp_path


@pytest.mark.parametrize("limit", [200_000, 3_000_000])
def test_file_size_limit_while_deflated_chunks_are_written(deflated_inputs, limit):
    directory = deflated_inputs
    previous = b"previous output" * 1000
    (directory / "out.mat").write_bytes(previous)
    args = ["run", "in.h5", "-o", "out.mat", "DataFormat=CBT", "--chunk-steps", "100", "--format", "mat73"]
    proc = _run_limited(args, limit, directory)
    assert_one_line_error(proc, "out.mat", "File too large")
    assert proc.returncode == 2
    assert (directory / "out.mat").read_bytes() == previous
    assert _temporaries(directory) == []


@pytest.mark.parametrize("signum,status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_during_a_deflated_stream_stops_promptly(tmp_path, signum, status):
    # One observation and 1024 units (each step streams the 16 MB recurrent matrix): a run of
    # tens of seconds whose Y (80 MB of singles) is written by DeflatedRows.
    rng = np.random.default_rng(2)
    args = _arguments(rng, (4, 1, 20000), "CBT", 1024, np.float32)
    args["recurrentWeights"] *= 0.05
    with h5py.File(tmp_path / "long.h5", "w") as f:
        for name, value in args.items():
            f[name] = value
    extra = ["long.h5", "DataFormat=CBT", "--chunk-steps", "500", "--format", "mat73"]
    code, latency, stderr = _interrupt(tmp_path, signum, extra, wait=3.0)
    assert code == status, stderr
    assert stderr.strip().splitlines() == [
        f"mlstm: interrupted by {signal.Signals(signum).name}; no output was written"
    ]
    assert latency < 5.0  # the block being written and the chunks being deflated finish first
    assert sorted(os.listdir(tmp_path)) == ["long.h5", "out.mat"]
