"""Sigmas of the pixel-wise WFA by linear propagation of the Stokes noise.

The pixel-wise WFA (:mod:`hashwfa.wfa.baselines.pixelwise`) solves, per pixel and over
the A active wavelengths a,

    b = sum_a d_a c_a / S,    S = sum_a c_a^2,

for ``(d, c, b) = (V, coef_v, B_los)``, ``(Q, coef_qu, B_Q)`` and
``(U, coef_qu, B_U)``. The coefficients are linear in Stokes I over all nw
wavelengths, ``c_a = sum_j G_ja I_j`` (``G`` = the line's constant times the
observation's derivative matrix D1 or D2 of dI/dlambda or d^2I/dlambda^2,
:func:`hashwfa.wfa.physics.weak_field.derivative_operators`), so noise in I enters as well as noise in Q, U, V.
To first order in the noise (sigma_X,a of Stokes X at wavelength a,
independent between wavelengths and Stokes parameters)::

    db/dd_a = c_a / S
    db/dI_j = sum_a G_ja (d_a - 2 b c_a) / S
    var(b)  = sum_a (c_a / S)^2 sigma_d,a^2 + sum_j (db/dI_j)^2 sigma_I,j^2
    cov(B_Q, B_U) = sum_j (dB_Q/dI_j)(dB_U/dI_j) sigma_I,j^2       (Q and U share I)

and for the derived quantities, with ``P = B_Q^2 + B_U^2 = B_t^4``::

    B_t = P^(1/4):            grad = (B_Q, B_U) / (2 B_t^3)
    phi = atan2(B_U, B_Q)/2:  grad = (-B_U, B_Q) / (2 P)
    var = grad^T Cov(B_Q, B_U) grad

(docs/UNCERTAINTIES.md gives the derivation). Linear propagation holds where
the noise is small against the signal: for B_los everywhere (it is linear in
V), for B_t and the azimuth only where ``B_t^2`` is several times
``sigma(B_Q, B_U)``. Below that the pixel-wise B_t is biased upwards by the
noise (it is a norm) and these sigmas are not its error. The azimuth sigma
is capped at ``pi / sqrt(12)`` (the standard deviation of an azimuth that is
uniformly random modulo pi, i.e. no information). A pixel without information
(``S = 0``) gets an infinite sigma; invalid pixels are NaN.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.maps import AZIMUTH_SIGMA_CAP, FieldSigmas
from hashwfa.wfa.physics.lines import SpectralLine, get_line
from hashwfa.wfa.observation.noise import StokesNoise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import CORE_CUTOFF, DEFAULT_QU_FORM, wfa_coefficients

__all__ = ["pixel_wfa_sigmas"]



def _coefficient_operators(observation: Observation, line: SpectralLine, core_cutoff: float, qu_form: str):
    """``(G_v, G_qu)``, each ``(nw, A)``: d coef_a / d I_j (the coefficients are linear in I)."""
    op1, op2 = observation.derivative_operators()  # (A, nw) each: the observation's derivative as matrices
    d1 = op1.T  # row j: the derivative of the unit spectrum e_j at the active wavelengths
    d2 = None if op2 is None else op2.T
    return wfa_coefficients(d1, observation.active_wavelengths, line, core_cutoff, qu_form=qu_form,
                            d2I_dlambda2=d2)


def _solve_with_gradients(d: np.ndarray, c: np.ndarray, g: np.ndarray):
    """Per-pixel ``b``, ``db/dd`` (P, A) and ``db/dI`` (P, nw); zero where S = 0."""
    s = np.sum(c * c, axis=-1)
    has = s > 0
    inv_s = np.divide(1.0, s, out=np.zeros_like(s), where=has)
    b = np.sum(d * c, axis=-1) * inv_s
    db_dd = c * inv_s[:, None]
    db_dc = (d - 2.0 * b[:, None] * c) * inv_s[:, None]
    db_di = db_dc @ g.T  # (P, A) @ (A, nw)
    return b, db_dd, db_di, has


def pixel_wfa_sigmas(
    observation: Observation,
    noise: StokesNoise,
    line: Union[None, str, SpectralLine] = None,
    core_cutoff: float = CORE_CUTOFF,
    qu_form: str = DEFAULT_QU_FORM,
) -> FieldSigmas:
    """One-sigma uncertainties of :func:`hashwfa.wfa.baselines.pixelwise.pixel_wfa` from the noise.

    Args:
        observation: the :class:`Observation` (active wavelengths, valid pixels).
        noise: :class:`StokesNoise` with ``sigma`` of shape ``(4, nw)``, in the cube's unit
            (divided here by the observation's ``intensity_scale``, like the WFA inputs).
        line, core_cutoff, qu_form: as for :func:`hashwfa.wfa.baselines.pixelwise.pixel_wfa`.

    Returns:
        :class:`FieldSigmas` of the map shape, ``(ny, nx)`` or ``(nt, ny, nx)``, float64: ``blos`` [G], ``bq``, ``bu``
        [G^2], ``bt`` [G], ``azimuth`` [rad, at most :data:`AZIMUTH_SIGMA_CAP`];
        NaN at invalid pixels, inf where the pixel carries no information.

    Raises:
        HashwfaError: a noise table whose shape is not ``(4, nw)``; and what
            :func:`hashwfa.wfa.physics.weak_field.wfa_coefficients` raises.
    """
    sigma = np.asarray(noise.sigma, dtype=np.float64)
    if sigma.shape != (4, observation.nw):
        raise HashwfaError(
            f"noise sigma has shape {sigma.shape}; expected (4, {observation.nw}) for {observation.source}"
        )
    # The noise is in the cube's unit; the WFA inputs are the cube / intensity_scale.
    sigma = sigma / observation.intensity_scale
    line = get_line(observation.line if line is None else line)
    g_v, g_qu = _coefficient_operators(observation, line, core_cutoff, qu_form)
    act = list(observation.active_indices)
    var_i = sigma[0] ** 2  # (nw,)
    var_q, var_u, var_v = (sigma[k, act] ** 2 for k in (1, 2, 3))
    out = {key: np.full(observation.n_pixels, np.nan) for key in ("blos", "bq", "bu", "bt", "azimuth")}
    for inputs in observation.wfa_input_chunks():  # frame by frame: one frame's spectra at a time
        coef_v, coef_qu = wfa_coefficients(inputs.dI_dlambda, inputs.wavelengths, line, core_cutoff,
                                           qu_form=qu_form, d2I_dlambda2=inputs.d2I_dlambda2)
        blos, dv, di_v, has_v = _solve_with_gradients(inputs.v, coef_v, g_v)
        bq, dq, di_q, has_qu = _solve_with_gradients(inputs.q, coef_qu, g_qu)
        bu, du, di_u, _ = _solve_with_gradients(inputs.u, coef_qu, g_qu)
        var_blos = dv * dv @ var_v + di_v * di_v @ var_i
        var_bq = dq * dq @ var_q + di_q * di_q @ var_i
        var_bu = du * du @ var_u + di_u * di_u @ var_i
        cov_qu = di_q * di_u @ var_i

        p = bq * bq + bu * bu
        with np.errstate(divide="ignore", invalid="ignore"):
            bt = p ** 0.25
            gq, gu = bq / (2.0 * bt ** 3), bu / (2.0 * bt ** 3)
            var_bt = gq * gq * var_bq + 2.0 * gq * gu * cov_qu + gu * gu * var_bu
            hq, hu = -bu / (2.0 * p), bq / (2.0 * p)
            var_az = hq * hq * var_bq + 2.0 * hq * hu * cov_qu + hu * hu * var_bu
        sig_bt = np.where(p > 0, np.sqrt(np.maximum(var_bt, 0.0)), np.inf)
        sig_az = np.where(p > 0, np.minimum(np.sqrt(np.maximum(var_az, 0.0)), AZIMUTH_SIGMA_CAP), AZIMUTH_SIGMA_CAP)
        for key, values, informed in (("blos", np.sqrt(var_blos), has_v), ("bq", np.sqrt(var_bq), has_qu),
                                      ("bu", np.sqrt(var_bu), has_qu), ("bt", sig_bt, has_qu),
                                      ("azimuth", sig_az, np.ones_like(has_qu))):
            out[key][inputs.index] = np.where(informed, values, np.inf)
    return FieldSigmas(**{key: values.reshape(observation.map_shape) for key, values in out.items()})
