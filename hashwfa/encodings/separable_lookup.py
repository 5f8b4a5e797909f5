"""A cubic grid's lookup of an image's (or a series') pixels, done one axis at a time.

A cubic level reads ``4^D`` vertices per point, with weights that are the
products of one weight per axis (:mod:`hashwfa.encodings.grid_lookup`). When
the points are the pixels of an image (every x coordinate shared by a
column, every y by a row; likewise the frames of a series), the lookup
factors into one sparse product per axis with four non-zeros per row. In 2-D:

1. along x: ``B[l, vy, i] = sum_k wx[i, l, k] * T_l[vy, vx(i, l, k)]`` for
   every level ``l``, vertex row ``vy`` and distinct x coordinate ``i``;
2. along y: ``out[n, l] = sum_k wy[j(n), l, k] * B[l, vy(j(n), l, k), i(n)]``
   for every point ``n`` with y coordinate ``j(n)`` and x coordinate ``i(n)``.

That is ``4 * (sum_l res_l * nx + N * L)`` products instead of
``16 * N * L`` (a quarter or less for an image; in 3-D, ``64 * N * L``
against three stages of four). The result is the same sum as the one-step
lookup's, added in another order (equal to rounding, not bit for bit); which
path a set of points takes depends on the points alone, so a fit and its
continuation from a checkpoint compute the same bits.

Only for cubic interpolation on dense levels: a cubic level clamps its
vertices to the grid, so every vertex row of a level is a row of its table.
(A dense linear level wraps the index past the last column into the next
row, as tiny-cuda-nn does, which is not separable; hashed levels mix the
axes.) Points that need a gradient with respect to their positions take the
one-step lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Optional

import torch

from hashwfa.encodings.grid_config import CUBIC_INTERPOLATIONS, GridLayout
from hashwfa.encodings.grid_lookup import LevelTables, cubic_axis_lookup

#: Take the separable path only when the distinct x and y coordinates span at
#: most this many times the points (an image with a few invalid pixels does;
#: scattered points do not).
MAX_GRID_FILL = 2.0


def separable_applies(x: torch.Tensor, layout: GridLayout, interpolation: str) -> bool:
    """Whether ``x`` ``[N, D]`` may take the separable path (shape, interpolation, levels; not yet its values)."""
    return (
        x.dim() == 2 and x.shape[1] >= 2 and x.shape[0] > 0
        and interpolation in CUBIC_INTERPOLATIONS
        and not bool(layout.hashed.any())
        and not x.requires_grad
    )


@dataclass
class SeparableStages:
    """The sparse stages of a separable lookup, one per axis, each as rows and weights ``[rows, 4]``.

    Attributes:
        rows, weights: per stage ``s`` (axis ``s``, x first): the rows that
            stage reads in its input (the flat table for stage 0, stage
            ``s - 1``'s output after) and their weights. The last stage has
            row ``n * L + l`` for point ``n`` and level ``l``.
        n_inputs: per stage, the number of rows of its input.
    """

    rows: List[torch.Tensor]
    weights: List[torch.Tensor]
    n_inputs: List[int]


def separable_stages(
    x: torch.Tensor, tables: LevelTables, layout: GridLayout, interpolation: str, weight_dtype: torch.dtype
) -> Optional[SeparableStages]:
    """The stages of the lookup of ``x`` ``[N, D]``, or None when the points are not the pixels of an image (or cube).

    Stage ``s < D - 1`` contracts axis ``s``: its output has, per level ``l``,
    one row per (vertex of each axis above ``s``, distinct coordinate of each
    axis up to ``s``), with four non-zeros in its input. The last stage
    contracts axis ``D - 1`` and gathers the points.
    """
    dims, n_points = x.shape[1], x.shape[0]
    distinct, index = zip(*(torch.unique(x[:, d], return_inverse=True) for d in range(dims)))
    counts = [int(values.numel()) for values in distinct]
    if math.prod(counts) > MAX_GRID_FILL * n_points:
        return None
    device = x.device
    # Per axis (n_d, L, 4) vertices (int64: the stages' indices outgrow int32 on large images) and weights.
    axes = [cubic_axis_lookup(values, tables, interpolation, weight_dtype) for values in distinct]
    vertices_of = [vertices.to(torch.int64) for vertices, _ in axes]
    weights_of = [weights for _, weights in axes]
    res = torch.as_tensor(layout.resolutions, dtype=torch.int64, device=device)  # (L,)
    n_levels = res.numel()
    levels = torch.arange(n_levels, device=device)
    # Stage 0 reads the table: level l's block starts at its offset, vertex v at sum_d v_d res^d.
    source_offsets = torch.as_tensor(layout.offsets, dtype=torch.int64, device=device)
    n_source = layout.n_entries
    low = 1  # distinct points of the axes below s (the fastest part of a row of the input)
    stages = SeparableStages(rows=[], weights=[], n_inputs=[])
    for s in range(dims - 1):  # D <= 4 axes, not levels or points
        n_s = counts[s]
        high = res ** (dims - 1 - s)  # (L,): vertices of the axes above s
        block = high * n_s * low
        offsets = torch.cumsum(block, 0) - block
        n_out = int(block.sum())
        level = torch.repeat_interleave(levels, block)
        local = torch.arange(n_out, device=device) - offsets[level]
        i_low, rest = local % low, local // low
        i_s, v_high = rest % n_s, rest // n_s
        vertex = vertices_of[s][i_s, level]  # (n_out, 4)
        rows = source_offsets[level, None] + ((v_high * res[level])[:, None] + vertex) * low + i_low[:, None]
        stages.rows.append(rows.to(tables.index_dtype))
        stages.weights.append(weights_of[s][i_s, level])
        stages.n_inputs.append(n_source)
        source_offsets, n_source, low = offsets, n_out, low * n_s
    # The last axis: row (n, l) reads the last input at (vertex of axis D - 1, the point's lower axes).
    i_low = torch.zeros(n_points, dtype=torch.int64, device=device)
    stride = 1
    for d in range(dims - 1):
        i_low = i_low + index[d] * stride
        stride *= counts[d]
    vertex = vertices_of[dims - 1][index[dims - 1]]  # (N, L, 4)
    rows = source_offsets[None, :, None] + vertex * low + i_low[:, None, None]
    stages.rows.append(rows.reshape(n_points * n_levels, 4).to(tables.index_dtype))
    stages.weights.append(weights_of[dims - 1][index[dims - 1]].reshape(n_points * n_levels, 4))
    stages.n_inputs.append(n_source)
    return stages
