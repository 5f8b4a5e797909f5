"""Gradient normalisation: each gradient divided by its mean absolute value."""

import pytest
import torch

import hashwfa.training.gradients as gradients
from hashwfa.training.gradients import normalise_gradients


@pytest.mark.parametrize("foreach", [True, False], ids=["foreach", "per-tensor"])
def test_gradient_normalisation_divides_by_mean_absolute_value(foreach, monkeypatch):
    monkeypatch.setattr(gradients, "_FOREACH", foreach and gradients._FOREACH)
    generator = torch.Generator().manual_seed(0)
    a = torch.nn.Parameter(torch.zeros(3, 4))
    b = torch.nn.Parameter(torch.zeros(5))
    c = torch.nn.Parameter(torch.zeros(2))  # no gradient: left alone
    a.grad = torch.randn(3, 4, generator=generator) * 7
    b.grad = torch.zeros(5)  # stays zero, no NaN
    # The oracle: mean |g| written out element by element.
    mean_abs = sum(abs(float(v)) for v in a.grad.flatten()) / a.grad.numel()
    expected = a.grad / (mean_abs + 1e-12)
    normalise_gradients([a, b, c])
    torch.testing.assert_close(a.grad, expected)
    assert float(a.grad.abs().mean()) == pytest.approx(1.0, rel=1e-6)
    assert torch.equal(b.grad, torch.zeros(5))
    assert c.grad is None


def test_no_gradients_is_a_no_op():
    p = torch.nn.Parameter(torch.ones(3))
    normalise_gradients([p])
    assert p.grad is None
