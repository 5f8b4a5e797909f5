"""Gradient normalisation: each parameter's gradient divided by its mean absolute value."""

from __future__ import annotations

from typing import Iterable

import torch

__all__ = ["GRAD_NORM_EPS", "normalise_gradients"]

# Added to the mean absolute gradient before dividing by it, so that an
# all-zero gradient stays zero instead of becoming NaN.
GRAD_NORM_EPS = 1e-12

_FOREACH = all(hasattr(torch, name) for name in ("_foreach_norm", "_foreach_mul_", "_foreach_add_", "_foreach_div_"))


def normalise_gradients(parameters: Iterable[torch.nn.Parameter]) -> None:
    """Divide each parameter's gradient by its mean absolute value (+ :data:`GRAD_NORM_EPS`), in place.

    Runs on the device, with no ``.item()`` and no host sync. Uses torch's
    multi-tensor ``_foreach`` kernels (one launch for all tensors) when this
    torch has them, else the same arithmetic one tensor at a time.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    if _FOREACH:
        # L1 norm / numel = mean |g|, per tensor.
        denominators = torch._foreach_norm(grads, 1)
        torch._foreach_mul_(denominators, [1.0 / g.numel() for g in grads])
        torch._foreach_add_(denominators, GRAD_NORM_EPS)
        torch._foreach_div_(grads, denominators)
        return
    for g in grads:
        g.div_(torch.linalg.vector_norm(g, 1) * (1.0 / g.numel()) + GRAD_NORM_EPS)
