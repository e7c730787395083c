"""Option values that used to slip through: an empty --shard, non-ASCII DataFormat letters that
Unicode case folding turns into valid labels, negative or NaN comparison tolerances."""

import numpy as np
import pytest
import scipy.io
from conftest import assert_one_line_error, run_mlstm
from reference import random_problem

from mlstm import lstm
from mlstm.errors import MlstmError

NAMES = ("X", "H0", "C0", "weights", "recurrentWeights", "bias")


@pytest.mark.parametrize("fmt", ["ſCBT", "CBT\u0130", "ＣBT", "CB\u0074\u0307"])
def test_data_format_accepts_only_ascii_labels(fmt):
    args = random_problem(np.random.default_rng(0), C=3, H=2, B=2, T=3)
    with pytest.raises(MlstmError, match="DataFormat"):
        lstm(*args, DataFormat=fmt)
    assert lstm(*args, DataFormat="cbt")[0].shape == (2, 2, 3)  # ASCII case-insensitivity stays


def test_empty_shard_is_an_error(tmp_path):
    scipy.io.savemat(tmp_path / "a.mat", dict(zip(NAMES, random_problem(np.random.default_rng(1)))))
    proc = run_mlstm("batch", tmp_path / "a.mat", "--out-dir", tmp_path / "out", "--shard", "", "DataFormat=CBT")
    assert_one_line_error(proc, "--shard", "found ''")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("option,value", [("--rtol", "-1"), ("--atol", "nan"), ("--rtol", "inf"), ("--atol", "-1e-9")])
def test_check_tolerances_must_be_finite_and_non_negative(tmp_path, option, value):
    Y = np.ones((2, 3))
    scipy.io.savemat(tmp_path / "a.mat", dict(Y=Y, hiddenState=Y[:, :1], cellState=Y[:, :1]))
    proc = run_mlstm("check", tmp_path / "a.mat", tmp_path / "a.mat", option, value)
    assert_one_line_error(proc, option, "finite tolerance >= 0")
