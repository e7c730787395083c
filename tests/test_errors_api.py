"""Every format rule and every bad input raises MlstmError with a message that says what and where."""

import numpy as np
import pytest
from reference import random_problem

from mlstm import MlstmError, MlstmTypeError, lstm


@pytest.fixture
def args(rng):
    return list(random_problem(rng, C=3, H=2, B=4, T=5))


def _raises(args, match, exc=MlstmError, **opts):
    opts.setdefault("DataFormat", "CBT")
    with pytest.raises(exc, match=match) as info:
        lstm(*args, **opts)
    assert isinstance(info.value, ValueError)
    return info.value


@pytest.mark.parametrize(
    "fmt,match",
    [
        ("CBX", r"DataFormat: expected only the labels S, C, B, T, U in 'CBX', found 'X'"),
        ("CCT", r"DataFormat: label 'C' may appear at most once"),
        ("CBB", r"label 'B' may appear at most once"),
        ("CTT", r"label 'T' may appear at most once"),
        ("CBS", r"expected a time dimension 'T'"),
        ("CT", r"format 'CT' labels 2 dimension\(s\) but X has 3 \(size 3x4x5\)"),
        ("", r"empty format"),
    ],
)
def test_bad_data_format(args, fmt, match):
    _raises(args, match, DataFormat=fmt)


def test_nonsingleton_u(args):
    _raises(args, r"'U' dimensions must be singleton, found size 4 in dimension 2 of X", DataFormat="CUT")


def test_missing_data_format(args):
    with pytest.raises(MlstmError, match=r"DataFormat option is required"):
        lstm(*args)


@pytest.mark.parametrize(
    "index,value,match",
    [
        (0, np.ones((3, 4, 5), dtype=np.int32), r"X: expected a single or double array, found int32"),
        (1, np.ones((2, 4), dtype=bool), r"H0: expected a single or double array, found logical"),
        (2, np.ones((2, 4), dtype=complex), r"C0: expected a single or double array, found complex double"),
        (3, "abc", r"weights: expected a single or double array, found char"),
        (4, np.array([[1, 2]], dtype=object), r"recurrentWeights: expected a single or double array, found cell"),
        (5, np.ones(8, dtype=np.uint8), r"bias: expected a single or double array, found uint8"),
    ],
)
def test_bad_classes_are_type_errors(args, index, value, match):
    args[index] = value
    err = _raises(args, match, exc=MlstmTypeError)
    assert isinstance(err, TypeError)


def test_sparse_is_rejected(args):
    import scipy.sparse

    args[3] = scipy.sparse.csr_matrix(args[3])
    _raises(args, r"weights: expected a full single or double array, found a sparse array", exc=MlstmTypeError)


def test_h0_wrong_batch(args):
    args[1] = np.zeros((2, 3))
    _raises(args, r"H0: expected size 2x1 or 2x4 \(H-by-1 or H-by-B, B = 4 from X\), found 2x3")


def test_c0_wrong_hidden(args):
    args[2] = np.zeros((3, 4))
    _raises(args, r"C0: expected 2 rows \(the number of hidden units, from the first dimension of H0\), found size 3x4")


def test_state_three_dims(args):
    args[1] = np.zeros((2, 4, 2))
    _raises(args, r"H0: expected an H-by-1 or H-by-B matrix, found size 2x4x2")


def test_row_vector_state_must_match_batch(args):
    args[1] = np.zeros((1, 3))
    args[2] = np.zeros((1, 3))
    _raises(args, r"H0: expected size 1x1 or 1x4")


def test_weights_wrong_size(args):
    args[3] = np.zeros((8, 4))
    _raises(args, r"weights: expected size 4H-by-InputSize = 8x3 \(H = 2 from H0, InputSize = 3 from X\), found 8x4")


def test_recurrent_weights_wrong_size(args):
    args[4] = np.zeros((8, 3))
    _raises(args, r"recurrentWeights: expected size 4H-by-H = 8x2 \(H = 2 from H0\), found 8x3")


def test_bias_wrong_size(args):
    args[5] = np.zeros((2, 4))
    _raises(args, r"bias: expected a vector of length 4H = 8 \(8x1 or 1x8, H = 2 from H0\), found size 2x4")


def test_bias_row_and_column_accepted(args):
    b = args[5]
    y1 = lstm(*args[:5], b.reshape(-1, 1), DataFormat="CBT")[0]
    y2 = lstm(*args[:5], b.reshape(1, -1), DataFormat="CBT")[0]
    np.testing.assert_array_equal(y1, y2)


def test_s_flattening_input_size_in_message(rng):
    X = rng.standard_normal((2, 3, 4, 5))  # S S B T? use SCBT: S=2, C=3
    H0 = np.zeros((2, 1))
    W = np.zeros((8, 3))  # should be 8 x 6
    with pytest.raises(MlstmError, match=r"InputSize = 6 from X"):
        lstm(X, H0, H0, W, np.zeros((8, 2)), np.zeros(8), DataFormat="SCBT")


@pytest.mark.parametrize(
    "opts,match",
    [
        ({"Foo": "x"}, r"unknown name-value option 'Foo'; valid names are DataFormat, StateActivationFunction"),
        (
            {"StateActivationFunction": "sigmoid"},
            r"StateActivationFunction: expected one of 'tanh', 'softsign', 'relu', found 'sigmoid'",
        ),
        (
            {"GateActivationFunction": "tanh"},
            r"GateActivationFunction: expected one of 'sigmoid', 'hard-sigmoid', found 'tanh'",
        ),
        ({"DataFormat": 3}, r"DataFormat: expected a character vector or string scalar, found int"),
    ],
)
def test_bad_options(args, opts, match):
    with pytest.raises(MlstmError, match=match):
        lstm(*args, **opts)


def test_engine_name_checked(args):
    with pytest.raises(MlstmError, match=r"engine: expected one of numpy, cupy, auto, found 'torch'"):
        lstm(*args, DataFormat="CBT", engine="torch")


def test_cupy_request_without_gpu_is_an_error(args):
    from mlstm.engines import cupy_unavailable_reason

    if cupy_unavailable_reason() is None:
        pytest.skip("a GPU is usable here; the error path needs a machine without one")
    with pytest.raises(MlstmError, match=r"engine: the cupy engine was requested but"):
        lstm(*args, DataFormat="CBT", engine="cupy")
    # auto falls back to NumPy
    Y, _, _ = lstm(*args, DataFormat="CBT", engine="auto")
    np.testing.assert_array_equal(Y, lstm(*args, DataFormat="CBT")[0])
