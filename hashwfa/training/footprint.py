"""The host memory a solve certainly needs, checked before anything is allocated.

A lower bound (see :mod:`hashwfa.host.memory`): the copy of one frame's valid
pixels' spectra that :meth:`hashwfa.wfa.observation.observation.Observation.wfa_input_chunks`
makes (float64; the loss is filled frame by frame), plus, on the CPU, the per-pixel arrays of the loss
(:class:`hashwfa.training.loss.WFALoss`: pixel index, five float32 ``(P, A)``
arrays and the nine float32 ``(P,)`` arrays of its quadratic form) and the
pixel coordinates. The grids and the network need more on
top; a solve that passes this check may still run out of memory, one that
fails it cannot fit.
"""

from __future__ import annotations

import torch

from typing import Optional

from hashwfa.host.memory import check_fits_in_memory
from hashwfa.wfa.observation.observation import Observation

__all__ = ["training_bytes", "check_training_memory"]


def training_bytes(n_valid: int, nw: int, n_active: int, on_host: bool = True,
                   n_chunk: Optional[int] = None) -> int:
    """Lower bound of the host bytes a solve of ``n_valid`` pixels allocates at once.

    Args:
        n_valid: P, valid pixels; nw: wavelengths of the cube; n_active: A,
            active wavelengths.
        on_host: the solve runs on the CPU (the loss arrays live in host memory).
        n_chunk: valid pixels whose spectra are read at once (one frame of a
            series); None: all ``n_valid`` (a single frame).
    """
    spectra = min(n_valid, n_valid if n_chunk is None else n_chunk) * 4 * nw * 8  # float64 copy, one frame
    if not on_host:
        return spectra
    # int64 index, five float32 (P, A) arrays, nine float32 (P,) arrays (the quadratic form)
    loss = n_valid * (8 + 5 * n_active * 4 + 9 * 4)
    coordinates = n_valid * 2 * 4  # float32 (P, 2)
    return spectra + loss + coordinates


def check_training_memory(observation: Observation, device: torch.device, n_rows: Optional[int] = None) -> None:
    """Refuse (:class:`~hashwfa.errors.HashwfaError`) a solve that clearly cannot fit in host memory.

    ``n_rows``: the valid pixels this process holds (a data-parallel rank's shard); None: all.
    """
    n = observation.n_valid if n_rows is None else n_rows
    needed = training_bytes(n, observation.nw, len(observation.active_indices), on_host=device.type == "cpu",
                            n_chunk=observation.ny * observation.nx)
    check_fits_in_memory(
        needed,
        f"training on {observation.n_valid} pixels of {observation.source}",
        "fit a smaller image (crop the cube, or data.synthetic.ny / nx), or free memory",
    )
