"""The training loss: weighted squared residuals of the WFA forward model.

For the P valid pixels and A active wavelengths of an observation::

    L_V = w_V * mean_{p,a} (V_obs - C geff dI/dlambda * B_los)^2
    L_Q = w_Q * mean_{p,a} (Q_obs - k_a * B_Q)^2
    L_U = w_U * mean_{p,a} (U_obs - k_a * B_U)^2

with ``k_a = -0.25 C^2 Gg d^2I/dlambda^2`` (``qu_form="second_derivative"``,
the default: the textbook WFA) or ``k_a = 0.75 C^2 Gg dI/dlambda / dl``
(``qu_form="wing"``, the reference report's far-wing formula, 0 where ``|dl| <= 0.035
A``; it has the wrong sign inside the line's inflection points, see
:mod:`hashwfa.wfa.physics.weak_field`). Phase ``"blos"`` returns L_V, ``"bqbu"`` L_Q +
L_U, ``"all"`` the sum of the three (the reference protocol's final loss). With the
wing form the means include active wavelengths inside the line core, where
the Q/U model is 0 and the residual is the data. Stokes I has no WFA model;
its weight is not used.

Everything that depends only on the data is computed once in ``__init__``.
Each term is a quadratic in one pixel's field value, so ``forward`` evaluates
it from per-pixel sums over the wavelengths instead of the ``(P, A)``
residuals (the normal equations of the pixel-wise fit)::

    sum_a (V_a - c_a B)^2 = S_cc (B - B*)^2 + R,   S_cc = sum_a c_a^2,
    B* = sum_a c_a V_a / S_cc,   R = sum_a (V_a - c_a B*)^2 >= 0

(likewise for Q and U with ``k_a``): B* is the pixel-wise WFA's value and R
its residual, both made in float64 from the data. The loss is the same
number as the mean of the squared residuals, its cost no longer grows with
the number of wavelengths, and no large terms cancel in float32. ``forward``
is a few elementwise operations and means over pixels, with no Python loop
and no host-device synchronisation.
"""

from __future__ import annotations

import warnings
from typing import Dict, Optional, Tuple, Union

import numpy as np
import torch

from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.lines import SpectralLine
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import CORE_CUTOFF, DEFAULT_QU_FORM, wfa_coefficients

#: The two fitted phases, in order: B_los on Stokes V, then (B_Q, B_U) on Q and U.
PHASES: Tuple[str, str] = ("blos", "bqbu")
#: What :meth:`WFALoss.forward` accepts: a fitted phase, or ``"all"`` (V, Q and U:
#: the reference protocol's final loss).
LOSS_PHASES: Tuple[str, ...] = PHASES + ("all",)
#: The per-pixel buffers of the loss's quadratic form: for each Stokes parameter s
#: (v, q, u) S_cc (``curvature_s``), B* (``best_s``) and R (``residual_s``).
QUADRATIC_TERMS: Tuple[str, ...] = tuple(
    f"{term}_{stokes}" for stokes in ("v", "q", "u") for term in ("curvature", "best", "residual")
)


def _normal_form(coef: np.ndarray, data: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(S_cc, B*, R)`` of ``sum_a (data_a - coef_a B)^2`` per row, in float64.

    ``coef`` and ``data`` are ``(n, A)``; B* is 0 and R the data's sum of
    squares where the row's coefficients are all 0. R is summed from the
    residuals themselves, so it carries no cancellation.
    """
    coef = np.asarray(coef, dtype=np.float64)
    data = np.asarray(data, dtype=np.float64)
    curvature = np.sum(coef * coef, axis=-1)
    best = np.divide(np.sum(coef * data, axis=-1), curvature, out=np.zeros(curvature.shape), where=curvature > 0)
    residual = np.sum(np.square(data - coef * best[:, None]), axis=-1)
    return curvature, best, residual


class WFALoss(torch.nn.Module):
    """WFA loss over the valid pixels of an observation (a ``torch.nn.Module``).

    Args:
        observation: the :class:`Observation` (its line, active wavelengths,
            per-Stokes weights and valid pixels are used).
        device: where the precomputed tensors live (``"cpu"``, ``"cuda"``...).
        dtype: floating dtype of the precomputed tensors.
        line: override the observation's line (name or :class:`SpectralLine`).
        core_cutoff: Angstrom; the wing-form Q/U model is 0 where ``|dl| <= core_cutoff``.
        qu_form: ``"second_derivative"`` (default; ``-0.25 C^2 Gg
            d^2I/dlambda^2``, valid at every wavelength; needs >= 3
            wavelengths) or ``"wing"`` (the reference report's far-wing formula,
            docs/ARCHITECTURE.md section 5); see :mod:`hashwfa.wfa.physics.weak_field`.
        rows: keep only these rows (``start:stop``) of the observation's valid
            points, e.g. one rank's shard in a data-parallel fit; the loss is
            then the mean over them, and only their tensors are kept. None: all.

    Attributes:
        valid_index: ``LongTensor (P,)`` flat pixel indices (row-major y, x)
            of the valid pixels, in the order the fields must be given.
        n_valid: P, the number of valid pixels (as :attr:`Observation.n_valid`).
        n_active: A, the number of active wavelengths.
        coef_v: ``(P, A)`` C geff dI/dlambda [intensity / G].
        coef_qu: ``(P, A)`` [intensity / G^2]: -0.25 C^2 Gg d^2I/dlambda^2, or
            for the wing form 0.75 C^2 Gg dI/dlambda / dl (0 in the core).
        qu_form: the Q/U form used.
        target_q, target_u, target_v: ``(P, A)`` observed Q, U, V.
        curvature_s, best_s, residual_s: ``(P,)`` for s in v, q, u: the
            quadratic form of the loss (module docstring): S_cc
            [(intensity / G)^2 or (intensity / G^2)^2], B* [G or G^2] and R
            [intensity^2].
        weights: ``(w_I, w_Q, w_U, w_V)`` Python floats.
    """

    def __init__(
        self,
        observation: Observation,
        device: Union[str, torch.device] = "cpu",
        dtype: torch.dtype = torch.float32,
        line: Union[None, str, SpectralLine] = None,
        core_cutoff: float = CORE_CUTOFF,
        qu_form: str = DEFAULT_QU_FORM,
        rows: Optional[slice] = None,
    ) -> None:
        super().__init__()
        if not isinstance(observation, Observation):
            raise HashwfaError(f"WFALoss needs an Observation, got {type(observation).__name__}")
        line = observation.line if line is None else line
        # Filled frame by frame (Observation.wfa_input_chunks): the float64 inputs and
        # coefficients exist for one frame at a time, the tensors once, in ``dtype``.
        # A copy of the rows: a view would keep the whole valid index (8 B per pixel) alive.
        index = observation.valid_index if rows is None else observation.valid_index[rows].copy()
        n, n_active = int(index.shape[0]), len(observation.active_indices)
        names = ("coef_v", "coef_qu", "target_q", "target_u", "target_v")
        host = {name: torch.empty((n, n_active), dtype=dtype) for name in names}
        quadratic = {name: torch.empty(n, dtype=dtype) for name in QUADRATIC_TERMS}
        any_signal = False
        done = 0
        for inputs in observation.wfa_input_chunks(rows):
            coef_v, coef_qu = wfa_coefficients(inputs.dI_dlambda, inputs.wavelengths, line, core_cutoff,
                                               qu_form=qu_form, d2I_dlambda2=inputs.d2I_dlambda2)
            any_signal = any_signal or bool(np.any(coef_v))
            part = slice(done, done + inputs.index.shape[0])
            for name, values in zip(names, (coef_v, coef_qu, inputs.q, inputs.u, inputs.v)):
                host[name][part] = torch.as_tensor(np.ascontiguousarray(values), dtype=dtype)
            sums = {"v": _normal_form(coef_v, inputs.v), "q": _normal_form(coef_qu, inputs.q),
                    "u": _normal_form(coef_qu, inputs.u)}
            for stokes, (curvature, best, residual) in sums.items():
                quadratic[f"curvature_{stokes}"][part] = torch.as_tensor(curvature, dtype=dtype)
                quadratic[f"best_{stokes}"][part] = torch.as_tensor(best, dtype=dtype)
                quadratic[f"residual_{stokes}"][part] = torch.as_tensor(residual, dtype=dtype)
            done = part.stop
        active = observation.active_wavelengths
        if qu_form == "wing" and not np.any(np.abs(active) > core_cutoff):
            warnings.warn(
                f"{observation.source}: every active wavelength {tuple(active)} A is inside "
                f"the line core (|dl| <= {core_cutoff} A), where the WFA has no Q/U model: B_Q and "
                "B_U are unconstrained; add active wavelengths in the wings",
                stacklevel=2,
            )

        if not any_signal:
            # dI/dlambda = 0 everywhere: V, Q and U carry no information on B, and the fit
            # would return its initial output (all-zero maps) without a word.
            raise HashwfaError(
                f"{observation.source}: dI/dlambda is zero at every valid pixel and active wavelength "
                "(Stokes I is flat or zero there): no pixel carries a WFA signal. Fix: check that "
                "Stokes I is the cube's first Stokes plane (I, Q, U, V order) and that the active "
                "wavelengths (data.active_indices) lie on the line"
            )

        self.register_buffer("valid_index", torch.as_tensor(index, dtype=torch.long, device=device).contiguous())
        for name in names:
            self.register_buffer(name, host.pop(name).to(device).contiguous())
        for name in QUADRATIC_TERMS:
            self.register_buffer(name, quadratic.pop(name).to(device).contiguous())
        self.n_valid: int = n
        self.n_active: int = n_active
        self.weights = tuple(float(w) for w in observation.weights)
        self.shape = tuple(observation.map_shape)
        self.qu_form = qu_form

    # ------------------------------------------------------------------ helpers
    def _rows(self, tensor: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
        return tensor if index is None else tensor.index_select(0, index)

    def _sum_of_squares(self, stokes: str, b: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
        """Mean over the rows and active wavelengths of the squared residuals of Stokes ``stokes`` for field ``b`` (n,)."""
        curvature = self._rows(getattr(self, f"curvature_{stokes}"), index)
        best = self._rows(getattr(self, f"best_{stokes}"), index)
        residual = self._rows(getattr(self, f"residual_{stokes}"), index)
        return torch.mean(curvature * torch.square(b - best) + residual) / self.n_active

    def _field(self, value: Optional[torch.Tensor], name: str, n: int, width: int, phase: str) -> torch.Tensor:
        """Check a field's shape (metadata only, no sync) and return it as (n, width)."""
        shape_text = f"({n}, 2)" if width == 2 else f"({n},) or ({n}, 1)"
        if value is None:
            unit = "gauss" if width == 1 else "gauss^2 (columns B_Q, B_U)"
            raise HashwfaError(f"WFALoss phase {phase!r} needs {name}: a tensor of shape {shape_text} in {unit}")
        if not isinstance(value, torch.Tensor):
            raise HashwfaError(f"WFALoss: {name} must be a torch tensor of shape {shape_text}, got {type(value).__name__}")
        if width == 1 and value.dim() == 1:
            value = value.unsqueeze(-1)
        if value.dim() != 2 or value.shape[0] != n or value.shape[1] != width:
            raise HashwfaError(
                f"WFALoss: {name} has shape {tuple(value.shape)}; expected {shape_text} "
                "(one row per valid pixel, or per entry of index)"
            )
        return value

    def _check(self, phase: str, index: Optional[torch.Tensor]) -> int:
        if phase not in LOSS_PHASES:
            raise HashwfaError(f"WFALoss: phase {phase!r} unknown; use one of {', '.join(LOSS_PHASES)}")
        if index is None:
            return self.n_valid
        if not isinstance(index, torch.Tensor) or index.dim() != 1 or index.dtype not in (torch.int64, torch.int32):
            raise HashwfaError("WFALoss: index must be a 1-D integer tensor of rows in 0..P-1 (a minibatch)")
        return int(index.shape[0])

    # ------------------------------------------------------------------ model
    def model_stokes(
        self,
        blos: Optional[torch.Tensor] = None,
        bqbu: Optional[torch.Tensor] = None,
        index: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """Model Stokes at the active wavelengths: ``{"V": (n, A), "Q": ..., "U": ...}``.

        Only the parameters whose field is given are returned. Shapes and
        units of ``blos``, ``bqbu`` and ``index`` as in :meth:`forward`.
        """
        n = self._check("all", index)
        out: Dict[str, torch.Tensor] = {}
        if blos is not None:
            out["V"] = self._rows(self.coef_v, index) * self._field(blos, "blos", n, 1, "all")
        if bqbu is not None:
            b = self._field(bqbu, "bqbu", n, 2, "all")
            cqu = self._rows(self.coef_qu, index)
            out["Q"] = cqu * b[:, 0:1]
            out["U"] = cqu * b[:, 1:2]
        return out

    def components(
        self,
        blos: Optional[torch.Tensor] = None,
        bqbu: Optional[torch.Tensor] = None,
        index: Optional[torch.Tensor] = None,
    ) -> Dict[str, torch.Tensor]:
        """The weighted terms ``{"V": L_V, "Q": L_Q, "U": L_U}`` (0-dim tensors) for the given fields."""
        return self._weighted_terms("all", index, blos, bqbu, with_v=blos is not None, with_qu=bqbu is not None)

    def _weighted_terms(
        self, phase: str, index: Optional[torch.Tensor], blos: Optional[torch.Tensor],
        bqbu: Optional[torch.Tensor], with_v: bool, with_qu: bool,
    ) -> Dict[str, torch.Tensor]:
        """``{"V": L_V}`` when ``with_v``, ``{"Q": L_Q, "U": L_U}`` when ``with_qu``; a field they need must be given."""
        n = self._check(phase, index)
        out: Dict[str, torch.Tensor] = {}
        if with_v:
            out["V"] = self.weights[3] * self._sum_of_squares("v", self._field(blos, "blos", n, 1, phase)[:, 0], index)
        if with_qu:
            b = self._field(bqbu, "bqbu", n, 2, phase)
            out["Q"] = self.weights[1] * self._sum_of_squares("q", b[:, 0], index)
            out["U"] = self.weights[2] * self._sum_of_squares("u", b[:, 1], index)
        return out

    def map_loss(self, blos: np.ndarray, bq: np.ndarray, bu: np.ndarray) -> float:
        """The reference protocol's loss (phase ``"all"``) of whole-field maps.

        Args:
            blos, bq, bu: ``(ny, nx)`` (or flat ``(ny * nx,)``) maps in gauss and
                gauss^2 over the whole field of view; only the valid pixels count.

        Returns:
            The loss as a Python float (one read-back).
        """
        device = self.valid_index.device

        def valid(values: np.ndarray) -> torch.Tensor:
            flat = torch.as_tensor(np.asarray(values).reshape(-1), dtype=self.coef_v.dtype, device=device)
            return flat[self.valid_index]

        with torch.no_grad():
            value = self(blos=valid(blos), bqbu=torch.stack([valid(bq), valid(bu)], dim=1), phase="all")
        return float(value)

    def forward(
        self,
        blos: Optional[torch.Tensor] = None,
        bqbu: Optional[torch.Tensor] = None,
        phase: str = "blos",
        index: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The loss of one phase (0-dim tensor, differentiable in the fields).

        Args:
            blos: ``(n,)`` or ``(n, 1)`` B_los in gauss, for the valid pixels in
                the order of :attr:`valid_index` (n = P) or for the rows
                ``index`` (n = len(index)). Needed for ``"blos"`` and ``"all"``.
            bqbu: ``(n, 2)`` columns B_Q, B_U in gauss^2. Needed for ``"bqbu"``
                and ``"all"``.
            phase: ``"blos"`` (V only), ``"bqbu"`` (Q + U), ``"all"``.
            index: optional 1-D integer tensor of rows in ``0..P-1`` (a
                minibatch), on the loss's device.

        Returns:
            ``sum_s w_s * mean over pixels and active wavelengths of
            (observed_s - model_s)^2`` over the phase's Stokes parameters.

        Raises:
            HashwfaError: unknown phase, a field the phase needs is missing,
                or a field has the wrong shape.
        """
        terms = self._weighted_terms(phase, index, blos, bqbu, with_v=phase in ("blos", "all"),
                                     with_qu=phase in ("bqbu", "all"))
        total = terms.get("V")
        if "Q" in terms:
            lqu = terms["Q"] + terms["U"]
            total = lqu if total is None else total + lqu
        assert total is not None
        return total

    def extra_repr(self) -> str:
        return f"n_valid={self.n_valid}, n_active={self.n_active}, weights={self.weights}"
