"""`TorchGrid`: a pure-PyTorch twin of tiny-cuda-nn's grid encoding.

Same JSON config, same flat parameter vector in the same layout, same numbers
(docs/ARCHITECTURE.md section 3), so a ``state_dict`` moves between ``TorchGrid`` and
``tinycudann.Encoding`` unchanged.

How it is fast on a CPU. The encoding of N points is a sparse matrix ``S``
(``N * L`` rows, ``C`` non-zeros each: the corner weights) times the table
viewed as ``[n_entries, F]``; forward is one CSR matrix product. New
coordinates are looked up for all levels at once
(:mod:`hashwfa.encodings.grid_lookup`). A neural field of an image sees the
same coordinates at every training step; inside
:func:`~hashwfa.encodings.coordinates.static_coordinates` the grid keeps the
lookup of a coordinate tensor and reuses it (an explicit opt-in: see that
module for why the grid cannot decide this alone).

A cubic grid whose points are an image's pixels, or a series' (the neural
field's full batch), looks them up one axis at a time instead: one sparse
product per axis with four non-zeros per row
(:mod:`hashwfa.encodings.separable_lookup`), instead of one with ``4^D``.

The table gradient has exactly one implementation, whether the lookup is new
or reused, so a grid rebuilt from a checkpoint computes the same bits as one
that has been training all along (see :class:`_GridInterpolation`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Optional

import torch

from hashwfa.encodings.coordinates import CoordinateCache, require_finite
from hashwfa.encodings.grid_config import GridConfig, GridLayout, parse_grid_config
from hashwfa.encodings.grid_lookup import LevelTables, grid_lookup
from hashwfa.encodings.points import check_points
from hashwfa.encodings.separable_lookup import separable_applies, separable_stages
from hashwfa.errors import HashwfaError

# tcnn initialises every table entry uniformly in [-1e-4, 1e-4].
INIT_RANGE = 1e-4


def _csr(crow: torch.Tensor, col: torch.Tensor, values: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    with warnings.catch_warnings():
        # PyTorch flags sparse CSR as beta once per process; the operations
        # used here (construction, CSR @ dense) are long stable.
        warnings.simplefilter("ignore", UserWarning)
        return torch.sparse_csr_tensor(crow, col, values, size=shape, check_invariants=False)


@dataclass
class GridLookup:
    """The sparse interpolation matrix of one set of points.

    Attributes:
        rows: ``[N * L, C]`` table rows of every corner (int32, or int64 for huge tables).
        weights: ``[N * L, C]`` corner weights (detached).
        n_entries: table rows, ``E``.
        matrix: ``S``, CSR ``[N * L, E]``.
    """

    rows: torch.Tensor
    weights: torch.Tensor
    n_entries: int
    matrix: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        n_rows, n_corners = self.rows.shape
        crow = torch.arange(0, n_rows * n_corners + 1, n_corners, device=self.rows.device, dtype=self.rows.dtype)
        # sparse_csr_tensor reads its index and value buffers as contiguous memory.
        self.rows = self.rows.contiguous()
        self.weights = self.weights.contiguous()
        self.matrix = _csr(crow, self.rows.view(-1), self.weights.view(-1), (n_rows, self.n_entries))


@dataclass
class SeparableGridLookup:
    """A cubic grid's lookup of an image's pixels as one sparse stage per axis (:mod:`hashwfa.encodings.separable_lookup`).

    Attributes:
        stages: the table ``[E, F]`` -> ... -> the encoding ``[N * L, F]``, x first.
    """

    stages: List[GridLookup]


def table_gradient(lookup: GridLookup, grad_out: torch.Tensor) -> torch.Tensor:
    """``S^T @ grad_out``: the gradient of the ``[E, F]`` table, ``grad_out`` ``[N * L, F]``.

    The one implementation for every call (new or reused lookup). On a CPU it
    is a weighted histogram per feature (``bincount``): every product
    ``weight * grad`` is rounded once and the products are added serially in
    point order, in the table's dtype. That order is fixed by the data alone,
    so the result is the same bits on any x86 CPU, SIMD path and thread count,
    and it needs no sort of the corners. (A product with a transposed CSR
    matrix was the other candidate: faster per step once built, but building
    it sorts all corners, a cost paid again for every new coordinate set, and
    its accumulation is the sparse library's, which may fuse the multiply and
    the add differently per CPU.) On CUDA, ``index_add_`` accumulates with
    atomics, whose order is not fixed: gradients there are reproducible to
    rounding only, as tiny-cuda-nn's own.
    """
    flat = lookup.rows.reshape(-1)
    if grad_out.is_cuda:
        weighted = lookup.weights[:, :, None] * grad_out[:, None, :]  # [M, C, F]
        table = torch.zeros(lookup.n_entries, grad_out.shape[1], dtype=grad_out.dtype, device=grad_out.device)
        return table.index_add_(0, flat.long(), weighted.reshape(flat.shape[0], -1))
    return torch.stack(
        [
            torch.bincount(
                flat, weights=(lookup.weights * grad_out[:, f, None]).reshape(-1), minlength=lookup.n_entries
            )
            for f in range(grad_out.shape[1])  # F <= 8 features
        ],
        dim=1,
    )


class _GridInterpolation(torch.autograd.Function):
    """``out = S @ table`` with gradients for the table and the corner weights."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, weights: torch.Tensor, lookup: GridLookup) -> torch.Tensor:
        ctx.lookup = lookup
        ctx.save_for_backward(table)
        # lookup.matrix holds the same values as `weights` (detached); `weights`
        # is an input only so that autograd can route its gradient.
        return lookup.matrix @ table

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor):  # type: ignore[override]
        (table,) = ctx.saved_tensors
        lookup: GridLookup = ctx.lookup
        grad_table = grad_weights = None
        grad_out = grad_out.contiguous()
        if ctx.needs_input_grad[0]:
            grad_table = table_gradient(lookup, grad_out).to(table.dtype)
        if ctx.needs_input_grad[1]:
            # d out[m, f] / d weights[m, c] = table[rows[m, c], f]
            grad_weights = (table[lookup.rows.long()] * grad_out[:, None, :]).sum(-1)
        return grad_table, grad_weights, None


class TorchGrid(torch.nn.Module):
    """Multi-resolution grid encoding, a drop-in twin of ``tinycudann.Encoding``.

    Args:
        n_input_dims: D, coordinates per point (1 to 4).
        encoding_config: tcnn's JSON dict for a ``HashGrid``, ``DenseGrid`` or
            ``Grid`` (absent keys take tcnn's defaults).
        seed: seed of the initial table values (uniform in [-1e-4, 1e-4]).
        dtype: dtype of the table and the output (float32, or float64 for
            gradient checks).

    Attributes:
        params: the whole table, one flat parameter of ``n_entries * F``
            values in tcnn's layout: value ``f`` of entry ``i`` of level ``l``
            is ``params[(offset_l + i) * F + f]``.
        n_input_dims, n_output_dims: D and ``L * F``.
        layout: the per-level table (:class:`GridLayout`).

    ``forward(x)`` takes ``x`` of shape ``[N, D]`` in [0, 1] and returns
    ``[N, L * F]``, level-major (``out[:, l * F + f]``).
    """

    def __init__(
        self,
        n_input_dims: int,
        encoding_config: Mapping[str, Any],
        seed: int = 1337,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if dtype not in (torch.float32, torch.float64):
            raise HashwfaError(f"TorchGrid dtype must be torch.float32 or torch.float64, got {dtype}.")
        self.config: GridConfig = parse_grid_config(n_input_dims, encoding_config)
        self.layout = GridLayout.from_config(self.config)
        self.n_input_dims = self.config.n_input_dims
        self.n_output_dims = self.layout.n_output_dims
        self.seed = seed
        generator = torch.Generator().manual_seed(seed)
        initial = (torch.rand(self.layout.n_params, generator=generator, dtype=torch.float64) * 2 - 1) * INIT_RANGE
        self.params = torch.nn.Parameter(initial.to(dtype))
        self._tables: Optional[LevelTables] = None
        self._cache = CoordinateCache()  # the last lookup, served only inside static_coordinates()

    @property
    def encoding_config(self) -> dict[str, Any]:
        """The resolved tcnn config (every key explicit)."""
        return self.config.to_tcnn()

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"n_input_dims={c.n_input_dims}, type={c.grid_type}, n_levels={c.n_levels}, "
            f"n_features_per_level={c.n_features_per_level}, n_params={self.layout.n_params}, "
            f"interpolation={c.interpolation}"
        )

    def _level_tables(self, device: torch.device) -> LevelTables:
        if self._tables is None or self._tables.scales.device != device:
            self._tables = LevelTables.build(self.layout, device)
        return self._tables

    def _check_input(self, x: torch.Tensor) -> None:
        check_points(x, self.n_input_dims, "grid", "in [0, 1]")
        if x.device != self.params.device:
            raise HashwfaError(
                f"grid input is on {x.device} but the grid's parameters are on {self.params.device}; move one of them."
            )

    def lookup(self, x: torch.Tensor) -> tuple[GridLookup, torch.Tensor]:
        """The sparse interpolation matrix of ``x`` ``[N, D]``.

        Returns ``(lookup, weights)``: ``weights`` is the live, differentiable
        weight tensor when ``x`` requires a gradient, else the lookup's own
        detached weights. Inside
        :func:`~hashwfa.encodings.coordinates.static_coordinates` a lookup of
        the same tensor is reused.

        Raises:
            HashwfaError: a wrong shape, dtype or device, or a NaN or infinite
                coordinate.
        """
        self._check_input(x)
        cached = self._cache.get(x)
        if isinstance(cached, GridLookup):
            return cached, cached.weights
        require_finite(x, "grid input")
        tables = self._level_tables(x.device)
        rows, weights = grid_lookup(x, tables, self.config.interpolation, self.params.dtype)
        lookup = GridLookup(rows, weights.detach(), self.layout.n_entries)
        if cached is None:  # a cached separable lookup stays: forward uses it
            self._cache.put(x, lookup)
        return lookup, (weights if x.requires_grad else lookup.weights)

    def _separable_lookup(self, x: torch.Tensor) -> Optional[SeparableGridLookup]:
        """The two-stage lookup of ``x`` when its points are an image's pixels on a cubic, dense grid; else None."""
        if not separable_applies(x, self.layout, self.config.interpolation):
            return None
        cached = self._cache.get(x)
        if cached is not None:
            return cached if isinstance(cached, SeparableGridLookup) else None
        self._check_input(x)
        require_finite(x, "grid input")
        stages = separable_stages(x, self._level_tables(x.device), self.layout, self.config.interpolation,
                                  self.params.dtype)
        if stages is None:
            return None
        lookup = SeparableGridLookup([GridLookup(rows, weights, n_inputs) for rows, weights, n_inputs
                                      in zip(stages.rows, stages.weights, stages.n_inputs)])
        self._cache.put(x, lookup)
        return lookup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` ``[N, D]`` in [0, 1] into ``[N, L * F]`` (``[0, L * F]`` for an empty batch)."""
        if isinstance(x, torch.Tensor) and x.dim() == 2 and x.shape[0] == 0:
            self._check_input(x)
            # An empty batch: an empty result that is still part of the graph.
            empty = self.params[:0].view(0, self.n_output_dims)
            return empty + x[:, :1].to(empty.dtype) * 0 if x.requires_grad else empty
        table = self.params.view(self.layout.n_entries, self.config.n_features_per_level)
        separable = self._separable_lookup(x) if isinstance(x, torch.Tensor) else None
        if separable is not None:
            out = table
            for stage in separable.stages:  # D <= 4 axes
                out = _GridInterpolation.apply(out, stage.weights, stage)
            return out.view(x.shape[0], self.n_output_dims)
        lookup, weights = self.lookup(x)
        out = _GridInterpolation.apply(table, weights, lookup)
        return out.view(x.shape[0], self.n_output_dims)

    def clear_cache(self) -> None:
        """Drop the cached lookup (it holds ``[N * L, C]`` rows and weights)."""
        self._cache.clear()

    def __getstate__(self) -> dict:
        # The cached lookup holds sparse CSR tensors, which cannot be pickled or
        # deep-copied; it is derived data, rebuilt on the next call.
        state = self.__dict__.copy()
        state["_cache"] = CoordinateCache()
        state["_tables"] = None
        return state

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # .to()/.cuda()/.double() invalidate device- and dtype-bound caches.
        self._tables = None
        self._cache.clear()
        return super()._apply(fn, recurse)
