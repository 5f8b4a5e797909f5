"""What the WFA reads of an observation: the derivatives of I and Q, U, V at the active wavelengths,
for a set of pixels."""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence, Tuple

import numpy as np

from hashwfa.wfa.physics.weak_field import derivatives_at

__all__ = ["WFAInputs", "wfa_inputs_from"]


class WFAInputs(NamedTuple):
    """What the WFA needs from an observation, for its P valid pixels.

    Intensities are the cube's divided by the observation's intensity scale.

    Attributes:
        index: ``(P,)`` int64 flat pixel indices (row-major over the map grid).
        dI_dlambda: ``(P, A)`` dI/dlambda at the A active wavelengths [1/A].
        d2I_dlambda2: ``(P, A)`` d^2I/dlambda^2 there [1/A^2] (None if nw < 3).
        q, u, v: ``(P, A)`` observed Stokes Q, U, V at the active wavelengths.
        wavelengths: ``(A,)`` active wavelengths relative to line centre [A].
    """

    index: np.ndarray
    dI_dlambda: np.ndarray
    d2I_dlambda2: Optional[np.ndarray]
    q: np.ndarray
    u: np.ndarray
    v: np.ndarray
    wavelengths: np.ndarray


def wfa_inputs_from(index: np.ndarray, spectra: np.ndarray, wavelengths: np.ndarray, active: Sequence[int],
                    derivative: str, derivative_qu: str,
                    operators: Optional[Tuple[np.ndarray, Optional[np.ndarray]]]) -> WFAInputs:
    """:class:`WFAInputs` of the pixels ``index`` from their float64 spectra ``(P, 4, nw)``.

    Args:
        wavelengths: ``(nw,)`` [A from the line centre].
        active: the active wavelength indices.
        derivative, derivative_qu: how dI/dlambda and d^2I/dlambda^2 are estimated.
        operators: the derivative matrices ``(D1, D2)`` of a choice other than
            the three-point one (:func:`~hashwfa.wfa.physics.weak_field.derivative_operators`); None for it.
    """
    act = list(active)
    intensity = spectra[:, 0, :]
    intensity = np.where(np.isfinite(intensity), intensity, 0.0)
    dI, d2I = derivatives_at(intensity, wavelengths, act, derivative, operators=operators, method_qu=derivative_qu)
    return WFAInputs(
        index=index,
        dI_dlambda=np.ascontiguousarray(dI),
        d2I_dlambda2=None if d2I is None else np.ascontiguousarray(d2I),
        q=np.ascontiguousarray(spectra[:, 1, act]),
        u=np.ascontiguousarray(spectra[:, 2, act]),
        v=np.ascontiguousarray(spectra[:, 3, act]),
        wavelengths=np.asarray(wavelengths)[act],
    )
