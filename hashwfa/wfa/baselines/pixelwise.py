"""The classic pixel-by-pixel (algebraic) weak-field inversion.

The WFA is linear in B_los and in (B_Q, B_U), with one unknown each, so the
least-squares solution over the active wavelengths a of one pixel is closed
form::

    B_los = sum_a V_a c_a / sum_a c_a^2,          c_a = C geff dI/dlambda_a
    B_Q   = sum_a Q_a k_a / sum_a k_a^2,          k_a = -0.25 C^2 Gg d^2I/dlambda^2_a
    B_U   = sum_a U_a k_a / sum_a k_a^2

(per-Stokes weights do not change a one-unknown fit). ``k_a`` is the
textbook second-derivative form by default; ``qu_form="wing"`` uses the
seed's far-wing formula ``k_a = 0.75 C^2 Gg dI/dlambda_a / dl_a`` (0 where
``|dl_a| <= 0.035 A``), which at +-0.04 A has the wrong sign and gives
azimuths 90 deg off (see :mod:`hashwfa.wfa.physics.weak_field`). A pixel whose
denominator is 0 (flat intensity, or with the wing form every active
wavelength inside the line core) gets the minimum-norm solution 0. Computed
with numpy for all valid pixels of a frame at once, frame by frame (a
series read lazily holds one frame's spectra at a time); invalid pixels are NaN.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.physics.lines import SpectralLine
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import CORE_CUTOFF, DEFAULT_QU_FORM, wfa_coefficients


def _solve(data: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Per-row least squares of ``data ~ coef * b``; 0 where ``coef`` is all 0."""
    num = np.sum(data * coef, axis=-1)
    den = np.sum(coef * coef, axis=-1)
    return np.divide(num, den, out=np.zeros_like(num), where=den > 0)


def pixel_wfa(
    observation: Observation,
    line: Union[None, str, SpectralLine] = None,
    core_cutoff: float = CORE_CUTOFF,
    qu_form: str = DEFAULT_QU_FORM,
) -> FieldMaps:
    """Pixel-wise WFA inversion of an observation.

    Args:
        observation: the :class:`Observation` (its active wavelengths and
            valid pixels are used).
        line: override the observation's line (name or :class:`SpectralLine`).
        core_cutoff: Angstrom; with the wing form Q/U use only active
            wavelengths with ``|dl| > core_cutoff``.
        qu_form: ``"second_derivative"`` (default; needs >= 3 wavelengths)
            or ``"wing"`` (the reference report's formula); see :mod:`hashwfa.wfa.physics.weak_field`.

    Returns:
        :class:`FieldMaps` of the observation's map shape, ``(ny, nx)`` or
        ``(nt, ny, nx)`` for a series (each frame solved on its own), float64: ``blos`` [G],
        ``bq``, ``bu`` [G^2], ``bt`` [G], ``azimuth`` [rad, 0..pi); NaN exactly
        at the invalid pixels.

    Raises:
        HashwfaError: unknown ``qu_form``, or the second-derivative form on
            fewer than 3 wavelengths.
    """
    line = observation.line if line is None else line
    maps = {key: np.full(observation.n_pixels, np.nan) for key in ("blos", "bq", "bu")}
    for inputs in observation.wfa_input_chunks():  # frame by frame: one frame's spectra at a time
        coef_v, coef_qu = wfa_coefficients(inputs.dI_dlambda, inputs.wavelengths, line, core_cutoff,
                                           qu_form=qu_form, d2I_dlambda2=inputs.d2I_dlambda2)
        maps["blos"][inputs.index] = _solve(inputs.v, coef_v)
        maps["bq"][inputs.index] = _solve(inputs.q, coef_qu)
        maps["bu"][inputs.index] = _solve(inputs.u, coef_qu)
    shape = observation.map_shape
    return FieldMaps.from_bqbu(blos=maps["blos"].reshape(shape), bq=maps["bq"].reshape(shape),
                               bu=maps["bu"].reshape(shape))
