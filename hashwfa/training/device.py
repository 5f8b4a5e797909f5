"""Where a solve runs: the torch device, and the grid backend that goes with it."""

from __future__ import annotations

from typing import Tuple

import torch

from hashwfa.encodings import resolve_backend
from hashwfa.errors import HashwfaError

__all__ = ["DEVICES", "resolve_device", "grid_backend_for"]

#: The values of ``training.device`` (and ``--device``).
DEVICES: Tuple[str, ...] = ("auto", "cpu", "cuda")


def resolve_device(device: str) -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda"`` into a :class:`torch.device`.

    Raises:
        HashwfaError: ``"cuda"`` asked for where torch sees no GPU.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise HashwfaError(
            "training.device is 'cuda' but torch sees no CUDA device "
            f"(torch {torch.__version__}). Fix: use --device cpu (or auto), or "
            "install a CUDA build of torch on a machine with an NVIDIA GPU."
        )
    if device not in DEVICES:
        raise HashwfaError(f"training.device must be one of {', '.join(map(repr, DEVICES))}, got {device!r}.")
    return torch.device(device)


def grid_backend_for(device: torch.device, backend: str) -> str:
    """The ``encoding.backend`` to build the grids with on ``device``.

    On the CPU the grids are always the torch twin; elsewhere ``backend`` is
    passed on (``"auto"`` is resolved when the grid is built).

    Raises:
        HashwfaError: ``"tcnn"`` asked for on the CPU (or without tiny-cuda-nn).
    """
    if device.type == "cpu":
        # tiny-cuda-nn runs on CUDA only; "auto" must not pick it for a
        # CPU run just because a GPU and tcnn happen to be present.
        if backend == "tcnn":
            resolve_backend("tcnn")  # without tiny-cuda-nn: its message, with the install hint
            raise HashwfaError(
                "encoding.backend is 'tcnn' but training.device is 'cpu'; tiny-cuda-nn runs on "
                "CUDA only. Fix: use --device cuda, or --backend torch (or auto) on the CPU."
            )
        return "torch"
    return backend
