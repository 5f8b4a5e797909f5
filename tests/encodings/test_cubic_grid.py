"""Cubic grid interpolation (Catmull-Rom, uniform cubic B-spline) in the torch grid.

The reference below is written point by point, level by level, vertex by
vertex with Python integers and floats; the cubic weights come from the
splines' matrix forms (Catmull-Rom's and the B-spline's basis matrices),
not from the package. It shares no code with ``hashwfa.encodings``.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import hashwfa.encodings.backend as backend_mod
from hashwfa.config.run_config import validate_config
from hashwfa.encodings import HashEncoding, TorchGrid, resolve_backend, static_coordinates, tcnn_status
from hashwfa.errors import HashwfaError
from hashwfa.training.solver_config import EncodingConfig

PRIMES = [1, 2654435761, 805459861, 3674653429]
MAX_BASES = {1: 0xFFFFFFFF, 2: 0xFFFF, 3: 0x659, 4: 0xFF}
CUBIC = ["CatmullRom", "BSpline"]

# p(t) = [1, t, t^2, t^3] @ M @ [v_{-1}, v_0, v_1, v_2]
BASIS = {
    "CatmullRom": np.array([[0, 2, 0, 0], [-1, 0, 1, 0], [2, -5, 4, -1], [-1, 3, -3, 1]]) / 2.0,
    "BSpline": np.array([[1, 4, 1, 0], [-3, 0, 3, 0], [3, -6, 3, 0], [-1, 3, -3, 1]]) / 6.0,
}


def reference_levels(dims, grid_type, n_levels, log2_size, base, per_level_scale):
    """(scale, resolution, size, offset) per level, as tcnn's constructor computes them."""
    levels, offset = [], 0
    log2_scale = np.float32(math.log2(np.float32(per_level_scale)))
    for level in range(n_levels):
        scale = np.float32(np.float32(2.0) ** np.float32(np.float32(level) * log2_scale)) * np.float32(base) - np.float32(1)
        res = int(math.ceil(float(scale))) + 1
        size = (res**dims + 7) // 8 * 8
        if grid_type == "Hash":
            size = min(size, 2**log2_size)
        levels.append((np.float32(scale), res, size, offset))
        offset += size
    return levels


def reference_encode(x, params, dims, grid_type, n_levels, n_features, log2_size, base, per_level_scale, kind):
    """Cubic encoding of float64 points ``x`` (the float64 path: no float32 rounding of positions)."""
    levels = reference_levels(dims, grid_type, n_levels, log2_size, base, per_level_scale)
    out = np.zeros((len(x), n_levels * n_features))
    for n, point in enumerate(x):
        for level, (scale, res, size, offset) in enumerate(levels):
            cells, fracs = [], []
            for d in range(dims):
                pos = float(scale) * min(max(float(point[d]), 0.0), 1.0) + 0.5
                cells.append(math.floor(pos))
                fracs.append(pos - math.floor(pos))
            axis_weights = [np.array([1.0, t, t * t, t**3]) @ BASIS[kind] for t in fracs]
            hashed = grid_type == "Hash" and (res > MAX_BASES[dims] or size < res**dims)
            for vertex in range(4**dims):
                steps = [(vertex // 4**d) % 4 for d in range(dims)]  # dimension 0 fastest
                weight, coords = 1.0, []
                for d in range(dims):
                    weight *= axis_weights[d][steps[d]]
                    coords.append(min(max(cells[d] + steps[d] - 1, 0), res - 1))  # edges clamped
                if hashed:
                    index = 0
                    for d in range(dims):
                        index ^= (coords[d] * PRIMES[d]) & 0xFFFFFFFF
                else:
                    index = sum(coords[d] * res**d for d in range(dims))
                index %= size
                for f in range(n_features):
                    out[n, level * n_features + f] += weight * params[(offset + index) * n_features + f]
    return out


def _config(grid_type, n_levels, n_features, log2_size, base, per_level_scale, interpolation):
    return {"otype": "HashGrid" if grid_type == "Hash" else "DenseGrid", "n_levels": n_levels,
            "n_features_per_level": n_features, "log2_hashmap_size": log2_size, "base_resolution": base,
            "per_level_scale": per_level_scale, "interpolation": interpolation}


CASES = [
    # grid type, D, levels, F, log2 size, base, per-level scale
    ("Hash", 1, 4, 2, 5, 8, 2.0),  # levels 2, 3 hashed
    ("Dense", 1, 3, 1, 19, 3, 1.5),
    ("Hash", 2, 4, 2, 8, 3, 2.0),  # levels 2, 3 hashed
    ("Dense", 2, 3, 2, 19, 2, 1.8),
    ("Hash", 3, 3, 1, 8, 2, 2.0),  # level 2 hashed
    ("Hash", 4, 2, 2, 8, 2, 2.0),  # level 1 hashed
]


@pytest.mark.parametrize("kind", CUBIC)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-D{c[1]}")
def test_matches_the_scalar_reference(case, kind):
    grid_type, dims, n_levels, n_features, log2_size, base, scale = case
    config = _config(grid_type, n_levels, n_features, log2_size, base, scale, kind)
    grid = TorchGrid(dims, config, dtype=torch.float64)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        grid.params.copy_(torch.randn(grid.params.shape, generator=generator, dtype=torch.float64))
    x = torch.rand(12 if dims < 4 else 5, dims, generator=generator, dtype=torch.float64)
    x[0] = 0.0  # the borders: clamped vertices
    x[1] = 1.0
    expected = reference_encode(x.numpy(), grid.params.detach().numpy(), dims, grid_type, n_levels, n_features,
                                log2_size, base, scale, kind)
    np.testing.assert_allclose(grid(x).detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    # and the float32 grid within float32 rounding
    grid32 = TorchGrid(dims, config)
    grid32.load_state_dict({"params": grid.params.detach().float()})
    np.testing.assert_allclose(grid32(x.float()).detach().double().numpy(), expected, rtol=1e-4, atol=1e-4)


def _dense_2d(kind, base=9):
    """One dense level with ``base`` vertices per axis: scale = base - 1, vertex v at x = (v - 0.5) / scale."""
    return TorchGrid(2, _config("Dense", 1, 1, 19, base, 1.0, kind), dtype=torch.float64)


def test_catmull_rom_passes_through_the_vertex_values():
    grid = _dense_2d("CatmullRom")
    values = torch.randn(grid.params.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        grid.params.copy_(values)
    v = torch.cartesian_prod(torch.arange(1, 8), torch.arange(1, 8)).double()  # vertices (v0, v1)
    got = grid((v - 0.5) / 8)[:, 0]
    expected = values[(v[:, 0] + 9 * v[:, 1]).long()]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def test_catmull_rom_reproduces_quadratics_and_the_b_spline_lines():
    rng = np.random.default_rng(2)
    a, b, c, d, e, f = rng.normal(size=6)

    def quadratic(p0, p1):
        return a + b * p0 + c * p1 + d * p0**2 + e * p0 * p1 + f * p1**2

    vy, vx = np.meshgrid(np.arange(9), np.arange(9), indexing="ij")  # entry v0 + 9 v1
    table = np.zeros(88)  # 81 entries rounded up to 88
    table[: 81] = quadratic(vx, vy).reshape(-1)
    pos = rng.uniform(1.0, 7.0, size=(200, 2))  # interior cells: no vertex is clamped
    x = torch.from_numpy((pos - 0.5) / 8)
    grid = _dense_2d("CatmullRom")
    with torch.no_grad():
        grid.params.copy_(torch.from_numpy(table))
    np.testing.assert_allclose(grid(x)[:, 0].detach().numpy(), quadratic(pos[:, 0], pos[:, 1]), atol=1e-10)
    # The B-spline reproduces linear functions (not quadratics): a sanity check of its weights.
    table[:81] = (a + b * vx + c * vy).reshape(-1)
    grid = _dense_2d("BSpline")
    with torch.no_grad():
        grid.params.copy_(torch.from_numpy(table))
    np.testing.assert_allclose(grid(x)[:, 0].detach().numpy(), a + b * pos[:, 0] + c * pos[:, 1], atol=1e-10)


def _one_sided_derivatives(grid, faces, axis, h=1e-3):
    """Value, first and second derivative in ``pos`` units from the left and from the right of each face."""
    scale = 8.0
    other = 4.3  # the other coordinate, mid-cell
    offsets = np.array([-2, -1, 0, 1, 2]) * h
    pos = faces[:, None] + offsets[None, :]  # [faces, 5]
    points = np.full(pos.shape + (2,), other)
    points[..., axis] = pos
    values = grid(torch.from_numpy((points.reshape(-1, 2) - 0.5) / scale))[:, 0].detach().numpy().reshape(pos.shape)
    m2, m1, z, p1, p2 = values.T
    left = (z, (z - m1) / h, (z - 2 * m1 + m2) / h**2)
    right = (z, (p1 - z) / h, (p2 - 2 * p1 + z) / h**2)
    return left, right


@pytest.mark.parametrize("axis", [0, 1])
def test_b_spline_is_c2_and_catmull_rom_is_c1_across_cell_faces(axis):
    values = torch.randn(88, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    faces = np.arange(2.0, 7.0)  # interior faces pos = 2 .. 6
    jumps = {}
    for kind in CUBIC:
        grid = _dense_2d(kind)
        with torch.no_grad():
            grid.params.copy_(values)
        left, right = _one_sided_derivatives(grid, faces, axis)
        jumps[kind] = [np.abs(lv - rv).max() for lv, rv in zip(left, right)]
    # The one-sided differences are off by O(h) = 1e-3 times the next derivative (values are O(1)).
    tolerance = [1e-12, 0.05, 0.1]
    assert all(j < t for j, t in zip(jumps["BSpline"], tolerance)), jumps["BSpline"]
    assert all(j < t for j, t in zip(jumps["CatmullRom"][:2], tolerance[:2])), jumps["CatmullRom"]
    # Catmull-Rom's second derivative does jump: the check above can fail.
    assert jumps["CatmullRom"][2] > 1.0, jumps["CatmullRom"]


@pytest.mark.parametrize("kind", CUBIC)
@pytest.mark.parametrize("grid_type, dims, log2_size", [("Hash", 2, 4), ("Dense", 2, 4), ("Hash", 3, 5)])
def test_gradcheck_table_and_coordinates(kind, grid_type, dims, log2_size):
    # Two small levels (3 and 6 vertices per axis); for Hash the second one is hashed.
    config = _config(grid_type, 2, 1, log2_size, 3, 2.0, kind)
    grid = TorchGrid(dims, config, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        grid.params.copy_(torch.randn(grid.params.shape, generator=generator, dtype=torch.float64))
    x = (torch.rand(4, dims, generator=generator, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)

    def encode(params, points):
        return torch.func.functional_call(grid, {"params": params}, (points,))

    params = grid.params.detach().clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda p: encode(p, x.detach()), (params,), eps=1e-6, atol=1e-6)
    assert torch.autograd.gradcheck(lambda pts: encode(params.detach(), pts), (x,), eps=1e-7, atol=1e-5)


@pytest.mark.parametrize("kind", CUBIC)
@pytest.mark.parametrize("version", range(7))
def test_every_version_runs_cubic(version, kind):
    enc = HashEncoding(version, n_levels=4, max_resolution=16, log2_hashmap_size=6, interpolation=kind, backend="torch")
    assert enc.interpolation == kind
    x = torch.rand(30, 2) * 2 - 1
    out = enc(x)
    assert out.shape == (30, enc.n_output_dims) and torch.isfinite(out).all()
    out.sum().backward()
    assert enc.grid.params.grad is not None and enc.grid.params.grad.abs().sum() > 0


def _assert_rebuilt_grid_gives_the_cached_gradient(config, x):
    """A grid trained with a cached lookup of ``x`` and one rebuilt from its state (a
    resume) give the same gradient bits, on one thread."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        running = TorchGrid(2, config)
        upstream = torch.randn(x.shape[0], running.n_output_dims, generator=torch.Generator().manual_seed(5))
        with static_coordinates():
            for _ in range(2):
                running.params.grad = None
                (running(x) * upstream).sum().backward()
        rebuilt = TorchGrid(2, config, seed=7)
        rebuilt.load_state_dict(running.state_dict())
        (rebuilt(x.clone()) * upstream).sum().backward()
        assert torch.equal(rebuilt.params.grad, running.params.grad)
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize("kind", CUBIC)
def test_rebuilt_cubic_grid_gives_the_cached_gradient_bit_for_bit(kind):
    x = torch.rand(800, 2, generator=torch.Generator().manual_seed(4))
    _assert_rebuilt_grid_gives_the_cached_gradient(_config("Hash", 5, 2, 8, 2, 2.0, kind), x)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
@pytest.mark.parametrize("kind", CUBIC)
def test_cuda_matches_cpu(kind):
    config = _config("Hash", 4, 2, 8, 3, 2.0, kind)
    cpu = TorchGrid(3, config, dtype=torch.float64)
    gpu = TorchGrid(3, config, dtype=torch.float64).cuda()
    gpu.load_state_dict(cpu.state_dict())
    x = torch.rand(300, 3, dtype=torch.float64)
    torch.testing.assert_close(gpu(x.cuda()).cpu(), cpu(x), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ backends, config


@pytest.fixture
def fake_tcnn(monkeypatch):
    """Pretend tiny-cuda-nn is usable, and forget the once-per-process announcements."""
    monkeypatch.setattr(backend_mod, "tcnn_status", lambda: (True, "tiny-cuda-nn (fake) on a fake GPU"))
    saved = set(backend_mod._announced)
    backend_mod._announced.clear()
    yield
    backend_mod._announced.clear()
    backend_mod._announced.update(saved)


@pytest.mark.parametrize("kind", CUBIC)
def test_auto_runs_the_torch_grid_for_cubic_and_warns_once(fake_tcnn, kind):
    with pytest.warns(UserWarning, match=f"{kind}.*no tiny-cuda-nn kernel.*pure-PyTorch grid"):
        assert resolve_backend("auto", kind) == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert resolve_backend("auto", kind) == "torch"  # said once
        assert HashEncoding(1, n_levels=2, base_resolution=2, max_resolution=4, interpolation=kind).backend == "torch"
    assert resolve_backend("auto", "Linear") == "tcnn"


@pytest.mark.parametrize("kind", CUBIC)
def test_tcnn_backend_with_cubic_is_an_error_that_says_why(kind):
    for call in (lambda: resolve_backend("tcnn", kind), lambda: HashEncoding(1, interpolation=kind, backend="tcnn")):
        with pytest.raises(HashwfaError, match=f"{kind}.*tiny-cuda-nn's grids interpolate Nearest, Linear, Smoothstep"):
            call()
    with pytest.raises(HashwfaError, match=f"encoding.backend.*cannot run interpolation '{kind}'.*'auto' or 'torch'"):
        validate_config({"encoding": {"interpolation": kind, "backend": "tcnn"}})
    assert validate_config({"encoding": {"interpolation": kind}}).encoding.interpolation == kind
    with pytest.raises(HashwfaError, match="interpolation"):
        validate_config({"encoding": {"interpolation": "Cubic"}})


def test_interpolations_are_spelled_once():
    from hashwfa.encodings.grid_config import INTERPOLATIONS

    choices = next(f for f in EncodingConfig.__dataclass_fields__.values() if f.name == "interpolation").metadata["choices"]
    assert choices is INTERPOLATIONS and set(CUBIC) <= set(INTERPOLATIONS)
    assert tcnn_status() is not None  # the probe itself still works after the fake above


# ------------------------------------------------------------ an image's pixels: the lookup one axis at a time

IMAGE_CASES = {2: ("Dense", 2, 3, 2, 19, 2, 1.8), 3: ("Dense", 3, 2, 2, 19, 2, 1.8)}


def _pixel_centres(*shape, drop=()):
    """Points ``[prod(shape) - len(drop), D]`` at the pixel centres of an image ``(ny, nx)`` or a
    cube ``(nt, ny, nx)``, row-major, columns x, y (, t), ``drop`` left out."""
    axes = [(torch.arange(n, dtype=torch.float64) + 0.5) / n for n in shape]
    grids = torch.meshgrid(*axes, indexing="ij")
    points = torch.stack([g.reshape(-1) for g in reversed(grids)], dim=1)
    keep = torch.ones(points.shape[0], dtype=torch.bool)
    keep[list(drop)] = False
    return points[keep]


def _reference_matrix(x, config_case, kind, n_params):
    """The encoding as a matrix ``[N * L * F, n_params]``, column p = the reference encoding of the unit table p."""
    grid_type, dims, n_levels, n_features, log2_size, base, scale = config_case
    columns = []
    for p in range(n_params):
        unit = np.zeros(n_params)
        unit[p] = 1.0
        columns.append(reference_encode(x, unit, dims, grid_type, n_levels, n_features, log2_size, base, scale,
                                        kind).reshape(-1))
    return np.stack(columns, axis=1)


@pytest.mark.parametrize("kind", CUBIC)
@pytest.mark.parametrize("drop", [(), (0, 9, 20)], ids=["every pixel", "three pixels left out"])
@pytest.mark.parametrize("shape", [(5, 7), (2, 3, 4)], ids=["image", "series"])
def test_pixel_grid_lookup_matches_the_scalar_reference(kind, drop, shape):
    case = IMAGE_CASES[len(shape)]
    grid_type, dims, n_levels, n_features, log2_size, base, scale = case
    config = _config(grid_type, n_levels, n_features, log2_size, base, scale, kind)
    grid = TorchGrid(dims, config, dtype=torch.float64)
    generator = torch.Generator().manual_seed(8)
    with torch.no_grad():
        grid.params.copy_(torch.randn(grid.params.shape, generator=generator, dtype=torch.float64))
    x = _pixel_centres(*shape, drop=drop)
    upstream = torch.randn(x.shape[0], n_levels * n_features, generator=generator, dtype=torch.float64)
    with static_coordinates():
        out = grid(x)
        (out * upstream).sum().backward()
        # the two-stage lookup was taken (and is what the grid keeps for these points)
        assert type(grid._cache.value).__name__ == "SeparableGridLookup"
    matrix = _reference_matrix(x.numpy(), case, kind, grid.params.numel())
    np.testing.assert_allclose(out.detach().numpy().reshape(-1), matrix @ grid.params.detach().numpy(),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grid.params.grad.numpy(), matrix.T @ upstream.numpy().reshape(-1),
                               rtol=1e-12, atol=1e-12)


def test_pixel_grid_lookup_only_where_it_is_separable():
    x = _pixel_centres(6, 5)
    cubic = _config("Dense", 3, 2, 19, 2, 1.8, "CatmullRom")
    cases = [
        (TorchGrid(2, cubic), x, True),
        (TorchGrid(2, cubic), torch.rand(30, 2, generator=torch.Generator().manual_seed(1)), False),  # scattered
        (TorchGrid(2, _config("Dense", 3, 2, 19, 2, 1.8, "Linear")), x, False),  # the wrap-around is not separable
        (TorchGrid(2, _config("Hash", 4, 2, 8, 3, 2.0, "CatmullRom")), x, False),  # hashed levels mix the axes
    ]
    for grid, points, separable in cases:
        with static_coordinates():
            grid(points.float())
            assert (type(grid._cache.value).__name__ == "SeparableGridLookup") == separable
    grid = TorchGrid(2, cubic)
    points = x.float().requires_grad_(True)  # a gradient for the positions: the one-step lookup
    grid(points).sum().backward()
    assert points.grad is not None and torch.isfinite(points.grad).all()


def test_pixel_grid_gradient_is_the_same_bits_cached_or_rebuilt():
    _assert_rebuilt_grid_gives_the_cached_gradient(_config("Dense", 3, 2, 19, 2, 1.8, "CatmullRom"),
                                                   _pixel_centres(9, 8).float())
