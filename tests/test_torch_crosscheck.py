"""Cross-check against torch.nn.LSTM (same i, f, g, o gate stacking), when torch is importable."""

import numpy as np
import pytest

from mlstm import lstm

torch = pytest.importorskip("torch")


@pytest.mark.parametrize("C,H,B,T", [(5, 4, 3, 20), (1, 1, 1, 7), (8, 16, 1, 50)])
def test_matches_torch_lstm_float64(C, H, B, T):
    rng = np.random.default_rng(C * 100 + H)
    X = rng.standard_normal((T, B, C))
    W = rng.standard_normal((4 * H, C)) * 0.4
    R = rng.standard_normal((4 * H, H)) * 0.4
    b = rng.standard_normal(4 * H) * 0.2
    H0 = rng.standard_normal((H, B)) * 0.5
    C0 = rng.standard_normal((H, B)) * 0.5
    layer = torch.nn.LSTM(C, H, dtype=torch.float64)
    with torch.no_grad():
        layer.weight_ih_l0.copy_(torch.from_numpy(W))
        layer.weight_hh_l0.copy_(torch.from_numpy(R))
        layer.bias_ih_l0.copy_(torch.from_numpy(b))
        layer.bias_hh_l0.zero_()
        state = (torch.from_numpy(H0.T[None].copy()), torch.from_numpy(C0.T[None].copy()))
        out, (hn, cn) = layer(torch.from_numpy(X), state)
    # torch's (T, B, C) layout is MATLAB's "TBC" (MATLAB drops Y's trailing singleton C when H = 1).
    Y, h, c = lstm(X, H0, C0, W, R, b, DataFormat="TBC")
    assert Y.shape == ((T, B, H) if H > 1 else (T, B))
    np.testing.assert_allclose(Y.reshape(T, B, H), out.numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h, hn[0].numpy().T, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(c, cn[0].numpy().T, rtol=1e-12, atol=1e-14)
