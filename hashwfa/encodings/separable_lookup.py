"""A cubic grid's lookup of an image's pixels, done one axis at a time.

A cubic level reads ``4 x 4`` vertices per 2-D point, with weights that are
the products of one weight per axis (:mod:`hashwfa.encodings.grid_lookup`).
When the points are the pixels of an image (every x coordinate shared by a
column, every y by a row), the lookup factors into two sparse products with
four non-zeros per row each:

1. along x: ``B[l, vy, i] = sum_k wx[i, l, k] * T_l[vy, vx(i, l, k)]`` for
   every level ``l``, vertex row ``vy`` and distinct x coordinate ``i``;
2. along y: ``out[n, l] = sum_k wy[j(n), l, k] * B[l, vy(j(n), l, k), i(n)]``
   for every point ``n`` with y coordinate ``j(n)`` and x coordinate ``i(n)``.

That is ``4 * (L * sum_l res_l * nx + N * L)`` products instead of
``16 * N * L``: a quarter or less for an image. The result is the same sum
as the one-step lookup's, added in another order (equal to rounding, not bit
for bit); which path a set of points takes depends on the points alone, so a
fit and its continuation from a checkpoint compute the same bits.

Only for 2-D points, cubic interpolation and dense levels: a cubic level
clamps its vertices to the grid, so every vertex row of a level is a row of
its table. (A dense linear level wraps the index past the last column into
the next row, as tiny-cuda-nn does, which is not separable; hashed levels mix
the axes.) Points that need a gradient with respect to their positions take
the one-step lookup.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from hashwfa.encodings.grid_config import CUBIC_INTERPOLATIONS, GridLayout
from hashwfa.encodings.grid_lookup import LevelTables, cubic_weights

#: Take the separable path only when the distinct x and y coordinates span at
#: most this many times the points (an image with a few invalid pixels does;
#: scattered points do not).
MAX_GRID_FILL = 2.0


@dataclass
class AxisLookup:
    """Where the distinct coordinates of one axis read every level.

    Attributes:
        vertices: ``(n_d, L, 4)`` vertex index along the axis (clamped to ``0 .. res_l - 1``).
        weights: ``(n_d, L, 4)`` their cubic weights (the table's dtype).
    """

    vertices: torch.Tensor
    weights: torch.Tensor


def _axis_lookup(values: torch.Tensor, tables: LevelTables, interpolation: str,
                 weight_dtype: torch.dtype) -> AxisLookup:
    """Vertices and weights of ``values`` ``(n_d,)`` in [0, 1], per level, as the 2-D lookup computes them."""
    # The same arithmetic as grid_lookup, one axis at a time: pos = fl32(scale * x + 0.5).
    pos = values.clamp(0.0, 1.0).to(torch.float64)[:, None] * tables.scales[None, :] + 0.5  # (n_d, L)
    if weight_dtype != torch.float64:
        pos = pos.to(torch.float32)
    cell_float = torch.floor(pos)
    frac = (pos - cell_float).to(weight_dtype)
    cell = cell_float.to(torch.int64)
    vertices = cell[..., None] + tables.vertex_steps.to(torch.int64)  # (n_d, L, 4)
    vertices = torch.minimum(vertices.clamp_min(0), tables.last_vertex[:, :, 0].to(torch.int64)[None])
    return AxisLookup(vertices=vertices, weights=cubic_weights(frac, interpolation))


def separable_applies(x: torch.Tensor, layout: GridLayout, interpolation: str) -> bool:
    """Whether ``x`` ``[N, D]`` may take the separable path (shape, interpolation, levels; not yet its values)."""
    return (
        x.dim() == 2 and x.shape[1] == 2 and x.shape[0] > 0
        and interpolation in CUBIC_INTERPOLATIONS
        and not bool(layout.hashed.any())
        and not x.requires_grad
    )


@dataclass
class SeparableStages:
    """The two sparse stages of a separable lookup, each as rows and weights ``[rows, 4]``.

    Attributes:
        rows_x, weights_x: stage 1, one row per (level, vertex row, distinct
            x coordinate), level-major; ``rows_x`` index the flat table.
        rows_y, weights_y: stage 2, row ``n * L + l`` for point ``n`` and
            level ``l``; ``rows_y`` index stage 1's rows.
        n_intermediate: the number of stage 1's rows.
    """

    rows_x: torch.Tensor
    weights_x: torch.Tensor
    rows_y: torch.Tensor
    weights_y: torch.Tensor
    n_intermediate: int


def separable_stages(
    x: torch.Tensor, tables: LevelTables, layout: GridLayout, interpolation: str, weight_dtype: torch.dtype
) -> Optional[SeparableStages]:
    """The two stages of the lookup of ``x`` ``[N, 2]``, or None when the points are not an image's pixels.

    Stage 1 (along x) has one row per (level, vertex row ``vy``, distinct x)
    with four non-zeros in the table; stage 2 (along y) one row per (point,
    level), row ``n * L + l`` as the one-step lookup orders them, with four
    non-zeros in stage 1's rows.
    """
    xs, x_index = torch.unique(x[:, 0], return_inverse=True)
    ys, y_index = torch.unique(x[:, 1], return_inverse=True)
    n_points = x.shape[0]
    if xs.numel() * ys.numel() > MAX_GRID_FILL * n_points:
        return None
    device = x.device
    along_x = _axis_lookup(xs, tables, interpolation, weight_dtype)
    along_y = _axis_lookup(ys, tables, interpolation, weight_dtype)
    res = torch.as_tensor(layout.resolutions, dtype=torch.int64, device=device)  # (L,)
    offsets = torch.as_tensor(layout.offsets, dtype=torch.int64, device=device)  # (L,)
    n_x, n_levels = xs.numel(), res.numel()
    # Rows of B: level l's block holds res_l vertex rows of n_x values each.
    block = res * n_x
    b_offsets = torch.cumsum(block, 0) - block  # (L,)
    n_b = int(block.sum())
    # Stage 1: row (l, vy, i) -> table rows offset_l + vy * res_l + vx(i, l, k).
    level_of_row = torch.repeat_interleave(torch.arange(n_levels, device=device), block)  # (n_b,)
    local = torch.arange(n_b, device=device) - b_offsets[level_of_row]
    vy, i = local // n_x, local % n_x
    vx = along_x.vertices[i, level_of_row]  # (n_b, 4)
    rows_1 = offsets[level_of_row, None] + vy[:, None] * res[level_of_row, None] + vx
    weights_1 = along_x.weights[i, level_of_row]
    # Stage 2: row (n, l) -> B rows b_offset_l + vy(j(n), l, k) * n_x + i(n).
    vy_n = along_y.vertices[y_index]  # (N, L, 4)
    rows_2 = b_offsets[None, :, None] + vy_n * n_x + x_index[:, None, None]
    weights_2 = along_y.weights[y_index]
    index_dtype = tables.index_dtype
    return SeparableStages(
        rows_x=rows_1.to(index_dtype), weights_x=weights_1,
        rows_y=rows_2.reshape(n_points * n_levels, 4).to(index_dtype),
        weights_y=weights_2.reshape(n_points * n_levels, 4), n_intermediate=n_b,
    )
