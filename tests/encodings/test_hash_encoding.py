"""HashEncoding V0..V6: composition, sizes, V6's plane, coordinates, errors."""

import math

import numpy as np
import pytest
import torch

from hashwfa.encodings import VERSIONS, HashEncoding, TorchGrid, encoding_configs, per_level_scale, static_coordinates
from hashwfa.encodings.grid_config import GridLayout, parse_grid_config
from hashwfa.encodings.smoothing import LevelSmoother
from hashwfa.errors import HashwfaError

SMALL = dict(n_levels=4, base_resolution=2, max_resolution=16, log2_hashmap_size=10, backend="torch")


def _points(n, d, seed=0, low=-1.0, high=1.0):
    gen = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, d, generator=gen)


def test_versions_table():
    assert sorted(VERSIONS) == list(range(7))
    for name, v in [("Baseline Hash", 0), ("Dense Grids", 1), ("Shared Smooth", 2), ("Spec. Smooth", 3),
                    ("Progressive (S)", 4), ("Progressive (P)", 5), ("Hybrid Plane", 6)]:
        assert VERSIONS[v].startswith(name)


@pytest.mark.parametrize("version", range(7))
@pytest.mark.parametrize("dims, n_levels, n_feat", [(2, 4, 2), (3, 3, 4), (2, 5, 1), (1, 2, 8)])
def test_output_size_every_version(version, dims, n_levels, n_feat):
    enc = HashEncoding(version, n_input_dims=dims, n_levels=n_levels, n_features_per_level=n_feat,
                       base_resolution=2, max_resolution=12, log2_hashmap_size=8, backend="torch")
    expected = (n_levels + (version == 6)) * n_feat
    assert enc.n_output_dims == expected
    assert enc.n_levels == n_levels
    assert enc.progressive == (version in (4, 5))
    assert enc.backend == "torch"
    y = enc(_points(17, dims))
    assert y.shape == (17, expected) and y.dtype == torch.float32


def test_seed_sizes():
    # The reference protocol: 16 levels x 2 features, max resolution 32; V6 adds one plane level.
    for v in range(7):
        enc = HashEncoding(v, n_levels=16, base_resolution=1, max_resolution=32, backend="torch")
        assert enc.n_output_dims == (34 if v == 6 else 32)


def test_configs_per_version():
    for v in range(7):
        cfgs = encoding_configs(v, n_levels=16, base_resolution=1, max_resolution=32)
        assert set(cfgs) == ({"grid", "plane"} if v == 6 else {"grid"})
        grid = cfgs["grid"]
        assert grid["otype"] == ("DenseGrid" if v == 1 else "HashGrid")
        assert math.isclose(grid["per_level_scale"], 32 ** (1 / 15), rel_tol=1e-15)
        assert grid["n_levels"] == 16 and grid["base_resolution"] == 1
        parse_grid_config(2, grid)  # every key valid for tcnn and TorchGrid
    assert per_level_scale(1, 16, 16) == 1.0
    assert per_level_scale(1, 16, 2048) == 1.0
    assert math.isclose(per_level_scale(8, 16, 2048), 2.0, rel_tol=1e-14)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("max_res", [16, 32, 33, 100])
def test_v6_plane_resolution_is_max_resolution(dims, max_res):
    cfg = encoding_configs(6, n_levels=3, base_resolution=4, max_resolution=max_res)["plane"]
    assert cfg["otype"] == "DenseGrid" and cfg["n_levels"] == 1
    layout = GridLayout.from_config(parse_grid_config(dims, cfg))
    assert layout.resolutions.tolist() == [max_res]
    entries = -(-(max_res**dims) // 8) * 8  # max_res^D rounded up to a multiple of 8
    assert layout.n_entries == entries
    enc = HashEncoding(6, n_input_dims=dims, n_levels=3, base_resolution=4, max_resolution=max_res, backend="torch")
    assert enc.plane.params.numel() == entries * 2
    assert not enc.plane.layout.hashed.any()


def test_composition_matches_the_parts():
    x = _points(200, 2, seed=1)
    encs = {v: HashEncoding(v, seed=5, **SMALL) for v in range(7)}
    for enc in encs.values():  # move everything off its initial values
        with torch.no_grad():
            for p in enc.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    unit = (x + 1) / 2
    for v, enc in encs.items():
        grid = enc.grid(unit)
        assert isinstance(enc.grid, TorchGrid)
        assert enc.grid.config.grid_type == ("Dense" if v == 1 else "Hash")
        if v in (0, 1):
            expected = grid
            assert enc.smoother is None and enc.mask is None and enc.plane is None
        elif v in (2, 3, 4, 5):
            assert isinstance(enc.smoother, LevelSmoother) and enc.smoother.per_level == (v in (3, 5))
            expected = enc.smoother(grid)
        else:
            assert not enc.smoother.per_level
            expected = torch.cat([enc.smoother(grid), enc.plane(unit)], dim=1)
        torch.testing.assert_close(enc(x), expected, rtol=0, atol=0)


def test_smoother_gate_starts_at_0_1():
    for v in (2, 3, 4, 5, 6):
        enc = HashEncoding(v, **SMALL)
        assert torch.all(enc.smoother.gate == 0.1)
        assert enc.smoother.gate.numel() == (4 if v in (3, 5) else 1)


@pytest.mark.parametrize("version", [4, 5])
def test_progressive_mask_blends_levels(version):
    enc = HashEncoding(version, n_levels=4, n_features_per_level=2, base_resolution=2, max_resolution=16,
                       backend="torch")
    x = _points(50, 2, seed=2)
    full = enc(x)
    assert enc.active_levels == 4.0
    enc.set_active_levels(2.5)
    assert enc.active_levels == 2.5
    masked = enc(x)
    torch.testing.assert_close(masked[:, :4], full[:, :4], rtol=0, atol=0)  # levels 0, 1
    torch.testing.assert_close(masked[:, 4:6], 0.5 * full[:, 4:6], rtol=0, atol=0)  # level 2
    assert torch.all(masked[:, 6:] == 0)  # level 3
    enc.set_active_levels(1)
    assert torch.all(enc(x)[:, 2:] == 0)
    enc.set_active_levels(4)
    torch.testing.assert_close(enc(x), full, rtol=0, atol=0)
    # The masked levels get no gradient.
    enc.set_active_levels(1.0)
    enc.zero_grad()
    enc(x).sum().backward()
    layout = enc.grid.layout
    grad = enc.grid.params.grad.view(layout.n_entries, 2)
    first = int(layout.sizes[0])
    assert grad[:first].abs().sum() > 0
    assert torch.all(grad[first:] == 0)


def test_progressive_differs_from_its_base_version():
    # V4 is V2 plus the mask: with the same seed they agree until the mask is lowered.
    x = _points(40, 2, seed=3)
    v2 = HashEncoding(2, seed=9, **SMALL)
    v4 = HashEncoding(4, seed=9, **SMALL)
    torch.testing.assert_close(v2(x), v4(x), rtol=0, atol=0)
    v4.set_active_levels(2.0)
    assert not torch.equal(v2(x), v4(x))


@pytest.mark.parametrize("version", [0, 1, 2, 3, 6])
def test_set_active_levels_on_non_progressive_is_an_error(version):
    enc = HashEncoding(version, **SMALL)
    assert enc.active_levels == 4.0
    with pytest.raises(HashwfaError, match="no progressive level mask"):
        enc.set_active_levels(2.0)


def test_active_levels_out_of_range():
    enc = HashEncoding(4, **SMALL)
    with pytest.raises(HashwfaError, match="active_levels"):
        enc.set_active_levels(0.5)
    with pytest.raises(HashwfaError, match="active_levels"):
        enc.set_active_levels(4.5)


def test_bounding_box_mapping_and_clamping():
    box = [[0.0, -10.0], [200.0, 10.0]]  # lower corner, upper corner
    enc = HashEncoding(0, bounding_box=box, **SMALL)
    assert enc.bounding_box == ([0.0, -10.0], [200.0, 10.0])
    x = torch.tensor([[0.0, -10.0], [200.0, 10.0], [50.0, 0.0], [100.0, 5.0], [-30.0, 99.0], [250.0, -11.0]])
    unit = enc.unit_coordinates(x)
    expected = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.25, 0.5], [0.5, 0.75], [0.0, 1.0], [1.0, 0.0]])
    assert torch.equal(unit, expected)
    torch.testing.assert_close(enc(x), enc.grid(expected), rtol=0, atol=0)
    # Clamped points encode like the box's border.
    out = enc(x)
    torch.testing.assert_close(out[4], enc(torch.tensor([[0.0, 10.0]]))[0], rtol=0, atol=0)


def test_default_box_and_scalar_box():
    enc = HashEncoding(0, **SMALL)
    assert enc.bounding_box == ([-1.0, -1.0], [1.0, 1.0])
    x = torch.tensor([[-1.0, 1.0], [0.0, 0.5], [-2.0, 3.0]])
    assert torch.equal(enc.unit_coordinates(x), torch.tensor([[0.0, 1.0], [0.5, 0.75], [0.0, 1.0]]))
    enc = HashEncoding(0, bounding_box=(0, 4), **SMALL)
    assert enc.bounding_box == ([0.0, 0.0], [4.0, 4.0])
    assert torch.equal(enc.unit_coordinates(torch.tensor([[1.0, 3.0]])), torch.tensor([[0.25, 0.75]]))


def test_same_coordinates_reuse_the_cached_unit_tensor():
    enc = HashEncoding(2, **SMALL)
    x = _points(30, 2, seed=4)
    assert enc.unit_coordinates(x) is not enc.unit_coordinates(x)  # default: nothing is reused
    with static_coordinates():
        u1 = enc.unit_coordinates(x)
        assert enc.unit_coordinates(x) is u1  # same object: the grid's lookup cache holds
        y1 = enc(x)
        assert enc.grid._cache.value is not None and enc.grid._cache._entry[0] is u1
        x.mul_(0.5)  # modified in place: recomputed
        u2 = enc.unit_coordinates(x)
        assert u2 is not u1
        torch.testing.assert_close(u2, (x + 1) / 2)
        assert not torch.equal(enc(x), y1)
        xg = x.clone().requires_grad_(True)  # a coordinate gradient: never cached
        assert enc.unit_coordinates(xg) is not enc.unit_coordinates(xg)
        enc(xg).sum().backward()
    assert xg.grad is not None and xg.grad.shape == xg.shape


def test_state_dict_keys():
    keys = {v: set(HashEncoding(v, **SMALL).state_dict()) for v in range(7)}
    smoother = {"smoother." + k for k in ("fc1_weight", "fc1_bias", "norm_weight", "norm_bias",
                                           "fc2_weight", "fc2_bias", "gate")}
    assert keys[0] == keys[1] == {"grid.params"}
    assert keys[2] == keys[3] == keys[4] == keys[5] == {"grid.params"} | smoother
    assert keys[6] == {"grid.params", "plane.params"} | smoother


def test_seeded_and_global_rng_untouched():
    state = torch.get_rng_state()
    a = HashEncoding(6, seed=3, **SMALL)
    b = HashEncoding(6, seed=3, **SMALL)
    c = HashEncoding(6, seed=4, **SMALL)
    assert torch.equal(torch.get_rng_state(), state)
    for (k, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), k
    assert not torch.equal(a.grid.params, c.grid.params)
    assert not torch.equal(a.grid.params[:16], a.plane.params[:16])  # plane has its own seed


def test_float64_path_and_gradcheck():
    enc = HashEncoding(5, n_levels=2, n_features_per_level=2, base_resolution=2, max_resolution=4,
                       backend="torch", dtype=torch.float64)
    with torch.no_grad():
        enc.grid.params.copy_(torch.randn(enc.grid.params.shape, dtype=torch.float64,
                                          generator=torch.Generator().manual_seed(0)))
    enc.set_active_levels(1.5)
    x = _points(5, 2, seed=6).double()
    assert enc(x).dtype == torch.float64
    params = enc.grid.params
    assert torch.autograd.gradcheck(lambda p: torch.func.functional_call(enc, {"grid.params": p}, (x,)), (params,))


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(version=7), "unknown encoding version 7"),
        (dict(version="V9"), "unknown encoding version 'V9'"),
        (dict(version=True), "unknown encoding version"),
        (dict(version=0, n_features_per_level=3), "n_features_per_level must be one of 1, 2, 4, 8"),
        (dict(version=0, base_resolution=64, max_resolution=32), "max_resolution \\(32\\) is smaller than base_resolution \\(64\\)"),
        (dict(version=0, n_levels=0), "n_levels must be an integer >= 1"),
        (dict(version=0, interpolation="Linaer"), "Did you mean 'Linear'"),
        (dict(version=0, backend="cuda"), "backend must be one of"),
        (dict(version=0, bounding_box=[[1, 1], [-1, -1]]), "high > low"),
        (dict(version=0, bounding_box=[[0, 1, 2], [3, 4, 5]]), "bounding_box must be"),
        (dict(version=0, n_input_dims=5), "n_input_dims"),
        (dict(version=1, n_input_dims=3, max_resolution=2048), "lower max_resolution"),
        (dict(version=0, dtype=torch.float16), "dtype"),
    ],
)
def test_construction_errors(kwargs, words):
    with pytest.raises(HashwfaError, match=words):
        HashEncoding(**kwargs)


def test_version_spellings():
    assert HashEncoding("V3", **SMALL).version == 3
    assert HashEncoding("6", **SMALL).version == 6
    assert HashEncoding(np.int64(1), **SMALL).version == 1


def test_input_errors():
    enc = HashEncoding(2, **SMALL)
    with pytest.raises(HashwfaError, match=r"shape \[10, 3\]; expected \[N, 2\]"):
        enc(torch.zeros(10, 3))
    with pytest.raises(HashwfaError, match=r"expected \[N, 2\]"):
        enc(torch.zeros(10))
    with pytest.raises(HashwfaError, match="dtype torch.int64"):
        enc(torch.zeros(10, 2, dtype=torch.int64))
    with pytest.raises(HashwfaError, match="torch.Tensor"):
        enc(np.zeros((10, 2)))
    # float64 and float16 coordinates are fine; the encoding computes in float32.
    assert enc(torch.zeros(3, 2, dtype=torch.float64)).dtype == torch.float32
    assert enc(torch.zeros(3, 2, dtype=torch.float16)).dtype == torch.float32


def test_pickling_drops_the_coordinate_cache():
    import copy
    import pickle

    enc = HashEncoding(2, **SMALL)
    x = _points(8, 2)
    with static_coordinates():
        enc(x)
    assert enc._unit_cache.value is not None and enc.grid._cache.value is not None
    for twin in (pickle.loads(pickle.dumps(enc)), copy.deepcopy(enc)):
        assert twin._unit_cache.value is None and twin.grid._cache.value is None
        assert torch.equal(twin(x), enc(x))
    fresh = copy.deepcopy(HashEncoding(3, **SMALL))
    torch.testing.assert_close(fresh(x), fresh(x))
