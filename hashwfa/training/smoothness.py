"""Spatial regularisation of field maps on the pixel grid.

Two penalties of a map ``m`` of shape ``(ny, nx)`` (one field, e.g. B_los in
G) or ``(ny, nx, C)`` (C components of one field, e.g. (B_Q, B_U) in G^2,
penalised as a vector), restricted to the valid pixels of a mask:

- :func:`squared_gradient`: the sum over the horizontal and vertical pairs of
  neighbouring valid pixels of ``|m_p - m_q|^2`` (the quadratic smoothness
  term of a Tikhonov / graph-Laplacian regularisation), divided by the number
  of valid pixels;
- :func:`total_variation`: the isotropic total variation, per valid pixel
  ``sqrt(|dx|^2 + |dy|^2 + eps^2) - eps`` with the forward differences
  ``dx = m[y, x+1] - m[y, x]`` and ``dy = m[y+1, x] - m[y, x]`` (a difference
  whose pair is not both valid counts as 0), averaged over the valid pixels.
  It grows linearly with a jump, so it flattens noise but keeps the edges of
  flux concentrations; ``eps`` (in the map's unit) rounds its kink at 0 so
  that it is differentiable everywhere.

Both are divided by the number of valid pixels, like the means of
:class:`hashwfa.training.loss.WFALoss`, so a weight keeps its meaning when the
image grows. They are written with whole-array slices (no loop over pixels)
and are differentiable in ``m``; invalid pixels (and whatever values they
hold, NaN included) do not contribute to the value or the gradient.

A training step evaluates both terms of the same map on the same mask:
:class:`NeighbourPairs` holds what depends on the mask alone (the pairs of
valid neighbours and their count) and computes the differences once for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import torch
import torch.nn.functional as F

from hashwfa.errors import HashwfaError

__all__ = ["NeighbourPairs", "squared_gradient", "total_variation"]


def _check_map(field_map: torch.Tensor, mask: torch.Tensor) -> None:
    if not isinstance(field_map, torch.Tensor) or field_map.dim() not in (2, 3):
        raise HashwfaError(
            "regularisation: the map must be a torch tensor of shape (ny, nx) or (ny, nx, C), "
            f"got {getattr(field_map, 'shape', type(field_map).__name__)}"
        )
    if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(field_map.shape[:2]):
        raise HashwfaError(
            f"regularisation: the mask must be a tensor of shape {tuple(field_map.shape[:2])} "
            f"(the map's ny, nx), got {getattr(mask, 'shape', type(mask).__name__)}"
        )


def _check_eps(eps: float) -> None:
    if not eps >= 0.0:
        raise HashwfaError(f"total_variation: eps must be >= 0 (in the map's unit), got {eps}")


@dataclass(frozen=True)
class NeighbourPairs:
    """The horizontal and vertical pairs of valid neighbours of a ``(ny, nx)`` mask.

    Attributes:
        mask: ``(ny, nx)`` bool, True where the pixel is valid.
        pair_x: ``(ny, nx - 1, 1)`` 1.0 where ``[y, x]`` and ``[y, x + 1]`` are both valid, else 0.0.
        pair_y: ``(ny - 1, nx, 1)`` likewise for ``[y, x]`` and ``[y + 1, x]``.
        n_valid: 0-dim tensor, the number of valid pixels (at least 1; a
            tensor, so that no step syncs host and device).
    """

    mask: torch.Tensor
    pair_x: torch.Tensor
    pair_y: torch.Tensor
    n_valid: torch.Tensor

    @classmethod
    def from_mask(cls, mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> "NeighbourPairs":
        """The pairs of ``mask`` ``(ny, nx)`` (bool or 0/1), as factors of ``dtype``."""
        mask = mask.to(dtype=torch.bool)
        pair_x = (mask[:, 1:] & mask[:, :-1]).unsqueeze(-1).to(dtype)
        pair_y = (mask[1:, :] & mask[:-1, :]).unsqueeze(-1).to(dtype)
        return cls(mask=mask, pair_x=pair_x, pair_y=pair_y, n_valid=mask.sum().clamp_min(1))

    def differences(self, values: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Forward differences of ``values`` ``(ny, nx, C)``: ``dx`` ``(ny, nx - 1, C)``, ``dy`` ``(ny - 1, nx, C)``.

        0 where the pair is not both valid. ``values`` must be finite (0 is
        fine) at the invalid pixels: a NaN there would survive the product
        with 0.
        """
        dx = (values[:, 1:] - values[:, :-1]) * self.pair_x
        dy = (values[1:, :] - values[:-1, :]) * self.pair_y
        return dx, dy

    def squared_gradient(self, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
        """The squared gradient (:func:`squared_gradient`) from :meth:`differences`."""
        return (torch.sum(dx * dx) + torch.sum(dy * dy)) / self.n_valid

    def total_variation(self, dx: torch.Tensor, dy: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
        """The total variation (:func:`total_variation`) from :meth:`differences`."""
        _check_eps(eps)
        # Per pixel |dx|^2 + |dy|^2; the last column has no dx, the last row no dy.
        squared = F.pad(torch.sum(dx * dx, dim=-1), (0, 1)) + F.pad(torch.sum(dy * dy, dim=-1), (0, 0, 0, 1))
        if eps > 0.0:
            per_pixel = torch.sqrt(squared + eps * eps) - eps
        else:
            # sqrt has an infinite derivative at 0: route flat pixels around it.
            flat = squared == 0
            per_pixel = torch.where(flat, torch.zeros_like(squared),
                                    torch.sqrt(torch.where(flat, torch.ones_like(squared), squared)))
        return torch.sum(per_pixel * self.mask) / self.n_valid


def _pairs_and_values(field_map: torch.Tensor, mask: torch.Tensor) -> Tuple[NeighbourPairs, torch.Tensor]:
    """The pairs of ``mask`` and the map as ``(ny, nx, C)`` with invalid pixels zeroed."""
    _check_map(field_map, mask)
    pairs = NeighbourPairs.from_mask(mask.to(device=field_map.device), dtype=field_map.dtype)
    values = field_map if field_map.dim() == 3 else field_map.unsqueeze(-1)
    # where(), not multiplication: a NaN at an invalid pixel must not leak in.
    values = torch.where(pairs.mask.unsqueeze(-1), values, torch.zeros((), dtype=values.dtype, device=values.device))
    return pairs, values


def squared_gradient(field_map: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Quadratic smoothness of a map: sum of squared neighbour differences / number of valid pixels.

    Args:
        field_map: ``(ny, nx)`` or ``(ny, nx, C)`` map (any unit u).
        mask: ``(ny, nx)`` bool (or 0/1), True where the pixel is valid.

    Returns:
        0-dim tensor [u^2]: ``sum over valid 4-neighbour pairs (p, q) of
        |m_p - m_q|^2`` (each pair once) divided by the number of valid pixels
        (0 when none is valid).

    Raises:
        HashwfaError: wrong shapes.
    """
    pairs, values = _pairs_and_values(field_map, mask)
    return pairs.squared_gradient(*pairs.differences(values))


def total_variation(field_map: torch.Tensor, mask: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Isotropic total variation of a map, per valid pixel.

    Args:
        field_map: ``(ny, nx)`` or ``(ny, nx, C)`` map (unit u); the C
            components are penalised together (vectorial TV).
        mask: ``(ny, nx)`` bool (or 0/1), True where the pixel is valid.
        eps: [u] >= 0; rounds the kink at a zero gradient (Charbonnier):
            each pixel contributes ``sqrt(|dx|^2 + |dy|^2 + eps^2) - eps``.
            With ``eps = 0`` the gradient at a flat pixel is taken as 0.

    Returns:
        0-dim tensor [u]: the mean over valid pixels of the contribution
        above (0 when none is valid).

    Raises:
        HashwfaError: wrong shapes or a negative eps.
    """
    _check_eps(eps)
    pairs, values = _pairs_and_values(field_map, mask)
    return pairs.total_variation(*pairs.differences(values), eps=eps)
