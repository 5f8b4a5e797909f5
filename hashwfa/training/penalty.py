"""Smoothness terms of a field's map in the training loss (config section ``regularization``).

A phase's loss becomes::

    L_data + w_g * squared_gradient(map) + w_tv * total_variation(map, eps)

where ``map`` is the field's scaled output scattered over the valid pixels of
the image (``(ny, nx)`` for B_los in G, ``(ny, nx, 2)`` for (B_Q, B_U) in
G^2; invalid pixels do not count) and the terms are those of
:mod:`hashwfa.training.smoothness`. The weights are fixed at setup
(:func:`penalty_weights`):

- ``regularization.weights = "given"``: the config's numbers, as they are.
- ``"discrepancy"``: the config's numbers are factors ``f`` of the data's own
  scale, chosen without the truth. With ``c_pa`` the WFA coefficients of the
  phase (those of :class:`~hashwfa.training.loss.WFALoss`), ``d = median_p mean_a
  c_pa^2`` and ``sigma_B = sigma / sqrt(median_p sum_a c_pa^2)`` (the
  pixel-wise WFA's noise on the quantity, sigma the Stokes noise of V, or of
  Q and U, estimated from the data):
  ``w_g = f_g * alpha * d * w_s``, ``w_tv = f_tv * alpha * d * sigma_B * w_s``,
  ``eps = tv_eps * sigma_B``, where ``alpha`` is the relative weight the
  default rules pick for the Laplacian-regularised WFA of the same data
  (:data:`~hashwfa.wfa.baselines.regularized.DEFAULT_RULE`: the misfit rule
  for V, which counts the WFA's model error, the discrepancy principle for
  Q/U; the name ``"discrepancy"`` is kept) (:func:`hashwfa.wfa.baselines.regularized.regularized_wfa`, alpha_V for B_los,
  alpha_QU for (B_Q, B_U)) and ``w_s`` the Stokes weight of the loss (V; Q).
  Because the loss is a mean over pixels and wavelengths and the terms are
  means over pixels, ``f_g = 1`` alone makes the field minimise exactly the
  regularised WFA's objective.

The terms compare neighbouring pixels, so they need the whole map at every
step: full batch only, a single process.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from hashwfa.errors import HashwfaError
from hashwfa.training.solver_config import SolverConfig
from hashwfa.training.loss import WFALoss
from hashwfa.training.smoothness import NeighbourPairs
from hashwfa.wfa.baselines.products import Baselines

__all__ = ["PenaltyWeights", "penalty_weights", "MapPenalty", "check_full_batch"]


@dataclass(frozen=True)
class PenaltyWeights:
    """The absolute weights of one phase's smoothness terms and where they came from.

    Attributes:
        squared_gradient: weight of the squared gradient [loss / (map unit)^2].
        total_variation: weight of the total variation [loss / map unit].
        tv_eps: the total variation's rounding [map unit: G or G^2].
        alpha: the regularised WFA's weight used (its default rule)
            (None with given weights).
        sigma: the Stokes noise used [the cube's unit / the observation's intensity_scale, the
            unit of the loss's Stokes values] (None with given weights).
        sigma_b: the pixel-wise WFA's noise on the quantity [map unit] (None likewise).
        d: median over pixels of mean_a c_a^2 [loss / (map unit)^2] (None likewise).
    """

    squared_gradient: float
    total_variation: float
    tv_eps: float
    alpha: Optional[float] = None
    sigma: Optional[float] = None
    sigma_b: Optional[float] = None
    d: Optional[float] = None

    def as_dict(self) -> Dict[str, Any]:
        return asdict(self)


def penalty_weights(loss: WFALoss, config: SolverConfig, baselines: Baselines) -> Dict[str, PenaltyWeights]:
    """The weights of the phases whose regularisation is on (an empty dict when none is).

    With ``weights = "discrepancy"`` they follow the regularised WFA of the
    run's :class:`~hashwfa.wfa.baselines.products.Baselines` (its noise is the
    run's ``data.noise`` or, when not given, the noise estimated from the
    data); nothing reads a truth.
    """
    reg = config.regularization
    active = {p: getattr(reg, p) for p in ("blos", "bqbu") if getattr(reg, p).active}
    if not active:
        return {}
    if reg.weights == "given":
        return {p: PenaltyWeights(r.squared_gradient, r.total_variation, r.tv_eps) for p, r in active.items()}
    try:
        baseline = baselines.regularized
    except HashwfaError as exc:
        raise HashwfaError(
            f"regularization.weights = 'discrepancy' needs the regularised WFA's weights, which failed: {exc} "
            "Fix: or give the weights themselves with regularization.weights = 'given'."
        ) from None
    out = {}
    for phase, r in active.items():
        coef = (loss.coef_v if phase == "blos" else loss.coef_qu).double()
        alpha = baseline.alpha_v if phase == "blos" else baseline.alpha_qu
        # The regularised WFA reports the noise in the cube's unit; the loss's coefficients are
        # in the WFA inputs' (the cube / intensity_scale).
        sigma = (baseline.noise_v if phase == "blos" else baseline.noise_qu) / baselines.observation.intensity_scale
        stokes_weight = loss.weights[3] if phase == "blos" else loss.weights[1]
        d = float(torch.median(torch.mean(coef * coef, dim=1)))
        sigma_b = float(sigma) / math.sqrt(float(torch.median(torch.sum(coef * coef, dim=1))))
        out[phase] = PenaltyWeights(
            squared_gradient=r.squared_gradient * alpha * d * stokes_weight,
            total_variation=r.total_variation * alpha * d * sigma_b * stokes_weight,
            tv_eps=r.tv_eps * sigma_b,
            alpha=float(alpha), sigma=float(sigma), sigma_b=sigma_b, d=d,
        )
    return out


class MapPenalty:
    """The smoothness terms of one field, evaluated on its output at the valid pixels.

    The map grid is ``(ny, nx)`` or, for a time series, ``(nt, ny, nx)``: the
    terms then act on the spatial axes of each frame (no difference across
    frames) and are averaged over the valid pixels of all frames, like the
    loss. The frames are stacked along y with one invalid row between them,
    so one call of each term covers them all.

    Args:
        weights: the phase's :class:`PenaltyWeights`.
        valid_index: ``(n_valid,)`` long, the row-major pixel index of each
            fitted point (the loss's ``valid_index``), on the training device.
        shape: the map grid, ``(ny, nx)`` or ``(nt, ny, nx)``.
    """

    def __init__(self, weights: PenaltyWeights, valid_index: torch.Tensor, shape: Sequence[int]) -> None:
        self.weights = weights
        self.valid_index = valid_index
        self.shape = tuple(int(n) for n in shape)
        self.frames = int(np.prod(self.shape[:-2]))
        n = int(np.prod(self.shape))
        mask = torch.zeros(n, dtype=torch.bool, device=valid_index.device)
        mask[valid_index] = True
        self.mask = self._stacked(mask.reshape(self.frames, *self.shape[-2:], 1))[..., 0]
        self.pairs = NeighbourPairs.from_mask(self.mask)

    def _stacked(self, frames: torch.Tensor) -> torch.Tensor:
        """``(F, ny, nx, C)`` -> ``(ny, nx, C)`` for one frame, else ``(F (ny + 1), nx, C)`` with gap rows."""
        if self.frames == 1:
            return frames[0]
        f, ny, nx, c = frames.shape
        gap = frames.new_zeros((f, 1, nx, c))
        return torch.cat([frames, gap], dim=1).reshape(f * (ny + 1), nx, c)

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """The weighted terms (0-dim) of ``values`` ``(n_valid, C)`` in the map's unit."""
        n = int(np.prod(self.shape))
        # Zeros at the invalid pixels (and the gap rows), which the pairs leave out.
        full = values.new_zeros((n, values.shape[1])).index_copy(0, self.valid_index, values)
        field_map = self._stacked(full.reshape(self.frames, *self.shape[-2:], values.shape[1]))
        pairs = self.pairs if self.pairs.pair_x.dtype == values.dtype else NeighbourPairs.from_mask(self.mask, values.dtype)
        dx, dy = pairs.differences(field_map)  # once, for both terms
        w = self.weights
        total = values.new_zeros(())
        if w.squared_gradient > 0.0:
            total = total + w.squared_gradient * pairs.squared_gradient(dx, dy)
        if w.total_variation > 0.0:
            total = total + w.total_variation * pairs.total_variation(dx, dy, w.tv_eps)
        return total


def check_full_batch(config: SolverConfig, full_batch: bool, distributed: bool) -> None:
    """Raise when regularisation is on but a step does not see the whole map."""
    if not config.regularization.active:
        return
    if not full_batch:
        raise HashwfaError(
            f"regularization is on, but training.batch_size = {config.training.batch_size} is below the "
            "number of valid pixels: the smoothness terms compare neighbouring pixels of the whole map at "
            "every step. Fix: set training.batch_size >= the number of valid pixels, or the "
            "regularization weights to 0."
        )
    if distributed:
        raise HashwfaError(
            "regularization is on in a data-parallel (torchrun) fit: each rank holds only a shard of "
            "the pixels, and the smoothness terms need the whole map. Fix: run a single process, or "
            "set the regularization weights to 0."
        )

