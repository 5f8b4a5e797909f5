"""Where a point reads the grid: table rows and interpolation weights.

For N points and L levels, every point touches ``C = 2^D`` corners per level
(one for ``Nearest``, ``4^D`` vertices for the cubic interpolations).
:func:`grid_lookup` computes, for all levels at once,

- ``rows``: ``[N * L, C]`` integer rows of the flat ``[n_entries, F]`` table
  that each corner reads (level offset included), and
- ``weights``: ``[N * L, C]`` interpolation weights of the corners,
  differentiable with respect to the input positions,

so that the encoding is ``out[n * L + l] = sum_c weights[., c] * table[rows[., c]]``:
a sparse matrix with ``C`` non-zeros per row times the table.

The rules are tiny-cuda-nn's (``pos_fract``, ``grid_index``,
``coherent_prime_hash``): ``pos = scale * x + 0.5``, ``cell = floor(pos)``,
the dense index ``sum_d corner_d * res^d`` or the hash ``XOR_d corner_d *
prime_d`` in uint32 arithmetic, modulo the level's table size.

Cubic interpolation (``CatmullRom``, ``BSpline``; tcnn has neither). A point
in cell ``c`` (``pos = scale * x + 0.5`` as above, ``t = pos - c``) reads the
vertices ``c - 1, c, c + 1, c + 2`` of every axis, each clamped to the
level's vertices ``[0, res - 1]`` (repeating the border value, so no dense
level wraps around), with the uniform cubic weights of ``t`` per axis:

- Catmull-Rom: ``(-t^3 + 2t^2 - t) / 2``, ``(3t^3 - 5t^2 + 2) / 2``,
  ``(-3t^3 + 4t^2 + t) / 2``, ``(t^3 - t^2) / 2``: interpolates the vertex
  values, reproduces quadratics, continuous first derivative;
- B-spline: ``(1 - t)^3 / 6``, ``(3t^3 - 6t^2 + 4) / 6``,
  ``(-3t^3 + 3t^2 + 3t + 1) / 6``, ``t^3 / 6``: smooths (does not pass
  through the vertex values), continuous second derivative.

The weight of a vertex is the product of its axes' weights. A dense level
indexes the clamped vertex as tcnn indexes a corner (``sum_d v_d * res^d``),
a hashed level hashes it as tcnn hashes a corner (``XOR_d v_d * prime_d``).

How it stays cheap (profiled on a CPU, where the naive int64 version of this
was no faster than a loop over levels):

- index arithmetic is int32. The hash is defined modulo 2^32 and hashed
  tables have power-of-two sizes, so wrapping int32 products and a bit mask
  give tcnn's uint32 result exactly;
- a dense index is ``base + corner_offset``: the per-(point, level) base
  ``sum_d cell_d * res^d`` plus a per-level constant for each corner, and for
  points in [0, 1] it stays below twice the table size, so the modulo is one
  conditional subtraction;
- the ``2^D`` corners come from broadcasting the "low" and "high" term of each
  dimension; levels that hash and levels that index densely form two groups,
  each computed over all of its levels at once. No Python loop runs over
  levels, corners or points (only over the D <= 4 input dimensions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from hashwfa.encodings.grid_config import CUBIC_INTERPOLATIONS, PRIMES, GridLayout


def _as_int32(value: int) -> int:
    """The int32 with the same 32 bits as the uint32 ``value``."""
    return value - (1 << 32) if value >= 1 << 31 else value


@dataclass
class LevelTables:
    """The level table of a :class:`GridLayout` as tensors on one device.

    Attributes (L levels, D dimensions, C = 2^D corners; Ld dense and Lh
    hashed levels):
        scales: ``(L,)`` float64 values of tcnn's float32 scales.
        dense_levels, hashed_levels: level indices of each group.
        dense_strides: ``(Ld, D)`` ``res^d``.
        dense_corner_rows: ``(Ld, C)`` level offset plus ``sum_d bit_d(c) * res^d``.
        dense_sizes, dense_ends: ``(Ld, 1)``, table size and offset + size.
        hashed_masks, hashed_offsets: ``(Lh, 1)``; masks are ``size - 1``.
        primes: ``(D,)`` int32 bit patterns of tcnn's primes.
        dense_offsets: ``(Ld, 1)`` first row of each dense level.
        last_vertex: ``(L, 1, 1)`` ``res - 1``, the last vertex per axis.
        vertex_steps: ``(4,)`` ``-1, 0, 1, 2``, the cubic vertices around a cell.
        index_dtype: int32 (int64 only for tables beyond 2^30 entries).
    """

    scales: torch.Tensor
    dense_levels: torch.Tensor
    hashed_levels: torch.Tensor
    dense_strides: torch.Tensor
    dense_corner_rows: torch.Tensor
    dense_sizes: torch.Tensor
    dense_ends: torch.Tensor
    hashed_masks: torch.Tensor
    hashed_offsets: torch.Tensor
    primes: torch.Tensor
    dense_offsets: torch.Tensor
    last_vertex: torch.Tensor
    vertex_steps: torch.Tensor
    index_dtype: torch.dtype

    @classmethod
    def build(cls, layout: GridLayout, device: torch.device) -> "LevelTables":
        """Tensors of the level table on ``device``."""
        dims = layout.config.n_input_dims
        # Dense indices reach at most twice a level's size before the wrap and
        # rows reach n_entries: int32 holds both below 2^30 entries.
        index_dtype = torch.int32 if 2 * layout.n_entries < 2**31 else torch.int64
        res = torch.as_tensor(layout.resolutions, dtype=torch.int64)
        hashed = torch.as_tensor(layout.hashed)
        levels = torch.arange(len(res))
        dense, hashed_lv = levels[~hashed], levels[hashed]
        strides = res[dense, None] ** torch.arange(dims)[None, :]
        bits = (torch.arange(2**dims)[:, None] >> torch.arange(dims)[None, :]) & 1  # (C, D)
        sizes = torch.as_tensor(layout.sizes, dtype=torch.int64)
        offsets = torch.as_tensor(layout.offsets, dtype=torch.int64)
        # Hashed levels always have power-of-two tables (the hash only kicks in
        # when the 2^log2_hashmap_size cap applies); the mask relies on it.
        assert bool(((sizes[hashed] & (sizes[hashed] - 1)) == 0).all())

        def put(t: torch.Tensor, dtype: torch.dtype = index_dtype) -> torch.Tensor:
            return t.to(dtype).to(device)

        return cls(
            scales=put(torch.as_tensor(layout.scales, dtype=torch.float64), torch.float64),
            dense_levels=put(dense, torch.int64),
            hashed_levels=put(hashed_lv, torch.int64),
            dense_strides=put(strides),
            dense_corner_rows=put(offsets[dense, None] + bits[None, :, :].mul(strides[:, None, :]).sum(-1)),
            dense_sizes=put(sizes[dense, None]),
            dense_ends=put(offsets[dense, None] + sizes[dense, None]),
            hashed_masks=put(sizes[hashed_lv, None] - 1),
            hashed_offsets=put(offsets[hashed_lv, None]),
            primes=torch.tensor([_as_int32(p) for p in PRIMES[:dims]], dtype=torch.int32).to(index_dtype).to(device),
            dense_offsets=put(offsets[dense, None]),
            last_vertex=put(res[:, None, None] - 1),
            vertex_steps=put(torch.arange(-1, 3)),
            index_dtype=index_dtype,
        )


def combine_corners(low: torch.Tensor, high: torch.Tensor, op: str) -> torch.Tensor:
    """Combine per-dimension low/high terms into all ``2^D`` corners.

    Args:
        low, high: ``[..., D]`` terms of the lower and upper vertex of each dimension.
        op: ``"xor"`` or ``"mul"``, how the dimensions combine.

    Returns:
        ``[..., 2^D]``; corner ``c`` takes ``high`` for dimension ``d`` when
        bit ``d`` of ``c`` is set (dimension 0 fastest, tcnn's corner order).
        Dimensions combine in the order 0, 1, ..., as tcnn accumulates them.
    """
    combine = torch.bitwise_xor if op == "xor" else torch.mul
    dims = low.shape[-1]
    lead = low.shape[:-1]
    result = torch.stack((low[..., 0], high[..., 0]), dim=-1)  # corners of dimension 0
    if torch.is_grad_enabled() and (low.requires_grad or high.requires_grad):
        # `out=` does not record a graph: the differentiable path concatenates.
        for d in range(1, dims):
            result = torch.cat((combine(result, low[..., d : d + 1]), combine(result, high[..., d : d + 1])), dim=-1)
        return result
    for d in range(1, dims):  # D <= 4 dimensions, not levels or corners
        # Doubling: the corners so far with dimension d low, then with it high.
        # Writing each half through `out=` keeps every kernel a plain
        # broadcast over one trailing axis (an outer-product broadcast over two
        # tiny trailing axes is several times slower on a CPU).
        k = 2**d
        doubled = torch.empty(lead + (2 * k,), dtype=result.dtype, device=result.device)
        combine(result, low[..., d : d + 1], out=doubled[..., :k])
        combine(result, high[..., d : d + 1], out=doubled[..., k:])
        result = doubled
    return result


def _dense_rows(cell: torch.Tensor, tables: LevelTables) -> torch.Tensor:
    """Rows ``[N, Ld, C]`` of the dense levels; ``cell`` is ``[N, Ld, D]``."""
    base = cell[..., 0] * tables.dense_strides[:, 0]  # [N, Ld]
    for d in range(1, cell.shape[-1]):  # D <= 4 dimensions
        base = base + cell[..., d] * tables.dense_strides[:, d]
    rows = base[..., None] + tables.dense_corner_rows  # [N, Ld, C], level offset included
    # For points in [0, 1] the index stays below twice the level size (the
    # upper corner of the last cell is one past the grid): tcnn's modulo is a
    # single wrap-around, back by one level size past the level's end.
    return torch.where(rows >= tables.dense_ends, rows - tables.dense_sizes, rows)


def _hashed_rows(cell: torch.Tensor, tables: LevelTables) -> torch.Tensor:
    """Rows ``[N, Lh, C]`` of the hashed levels; ``cell`` is ``[N, Lh, D]``.

    ``(corner_d * prime_d) mod 2^32``: int32 products wrap to the same 32 bits,
    and ``(c + 1) * p`` is ``c * p + p``.
    """
    low = cell * tables.primes
    index = combine_corners(low, low + tables.primes, "xor")
    return (index & tables.hashed_masks) + tables.hashed_offsets


def combine_vertices(terms: torch.Tensor, op: str) -> torch.Tensor:
    """Combine per-dimension terms of ``K`` vertices into all ``K^D`` vertices.

    Args:
        terms: ``[..., D, K]``, term of vertex ``k`` along dimension ``d``.
        op: ``"mul"``, ``"add"`` or ``"xor"``, how the dimensions combine.

    Returns:
        ``[..., K^D]``; vertex ``sum_d k_d K^d`` (dimension 0 fastest, as
        :func:`combine_corners` orders corners) combines ``terms[..., d, k_d]``
        over the dimensions in the order 0, 1, ...
    """
    combine = {"mul": torch.mul, "add": torch.add, "xor": torch.bitwise_xor}[op]
    result = terms[..., 0, :]
    for d in range(1, terms.shape[-2]):  # D <= 4 dimensions, not levels or vertices
        result = combine(result[..., None, :], terms[..., d, :, None]).flatten(-2)
    return result


def cubic_weights(t: torch.Tensor, interpolation: str) -> torch.Tensor:
    """Weights ``[..., 4]`` of the vertices ``c - 1 .. c + 2`` for a fraction ``t`` in [0, 1) of cell ``c``."""
    t2 = t * t
    t3 = t2 * t
    if interpolation == "CatmullRom":
        terms = (-t3 + 2.0 * t2 - t, 3.0 * t3 - 5.0 * t2 + 2.0, -3.0 * t3 + 4.0 * t2 + t, t3 - t2)
        return torch.stack(terms, dim=-1) * 0.5
    s = 1.0 - t
    terms = (s * s * s, 3.0 * t3 - 6.0 * t2 + 4.0, -3.0 * t3 + 3.0 * t2 + 3.0 * t + 1.0, t3)
    return torch.stack(terms, dim=-1) / 6.0


def _cubic_rows(vertices: torch.Tensor, tables: LevelTables) -> torch.Tensor:
    """Rows ``[N, L, 4^D]`` of the clamped vertices ``[N, L, D, 4]`` of every level."""

    def dense(group: torch.Tensor, t: LevelTables) -> torch.Tensor:
        # Clamped vertices index inside the level: no wrap-around.
        return combine_vertices(group * t.dense_strides[:, :, None], "add") + t.dense_offsets

    def hashed(group: torch.Tensor, t: LevelTables) -> torch.Tensor:
        index = combine_vertices(group * t.primes[:, None], "xor")
        return (index & t.hashed_masks) + t.hashed_offsets

    return _rows_by_level_group(vertices, tables, dense, hashed)


def _level_positions(
    positions: torch.Tensor, tables: LevelTables, weight_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(pos, floor(pos), cell)`` ``[N, L, D]`` of points ``[N, D]`` (clamped to [0, 1]) on every level.

    ``pos`` carries the gradient; ``cell`` is the integer cell (``tables.index_dtype``).
    """
    positions = positions.clamp(0.0, 1.0)
    # tcnn: pos = fmaf(scale, x, 0.5f), one rounding in float32. The product of
    # two float32 values is exact in float64, so computing in float64 and
    # rounding once to float32 reproduces it (but for the rare float64 sum that
    # lands exactly on a float32 rounding tie).
    pos = positions.to(torch.float64)[:, None, :] * tables.scales[:, None] + 0.5  # [N, L, D]
    if weight_dtype != torch.float64:
        pos = pos.to(torch.float32)
    cell_float = torch.floor(pos)
    return pos, cell_float, cell_float.detach().to(tables.index_dtype)


def _cubic_axes(
    pos: torch.Tensor, cell_float: torch.Tensor, cell: torch.Tensor, tables: LevelTables, interpolation: str,
    weight_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per axis, the clamped vertices ``c - 1 .. c + 2`` and their cubic weights, both ``[N, L, D, 4]``."""
    frac = (pos - cell_float).to(weight_dtype)  # [N, L, D], carries the gradient
    vertices = cell[..., None] + tables.vertex_steps  # [N, L, D, 4]: c - 1 .. c + 2
    vertices = torch.minimum(vertices.clamp_min(0), tables.last_vertex)
    return vertices, cubic_weights(frac, interpolation)


def cubic_axis_lookup(
    values: torch.Tensor, tables: LevelTables, interpolation: str, weight_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """The clamped vertices and cubic weights of coordinates ``values`` ``(n,)`` of one axis, ``(n, L, 4)`` each.

    The same arithmetic as :func:`grid_lookup`'s per axis (the separable
    lookup multiplies these instead of forming all ``4^D`` vertices).
    """
    pos, cell_float, cell = _level_positions(values[:, None], tables, weight_dtype)
    vertices, weights = _cubic_axes(pos, cell_float, cell, tables, interpolation, weight_dtype)
    return vertices[:, :, 0], weights[:, :, 0]


def grid_lookup(
    positions: torch.Tensor, tables: LevelTables, interpolation: str, weight_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and interpolation weights of every (point, level, corner).

    Args:
        positions: ``[N, D]`` points in [0, 1]; values outside are clamped
            (tcnn wraps them around the uint32 range, which no caller wants).
        tables: the level table on the points' device.
        interpolation: one of :data:`~hashwfa.encodings.grid_config.INTERPOLATIONS`.
        weight_dtype: dtype of the returned weights (the table's dtype).

    Returns:
        ``(rows, weights)``, both ``[N * L, C]`` (``C = 2^D``, 1 for
        ``Nearest``, ``4^D`` for the cubic interpolations); ``rows`` index
        the flat ``[n_entries, F]`` table (``tables.index_dtype``),
        ``weights`` are differentiable with respect to ``positions``.
    """
    n_points = positions.shape[0]
    n_levels = tables.scales.shape[0]
    pos, cell_float, cell = _level_positions(positions, tables, weight_dtype)

    if interpolation in CUBIC_INTERPOLATIONS:
        vertices, axis_weights = _cubic_axes(pos, cell_float, cell, tables, interpolation, weight_dtype)
        weights = combine_vertices(axis_weights, "mul")
        rows = _cubic_rows(vertices, tables)
        return rows.reshape(n_points * n_levels, -1), weights.reshape(n_points * n_levels, -1)

    if interpolation == "Nearest":
        corners = cell[:, :, None, :]  # the cell's own vertex only
        # Piecewise constant: no gradient with respect to the positions (tcnn: zero).
        weights = torch.ones(n_points * n_levels, 1, dtype=weight_dtype, device=positions.device)
    else:
        frac = pos - cell_float  # carries the gradient
        if interpolation == "Smoothstep":
            frac = frac * frac * (3.0 - 2.0 * frac)
        frac = frac.to(weight_dtype)
        weights = combine_corners(1.0 - frac, frac, "mul").reshape(n_points * n_levels, -1)
        corners = None
    rows = _rows(cell, tables, nearest=corners is not None)
    return rows.reshape(n_points * n_levels, -1), weights


def _rows(cell: torch.Tensor, tables: LevelTables, nearest: bool) -> torch.Tensor:
    """Table rows ``[N, L, C]`` for cells ``[N, L, D]``, both level groups."""
    if nearest:  # corner 0 is the cell's own vertex
        return _rows_by_level_group(cell, tables, lambda g, t: _dense_rows(g, t)[..., :1],
                                    lambda g, t: _hashed_rows(g, t)[..., :1])
    return _rows_by_level_group(cell, tables, _dense_rows, _hashed_rows)


def _rows_by_level_group(
    points: torch.Tensor,
    tables: LevelTables,
    dense_rows_of: Callable[[torch.Tensor, LevelTables], torch.Tensor],
    hashed_rows_of: Callable[[torch.Tensor, LevelTables], torch.Tensor],
) -> torch.Tensor:
    """Rows ``[N, L, C]`` assembled from the dense and the hashed levels' row functions.

    ``points`` is ``[N, L, ...]`` (cells or vertices per level); each function
    gets the points of its level group and returns their rows ``[N, L_group, C]``.
    With one group only (the usual case) its result is returned as it is.
    """
    n_points, n_levels = points.shape[:2]
    rows = None
    for levels, rows_of in ((tables.dense_levels, dense_rows_of), (tables.hashed_levels, hashed_rows_of)):
        if not levels.numel():
            continue
        group = points if levels.numel() == n_levels else points.index_select(1, levels)
        index = rows_of(group, tables)
        if levels.numel() == n_levels:
            return index
        if rows is None:
            rows = torch.empty(n_points, n_levels, index.shape[-1], dtype=index.dtype, device=points.device)
        rows[:, levels] = index
    return rows
