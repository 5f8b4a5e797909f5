"""TorchGrid / HashEncoding: one backward path, empty batches, non-finite inputs, opt-in reuse.

The oracles here share no code with ``hashwfa.encodings``: a bilinear
interpolation of a one-level dense grid written point by point, and the
table gradient accumulated with ``numpy.add.at`` in float32, in point order.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hashwfa.encodings import HashEncoding, TorchGrid, static_coordinates
from hashwfa.errors import HashwfaError

ONE_LEVEL = {"otype": "DenseGrid", "n_levels": 1, "n_features_per_level": 1, "base_resolution": 5,
             "per_level_scale": 1.0, "interpolation": "Linear"}
SEED_LIKE = {"otype": "HashGrid", "n_levels": 6, "n_features_per_level": 2, "log2_hashmap_size": 8,
             "base_resolution": 2, "per_level_scale": 2.0}  # coarse levels dense, fine levels hashed


@pytest.fixture(params=[1, 2], ids=lambda n: f"{n}thread")
def threads(request):
    """Pin torch's thread count for the test (1, then 2): bit-equality is asserted at a known count."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    yield request.param
    torch.set_num_threads(before)


def bilinear_reference(points: np.ndarray, table: np.ndarray) -> np.ndarray:
    """The one-level dense 5-vertex grid of ONE_LEVEL, point by point (scale 4, pos = 4 x + 0.5)."""
    out = []
    for y_, x_ in points.astype(np.float64):
        px, py = 4 * y_ + 0.5, 4 * x_ + 0.5  # dimension 0 is the first column
        cx, cy = math.floor(px), math.floor(py)
        tx, ty = px - cx, py - cy
        value = 0.0
        for dx, wx in ((0, 1 - tx), (1, tx)):
            for dy, wy in ((0, 1 - ty), (1, ty)):
                index = ((cx + dx) + 5 * (cy + dy)) % 32  # 25 entries rounded up to 32, tcnn's wrap
                value += wx * wy * table[index]
        out.append(value)
    return np.asarray(out)


# ------------------------------------------------------------- the backward pass


def _table_gradient(grid: TorchGrid, x: torch.Tensor, upstream: torch.Tensor, calls: int) -> torch.Tensor:
    for _ in range(calls):
        grid.params.grad = None
        (grid(x) * upstream).sum().backward()
    return grid.params.grad.clone()


@pytest.mark.parametrize("interpolation", ["Linear", "Smoothstep"])
def test_rebuilt_grid_gives_the_cached_grids_gradient_bit_for_bit(threads, interpolation):
    # What a resumed run does: the uninterrupted run reuses its cached lookup,
    # the resumed one rebuilds the grid and looks the points up anew.
    config = dict(SEED_LIKE, interpolation=interpolation)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(3000, 2, generator=generator)
    upstream = torch.randn(3000, 12, generator=generator)
    running = TorchGrid(2, config, seed=5)
    with static_coordinates():
        cached = _table_gradient(running, x, upstream, calls=3)  # calls 2 and 3 reuse the lookup
        assert running._cache.value is not None
    rebuilt = TorchGrid(2, config, seed=99)
    rebuilt.load_state_dict(running.state_dict())
    fresh = _table_gradient(rebuilt, x.clone(), upstream, calls=1)
    assert torch.equal(fresh, cached)


def test_table_gradient_is_the_in_order_float32_sum(threads):
    # The guarantee behind bit-exact resumes on any x86 CPU: every product
    # weight * grad rounded once to float32, the products added serially in
    # point order, whatever the thread count. numpy.add.at does exactly that,
    # one element at a time.
    grid = TorchGrid(2, SEED_LIKE)
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(700, 2, generator=generator)
    upstream = torch.randn(700, 12, generator=generator)
    with static_coordinates():
        got = _table_gradient(grid, x, upstream, calls=2)
        lookup = grid._cache.value
    rows = lookup.rows.numpy().astype(np.int64)  # [N * L, 4], point-major, then level, then corner
    weights = lookup.weights.numpy()
    grad_out = upstream.numpy().reshape(-1, 2)  # [N * L, F]
    expected = np.zeros((lookup.n_entries, 2), dtype=np.float32)
    for f in range(2):
        products = (weights * grad_out[:, f, None]).astype(np.float32)
        np.add.at(expected[:, f], rows.reshape(-1), products.reshape(-1))
    assert np.array_equal(got.numpy().reshape(-1, 2), expected)


# ------------------------------------------------------------ empty and non-finite


@pytest.mark.parametrize("version", range(7))
def test_empty_batch_gives_an_empty_result(version):
    enc = HashEncoding(version, n_levels=4, max_resolution=16, backend="torch")
    x = torch.zeros(0, 2, requires_grad=True)
    out = enc(x)
    assert out.shape == (0, enc.n_output_dims)
    out.sum().backward()  # part of the graph: no error, zero gradients
    assert x.grad is not None and x.grad.shape == (0, 2)
    assert all(p.grad is None or not p.grad.any() for p in enc.parameters())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_coordinates_are_refused(bad):
    enc = HashEncoding(1, n_levels=4, max_resolution=16, backend="torch")
    x = torch.rand(10, 2)
    x[7, 1] = bad
    with pytest.raises(HashwfaError, match="NaN or infinite.*row 7"):
        enc(x)  # an infinity would otherwise be clamped onto the border unnoticed
    with pytest.raises(HashwfaError, match="NaN or infinite.*row 7"):
        TorchGrid(2, SEED_LIKE)(x)  # the grid alone too, before its sparse lookup


# --------------------------------------------------------- reuse is an explicit opt-in


def test_writes_through_numpy_and_data_are_seen_by_default():
    grid = TorchGrid(2, ONE_LEVEL)
    table = np.random.default_rng(0).normal(size=32)
    with torch.no_grad():
        grid.params.copy_(torch.from_numpy(table))
    array = np.random.default_rng(1).random((50, 2), dtype=np.float32)
    x = torch.from_numpy(array)  # shares memory with `array`
    np.testing.assert_allclose(grid(x).detach().numpy()[:, 0], bilinear_reference(array, table), atol=1e-5)
    array[:] = np.random.default_rng(2).random((50, 2), dtype=np.float32)  # x._version is not bumped
    np.testing.assert_allclose(grid(x).detach().numpy()[:, 0], bilinear_reference(array, table), atol=1e-5)
    x.data.mul_(0.5)  # nor is it by a write through .data
    np.testing.assert_allclose(grid(x).detach().numpy()[:, 0], bilinear_reference(array, table), atol=1e-5)


def test_encoding_sees_writes_through_numpy_by_default():
    enc = HashEncoding(1, n_levels=1, base_resolution=5, max_resolution=5, n_features_per_level=1,
                       bounding_box=(0, 1), backend="torch")
    table = np.random.default_rng(3).normal(size=enc.grid.params.numel())
    with torch.no_grad():
        enc.grid.params.copy_(torch.from_numpy(table))
    array = np.random.default_rng(4).random((20, 2), dtype=np.float32)
    x = torch.from_numpy(array)
    enc(x)
    array[:] = np.random.default_rng(5).random((20, 2), dtype=np.float32)
    np.testing.assert_allclose(enc(x).detach().numpy()[:, 0], bilinear_reference(array, table), atol=1e-5)


def test_lookup_is_reused_only_inside_static_coordinates():
    grid = TorchGrid(2, SEED_LIKE)
    x = torch.rand(40, 2)
    grid(x)
    assert grid._cache.value is None  # default: nothing kept
    with static_coordinates():
        grid(x)
        kept = grid._cache.value
        grid(x)
        assert grid._cache.value is kept  # reused
    grid(x)  # outside the block the kept lookup is not served, and not replaced
    assert grid._cache.value is kept
    grid.clear_cache()
    assert grid._cache.value is None
