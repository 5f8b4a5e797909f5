"""Where a point reads the grid: table rows and interpolation weights.

For N points and L levels, every point touches ``C = 2^D`` corners per level
(one for ``Nearest``). :func:`grid_lookup` computes, for all levels at once,

- ``rows``: ``[N * L, C]`` int64, the row of the flat ``[n_entries, F]``
  table each corner reads (level offset included), and
- ``weights``: ``[N * L, C]``, the interpolation weight of each corner,
  differentiable with respect to the input positions,

so that the encoding is ``out[n * L + l] = sum_c weights[., c] * table[rows[., c]]``,
a sparse matrix with ``C`` non-zeros per row times the table. The rules are
tiny-cuda-nn's (``pos_fract``, ``grid_index``, ``coherent_prime_hash``):
``pos = scale * x + 0.5``, ``cell = floor(pos)``, dense index
``sum_d corner_d * res^d`` or the XOR of ``corner_d * prime_d`` in uint32, the
result modulo the level's table size.

Vectorisation: the per-dimension terms are computed once per (point, level),
and the ``2^D`` corners are formed by broadcasting the "low" and "high" term of
each dimension, so no Python loop runs over levels, corners or points (only
over the D <= 4 input dimensions). Levels that hash and levels that index
densely are computed as two groups, each over all of its levels at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from hashwfa.encodings.grid_config import PRIMES, GridLayout

_UINT32 = 0xFFFFFFFF


@dataclass
class LevelTables:
    """The level table of a :class:`GridLayout` as tensors on one device.

    Shapes: ``(L,)`` for ``scales``, ``sizes``, ``offsets``; ``(L, D)`` for
    ``strides`` (dense stride ``res^d`` of dimension ``d``); index tensors
    ``dense_levels`` and ``hashed_levels`` list the levels of each group.
    """

    scales: torch.Tensor
    sizes: torch.Tensor
    offsets: torch.Tensor
    strides: torch.Tensor
    dense_levels: torch.Tensor
    hashed_levels: torch.Tensor
    primes: torch.Tensor
    corner_bits: torch.Tensor

    @classmethod
    def build(cls, layout: GridLayout, device: torch.device) -> "LevelTables":
        dims = layout.config.n_input_dims
        res = torch.as_tensor(layout.resolutions, dtype=torch.int64)
        strides = res[:, None] ** torch.arange(dims)[None, :]
        hashed = torch.as_tensor(layout.hashed)
        levels = torch.arange(len(res))
        # Corner c takes the upper vertex along dimension d when bit d of c is set.
        corners = torch.arange(2**dims)
        corner_bits = (corners[:, None] >> torch.arange(dims)[None, :]) & 1
        return cls(
            scales=torch.as_tensor(layout.scales, dtype=torch.float64).to(device),
            sizes=torch.as_tensor(layout.sizes, dtype=torch.int64).to(device),
            offsets=torch.as_tensor(layout.offsets, dtype=torch.int64).to(device),
            strides=strides.to(device),
            dense_levels=levels[~hashed].to(device),
            hashed_levels=levels[hashed].to(device),
            primes=torch.tensor(PRIMES[:dims], dtype=torch.int64, device=device),
            corner_bits=corner_bits.to(device),
        )


def _combine_corners(low: torch.Tensor, high: torch.Tensor, op: str) -> torch.Tensor:
    """Combine per-dimension low/high terms into all ``2^D`` corners.

    Args:
        low, high: ``[..., D]`` terms of the lower and upper vertex per dimension.
        op: ``"add"``, ``"xor"`` or ``"mul"``: how dimensions combine.

    Returns:
        ``[..., 2^D]``; corner ``c`` uses ``high`` for dimension ``d`` when bit
        ``d`` of ``c`` is set (dimension 0 fastest, tcnn's corner order). The
        dimensions combine in order 0, 1, ..., as tcnn accumulates them.
    """
    dims = low.shape[-1]
    result = None
    for d in range(dims):  # D <= 4 dimensions, not levels or corners
        pair = torch.stack((low[..., d], high[..., d]), dim=-1)  # [..., 2]
        # Put this dimension's axis at position D-1-d of the corner block so that
        # dimension 0 varies fastest after flattening.
        shape = pair.shape[:-1] + (1,) * (dims - 1 - d) + (2,) + (1,) * d
        pair = pair.reshape(shape)
        if result is None:
            result = pair
        elif op == "add":
            result = result + pair
        elif op == "xor":
            result = result ^ pair
        else:
            result = result * pair
    return result.reshape(low.shape[:-1] + (2**dims,))


def _dense_rows(cell: torch.Tensor, strides: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Dense-level rows, ``[N, Ld, C]``, before the level offset.

    ``cell``: ``[N, Ld, D]`` uint32 values held in int64; ``strides``: ``[Ld, D]``.
    """
    low = cell * strides
    high = (cell + 1) * strides
    index = _combine_corners(low, high, "add") & _UINT32
    return torch.remainder(index, sizes[:, None])


def _hashed_rows(cell: torch.Tensor, primes: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Hashed-level rows, ``[N, Lh, C]``, before the level offset.

    tcnn's coherent-prime hash, ``XOR_d (corner_d * prime_d)`` in uint32
    arithmetic, modulo the level's table size. Products of two uint32 values
    can exceed int64's range; the int64 multiply wraps and its low 32 bits are
    the uint32 product, which is all the mask keeps.
    """
    low = (cell * primes) & _UINT32
    high = ((cell + 1) * primes) & _UINT32
    index = _combine_corners(low, high, "xor")
    return torch.remainder(index, sizes[:, None])


def grid_lookup(
    positions: torch.Tensor, tables: LevelTables, interpolation: str, weight_dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows and interpolation weights of every (point, level, corner).

    Args:
        positions: ``[N, D]`` points, nominally in [0, 1] (tcnn does not clamp;
            neither does this: outside points wrap as tcnn's uint32 cells do).
        tables: the level table on the points' device.
        interpolation: ``"Nearest"``, ``"Linear"`` or ``"Smoothstep"``.
        weight_dtype: dtype of the returned weights (the table's dtype).

    Returns:
        ``(rows, weights)``, both ``[N * L, C]`` (``C = 2^D``, or 1 for
        ``Nearest``); ``rows`` int64 into the flat ``[n_entries, F]`` table,
        ``weights`` differentiable with respect to ``positions``.
    """
    n_points, dims = positions.shape
    n_levels = tables.scales.shape[0]
    # tcnn computes pos = fmaf(scale, x, 0.5f) with one rounding in float32.
    # The product of two float32 values is exact in float64, so computing in
    # float64 and rounding once to float32 reproduces it (up to the rare case
    # where the float64 sum itself lands on a float32 rounding tie).
    pos = positions.to(torch.float64)[:, None, :] * tables.scales[None, :, None] + 0.5
    if weight_dtype != torch.float64:
        pos = pos.to(torch.float32)
    cell_float = torch.floor(pos)
    frac = pos - cell_float  # [N, L, D], carries the gradient
    cell = cell_float.detach().to(torch.int64) & _UINT32  # tcnn: (uint32_t)(int)floor

    if interpolation == "Nearest":
        corner_cells = cell[:, :, None, :]  # [N, L, 1, D]
        # Piecewise constant: no gradient with respect to the positions (tcnn: zero).
        weights = torch.ones(n_points, n_levels, 1, dtype=weight_dtype, device=positions.device)
        rows = _rows_for_corners(corner_cells, tables, single_corner=True)
        return rows.reshape(n_points * n_levels, 1), weights.reshape(n_points * n_levels, 1)

    if interpolation == "Smoothstep":
        frac = frac * frac * (3.0 - 2.0 * frac)
    frac = frac.to(weight_dtype)
    weights = _combine_corners(1.0 - frac, frac, "mul")  # [N, L, C]
    rows = _rows_for_corners(cell, tables, single_corner=False)
    n_corners = weights.shape[-1]
    return rows.reshape(n_points * n_levels, n_corners), weights.reshape(n_points * n_levels, n_corners)


def _rows_for_corners(cell: torch.Tensor, tables: LevelTables, single_corner: bool) -> torch.Tensor:
    """Flat-table rows ``[N, L, C]`` for cells ``[N, L, D]`` (or ``[N, L, 1, D]``).

    With ``single_corner`` the cell itself is the only corner (``Nearest``).
    """
    n_points, n_levels = cell.shape[0], cell.shape[1]
    n_corners = 1 if single_corner else 2 ** cell.shape[-1]
    rows = torch.empty(n_points, n_levels, n_corners, dtype=torch.int64, device=cell.device)
    if single_corner:
        cell = cell[:, :, 0, :]
    for levels, is_hashed in ((tables.dense_levels, False), (tables.hashed_levels, True)):
        if levels.numel() == 0:
            continue
        group = cell if levels.numel() == n_levels else cell.index_select(1, levels)
        sizes = tables.sizes[levels]
        if single_corner:
            if is_hashed:
                index = _xor_reduce((group * tables.primes) & _UINT32)
                index = torch.remainder(index, sizes)
            else:
                index = torch.remainder((group * tables.strides[levels]).sum(-1) & _UINT32, sizes)
            index = index[..., None]
        elif is_hashed:
            index = _hashed_rows(group, tables.primes, sizes)
        else:
            index = _dense_rows(group, tables.strides[levels], sizes)
        index = index + tables.offsets[levels][:, None]
        if levels.numel() == n_levels:
            rows = index
        else:
            rows[:, levels] = index
    return rows


def _xor_reduce(terms: torch.Tensor) -> torch.Tensor:
    """XOR over the last dimension of an int64 tensor ``[..., D]``."""
    result = terms[..., 0]
    for d in range(1, terms.shape[-1]):  # D <= 4 dimensions
        result = result ^ terms[..., d]
    return result
