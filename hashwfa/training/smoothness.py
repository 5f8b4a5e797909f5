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
"""

from __future__ import annotations

from typing import Tuple

import torch

from hashwfa.errors import HashwfaError

__all__ = ["squared_gradient", "total_variation"]


def _checked(field_map: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The map as ``(ny, nx, C)`` with invalid pixels zeroed, and the mask as bool ``(ny, nx)``."""
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
    mask = mask.to(device=field_map.device, dtype=torch.bool)
    values = field_map if field_map.dim() == 3 else field_map.unsqueeze(-1)
    # where(), not multiplication: a NaN at an invalid pixel must not leak in.
    values = torch.where(mask.unsqueeze(-1), values, torch.zeros((), dtype=values.dtype, device=values.device))
    return values, mask


def _differences(values: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Forward differences along x and y, ``(ny, nx, C)`` each, 0 where the pair is not both valid.

    The last column's dx and the last row's dy are 0 (no neighbour).
    """
    dx = torch.zeros_like(values)
    dy = torch.zeros_like(values)
    pair_x = (mask[:, 1:] & mask[:, :-1]).unsqueeze(-1)
    pair_y = (mask[1:, :] & mask[:-1, :]).unsqueeze(-1)
    dx[:, :-1] = (values[:, 1:] - values[:, :-1]) * pair_x
    dy[:-1, :] = (values[1:, :] - values[:-1, :]) * pair_y
    return dx, dy


def _n_valid(mask: torch.Tensor) -> torch.Tensor:
    # A tensor, not a Python int: no host-device sync on the GPU.
    return mask.sum().clamp_min(1)


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
    values, mask = _checked(field_map, mask)
    dx, dy = _differences(values, mask)
    return (torch.sum(dx * dx) + torch.sum(dy * dy)) / _n_valid(mask)


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
    if not eps >= 0.0:
        raise HashwfaError(f"total_variation: eps must be >= 0 (in the map's unit), got {eps}")
    values, mask = _checked(field_map, mask)
    dx, dy = _differences(values, mask)
    squared = torch.sum(dx * dx + dy * dy, dim=-1)
    if eps > 0.0:
        per_pixel = torch.sqrt(squared + eps * eps) - eps
    else:
        # sqrt has an infinite derivative at 0: route flat pixels around it.
        flat = squared == 0
        per_pixel = torch.where(flat, torch.zeros_like(squared), torch.sqrt(torch.where(flat, torch.ones_like(squared), squared)))
    per_pixel = per_pixel * mask
    return torch.sum(per_pixel) / _n_valid(mask)
