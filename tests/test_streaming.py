"""Blocks over time: chunked runs equal unchunked ones exactly; HDF5/MAT v7.3 runs stream with
bounded reads; progress display on request only."""

import h5py
import numpy as np
import pytest
import scipy.io
from conftest import assert_one_line_error, run_mlstm
from reference import random_problem, reference_lstm

from mlstm.api import compute, prepare_runner
from mlstm.engines import get_engine
from mlstm.formats import resolve
from mlstm.io import LazyArray, write_variables
from mlstm.options import Options
from mlstm.pipeline import chunk_length
from mlstm.stream import stream_lstm

NAMES = ("X", "H0", "C0", "weights", "recurrentWeights", "bias")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
# The last two need several of the engine's projection blocks (15 and 30 steps; 6 steps at B = 128).
@pytest.mark.parametrize("C,H,B,T", [(3, 2, 4, 23), (6, 40, 32, 17), (64, 256, 32, 100), (20, 96, 128, 40)])
@pytest.mark.parametrize("chunk", [1, 5, 16, 100])
def test_chunked_equals_unchunked_exactly(dtype, C, H, B, T, chunk):
    args = random_problem(np.random.default_rng(T), C=C, H=H, B=B, T=T, scale=0.4, dtype=dtype)
    opts = Options("CBT")
    whole = compute(*args, options=opts)
    seen = []
    parts = compute(*args, options=opts, chunk_steps=chunk, progress=lambda done, total: seen.append((done, total)))
    for name in ("Y", "hiddenState", "cellState"):
        np.testing.assert_array_equal(getattr(parts, name), getattr(whole, name))
    runner = prepare_runner(get_engine("numpy"), resolve(*args, "CBT"))
    unit = runner.block_steps(B)
    blocks = -(-T // (-(-chunk // unit) * unit))  # the chunk rounded up to the engine's block
    assert seen[-1] == (T, T) and len(seen) == blocks


def test_blocks_follow_the_engine_not_the_request():
    args = random_problem(np.random.default_rng(0), C=64, H=256, B=32, T=100, dtype=np.float64)
    runner = prepare_runner(get_engine("numpy"), resolve(*args, "CBT"))
    unit = runner.block_steps(32)
    assert 1 < unit < 100  # the shape above needs several blocks
    assert chunk_length(runner, 100, 32, 5, None) == unit
    assert chunk_length(runner, 100, 32, unit + 1, None) == 2 * unit
    assert chunk_length(runner, 100, 32, None, None) == 100


class RecordingArray(LazyArray):
    def __init__(self, dataset, reversed_dims):
        super().__init__(dataset, reversed_dims)
        self.reads = []

    def read(self, axis, start, stop):
        self.reads.append(stop - start)
        return super().read(axis, start, stop)


class MemoryOutput:
    """Stands in for Hdf5Output: collects what stream_lstm writes."""

    def __init__(self):
        self.variables = {}

    def create(self, name, size, dtype, axis=None):
        self.variables[name] = np.zeros(size, dtype)
        arr = self.variables[name]

        def write_block(axis, start, block):
            index = [slice(None)] * arr.ndim
            index[axis] = slice(start, start + block.shape[axis])
            arr[tuple(index)] = block

        return write_block

    def write(self, name, value):
        self.variables[name] = value


@pytest.mark.parametrize("fmt,axes", [("CBT", (0, 1, 2)), ("TCB", (2, 0, 1)), ("BTC", (1, 2, 0))])
def test_stream_reads_bounded_blocks_and_matches_reference(tmp_path, fmt, axes):
    # Big enough that the engine's projection block (15 steps) is shorter than the run.
    X, H0, C0, W, R, b = random_problem(np.random.default_rng(5), C=64, H=256, B=32, T=50, scale=0.1)
    X = np.transpose(X, axes)  # X laid out as fmt says
    path = tmp_path / "x.h5"
    with h5py.File(path, "w") as f:
        f["X"] = X.T  # MATLAB order: h5py sees the reversed size
    with h5py.File(path, "r") as f:
        lazy = RecordingArray(f["X"], reversed_dims=True)
        out = MemoryOutput()
        args = dict(zip(NAMES[1:], (H0, C0, W, R, b)))
        result = stream_lstm(lazy, args, Options(fmt), out, chunk_steps=7)
    # chunk_steps=7 is rounded up to the engine's block; one step is read first for the checks.
    assert result.chunk_steps == 15 and lazy.reads == [1, 15, 15, 15, 5]
    Yr, hr, cr = reference_lstm(X, H0, C0, W, R, b, fmt)
    np.testing.assert_allclose(out.variables["Y"], Yr, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out.variables["hiddenState"], hr, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out.variables["cellState"], cr, rtol=1e-12, atol=1e-14)
    assert out.variables["YFormat"] == fmt and result.steps == 50


@pytest.mark.parametrize(
    "fmt,shape",
    [("CBT", (3, 4, 29)), ("TCB", (29, 3, 4)), ("SCBT", (2, 3, 4, 29)), ("CT", (3, 29)), ("CBT", (3, 4, 1))],
)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("out_format", ["mat73", "hdf5"])
def test_cli_streaming_equals_in_memory_run(tmp_path, fmt, shape, dtype, out_format):
    rng = np.random.default_rng(11)
    input_size = int(np.prod([n for lab, n in zip(fmt, shape) if lab in "SC"]))
    B = shape[fmt.index("B")] if "B" in fmt else 1
    H = 3
    args = {
        "X": rng.standard_normal(shape).astype(dtype),
        "H0": rng.standard_normal((H, B)).astype(dtype),
        "C0": rng.standard_normal((H, 1)),
        "weights": rng.standard_normal((4 * H, input_size)) * 0.5,
        "recurrentWeights": rng.standard_normal((4 * H, H)) * 0.5,
        "bias": rng.standard_normal((4 * H, 1)),
    }
    v73 = str(tmp_path / "in73.mat")
    write_variables(v73, dict(args, DataFormat=fmt), "mat73")
    v7 = str(tmp_path / "in7.mat")
    scipy.io.savemat(v7, dict(args, DataFormat=fmt))
    streamed = tmp_path / f"streamed.{'mat' if out_format == 'mat73' else 'h5'}"
    run_mlstm("run", v73, "-o", streamed, "--format", out_format, "--chunk-steps", "4", check=0)
    memory = tmp_path / "memory.mat"
    run_mlstm("run", v7, "-o", memory, check=0)
    want = scipy.io.loadmat(memory)
    with h5py.File(streamed, "r") as f:
        for name in ("Y", "hiddenState", "cellState"):
            got = f[name][()]
            got = got.T if out_format == "mat73" else got
            assert got.dtype == want[name].dtype
            np.testing.assert_array_equal(got, want[name])
        if out_format == "mat73":
            assert f["Y"].attrs["MATLAB_class"] == (b"single" if dtype == np.float32 else b"double")


def test_streaming_errors_name_file_and_variable(tmp_path):
    args = dict(zip(NAMES, random_problem(np.random.default_rng(1), C=3, H=2, B=4, T=9)))
    args["weights"] = np.zeros((8, 5))
    path = str(tmp_path / "in73.mat")
    write_variables(path, args, "mat73")
    out = tmp_path / "o.h5"
    out.write_bytes(b"precious")
    proc = run_mlstm("run", path, "-o", out, "DataFormat=CBT", "--chunk-steps", "2")
    assert_one_line_error(proc, "in73.mat", "variable 'weights'", "found 8x5")
    proc = run_mlstm("run", path, "-o", out, "DataFormat=CTT")
    assert_one_line_error(proc, "DataFormat", "'T' may appear at most once")
    proc = run_mlstm("run", path, "-o", out, "DataFormat=CT")
    assert_one_line_error(proc, "DataFormat", "size 3x4x9")  # X's whole size, not a block's
    assert out.read_bytes() == b"precious"


def test_progress_display(tmp_path):
    args = dict(zip(NAMES, random_problem(np.random.default_rng(2), C=3, H=2, B=2, T=40)))
    path = str(tmp_path / "in.mat")
    scipy.io.savemat(path, args)
    forced = run_mlstm("run", path, "-o", tmp_path / "o.mat", "DataFormat=CBT", "--progress", "--chunk-steps", "10")
    assert forced.returncode == 0
    assert "40/40 steps (100%)" in forced.stderr and "steps/s" in forced.stderr and "ETA" in forced.stderr
    # Piped stderr, no flag: nothing (the run is short, and stderr is not a terminal).
    plain = run_mlstm("run", path, "-o", tmp_path / "o.mat", "DataFormat=CBT", check=0)
    assert plain.stderr == ""
    quiet = run_mlstm("run", path, "-o", tmp_path / "o.mat", "DataFormat=CBT", "--progress", "-q", check=0)
    assert quiet.stderr == ""
    verbose = run_mlstm("run", path, "-o", tmp_path / "o.mat", "DataFormat=CBT", "-v", check=0)
    assert "engine=numpy class=double T=40 B=2 InputSize=3 H=2" in verbose.stderr


def test_progress_bar_on_a_terminal():
    import io

    from mlstm.progress import Progress

    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    bar = Progress(stream=stream, delay=0.0, use_tqdm=False)  # the display without tqdm
    for done in (10, 20, 30):
        bar(done, 30)
    bar.close()
    text = stream.getvalue()
    assert "\r" in text and "30/30 steps (100%)" in text and text.endswith("\n")
    quiet = Tty()
    bar = Progress(stream=quiet, quiet=True, delay=0.0)
    bar(5, 10)
    bar.close()
    assert quiet.getvalue() == ""


def test_progress_without_a_chunk_size_moves_and_changes_nothing():
    args = random_problem(np.random.default_rng(3), C=64, H=256, B=32, T=120)
    whole = compute(*args, options=Options("CBT"))
    seen = []
    shown = compute(*args, options=Options("CBT"), progress=lambda done, total: seen.append(done))
    assert len(seen) == 8 and seen[-1] == 120  # about 50 blocks, rounded up to the engine's 15 steps
    for name in ("Y", "hiddenState", "cellState"):
        np.testing.assert_array_equal(getattr(shown, name), getattr(whole, name))


BAD_ARGUMENTS = [
    ("H0", "abc"),  # char
    ("H0", np.array([[1, 2]], dtype=np.int32)),  # integer class
    ("C0", np.ones((2, 4)) + 1j),  # complex
    ("weights", np.ones((8, 3), dtype=np.uint8)),
    ("bias", np.zeros((0, 1))),  # empty: wrong size
    ("recurrentWeights", np.ones((8, 2, 2))),  # 3-D
]


@pytest.mark.parametrize("role,value", BAD_ARGUMENTS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(BAD_ARGUMENTS)])
def test_streamed_bad_input_reports_as_in_memory(tmp_path, role, value):
    """Every bad argument gives the same one-line Error: streamed (X in a v7.3 file) as in memory."""
    args = dict(zip(NAMES, random_problem(np.random.default_rng(2), C=3, H=2, B=4, T=9)))
    args[role] = value
    x_file, rest = str(tmp_path / "x73.mat"), str(tmp_path / "rest.mat")
    write_variables(x_file, {"X": args.pop("X")}, "mat73")
    scipy.io.savemat(rest, args)
    out = tmp_path / "o.h5"
    out.write_bytes(b"precious")
    streamed = run_mlstm("run", x_file, rest, "-o", out, "DataFormat=CBT", "--chunk-steps", "2")
    line = assert_one_line_error(streamed, role)
    assert "unexpected" not in line
    in_memory = run_mlstm("run", x_file, rest, "-o", tmp_path / "o.mat", "DataFormat=CBT")  # MAT v7: in memory
    assert in_memory.stderr == streamed.stderr
    assert out.read_bytes() == b"precious" and not (tmp_path / "o.mat").exists()
