"""Where each argument comes from: zero initial states with weights from frameworks that start
from zeros (ONNX, PyTorch, Keras), but never with MATLAB-layout weights."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
from conftest import assert_one_line_error, run_mlstm
from reference import reference_lstm

safetensors_numpy = pytest.importorskip("safetensors.numpy")


def _torch_state_dict(path, rng, hidden=3, inputs=4):
    tensors = {
        "weight_ih_l0": rng.standard_normal((4 * hidden, inputs)).astype(np.float32),
        "weight_hh_l0": rng.standard_normal((4 * hidden, hidden)).astype(np.float32),
        "bias_ih_l0": rng.standard_normal(4 * hidden).astype(np.float32),
        "bias_hh_l0": rng.standard_normal(4 * hidden).astype(np.float32),
    }
    safetensors_numpy.save_file(tensors, str(path))
    return tensors


def test_missing_states_are_zeros_with_pytorch_weights(tmp_path, rng):
    t = _torch_state_dict(tmp_path / "sd.safetensors", rng)
    x = rng.standard_normal((4, 2, 6)).astype(np.float32)
    scipy.io.savemat(tmp_path / "x.mat", {"X": x})
    out = tmp_path / "o.mat"
    proc = run_mlstm(
        "run", "x.mat", "--weights", "sd.safetensors", "-o", out, "DataFormat=CBT", "-v", cwd=tmp_path, check=0
    )
    zeros = np.zeros((3, 2))
    bias = (t["bias_ih_l0"].astype(np.float64) + t["bias_hh_l0"]).reshape(-1, 1)
    y_ref, h_ref, c_ref = reference_lstm(x, zeros, zeros, t["weight_ih_l0"], t["weight_hh_l0"], bias, "CBT")
    got = scipy.io.loadmat(out)
    assert got["Y"].dtype == np.float32
    np.testing.assert_allclose(got["Y"], y_ref, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(got["cellState"], c_ref, rtol=2e-5, atol=2e-6)
    assert "H0: not given; zeros (3x1)" in proc.stderr and "C0: not given" in proc.stderr


def test_given_states_win_over_zeros(tmp_path, rng):
    t = _torch_state_dict(tmp_path / "sd.safetensors", rng)
    x = rng.standard_normal((4, 2, 6)).astype(np.float32)
    h0 = rng.standard_normal((3, 2)).astype(np.float32)
    c0 = rng.standard_normal((3, 2)).astype(np.float32)
    scipy.io.savemat(tmp_path / "x.mat", {"X": x, "H0": h0, "C0": c0})
    run_mlstm("run", "x.mat", "--weights", "sd.safetensors", "-o", "o.mat", "DataFormat=CBT", cwd=tmp_path, check=0)
    bias = (t["bias_ih_l0"].astype(np.float64) + t["bias_hh_l0"]).reshape(-1, 1)
    y_ref, _, _ = reference_lstm(x, h0, c0, t["weight_ih_l0"], t["weight_hh_l0"], bias, "CBT")
    np.testing.assert_allclose(scipy.io.loadmat(tmp_path / "o.mat")["Y"], y_ref, rtol=2e-5, atol=2e-6)


def test_matlab_layout_weights_file_still_needs_the_states(tmp_path, rng):
    scipy.io.savemat(tmp_path / "x.mat", {"X": rng.standard_normal((4, 2, 6))})
    scipy.io.savemat(
        tmp_path / "w.mat",
        {"weights": np.ones((12, 4)), "recurrentWeights": np.ones((12, 3)), "bias": np.ones((12, 1))},
    )
    proc = run_mlstm("run", "x.mat", "--weights", "w.mat", "-o", "o.mat", "DataFormat=CBT", cwd=tmp_path)
    assert_one_line_error(proc, "no variable 'H0'")


def test_run_file_is_what_the_cli_runs(tmp_path, rng):
    import mlstm

    x = rng.standard_normal((4, 2, 6))
    h0, c0 = rng.standard_normal((3, 2)), rng.standard_normal((3, 2))
    w, r, b = rng.standard_normal((12, 4)), rng.standard_normal((12, 3)), rng.standard_normal((12, 1))
    scipy.io.savemat(tmp_path / "in.mat", {"X": x, "H0": h0, "C0": c0, "weights": w, "recurrentWeights": r, "bias": b})
    report = mlstm.run_file(str(tmp_path / "in.mat"), str(tmp_path / "out.mat"), DataFormat="CBT")
    y_ref, h_ref, c_ref = reference_lstm(x, h0, c0, w, r, b, "CBT")
    got = scipy.io.loadmat(tmp_path / "out.mat")
    np.testing.assert_allclose(got["Y"], y_ref, rtol=1e-12, atol=1e-14)
    assert (report.format, report.compute_class, report.y_size, report.streamed) == ("mat", "double", (3, 2, 6), False)
    with pytest.raises(mlstm.MlstmError, match="DataFormat"):
        mlstm.run_file(str(tmp_path / "in.mat"), str(tmp_path / "o2.mat"), DataFormat="CBX")
    assert not (tmp_path / "o2.mat").exists()


def test_a_mistyped_var_is_an_error_not_zero_states(tmp_path, rng):
    _torch_state_dict(tmp_path / "sd.safetensors", rng)
    scipy.io.savemat(tmp_path / "x.mat", {"X": rng.standard_normal((4, 2, 6)), "h_init": np.ones((3, 2))})
    proc = run_mlstm(
        "run",
        "x.mat",
        "--weights",
        "sd.safetensors",
        "--var",
        "H0=h_iint",
        "-o",
        "o.mat",
        "DataFormat=CBT",
        cwd=tmp_path,
    )
    assert_one_line_error(proc, "no variable 'h_iint'")
    assert not (tmp_path / "o.mat").exists()
