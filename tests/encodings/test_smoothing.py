"""The level smoother against a plainly written per-level loop of stock layers."""

import math

import pytest
import torch
import torch.nn.functional as nnf

from hashwfa.encodings.smoothing import GATE_INIT, LevelSmoother
from hashwfa.errors import HashwfaError


def _loop_oracle(smoother: LevelSmoother, x: torch.Tensor) -> torch.Tensor:
    """One level at a time: what nn.Linear, nn.LayerNorm, nn.GELU and nn.Linear compute,
    called through torch.nn.functional on the smoother's own parameters (so that
    gradients reach them)."""
    n_levels, n_feat, hidden = smoother.n_levels, smoother.n_features_per_level, smoother.hidden
    outs = []
    for level in range(n_levels):
        p = level if smoother.per_level else 0
        f = x[:, level * n_feat:(level + 1) * n_feat]
        h = nnf.linear(f, smoother.fc1_weight[p], smoother.fc1_bias[p])
        h = nnf.layer_norm(h, (hidden,), smoother.norm_weight[p], smoother.norm_bias[p], eps=1e-5)
        h = torch.nn.GELU()(h)
        m = nnf.linear(h, smoother.fc2_weight[p], smoother.fc2_bias[p])
        outs.append(f + torch.sigmoid(smoother.gate[p]) * m)
    return torch.cat(outs, dim=1)


def test_oracle_is_the_stock_modules():
    # The functional oracle above is nn.Sequential(Linear, LayerNorm, GELU, Linear).
    sm = _randomised(LevelSmoother(2, 2, per_level=True, seed=1, dtype=torch.float64), 9)
    fc1, norm, fc2 = torch.nn.Linear(2, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 2)
    mlp = torch.nn.Sequential(fc1, norm, torch.nn.GELU(), fc2).double()
    with torch.no_grad():
        fc1.weight.copy_(sm.fc1_weight[1])
        fc1.bias.copy_(sm.fc1_bias[1])
        norm.weight.copy_(sm.norm_weight[1])
        norm.bias.copy_(sm.norm_bias[1])
        fc2.weight.copy_(sm.fc2_weight[1])
        fc2.bias.copy_(sm.fc2_bias[1])
        x = torch.randn(9, 4, dtype=torch.float64)
        f = x[:, 2:4]
        torch.testing.assert_close(_loop_oracle(sm, x)[:, 2:4], f + torch.sigmoid(sm.gate[1]) * mlp(f))


def _randomised(smoother: LevelSmoother, seed: int) -> LevelSmoother:
    # Move every parameter off its initial value so that each one matters.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in smoother.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return smoother


@pytest.mark.parametrize("per_level", [False, True])
@pytest.mark.parametrize("n_feat", [1, 2, 4, 8])
def test_matches_per_level_loop_forward_and_backward(per_level, n_feat):
    torch.manual_seed(0)
    n_levels = 5
    sm = _randomised(LevelSmoother(n_levels, n_feat, per_level=per_level, seed=3, dtype=torch.float64), 1)
    x = torch.randn(37, n_levels * n_feat, dtype=torch.float64, requires_grad=True)
    y = sm(x)
    y_ref = _loop_oracle(sm, x)
    assert y.shape == (37, n_levels * n_feat)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)

    grad_out = torch.randn_like(y)
    params = [x, *sm.parameters()]
    got = torch.autograd.grad(y, params, grad_out)
    want = torch.autograd.grad(y_ref, params, grad_out)
    for (name, _), g, w in zip([("x", None), *sm.named_parameters()], got, want):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12, msg=f"gradient of {name}")


@pytest.mark.parametrize("per_level", [False, True])
def test_float32_matches_float64(per_level):
    sm64 = _randomised(LevelSmoother(16, 2, per_level=per_level, seed=5, dtype=torch.float64), 2)
    sm32 = LevelSmoother(16, 2, per_level=per_level, seed=5)
    sm32.load_state_dict({k: v.float() for k, v in sm64.state_dict().items()})
    x = torch.randn(2000, 32, dtype=torch.float64)
    torch.testing.assert_close(sm32(x.float()).double(), sm64(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("per_level", [False, True])
def test_gradcheck(per_level):
    sm = _randomised(LevelSmoother(3, 2, per_level=per_level, seed=7, dtype=torch.float64), 3)
    x = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    params = tuple(sm.parameters())

    def fn(x, *ps):
        from hashwfa.encodings.smoothing import _SmootherFunction

        return _SmootherFunction.apply(x, *ps, sm.n_levels, sm.eps)

    assert torch.autograd.gradcheck(fn, (x, *params))


def test_gate_starts_at_sigmoid_of_0_1_and_shapes():
    shared = LevelSmoother(16, 2, per_level=False)
    per = LevelSmoother(16, 2, per_level=True)
    assert shared.gate.shape == (1,) and per.gate.shape == (16,)
    assert torch.all(shared.gate == GATE_INIT) and torch.all(per.gate == GATE_INIT)
    assert math.isclose(float(torch.sigmoid(shared.gate.detach())), 1 / (1 + math.exp(-0.1)), rel_tol=1e-6)
    assert per.fc1_weight.shape == (16, 8, 2) and per.fc2_weight.shape == (16, 2, 8)
    assert shared.fc1_weight.shape == (1, 8, 2)
    # LayerNorm starts as the identity affine, the linear layers as nn.Linear's bounds.
    assert torch.all(per.norm_weight == 1) and torch.all(per.norm_bias == 0)
    assert per.fc1_weight.abs().max() <= 1 / math.sqrt(2)
    assert per.fc2_weight.abs().max() <= 1 / math.sqrt(8)
    # Per-level MLPs are drawn independently.
    assert not torch.equal(per.fc1_weight[0], per.fc1_weight[1])


def test_output_with_gate_closed_is_the_input():
    sm = LevelSmoother(4, 2, per_level=True)
    with torch.no_grad():
        sm.gate.fill_(-1e4)  # sigmoid -> 0
    x = torch.randn(10, 8)
    torch.testing.assert_close(sm(x), x)


def test_levels_are_independent_under_per_level():
    # Changing level 2's input changes only level 2's output.
    sm = _randomised(LevelSmoother(4, 2, per_level=True, dtype=torch.float64), 4)
    x = torch.randn(5, 8, dtype=torch.float64)
    x2 = x.clone()
    x2[:, 4:6] += 1.0
    diff = (sm(x2) - sm(x)).abs().amax(0)
    assert torch.all(diff[4:6] > 0)
    assert torch.all(diff[:4] == 0) and torch.all(diff[6:] == 0)


def test_seeded_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = LevelSmoother(16, 2, per_level=True, seed=11)
    b = LevelSmoother(16, 2, per_level=True, seed=11)
    c = LevelSmoother(16, 2, per_level=True, seed=12)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.fc1_weight, c.fc1_weight)


def test_empty_batch_and_shape_errors():
    sm = LevelSmoother(4, 2)
    assert sm(torch.zeros(0, 8)).shape == (0, 8)
    with pytest.raises(HashwfaError, match=r"\[N, 8\]"):
        sm(torch.zeros(3, 7))
    with pytest.raises(HashwfaError, match="n_levels"):
        LevelSmoother(0, 2)
