"""The one check of a batch of input points, shared by the grids and the encodings."""

from __future__ import annotations

from typing import Any

import torch

from hashwfa.errors import HashwfaError

__all__ = ["check_points"]


def check_points(x: Any, n_input_dims: int, what: str, values: str) -> None:
    """Raise unless ``x`` is a floating ``torch.Tensor`` of shape ``[N, n_input_dims]``.

    Args:
        x: the points.
        n_input_dims: D, the coordinates per point.
        what: who takes the points, for the message (``"grid"``, ``"encoding"``).
        values: the range the coordinates should lie in, for the message.

    Raises:
        HashwfaError: naming what is wrong and the fix.
    """
    if not isinstance(x, torch.Tensor):
        raise HashwfaError(f"{what} input must be a torch.Tensor of shape [N, {n_input_dims}], got {type(x).__name__}.")
    if x.dim() != 2 or x.shape[1] != n_input_dims:
        raise HashwfaError(
            f"{what} input has shape {list(x.shape)}; expected [N, {n_input_dims}] "
            f"(one row of {n_input_dims} coordinates per point)."
        )
    if not x.is_floating_point():
        raise HashwfaError(
            f"{what} input has dtype {x.dtype}; expected floating coordinates {values} (convert with x.float())."
        )
