"""Coarse-to-fine training: the progressive level mask and its schedule.

docs/ARCHITECTURE.md section 4: ``active_levels`` is a float ``a`` in ``[1, L]``. Levels
are numbered from 0 (coarsest). Levels ``l < floor(a)`` pass unchanged, level
``floor(a)`` is scaled by the fractional part ``a - floor(a)``, and the rest
are zero. With ``a = 2.5``: levels 0 and 1 have weight 1, level 2 weight 0.5,
the others 0; ``a = L`` lets every level through.
"""

from __future__ import annotations

import math
from typing import Optional

import torch

from hashwfa.errors import HashwfaError


def level_weights(
    active_levels: float, n_levels: int, device: Optional[torch.device] = None, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    """The weight of each level for a given ``active_levels``.

    Args:
        active_levels: ``a`` in ``[1, n_levels]``.
        n_levels: L.
        device, dtype: where and how to compute them (on a GPU: computed
            there, no host-to-device copy).

    Returns:
        tensor ``[L]``: 1 for ``l < floor(a)``, ``a - floor(a)`` for
        ``l = floor(a)``, 0 above.
    """
    a = _check_active_levels(active_levels, n_levels)
    index = torch.arange(n_levels, dtype=dtype, device=device)
    # clamp(a - l, 0, 1) is exactly the rule: 1 below floor(a), frac(a) at floor(a), 0 above.
    return (a - index).clamp_(0.0, 1.0)


def _check_active_levels(active_levels: float, n_levels: int) -> float:
    try:
        a = float(active_levels)
    except (TypeError, ValueError):
        raise HashwfaError(
            f"active_levels must be a number in [1, {n_levels}], got {active_levels!r}."
        ) from None
    if not math.isfinite(a) or a < 1.0 or a > n_levels:
        raise HashwfaError(
            f"active_levels must be in [1, n_levels] = [1, {n_levels}], got {active_levels!r}; "
            "use progressive_schedule() to compute it from the epoch."
        )
    return a


class ProgressiveMask(torch.nn.Module):
    """Multiplies a level-major ``[N, L * F]`` encoding by the progressive level weights.

    The per-column weights ``[L * F]`` live in a (non-persistent) buffer that
    is rewritten by :meth:`set_active_levels`, not recomputed per forward.

    Args:
        n_levels: L.
        n_features_per_level: F.
        active_levels: initial ``a`` (default ``L``: every level on).
    """

    mask: torch.Tensor

    def __init__(self, n_levels: int, n_features_per_level: int, active_levels: float | None = None) -> None:
        super().__init__()
        self.n_levels = int(n_levels)
        self.n_features_per_level = int(n_features_per_level)
        self.register_buffer("mask", torch.ones(self.n_levels * self.n_features_per_level), persistent=False)
        self._active_levels = float(self.n_levels)
        self.set_active_levels(self.n_levels if active_levels is None else active_levels)

    @property
    def active_levels(self) -> float:
        """The current ``a``."""
        return self._active_levels

    def set_active_levels(self, active_levels: float) -> None:
        """Set ``a`` in ``[1, L]`` and rewrite the mask buffer in place."""
        # Computed where the mask lives: no host-to-device copy per epoch on a GPU.
        weights = level_weights(active_levels, self.n_levels, device=self.mask.device, dtype=self.mask.dtype)
        self._active_levels = float(active_levels)
        with torch.no_grad():
            self.mask.copy_(weights.repeat_interleave(self.n_features_per_level))

    def extra_repr(self) -> str:
        return f"n_levels={self.n_levels}, n_features_per_level={self.n_features_per_level}, active_levels={self._active_levels:g}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, L * F]`` times the level weights (broadcast over points)."""
        if self._active_levels >= self.n_levels:
            return x  # every weight is 1: skip a pass over the encoding
        return x * self.mask.to(x.dtype)


def progressive_schedule(
    epoch: float,
    n_epochs: int,
    n_levels: int,
    start_fraction: float = 0.25,
    ramp_fraction: float = 0.5,
) -> float:
    """``active_levels`` for an epoch of a training phase (docs/ARCHITECTURE.md section 4).

    The phase starts with ``max(1, start_fraction * L)`` levels and reaches all
    ``L`` linearly at ``ramp_fraction`` of the phase, then stays at ``L``:

        a(e) = a0 + (L - a0) * min(1, e / (ramp_fraction * n_epochs)),
        a0 = max(1, start_fraction * L)

    With the defaults and 16 levels over 200 epochs: 4 levels at epoch 0,
    10 at epoch 50, all 16 from epoch 100 on. The solver calls it at the start
    of each epoch of each phase (``epoch`` counts from 0 within the phase).

    Args:
        epoch: epoch index within the phase, ``>= 0`` (fractions allowed).
        n_epochs: epochs in the phase, ``>= 1``.
        n_levels: L.
        start_fraction: fraction of the levels active at epoch 0, in [0, 1].
        ramp_fraction: fraction of the phase after which all levels are
            active, in [0, 1] (0: all levels from the start).

    Returns:
        ``a`` in ``[1, L]``, to pass to ``set_active_levels``.
    """
    if n_levels < 1:
        raise HashwfaError(f"progressive_schedule: n_levels must be >= 1, got {n_levels}.")
    if n_epochs < 1:
        raise HashwfaError(f"progressive_schedule: n_epochs must be >= 1, got {n_epochs}.")
    if not 0.0 <= start_fraction <= 1.0:
        raise HashwfaError(f"progressive_schedule: start_fraction must be in [0, 1], got {start_fraction}.")
    if not 0.0 <= ramp_fraction <= 1.0:
        raise HashwfaError(f"progressive_schedule: ramp_fraction must be in [0, 1], got {ramp_fraction}.")
    if not epoch >= 0:
        raise HashwfaError(f"progressive_schedule: epoch must be >= 0, got {epoch}.")
    start = max(1.0, start_fraction * n_levels)
    ramp = ramp_fraction * n_epochs
    progress = 1.0 if ramp <= 0 else min(1.0, epoch / ramp)
    return min(float(n_levels), start + (n_levels - start) * progress)
