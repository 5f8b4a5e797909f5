"""The level smoother (docs/ARCHITECTURE.md, section 4), one fused op over all levels.

On each level's ``F`` features ``f`` the smoother computes

    y = f + sigmoid(g) * MLP(f),   MLP = Linear(F, H), LayerNorm(H), GELU, Linear(H, F)

with ``H = 4 F`` and the gate ``g`` initialised to 0.1. It is either *shared*
(one MLP and one gate for every level) or *per level* (``L`` MLPs and ``L``
gates). Inputs and outputs are the grid's ``[N, L * F]``, level-major.

How it is fast on a CPU. At the reference report's sizes (35 600 points, 16 levels,
``F = 2``) the smoother works on ``N * L = 569 600`` rows of 8 hidden values,
and composing ``nn.Linear`` / ``nn.LayerNorm`` / ``nn.GELU`` spends most of
its time in LayerNorm over 8-wide rows. Here the forward and backward passes
are written out by hand (:class:`_SmootherFunction`) so that no reduction ever
runs over the hidden width:

* LayerNorm's input is affine in ``f``: ``h = W1 f + b1``. Its centred value
  is ``hc = Wc [f; 1]`` with ``Wc = centre_rows([W1 | b1])`` (an ``[H, F+1]``
  matrix computed from the parameters), and its variance is a quadratic form
  in ``[f; 1]``: ``var = |R [f; 1]|^2 / H`` with ``R`` the triangular factor of
  ``Wc = Q R``, a sum of ``F + 1`` squares per row, as stable as summing
  ``hc^2`` directly and ``H / (F + 1)`` times cheaper.
* With ``r = 1 / sqrt(var + eps)`` the normalised, affine-transformed
  activation is one matrix product: ``a = (r [f; 1]) @ (gamma * Wc)^T + beta``.
* In the backward pass every hidden-width tensor enters only matrix products
  (with ``F + 1`` or ``F`` columns) and ``gelu_backward``; LayerNorm's
  backward reduces to ``F + 1``-wide algebra (derivation in
  :meth:`_SmootherFunction.backward`).

* Activations are kept feature-major (``[L, width, N]``), where these narrow
  products run at memory speed in BLAS; the transposes in and out are fused
  into a copy and an addition.

So one forward + backward pass touches the ``[N * L, H]`` hidden tensors
about ten times, all in batched matrix products or fused element-wise
kernels. Shared and per-level smoothers run the same batched products over
levels (shared weights are a stride-0 view); no Python loop runs over levels.
Its speed against the same function composed from stock autograd ops
(:func:`smooth_reference`) is in BENCHMARKS.md.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as nnf
from torch.autograd.function import once_differentiable

from hashwfa.errors import HashwfaError

#: LayerNorm's epsilon (``torch.nn.LayerNorm``'s default).
LAYER_NORM_EPS = 1e-5
#: Initial value of the gate logit ``g`` (the gate itself starts at sigmoid(0.1)).
GATE_INIT = 0.1
#: Hidden width of the smoother's MLP as a multiple of ``F``.
HIDDEN_MULTIPLIER = 4


def _batched(weight: torch.Tensor, n_levels: int) -> torch.Tensor:
    """Stacked weights ``[P, ...]`` as ``[L, ...]`` (a stride-0 view when shared)."""
    return weight.expand(n_levels, *weight.shape[1:]) if weight.shape[0] == 1 else weight


def _per_level(reduced: torch.Tensor, p: int) -> torch.Tensor:
    """Per-level sums ``[L, ...]`` as the gradient of ``[P, ...]`` parameters."""
    return reduced.sum(0, keepdim=True) if p == 1 else reduced


class _SmootherFunction(torch.autograd.Function):
    """``y = f + sigmoid(g) * MLP(f)`` on every level, forward and backward by hand.

    Shapes (``P = 1`` shared, ``P = L`` per level; ``H`` hidden width):
    ``x [N, L*F]``, ``w1 [P, H, F]``, ``b1 [P, H]``, ``gamma [P, H]``,
    ``beta [P, H]``, ``w2 [P, F, H]``, ``b2 [P, F]``, ``gate [P]``.

    Internally every activation is feature-major, ``[L, width, N]`` (level,
    feature, point): the products become ``[L, J, K] @ [L, K, N]`` with long
    contiguous rows, which BLAS runs several times faster than the
    ``[N * L, K] @ [K, J]`` products of the row-major layout at these widths,
    and sums over features become sums over a middle axis. Shared weights are
    stride-0 views over levels, so both kinds use the same batched products.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        w1: torch.Tensor,
        b1: torch.Tensor,
        gamma: torch.Tensor,
        beta: torch.Tensor,
        w2: torch.Tensor,
        b2: torch.Tensor,
        gate: torch.Tensor,
        n_levels: int,
        eps: float,
    ) -> torch.Tensor:
        p, hidden, n_feat = w1.shape
        n = x.shape[0]

        # Centred first layer: hc = wc @ [f; 1], wc = [W1 | b1] - mean over rows.
        wb = torch.cat([w1, b1[:, :, None]], dim=2)  # [P, H, F+1]
        wc = wb - wb.mean(dim=1, keepdim=True)
        # |hc|^2 = |R [f; 1]|^2 with wc = Q R (reduced QR, R [P, F+1, F+1]).
        r_factor = torch.linalg.qr(wc, mode="r")[1]
        wg = gamma[:, :, None] * wc  # [P, H, F+1]

        # [f; 1] feature-major: the transpose is fused into the copy.
        f1 = torch.empty(n_levels, n_feat + 1, n, dtype=x.dtype, device=x.device)
        f1[:, :n_feat].copy_(x.view(n, n_levels, n_feat).permute(1, 2, 0))
        f1[:, n_feat].fill_(1.0)
        z = torch.bmm(_batched(r_factor, n_levels), f1)
        rstd = z.square_().sum(1).div_(hidden).add_(eps).rsqrt_()  # [L, N]
        rf1 = f1.mul_(rstd[:, None, :])  # r [f; 1]

        # gamma * LayerNorm(W1 f + b1) + beta = wg @ (r [f; 1]) + beta
        a = torch.baddbmm(_batched(beta, n_levels)[:, :, None], _batched(wg, n_levels), rf1)  # [L, H, N]
        u = nnf.gelu(a)
        m = torch.baddbmm(_batched(b2, n_levels)[:, :, None], _batched(w2, n_levels), u)  # [L, F, N]
        s = _batched(torch.sigmoid(gate), n_levels)
        # y = f + s m, back to [N, L, F] inside the addition.
        y = torch.add(x.view(n, n_levels, n_feat), (m * s[:, None, None]).permute(2, 0, 1))
        ctx.save_for_backward(gamma, w2, gate, wc, rf1, rstd, a, u, m)
        ctx.hidden = hidden
        return y.view(n, n_levels * n_feat)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_y: torch.Tensor):  # type: ignore[override]
        # Notation per row (one point at one level): f1 = [f; 1], hc = wc f1,
        # r = (|hc|^2 / H + eps)^(-1/2), n = r hc, a = gamma n + beta,
        # u = gelu(a), m = W2 u + b2, y = f + s m.
        # Back through the MLP: dm = s dy, du = W2^T dm, da = gelu'(a) du,
        # dn = gamma da. LayerNorm's backward is
        #   dh = r (P dn) - r^3 (hc . dn) hc / H           (P centres over H)
        # and every piece of it is (F+1)-wide once written with
        #   q = [gamma wc]^T da  (so q . f1 = hc . dn = t),  tau = r t = q . (r f1):
        #   df   = dy + r (q_f - tau * v),  v = (wc^T wc / H)[:F] (r f1)
        #   [dW1 | db1] = P (gamma * sum da (r f1)^T) - wc (sum tau (r f1)(r f1)^T) / H
        #   dgamma = rowsum(wc * sum da (r f1)^T),  dbeta = sum da.
        gamma, w2, gate, wc, rf1, rstd, a, u, m = ctx.saved_tensors
        hidden = ctx.hidden
        p = gamma.shape[0]
        n_levels, n_feat, n = m.shape
        need = ctx.needs_input_grad
        s = _batched(torch.sigmoid(gate), n_levels)  # [L]
        dy = grad_y.reshape(n, n_levels, n_feat)

        dm = torch.empty(n_levels, n_feat, n, dtype=m.dtype, device=m.device)
        torch.mul(dy.permute(1, 2, 0), s[:, None, None], out=dm)  # s dy, feature-major
        dgate = None
        if need[7]:  # dL/dg = s (1 - s) sum dy m = (1 - s) sum dm m
            dgate = _per_level((dm * m).sum((1, 2)), p) * (1 - s[:p])
        dw2 = _per_level(torch.bmm(dm, u.transpose(1, 2)), p) if need[5] else None  # [P, F, H]
        db2 = _per_level(dm.sum(2), p) if need[6] else None
        du = torch.bmm(_batched(w2, n_levels).transpose(1, 2), dm)  # [L, H, N]
        del dm
        da = torch.ops.aten.gelu_backward.grad_input(du, a, grad_input=du)  # in place: one 4F-wide buffer less
        dbeta = _per_level(da.sum(2), p) if need[4] else None

        wg = gamma[:, :, None] * wc  # [P, H, F+1]
        need_first = need[1] or need[2]
        dx = q = tau = None
        if need[0] or need_first:
            q = torch.bmm(_batched(wg, n_levels).transpose(1, 2), da)  # [L, F+1, N]
            tau = q[:, 0] * rf1[:, 0]  # q . (r f1), [L, N]: F+1 fused steps
            for k in range(1, n_feat + 1):
                tau.addcmul_(q[:, k], rf1[:, k])
        if need[0]:
            gram = torch.matmul(wc[:, :, :n_feat].transpose(1, 2), wc).div_(hidden)  # [P, F, F+1]
            v = torch.bmm(_batched(gram, n_levels), rf1)  # [L, F, N] = r (G f + c)
            dft = torch.addcmul(q[:, :n_feat], tau[:, None, :], v, value=-1.0).mul_(rstd[:, None, :])
            dx = torch.add(dy, dft.permute(2, 0, 1)).view(n, n_levels * n_feat)

        dw1 = db1 = dgamma = None
        if need_first or need[3]:
            # sum da (r f1)^T [P, H, F+1]; BLAS is faster with the narrow operand first.
            s1 = _per_level(torch.bmm(rf1, da.transpose(1, 2)).transpose(1, 2), p)
            if need[3]:
                dgamma = (wc * s1).sum(-1)
            if need_first:
                k = _per_level(torch.bmm(rf1 * tau[:, None, :], rf1.transpose(1, 2)), p)  # [P, F+1, F+1]
                gs1 = gamma[:, :, None] * s1
                dwb = (gs1 - gs1.mean(dim=1, keepdim=True)).sub_(torch.matmul(wc, k).div_(hidden))
                dw1 = dwb[:, :, :n_feat] if need[1] else None
                db1 = dwb[:, :, n_feat] if need[2] else None
        return dx, dw1, db1, dgamma, dbeta, dw2, db2, dgate, None, None


def smooth_reference(
    x: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor,
    gate: torch.Tensor,
    n_levels: int,
    eps: float = LAYER_NORM_EPS,
) -> torch.Tensor:
    """The smoother composed from stock autograd ops (batched, no hand-written
    backward): the same function as :class:`_SmootherFunction`, slower.

    Used where double backward is needed and as a cross-check. Shapes as in
    :class:`LevelSmoother`; ``x`` is ``[N, L * F]``.
    """
    p, hidden, n_feat = w1.shape
    n = x.shape[0]
    f = x.reshape(n, n_levels, n_feat)
    h = torch.einsum("nlf,lhf->nlh", f, w1.expand(n_levels, -1, -1)) + b1
    h = nnf.layer_norm(h, (hidden,), eps=eps) * gamma + beta
    m = torch.einsum("nlh,lfh->nlf", nnf.gelu(h), w2.expand(n_levels, -1, -1)) + b2
    y = f + torch.sigmoid(gate)[:, None] * m
    return y.reshape(n, n_levels * n_feat)


class LevelSmoother(torch.nn.Module):
    """Residual, gated MLP on each level's features: ``f + sigmoid(g) * MLP(f)``.

    ``MLP = Linear(F, 4F), LayerNorm(4F), GELU (exact), Linear(4F, F)``, gate
    logit ``g`` initialised to 0.1 (docs/ARCHITECTURE.md section 4).

    Args:
        n_levels: L, the number of grid levels in the input.
        n_features_per_level: F.
        per_level: False: one MLP and one gate shared by every level;
            True: one MLP and one gate per level, evaluated as one batched op.
        seed: seed of the initial weights (``nn.Linear``'s default scheme,
            uniform in +-1/sqrt(fan_in); LayerNorm weight 1, bias 0), drawn
            from a private generator: the global RNG is left alone.
        dtype: parameter dtype (float32, or float64 for gradient checks).

    Parameters (``P = L`` per level, ``P = 1`` shared; ``H = 4F``):
        ``fc1_weight [P, H, F]``, ``fc1_bias [P, H]``, ``norm_weight [P, H]``,
        ``norm_bias [P, H]``, ``fc2_weight [P, F, H]``, ``fc2_bias [P, F]``,
        ``gate [P]`` (the logit; the gate is ``sigmoid(gate)``).

    ``forward(x)``: ``x [N, L * F]`` level-major -> ``[N, L * F]``, through
    the hand-written fused op (first derivatives only; :func:`smooth_reference`
    is the same function from stock autograd ops, which also supports double backward).
    """

    def __init__(
        self,
        n_levels: int,
        n_features_per_level: int,
        per_level: bool = False,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if n_levels < 1 or n_features_per_level < 1:
            raise HashwfaError(
                f"LevelSmoother needs n_levels >= 1 and n_features_per_level >= 1, "
                f"got {n_levels} and {n_features_per_level}."
            )
        self.n_levels = int(n_levels)
        self.n_features_per_level = int(n_features_per_level)
        self.per_level = bool(per_level)
        self.hidden = HIDDEN_MULTIPLIER * self.n_features_per_level
        self.eps = LAYER_NORM_EPS
        p, h, f = (self.n_levels if self.per_level else 1), self.hidden, self.n_features_per_level
        gen = torch.Generator().manual_seed(int(seed))

        def uniform(shape: tuple[int, ...], fan_in: int) -> torch.nn.Parameter:
            bound = 1.0 / math.sqrt(fan_in)
            values = (torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1) * bound
            return torch.nn.Parameter(values.to(dtype))

        self.fc1_weight = uniform((p, h, f), f)
        self.fc1_bias = uniform((p, h), f)
        self.norm_weight = torch.nn.Parameter(torch.ones(p, h, dtype=dtype))
        self.norm_bias = torch.nn.Parameter(torch.zeros(p, h, dtype=dtype))
        self.fc2_weight = uniform((p, f, h), h)
        self.fc2_bias = uniform((p, f), h)
        self.gate = torch.nn.Parameter(torch.full((p,), GATE_INIT, dtype=dtype))

    @property
    def n_output_dims(self) -> int:
        """``L * F``: the smoother keeps the shape of its input."""
        return self.n_levels * self.n_features_per_level

    def extra_repr(self) -> str:
        return (
            f"n_levels={self.n_levels}, n_features_per_level={self.n_features_per_level}, "
            f"hidden={self.hidden}, per_level={self.per_level}"
        )

    def _params(self) -> tuple[torch.Tensor, ...]:
        return (
            self.fc1_weight,
            self.fc1_bias,
            self.norm_weight,
            self.norm_bias,
            self.fc2_weight,
            self.fc2_bias,
            self.gate,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Smooth ``x`` ``[N, L * F]`` (level-major) into ``[N, L * F]``."""
        if x.dim() != 2 or x.shape[1] != self.n_output_dims:
            raise HashwfaError(
                f"smoother input has shape {list(x.shape)}; expected [N, {self.n_output_dims}] "
                f"(n_levels={self.n_levels} x n_features_per_level={self.n_features_per_level})."
            )
        if x.dtype != self.fc1_weight.dtype:
            x = x.to(self.fc1_weight.dtype)
        if x.shape[0] == 0:
            return smooth_reference(x, *self._params(), self.n_levels, self.eps)
        return _SmootherFunction.apply(x.contiguous(), *self._params(), self.n_levels, self.eps)
