"""`TorchGrid`: a pure-PyTorch twin of tiny-cuda-nn's grid encoding.

Same JSON config, same flat parameter vector in the same layout, same numbers
(docs/ARCHITECTURE.md section 3), so a ``state_dict`` moves between ``TorchGrid`` and
``tinycudann.Encoding`` unchanged.

How it is fast on a CPU. The encoding of N points is a sparse matrix ``S``
(``N * L`` rows, ``2^D`` non-zeros each: the corner weights) times the table
viewed as ``[n_entries, F]``. Forward is one CSR matrix product; the table
gradient is ``S^T @ grad``. A neural field of an image sees the *same*
coordinates at every training step, and ``S`` depends only on them, so the
grid keeps the last lookup: when it is called again with the same coordinate
tensor (same object, unmodified, not requiring a gradient) it reuses ``S`` and
a transposed copy built on the first backward pass, and a step costs two
sparse products. New coordinates are looked up for all levels at once
(:mod:`hashwfa.encodings.grid_lookup`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import torch

from hashwfa.encodings.grid_config import GridConfig, GridLayout, parse_grid_config
from hashwfa.encodings.grid_lookup import LevelTables, grid_lookup
from hashwfa.encodings.points import check_points
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
        transposed: ``S^T``, CSR ``[E, N * L]``, built on first use.
    """

    rows: torch.Tensor
    weights: torch.Tensor
    n_entries: int
    matrix: torch.Tensor = field(init=False)
    transposed: Optional[torch.Tensor] = field(default=None, init=False)

    def __post_init__(self) -> None:
        n_rows, n_corners = self.rows.shape
        crow = torch.arange(0, n_rows * n_corners + 1, n_corners, device=self.rows.device, dtype=self.rows.dtype)
        # sparse_csr_tensor reads its index and value buffers as contiguous memory.
        self.rows = self.rows.contiguous()
        self.weights = self.weights.contiguous()
        self.matrix = _csr(crow, self.rows.view(-1), self.weights.view(-1), (n_rows, self.n_entries))

    def build_transposed(self) -> torch.Tensor:
        """``S^T`` as CSR: the corners sorted by table row (one sort, kept)."""
        if self.transposed is None:
            n_rows, n_corners = self.rows.shape
            flat = self.rows.reshape(-1).long()  # sorting int64 is faster than int32 here
            order = torch.argsort(flat, stable=True)
            counts = torch.bincount(flat, minlength=self.n_entries)
            crow = torch.zeros(self.n_entries + 1, dtype=torch.int64, device=flat.device)
            crow[1:] = torch.cumsum(counts, 0)
            self.transposed = _csr(
                crow, order // n_corners, self.weights.reshape(-1)[order], (self.n_entries, n_rows)
            )
        return self.transposed


class _GridInterpolation(torch.autograd.Function):
    """``out = S @ table`` with gradients for the table and the corner weights."""

    @staticmethod
    def forward(ctx: Any, table: torch.Tensor, weights: torch.Tensor, lookup: GridLookup, reuse: bool) -> torch.Tensor:
        ctx.lookup = lookup
        ctx.reuse = reuse
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
            flat = lookup.rows.reshape(-1)
            if ctx.reuse:
                # Points seen before: S^T is sorted once, then every step is one
                # sparse product without scattered writes.
                grad_table = lookup.build_transposed() @ grad_out
            elif grad_out.is_cuda:
                weighted = lookup.weights[:, :, None] * grad_out[:, None, :]  # [M, C, F]
                grad_table = torch.zeros_like(table).index_add_(0, flat.long(), weighted.reshape(flat.shape[0], -1))
            else:
                # One-off points on a CPU: a weighted histogram per feature is
                # cheaper than sorting the corners to build S^T.
                grad_table = torch.stack(
                    [
                        torch.bincount(
                            flat, weights=(lookup.weights * grad_out[:, f, None]).reshape(-1), minlength=lookup.n_entries
                        )
                        for f in range(grad_out.shape[1])  # F <= 8 features
                    ],
                    dim=1,
                ).to(table.dtype)
        if ctx.needs_input_grad[1]:
            # d out[m, f] / d weights[m, c] = table[rows[m, c], f]
            grad_weights = (table[lookup.rows.long()] * grad_out[:, None, :]).sum(-1)
        return grad_table, grad_weights, None, None


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
        self._cache: Optional[tuple[torch.Tensor, int, GridLookup]] = None

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

    def lookup(self, x: torch.Tensor) -> tuple[GridLookup, torch.Tensor, bool]:
        """The sparse interpolation matrix of ``x``, from the cache when possible.

        Returns ``(lookup, weights, reused)``: ``weights`` is the live,
        differentiable weight tensor when ``x`` requires a gradient, else the
        lookup's own detached weights.
        """
        self._check_input(x)
        cache = self._cache
        reusable = not x.requires_grad
        if (
            reusable
            and cache is not None
            and cache[0] is x
            and cache[1] == x._version
            and cache[2].weights.dtype == self.params.dtype
            and cache[2].rows.device == self.params.device
        ):
            return cache[2], cache[2].weights, True
        tables = self._level_tables(x.device)
        rows, weights = grid_lookup(x, tables, self.config.interpolation, self.params.dtype)
        lookup = GridLookup(rows, weights.detach(), self.layout.n_entries)
        if reusable:
            self._cache = (x, x._version, lookup)
            return lookup, lookup.weights, False
        return lookup, weights, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x`` ``[N, D]`` in [0, 1] into ``[N, L * F]``."""
        lookup, weights, reused = self.lookup(x)
        table = self.params.view(self.layout.n_entries, self.config.n_features_per_level)
        # S^T is sorted only once points come back (the training case); a
        # one-off lookup takes the cheaper scatter in backward.
        out = _GridInterpolation.apply(table, weights, lookup, reused)
        return out.view(x.shape[0], self.n_output_dims)

    def clear_cache(self) -> None:
        """Drop the cached lookup (it holds ``[N * L, 2^D]`` rows and weights)."""
        self._cache = None

    def __getstate__(self) -> dict:
        # The cached lookup holds sparse CSR tensors, which cannot be pickled or
        # deep-copied; it is derived data, rebuilt on the next call.
        state = self.__dict__.copy()
        state["_cache"] = None
        state["_tables"] = None
        return state

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # .to()/.cuda()/.double() invalidate device- and dtype-bound caches.
        self._tables = None
        self._cache = None
        return super()._apply(fn, recurse)
