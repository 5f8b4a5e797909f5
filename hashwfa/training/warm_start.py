"""Warm start: fit each neural field to a classic WFA map before the WFA loss.

With ``training.init_from`` = ``"pixelwise"`` or ``"regularized"`` the solver
first fits each phase's field to that baseline's map
(:func:`hashwfa.wfa.baselines.pixelwise.pixel_wfa` or
:func:`hashwfa.wfa.baselines.regularized.regularized_wfa` with its default weight
rule) for ``training.init_epochs`` steps, then trains it on the WFA loss as
usual. The fit minimises the mean squared difference between the field's
scaled output and the map over the valid pixels, divided by the map's mean
square (so 1 means "no better than zero"), with a fresh Adam optimiser at
``training.lr`` (the phase's own optimiser and scheduler start afresh after
it). ``"none"`` (the default) starts from the random initialisation, as the
reference protocol does.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Optional

import numpy as np
import torch

from hashwfa.encodings import static_coordinates
from hashwfa.training.solver_config import INITS
from hashwfa.wfa.baselines.products import Baselines
from hashwfa.wfa.physics.maps import FieldMaps

__all__ = ["INITS", "baseline_maps", "phase_target", "fit_to_map"]


def baseline_maps(baselines: Baselines, init: str) -> Optional[FieldMaps]:
    """The map a field starts from: the run's pixel-wise or regularised WFA, or None for ``"none"``."""
    if init == "pixelwise":
        return baselines.pixelwise
    if init == "regularized":
        return baselines.regularized.maps
    return None


def phase_target(maps: FieldMaps, phase: str, valid_index: np.ndarray) -> np.ndarray:
    """``(P, 1)`` B_los [G] (phase ``"blos"``) or ``(P, 2)`` (B_Q, B_U) [G^2] at the valid pixels."""
    if phase == "blos":
        return maps.blos.reshape(-1)[valid_index][:, None]
    return np.stack([maps.bq.reshape(-1)[valid_index], maps.bu.reshape(-1)[valid_index]], axis=1)


def fit_to_map(
    net: torch.nn.Module, coords: torch.Tensor, target: torch.Tensor, steps: int, lr: float, batch_size: int
) -> float:
    """Fit ``net(coords)`` to ``target`` (both in the field's output units) by Adam.

    Args:
        net: the field, ``(N, 2) -> (N, K)``.
        coords: ``(N, 2)`` float32 pixel coordinates on the field's device.
        target: ``(N, K)`` float32, the map divided by the field's output scale.
        steps: passes over the pixels (one step each when ``batch_size >= N``).
        lr: Adam learning rate.
        batch_size: pixels per step, taken in order (no shuffling, so the fit
            does not touch the solver's minibatch generator).

    Returns:
        The relative mean squared error of the last pass (mean over its steps).
    """
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    norm = torch.clamp((target * target).mean(), min=torch.finfo(target.dtype).tiny)
    # Full batch: the same coordinate tensor every step, so the grids may reuse their lookup.
    reuse = static_coordinates() if batch_size >= coords.shape[0] else nullcontext()
    with reuse:
        return _fit(net, coords, target, steps, batch_size, optimizer, norm)


def _fit(net: torch.nn.Module, coords: torch.Tensor, target: torch.Tensor, steps: int, batch_size: int,
         optimizer: torch.optim.Optimizer, norm: torch.Tensor) -> float:
    """The passes of :func:`fit_to_map`."""
    last = torch.zeros((), device=coords.device)
    for _ in range(steps):
        last = torch.zeros((), device=coords.device)
        for start in range(0, coords.shape[0], batch_size):
            chunk = slice(start, start + batch_size)
            optimizer.zero_grad(set_to_none=True)
            loss = ((net(coords[chunk]) - target[chunk]) ** 2).mean() / norm
            loss.backward()
            optimizer.step()
            last = last + loss.detach() * (min(start + batch_size, coords.shape[0]) - start)
        last = last / coords.shape[0]
    return float(last)
