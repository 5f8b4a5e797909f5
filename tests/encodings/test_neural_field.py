"""NeuralField: the reference protocol's MLP head on an encoding."""

import math

import pytest
import torch

from hashwfa.encodings import HashEncoding, NeuralField
from hashwfa.errors import HashwfaError


def _encoding(version=1, **kw):
    return HashEncoding(version, n_levels=4, base_resolution=2, max_resolution=16, backend="torch", **kw)


def test_seed_protocol_architecture():
    field = NeuralField(_encoding(), 2)
    kinds = [type(m).__name__ for m in field.layers]
    assert kinds == ["Linear", "GELU", "Linear", "GELU", "Linear"]
    shapes = [(m.in_features, m.out_features) for m in field.layers if isinstance(m, torch.nn.Linear)]
    assert shapes == [(8, 64), (64, 64), (64, 2)]
    assert all(m.approximate == "none" for m in field.layers if isinstance(m, torch.nn.GELU))
    assert field.encoding.n_output_dims == 8 and field.input_dim == 2
    v6 = NeuralField(_encoding(6), 1, n_neurons=16, n_hidden_layers=3)
    shapes = [(m.in_features, m.out_features) for m in v6.layers if isinstance(m, torch.nn.Linear)]
    assert shapes == [(10, 16), (16, 16), (16, 16), (16, 1)]


def test_forward_is_encoding_then_head():
    field = NeuralField(_encoding(2), 3, n_neurons=32, seed=4)
    x = torch.rand(40, 2) * 2 - 1
    lin = [m for m in field.layers if isinstance(m, torch.nn.Linear)]
    gelu = lambda t: 0.5 * t * (1 + torch.erf(t / math.sqrt(2)))  # noqa: E731
    h = field.encoding(x)
    h = gelu(h @ lin[0].weight.T + lin[0].bias)
    h = gelu(h @ lin[1].weight.T + lin[1].bias)
    expected = h @ lin[2].weight.T + lin[2].bias
    out = field(x)
    assert out.shape == (40, 3) and out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


def test_seeded_init_without_touching_global_rng():
    enc = _encoding()
    state = torch.get_rng_state()
    a = NeuralField(enc, 2, seed=1)
    b = NeuralField(enc, 2, seed=1)
    c = NeuralField(enc, 2, seed=2)
    assert torch.equal(torch.get_rng_state(), state)
    for pa, pb in zip(a.layers.parameters(), b.layers.parameters()):
        assert torch.equal(pa, pb)
    assert not torch.equal(a.layers[0].weight, c.layers[0].weight)
    # nn.Linear's default bounds: +-1/sqrt(fan_in) for weights and biases.
    for m in a.layers:
        if isinstance(m, torch.nn.Linear):
            bound = 1 / math.sqrt(m.in_features)
            assert m.weight.abs().max() <= bound and m.bias.abs().max() <= bound
            assert m.weight.std() > 0.3 * bound  # actually random, not zeros


def test_gradients_reach_grid_and_head():
    field = NeuralField(_encoding(3), 1)
    x = torch.rand(64, 2) * 2 - 1
    field(x).square().mean().backward()
    names = {n for n, p in field.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert "encoding.grid.params" in names and "layers.0.weight" in names and "encoding.smoother.fc1_weight" in names


def test_float64_encoding_gives_float64_head():
    field = NeuralField(_encoding(0, dtype=torch.float64), 1)
    assert field.layers[0].weight.dtype == torch.float64
    assert field(torch.zeros(3, 2, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("kwargs, words", [
    (dict(n_outputs=0), "n_outputs"),
    (dict(n_outputs=1, n_neurons=0), "n_neurons"),
    (dict(n_outputs=1, n_hidden_layers=0), "n_hidden_layers"),
])
def test_errors(kwargs, words):
    with pytest.raises(HashwfaError, match=words):
        NeuralField(_encoding(), **kwargs)
    with pytest.raises(HashwfaError, match="n_output_dims"):
        NeuralField(torch.nn.Identity(), 1)


def test_head_and_grid_with_one_seed_draw_different_numbers():
    from hashwfa.encodings.hash_encoding import derive_seed

    assert derive_seed(7, 0) == 7
    seeds = {derive_seed(s, k) for s in range(4) for k in range(4)}
    assert len(seeds) == 16  # neighbouring seeds x components never collide
    enc = _encoding(0, seed=5)
    field = NeuralField(enc, 1, seed=5)
    grid_uniform = enc.grid.params.detach()[:64].double() / 1e-4  # table init: U(-1e-4, 1e-4)
    head_uniform = field.layers[0].weight.detach().flatten()[:64].double() * math.sqrt(8)
    assert not torch.allclose(grid_uniform, head_uniform, atol=1e-3)
