"""Spatial regularisation terms against plain numpy references written here."""

import math

import numpy as np
import pytest
import torch

from hashwfa.errors import HashwfaError
from hashwfa.training.smoothness import squared_gradient, total_variation


def _pairs(mask):
    """Every 4-neighbour pair (p, q) of valid pixels, once, by explicit loops."""
    ny, nx = mask.shape
    out = []
    for y in range(ny):
        for x in range(nx):
            if not mask[y, x]:
                continue
            if x + 1 < nx and mask[y, x + 1]:
                out.append(((y, x), (y, x + 1)))
            if y + 1 < ny and mask[y + 1, x]:
                out.append(((y, x), (y + 1, x)))
    return out


def reference_squared_gradient(m, mask):
    m = m if m.ndim == 3 else m[..., None]
    total = sum(float(np.sum((m[q] - m[p]) ** 2)) for p, q in _pairs(mask))
    return total / max(int(mask.sum()), 1)


def reference_tv(m, mask, eps):
    m = m if m.ndim == 3 else m[..., None]
    ny, nx = mask.shape
    total = 0.0
    for y in range(ny):
        for x in range(nx):
            if not mask[y, x]:
                continue
            dx = m[y, x + 1] - m[y, x] if x + 1 < nx and mask[y, x + 1] else 0.0 * m[y, x]
            dy = m[y + 1, x] - m[y, x] if y + 1 < ny and mask[y + 1, x] else 0.0 * m[y, x]
            total += math.sqrt(float(np.sum(dx**2 + dy**2)) + eps**2) - eps
    return total / max(int(mask.sum()), 1)


def _case(channels, seed=0):
    rng = np.random.default_rng(seed)
    shape = (7, 9) if channels is None else (7, 9, channels)
    m = rng.normal(size=shape) * 100.0
    mask = rng.random((7, 9)) > 0.25
    m[~mask] = np.nan  # invalid pixels may hold anything
    return m, mask


@pytest.mark.parametrize("channels", [None, 1, 2])
def test_squared_gradient_matches_loops(channels):
    m, mask = _case(channels)
    got = squared_gradient(torch.tensor(m), torch.tensor(mask))
    assert float(got) == pytest.approx(reference_squared_gradient(m, mask), rel=1e-12)


@pytest.mark.parametrize("channels", [None, 2])
@pytest.mark.parametrize("eps", [0.0, 3.0])
def test_total_variation_matches_loops(channels, eps):
    m, mask = _case(channels, seed=1)
    got = total_variation(torch.tensor(m), torch.tensor(mask), eps=eps)
    assert float(got) == pytest.approx(reference_tv(m, mask, eps), rel=1e-12)


def test_known_values_on_a_ramp_and_a_step():
    # A ramp of slope 2 along x on a full 4x5 mask: 4 rows x 4 pairs of 2^2, / 20 pixels.
    ramp = torch.arange(5, dtype=torch.float64).mul(2).expand(4, 5)
    mask = torch.ones(4, 5, dtype=torch.bool)
    assert float(squared_gradient(ramp, mask)) == pytest.approx(4 * 4 * 4 / 20)
    # TV of a step of height h: one jump per row, whatever the mask size: 4 h / 20.
    step = torch.zeros(4, 5, dtype=torch.float64)
    step[:, 3:] = 7.0
    assert float(total_variation(step, mask)) == pytest.approx(4 * 7.0 / 20)
    # The squared gradient of the same step: 4 h^2 / 20 (grows with h^2, TV with h).
    assert float(squared_gradient(step, mask)) == pytest.approx(4 * 49.0 / 20)
    # Constants cost nothing.
    assert float(total_variation(torch.full((4, 5), 3.0), mask)) == 0.0


def test_invalid_pixels_get_no_gradient_and_nan_does_not_leak():
    m, mask = _case(2, seed=2)
    t = torch.tensor(m, requires_grad=True)
    loss = squared_gradient(t, torch.tensor(mask)) + total_variation(t, torch.tensor(mask), eps=1.0)
    loss.backward()
    assert torch.isfinite(loss)
    grad = t.grad.numpy()
    assert np.all(grad[~mask] == 0.0)
    assert np.all(np.isfinite(grad))


def test_gradients_match_finite_differences():
    m, mask = _case(2, seed=3)
    m[~mask] = 0.0
    t = torch.tensor(m, requires_grad=True)
    maskt = torch.tensor(mask)
    assert torch.autograd.gradcheck(lambda x: squared_gradient(x, maskt), (t,))
    assert torch.autograd.gradcheck(lambda x: total_variation(x, maskt, eps=5.0), (t,))


def test_tv_without_eps_has_finite_zero_gradient_on_flat_pixels():
    t = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)
    total_variation(t, torch.ones(3, 4, dtype=torch.bool)).backward()
    assert torch.all(t.grad == 0.0)


def test_empty_mask_and_bad_inputs():
    m = torch.ones(3, 3)
    assert float(squared_gradient(m, torch.zeros(3, 3, dtype=torch.bool))) == 0.0
    with pytest.raises(HashwfaError, match="mask"):
        squared_gradient(m, torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(HashwfaError, match="shape"):
        total_variation(torch.ones(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(HashwfaError, match="eps"):
        total_variation(m, torch.ones(3, 3, dtype=torch.bool), eps=-1.0)
