"""TorchGrid against a plainly written oracle of tiny-cuda-nn's grid (docs/ARCHITECTURE.md section 3).

The oracle below is deliberately naive: Python integers for every index (so
uint32 arithmetic is explicit with ``& 0xFFFFFFFF``), one point, one level and
one corner at a time, numpy float32 scalars where tcnn computes in float32.
It shares no code with ``hashwfa.encodings``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hashwfa.encodings import TorchGrid, static_coordinates
from hashwfa.errors import HashwfaError

PRIMES = [1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737]
MAX_BASES = {1: 0xFFFFFFFF, 2: 0xFFFF, 3: 0x659, 4: 0xFF}


def oracle_levels(dims, grid_type, n_levels, log2_size, base, per_level_scale):
    """(scale, resolution, size, offset) per level, tcnn's constructor by hand."""
    levels = []
    offset = 0
    log2_scale = np.float32(math.log2(np.float32(per_level_scale)))
    for level in range(n_levels):
        scale = np.float32(np.float32(2.0) ** np.float32(np.float32(level) * log2_scale)) * np.float32(base) - np.float32(1)
        scale = np.float32(scale)
        res = int(math.ceil(float(scale))) + 1
        size = res**dims
        size = (size + 7) // 8 * 8
        if grid_type == "Hash":
            size = min(size, 2**log2_size)
        levels.append((scale, res, size, offset))
        offset += size
    return levels, offset


def oracle_encode(x, params, dims, grid_type, n_levels, n_features, log2_size, base, per_level_scale, interpolation):
    """Encode points one by one, level by level, corner by corner."""
    levels, _ = oracle_levels(dims, grid_type, n_levels, log2_size, base, per_level_scale)
    out = np.zeros((len(x), n_levels * n_features), dtype=np.float64)
    for n, point in enumerate(x):
        for level, (scale, res, size, offset) in enumerate(levels):
            cell, frac = [], []
            for d in range(dims):
                pos = np.float32(float(scale) * float(np.float32(point[d])) + 0.5)  # fmaf: one rounding
                c = math.floor(float(pos))
                cell.append(c)
                frac.append(float(np.float32(pos - np.float32(c))))

            def index(corner):
                dense_fits = res <= MAX_BASES[dims]
                stride, idx = 1, 0
                if dense_fits:
                    for d in range(dims):
                        idx += (corner[d] & 0xFFFFFFFF) * stride
                        stride *= res
                else:
                    stride = 0xFFFFFFFF
                if grid_type == "Hash" and size < stride:
                    idx = 0
                    for d in range(dims):
                        idx ^= ((corner[d] & 0xFFFFFFFF) * PRIMES[d]) & 0xFFFFFFFF
                return (idx & 0xFFFFFFFF) % size

            if interpolation == "Nearest":
                i = index(cell)
                for f in range(n_features):
                    out[n, level * n_features + f] = params[(offset + i) * n_features + f]
                continue
            if interpolation == "Smoothstep":
                frac = [t * t * (3 - 2 * t) for t in frac]
            for c in range(2**dims):
                weight = 1.0
                corner = []
                for d in range(dims):
                    if c >> d & 1:
                        weight *= frac[d]
                        corner.append(cell[d] + 1)
                    else:
                        weight *= 1 - frac[d]
                        corner.append(cell[d])
                i = index(corner)
                for f in range(n_features):
                    out[n, level * n_features + f] += weight * params[(offset + i) * n_features + f]
    return out


def _config(grid_type, n_levels, n_features, log2_size, base, per_level_scale, interpolation="Linear"):
    return {
        "otype": "HashGrid" if grid_type == "Hash" else "DenseGrid",
        "n_levels": n_levels,
        "n_features_per_level": n_features,
        "log2_hashmap_size": log2_size,
        "base_resolution": base,
        "per_level_scale": per_level_scale,
        "interpolation": interpolation,
    }


CASES = [
    # grid type, D, levels, F, log2 size, base, per-level scale
    ("Hash", 2, 16, 2, 19, 1, 32 ** (1 / 15)),  # the reference report's: every level fits densely
    ("Dense", 2, 16, 2, 19, 1, 32 ** (1 / 15)),
    ("Hash", 2, 8, 2, 14, 16, (2048 / 16) ** (1 / 7)),  # fine levels hashed
    ("Hash", 3, 6, 4, 12, 4, 2.0),  # 3-D, hashed beyond level 2
    ("Dense", 3, 4, 1, 19, 2, 1.7),
    ("Hash", 1, 5, 8, 6, 8, 2.0),
    ("Hash", 4, 3, 2, 10, 2, 2.5),
]


@pytest.mark.parametrize("interpolation", ["Linear", "Smoothstep", "Nearest"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-D{c[1]}-L{c[2]}-F{c[3]}")
def test_matches_oracle(case, interpolation):
    grid_type, dims, n_levels, n_features, log2_size, base, scale = case
    config = _config(grid_type, n_levels, n_features, log2_size, base, scale, interpolation)
    grid = TorchGrid(dims, config, seed=3)
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        grid.params.copy_(torch.randn(grid.params.shape, generator=generator))
    x = torch.rand(40, dims, generator=generator)
    x[0] = 0.0
    x[1] = 1.0
    x[2, 0] = 1.0
    x[3, -1] = 0.0
    expected = oracle_encode(
        x.numpy(), grid.params.detach().double().numpy(), dims, grid_type, n_levels, n_features, log2_size, base, scale, interpolation
    )
    got = grid(x).detach().double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_fine_levels_are_hashed_and_coarse_dense():
    grid = TorchGrid(2, _config("Hash", 8, 2, 14, 16, (2048 / 16) ** (1 / 7)))
    res = grid.layout.resolutions
    # Dense while res^2 fits in 2^14 entries, hashed beyond.
    assert list(grid.layout.hashed) == [r * r > 2**14 for r in res]
    assert grid.layout.hashed.any() and not grid.layout.hashed.all()


@pytest.mark.parametrize(
    "config, dims, expected_entries",
    [
        # Reference protocol: 16 levels, base 1, max 32, F=2. Resolutions by hand:
        # scale_l = 2^(l/3) - 1 in float32 -> 1,2,2,3,3,4,5,6,7,9,11,13,17,21,26,33;
        # entries res^2 rounded up to 8: 8,8,8,16,16,16,32,40,56,88,128,176,296,448,680,1096.
        (_config("Hash", 16, 2, 19, 1, 32 ** (1 / 15)), 2, 3112),
        (_config("Dense", 16, 2, 19, 1, 32 ** (1 / 15)), 2, 3112),
        # base 16, 2x per level, 4 levels, 2-D: res 16, 32, 64, 128 -> 256, 1024, 4096, 16384;
        # a 2^12 hash table caps the last level at 4096.
        (_config("Hash", 4, 2, 12, 16, 2.0), 2, 256 + 1024 + 4096 + 4096),
        (_config("Dense", 4, 2, 12, 16, 2.0), 2, 256 + 1024 + 4096 + 16384),
        # 3-D, base 3, scale 2: scale_l = 3 * 2^l - 1 = 2, 5, 11 -> res 3, 6, 12
        # -> 27 -> 32, 216, 1728 entries (dense everywhere in a 2^19 table).
        (_config("Hash", 3, 1, 19, 3, 2.0), 3, 32 + 216 + 1728),
    ],
)
def test_parameter_counts(config, dims, expected_entries):
    grid = TorchGrid(dims, config)
    assert grid.layout.n_entries == expected_entries
    assert grid.params.numel() == expected_entries * config["n_features_per_level"]
    assert grid.n_output_dims == config["n_levels"] * config["n_features_per_level"]


def test_seed_protocol_resolutions():
    grid = TorchGrid(2, _config("Hash", 16, 2, 19, 1, 32 ** (1 / 15)))
    assert grid.layout.resolutions.tolist() == [1, 2, 2, 3, 3, 4, 5, 6, 7, 9, 11, 13, 17, 21, 26, 33]


def test_tcnn_defaults():
    hashed = TorchGrid(2, {"otype": "HashGrid"})
    assert hashed.config.n_levels == 16 and hashed.config.n_features_per_level == 2
    assert hashed.config.log2_hashmap_size == 19 and hashed.config.base_resolution == 16
    assert hashed.config.per_level_scale == 2.0 and hashed.config.interpolation == "Linear"
    dense = TorchGrid(2, {"otype": "DenseGrid", "n_levels": 4})
    # tcnn: exp(log(256 / base) / (L - 1)) in float32 = 256/16 = 16 ** (1/3)
    assert dense.config.per_level_scale == pytest.approx(16 ** (1 / 3), rel=1e-6)


def test_parameter_layout_is_entry_major_features_innermost():
    """Value f of entry i of level l is params[(offset_l + i) * F + f]."""
    config = _config("Dense", 2, 2, 19, 2, 2.0, "Nearest")
    grid = TorchGrid(2, config)
    # level 0: scale 1, res 2, 4 -> 8 entries; level 1: scale 3, res 4, 16 entries.
    with torch.no_grad():
        grid.params.copy_(torch.arange(grid.params.numel(), dtype=torch.float32))
    # x = (0.3, 0.6): level 1 pos = 3 * x + 0.5 = (1.4, 2.3) -> cell (1, 2), entry 1 + 2 * 4 = 9
    out = grid(torch.tensor([[0.3, 0.6]]))
    offset_1 = 8
    assert out[0, 2].item() == (offset_1 + 9) * 2 + 0
    assert out[0, 3].item() == (offset_1 + 9) * 2 + 1
    # level 0: pos = (0.8, 1.1) -> cell (0, 1), entry 0 + 1 * 2 = 2
    assert out[0, 0].item() == 2 * 2 and out[0, 1].item() == 2 * 2 + 1


def test_initial_values_in_tcnn_range_and_seeded():
    a = TorchGrid(2, {"otype": "HashGrid", "n_levels": 4}, seed=5)
    b = TorchGrid(2, {"otype": "HashGrid", "n_levels": 4}, seed=5)
    c = TorchGrid(2, {"otype": "HashGrid", "n_levels": 4}, seed=6)
    assert a.params.abs().max() <= 1e-4
    assert a.params.abs().max() > 0.9e-4  # the whole range is used
    assert torch.equal(a.params, b.params) and not torch.equal(a.params, c.params)


@pytest.mark.parametrize("interpolation", ["Linear", "Smoothstep"])
@pytest.mark.parametrize("grid_type", ["Hash", "Dense"])
def test_gradcheck_params_and_inputs(interpolation, grid_type):
    config = _config(grid_type, 3, 2, 6, 3, 2.0, interpolation)  # level 2 hashed for Hash
    grid = TorchGrid(2, config, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        grid.params.copy_(torch.randn(grid.params.shape, generator=generator, dtype=torch.float64))
    # Keep points away from cell borders, where the interpolant has kinks.
    x = (torch.rand(6, 2, generator=generator, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)

    def encode(params, points):
        return torch.func.functional_call(grid, {"params": params}, (points,))

    params = grid.params.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: encode(p, x.detach()), (params,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda pts: encode(params.detach(), pts), (x,), eps=1e-7, atol=1e-5)


def test_cached_lookup_reused_and_invalidated():
    grid = TorchGrid(2, _config("Hash", 4, 2, 10, 4, 2.0))
    x = torch.rand(100, 2)
    with static_coordinates():
        first = grid(x)
        lookup = grid._cache.value
        second = grid(x)
        assert grid._cache.value is lookup
        assert torch.equal(first, second)
        x.mul_(0.5)  # in-place change: the cache must not serve stale rows
        third = grid(x)
        assert grid._cache.value is not lookup
    fresh = TorchGrid(2, _config("Hash", 4, 2, 10, 4, 2.0))
    fresh.load_state_dict(grid.state_dict())
    assert torch.equal(third, fresh(x.clone()))


def test_cached_and_fresh_gradients_agree():
    grid = TorchGrid(2, _config("Hash", 6, 2, 8, 2, 2.0))
    x = torch.rand(500, 2)
    weights = torch.randn(500, grid.n_output_dims)
    grads = []
    with static_coordinates():
        for _ in range(3):  # a new lookup, then the cached one twice
            grid.params.grad = None
            (grid(x) * weights).sum().backward()
            grads.append(grid.params.grad.clone())
        lookup = grid._cache.value
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[1], grads[2])
    # against autograd through a plain gather with the same rows and weights
    table = grid.params.detach().view(-1, 2).clone().requires_grad_(True)
    out = (table[lookup.rows] * lookup.weights[..., None]).sum(1).view(500, -1)
    (out * weights).sum().backward()
    assert torch.allclose(table.grad.view(-1), grads[0], atol=1e-5)


@pytest.mark.parametrize(
    "config, message",
    [
        ({"otype": "HashGrid", "n_level": 4}, "Did you mean 'n_levels'"),
        ({"otype": "HashGrid", "n_features_per_level": 3}, "1, 2, 4, 8"),
        ({"otype": "HashGrid", "n_levels": 0}, "n_levels"),
        ({"otype": "HashGrid", "interpolation": "Cubic"}, "interpolation"),
        ({"otype": "Frequency"}, "otype"),
        ({"otype": "HashGrid", "n_features": 8, "n_levels": 4}, "one determines the other"),
        ({"otype": "HashGrid", "per_level_scale": -1.0}, "per_level_scale"),
    ],
)
def test_config_errors(config, message):
    with pytest.raises(HashwfaError, match=message):
        TorchGrid(2, config)


def test_input_errors():
    grid = TorchGrid(2, {"otype": "HashGrid", "n_levels": 2})
    with pytest.raises(HashwfaError, match=r"\[N, 2\]"):
        grid(torch.rand(10, 3))
    with pytest.raises(HashwfaError, match="dtype"):
        grid(torch.ones(10, 2, dtype=torch.int64))
    with pytest.raises(HashwfaError, match="1 to 4"):
        TorchGrid(5, {"otype": "HashGrid"})


def test_deepcopy_and_pickle_after_forward():
    import copy
    import pickle

    grid = TorchGrid(2, _config("Hash", 4, 2, 10, 4, 2.0))
    x = torch.rand(50, 2)
    with static_coordinates():
        expected = grid(x)
    assert grid._cache.value is not None
    for twin in (copy.deepcopy(grid), pickle.loads(pickle.dumps(grid))):
        assert torch.equal(twin(x), expected)
