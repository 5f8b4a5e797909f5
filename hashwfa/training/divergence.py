"""Divergence: a loss or parameter that is no longer finite stops the run, with where and why.

Checked where the solver reads its losses back (every ``log_every`` epochs)
and before every checkpoint (the parameters), so a checkpoint never holds
NaN or infinite weights and the last checkpoint written stays a good place
to resume from.
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Sequence

import torch

from hashwfa.errors import HashwfaError

__all__ = ["DivergenceError", "first_nonfinite", "parameters_finite", "divergence_message"]

#: What usually makes the WFA fit diverge, for the message.
LIKELY_CAUSES = (
    "a learning rate too high (try training.lr 10x smaller), or absurd values in the data "
    "(a hot pixel many orders of magnitude above the rest; set such pixels to NaN to leave them out)"
)


class DivergenceError(HashwfaError):
    """The training loss or the parameters became NaN or infinite."""


def first_nonfinite(values: Sequence[float]) -> Optional[int]:
    """Index of the first value that is NaN or infinite, or None when all are finite."""
    for i, value in enumerate(values):
        if not math.isfinite(value):
            return i
    return None


def parameters_finite(parameters: Iterable[torch.Tensor]) -> bool:
    """Whether every parameter value is finite (one host-device sync)."""
    flags = [torch.isfinite(p).all() for p in parameters]
    return bool(torch.stack(flags).all()) if flags else True


def divergence_message(what: str, phase_label: str, epoch: int, epochs: int, lr: float) -> str:
    """The message of a :class:`DivergenceError`: what, where (1-based epoch), likely causes, the fix."""
    return (
        f"training diverged: {what} in {phase_label}, epoch {epoch} of {epochs} (learning rate {lr:g}). "
        f"Likely cause: {LIKELY_CAUSES}. No checkpoint with these weights was written; "
        "fix the cause and start again with --overwrite"
    )
