"""The boundary with the compiled loop (mlstm/engines/cpu_loop.py): ctypes signatures from the
prototypes the C file exports, every array checked (dtype, shape, C order, writability) and
every BLAS dimension checked against the 32-bit int before C runs; projection blocks never
pass more columns than the BLAS takes. Sizes past 2^31 are simulated by lowering the limit."""

import importlib.util

import numpy as np
import pytest
from reference import random_problem, reference_lstm

from mlstm import lstm
from mlstm.engines import cpu_loop, numpy_engine
from mlstm.errors import MlstmError
from mlstm.formats import resolve

COMPILED = importlib.util.find_spec("mlstm.engines._cpu_lstm") is not None
needs_c = pytest.mark.skipif(not COMPILED, reason="the compiled loop is not built")
LOOPS = [pytest.param(True, marks=needs_c, id="compiled"), pytest.param(False, id="numpy")]


def engine(dtype=np.float64, H=6, C=4, compiled=True):
    rng = np.random.default_rng(0)
    w, r, b = rng.standard_normal((4 * H, C)), rng.standard_normal((4 * H, H)) * 0.3, rng.standard_normal(4 * H)
    return numpy_engine.prepare(w, r, b, "sigmoid", "tanh", dtype, compiled=compiled)


@pytest.mark.parametrize("compiled", LOOPS)
@pytest.mark.parametrize(
    "make,found",
    [
        (lambda: np.empty((5, 3, 6), np.float32), "float32"),  # wrong class
        (lambda: np.empty((5, 3, 7)), "(5, 3, 7)"),  # wrong shape
        (lambda: np.empty((6, 3, 5)).transpose(2, 1, 0), "not C-contiguous"),
        (lambda: np.empty((10, 3, 6))[::2], "not C-contiguous"),
        (lambda: np.broadcast_to(np.empty((1, 3, 6)), (5, 3, 6)), "read-only"),
        (lambda: [[0.0] * 6] * 3, "list"),
    ],
)
def test_wrong_output_buffer_is_an_error(compiled, make, found):
    eng = engine(compiled=compiled)
    x, h = np.zeros((5, 3, 4)), np.zeros((3, 6))
    with pytest.raises(MlstmError, match="output buffer: expected a writable C-contiguous float64 array") as err:
        eng.run(x, h, h, y=make())
    assert found in str(err.value)


def test_wrong_state_shape_is_an_error():
    with pytest.raises(MlstmError, match=r"cell state: expected shape \(3, 6\), found \(3, 5\)"):
        engine().run(np.zeros((5, 3, 4)), np.zeros((3, 6)), np.zeros((3, 5)))


@needs_c
def test_signatures_come_from_the_c_prototypes():
    loop = numpy_engine.compiled_loop()[np.dtype(np.float32)]
    entry = loop.serial
    names = [p.name for p in entry.params]
    assert names[:5] == ["T", "B", "In", "H", "x"] and names[-1] == "stop"
    x = next(p for p in entry.params if p.name == "x")
    assert x.pointer and x.const and x.dtype == np.float32
    y = next(p for p in entry.params if p.name == "y")
    assert not y.const and y.dtype == np.float32
    for e in (loop.serial, loop.gate_major, loop.parallel, loop.units):
        assert len(e.function.argtypes) == len(e.params)
        for p in e.params:  # every array has a shape rule, every pointer is one or the other
            assert not p.pointer or p.name in cpu_loop.ARRAY_SHAPES or p.name in cpu_loop.ADDRESSES, p.name
    ret, name, params = cpu_loop.parse_signature("int f(long T, const double *x, int n)")
    assert (ret, name, [p.ctypes_type for p in params]) == (
        "int",
        "f",
        [cpu_loop.ctypes.c_long] * 1
        + [
            cpu_loop.ctypes.c_void_p,
            cpu_loop.ctypes.c_int,
        ],
    )
    with pytest.raises(ValueError):
        cpu_loop.parse_signature("int f(struct thing t)")


def serial_args(loop, dtype, T=4, B=2, In=3, H=5, block=2):
    d = np.dtype(dtype)
    return dict(
        T=T,
        B=B,
        In=In,
        H=H,
        x=np.zeros((T, B, In), d),
        w=np.zeros((4 * H, In), d),
        bias=np.zeros(4 * H, d),
        r=np.zeros((4 * H, H), d),
        rp=None,
        rp_len=0,
        h0=np.zeros((B, H), d),
        c=np.zeros((B, H), d),
        y=np.zeros((T, B, H), d),
        zbuf=np.zeros((block, B, 4 * H), d),
        block=block,
        gate=0,
        state=0,
        gemm_ptr=loop.gemm,
        gemv_ptr=loop.gemv,
        stop=None,
    )


@needs_c
@pytest.mark.parametrize(
    "change,message",
    [
        (
            dict(x=np.zeros((4, 2, 3), np.float32)),
            "argument x: expected a C-contiguous float64 array of shape (4, 2, 3)",
        ),
        (dict(y=np.zeros((4, 2, 6))), "argument y: expected a C-contiguous writable float64"),
        (dict(c=np.zeros((2, 5)).T.copy().T), "found non-contiguous"),
        (dict(zbuf=np.zeros((1, 2, 20))), "argument zbuf"),
        (dict(h0=np.zeros(10)), "argument h0"),
        (dict(r=5), "found int"),
        (dict(gemm_ptr=0), "gemm_ptr is NULL"),
        (dict(gemm_ptr=np.zeros(3)), "gemm_ptr must be an address"),
        (dict(gate=2**40), "does not fit a C int"),
        (dict(block=0), "out of range"),
        (dict(bogus=1), "unknown ['bogus']"),
        (dict(rp_len=3), "rp is NULL with a nonzero length"),
        (dict(rp=np.zeros(8), rp_len=9), "argument rp: expected a C-contiguous float64 array of shape (9,)"),
        (dict(rp=np.zeros(8, np.float32), rp_len=8), "argument rp: expected a C-contiguous float64"),
        # an array of the length it says, but not the length the C reads for H = 5: refused in C
        (dict(rp=np.zeros(8), rp_len=8), "refused its sizes"),
    ],
)
def test_every_argument_is_checked_before_c(change, message):
    loop = numpy_engine.compiled_loop()[np.dtype(np.float64)]
    args = serial_args(loop, np.float64)
    args.update(change)
    with pytest.raises(MlstmError) as err:
        loop.serial(**args)
    assert message in str(err.value)


@needs_c
def test_read_only_output_and_missing_arguments_are_refused():
    loop = numpy_engine.compiled_loop()[np.dtype(np.float64)]
    ro = serial_args(loop, np.float64)
    ro["y"].flags.writeable = False
    with pytest.raises(MlstmError, match="found read-only float64"):
        loop.serial(**ro)
    missing = serial_args(loop, np.float64)
    del missing["stop"]
    with pytest.raises(MlstmError, match=r"missing arguments \['stop'\]"):
        loop.serial(**missing)


@needs_c
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_packed_call_computes_what_the_blas_call_computes(dtype):
    loop = numpy_engine.compiled_loop()[np.dtype(dtype)]
    rng = np.random.default_rng(3)
    runs = []
    for packed in (False, True):
        args = serial_args(loop, dtype, T=6, B=7, In=3, H=37, block=4)
        for name in ("x", "w", "bias", "r", "h0", "c"):
            args[name][...] = rng.standard_normal(args[name].shape) * 0.3
        rng = np.random.default_rng(3)  # the same numbers for both calls
        if packed:
            args["rp"] = loop.packed.pack(args["r"], 1)
            args["rp_len"] = args["rp"].size
        assert loop.serial(**args) == 0
        runs.append(args["y"])
    tol = dict(rtol=2e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(runs[1], runs[0], **tol)


def parallel_args(loop, dtype, T=5, B=9, In=7, H=37):
    """The batch split's arguments, random data: R always packed, W packed or not (``wp``)."""
    rng = np.random.default_rng(4)
    args = serial_args(loop, dtype, T=T, B=B, In=In, H=H)
    for name in ("x", "w", "bias", "r", "h0", "c"):
        args[name][...] = rng.standard_normal(args[name].shape) * 0.3
    for name in ("block", "gemv_ptr"):
        del args[name]
    args.update(zbuf=np.zeros((B, 4 * H), dtype), rp=loop.packed.pack(args["r"], 1), wp=None, wp_len=0)
    args.update(rp_len=args["rp"].size, nthreads=2, set_threads_ptr=None, place=1)
    return args


@needs_c
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_batch_split_with_w_packed_computes_what_the_blas_call_computes(dtype):
    loop = numpy_engine.compiled_loop()[np.dtype(dtype)]
    runs = []
    for packed in (False, True):
        args = parallel_args(loop, dtype)
        if packed:
            args["wp"] = loop.packed.pack_matrix(args["w"])
            args["wp_len"] = args["wp"].size
        assert loop.parallel(**args) == 0
        runs.append((args["y"], args["c"]))
    tol = dict(rtol=2e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-14)
    for got, want in zip(runs[1], runs[0]):
        np.testing.assert_allclose(got, want, **tol)
    assert np.abs(runs[0][0]).max() > 0.05  # not a trivially zero run


@needs_c
def test_a_packed_w_of_the_wrong_length_is_refused_in_c():
    loop = numpy_engine.compiled_loop()[np.dtype(np.float64)]
    args = parallel_args(loop, np.float64)
    args["wp"] = np.zeros(loop.packed.pack_matrix(args["w"]).size - 1)
    args["wp_len"] = args["wp"].size
    with pytest.raises(MlstmError, match="refused its sizes"):
        loop.parallel(**args)
    args.update(wp=None, wp_len=3)
    with pytest.raises(MlstmError, match="wp is NULL with a nonzero length"):
        loop.parallel(**args)


@needs_c
def test_a_good_call_runs():
    loop = numpy_engine.compiled_loop()[np.dtype(np.float32)]
    args = serial_args(loop, np.float32)
    args["x"][...] = 1
    args["w"][...] = 0.1
    assert loop.serial(**args) == 0
    assert np.all(args["y"] > 0)  # sigmoid(0) * tanh(positive cell)


@pytest.mark.parametrize(
    "sizes,what",
    [
        (dict(batch=2**31, input_size=3, hidden=5), "the batch size is 2147483648"),
        (dict(batch=1, input_size=2**31, hidden=5), "InputSize is 2147483648"),
        (dict(batch=1, input_size=3, hidden=2**29), "4 x NumHiddenUnits is 2147483648"),
        (dict(batch=2**16, input_size=3, hidden=5, block=2**15), "steps x batch size"),
    ],
)
def test_dimensions_past_the_blas_int_are_errors(sizes, what):
    with pytest.raises(MlstmError, match="past the BLAS's 32-bit dimension limit") as err:
        cpu_loop.check_blas_dims(**sizes)
    assert what in str(err.value)
    cpu_loop.check_blas_dims(batch=2**31 - 1, input_size=2**31 - 1, hidden=2**29 - 1)  # at the limit: fine


@pytest.mark.parametrize("compiled", LOOPS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_projection_blocks_stay_within_the_blas_int(monkeypatch, compiled, dtype):
    """With the limit lowered to 40 columns, B = 7 gets projection blocks of 5 steps (35 columns):
    split, and still right. A batch past the limit is an error, in the API as everywhere."""
    monkeypatch.setattr(cpu_loop, "BLAS_INT_MAX", 40)
    monkeypatch.setenv("MLSTM_PURE_NUMPY", "" if compiled else "1")
    numpy_engine._load_compiled_loop.cache_clear()
    try:
        eng = engine(dtype, compiled=compiled)
        assert eng.block_steps(7) == 5
        args = random_problem(np.random.default_rng(1), C=4, H=6, B=7, T=23, scale=0.3, dtype=dtype)
        p = resolve(*args, "CBT")
        eng = numpy_engine.prepare(p.weights, p.recurrent_weights, p.bias, "sigmoid", "tanh", p.dtype, compiled)
        got = p.restore(*eng.run(p.x, p.hidden_state, p.cell_state))
        tol = dict(rtol=1e-12, atol=1e-13) if dtype == np.float64 else dict(rtol=1e-5, atol=1e-6)
        for g, w in zip(got, reference_lstm(*args, "CBT")):
            np.testing.assert_allclose(g, w, **tol)
        big = random_problem(np.random.default_rng(2), C=4, H=6, B=41, T=2, dtype=dtype)
        with pytest.raises(MlstmError, match="the batch size is 41, past the BLAS's 32-bit dimension limit"):
            lstm(*big, DataFormat="CBT")
        wide = random_problem(np.random.default_rng(2), C=4, H=11, B=1, T=2, dtype=dtype)
        with pytest.raises(MlstmError, match="4 x NumHiddenUnits is 44"):
            lstm(*wide, DataFormat="CBT")
    finally:
        numpy_engine._load_compiled_loop.cache_clear()
