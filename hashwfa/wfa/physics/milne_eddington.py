"""Milne-Eddington (Unno-Rachkovsky) Stokes profiles of a Zeeman-split line.

The analytic solution of the polarised transfer equation for an atmosphere
with a constant magnetic field and absorption matrix and a source function
linear in the continuum optical depth, ``S = S0 + S1 tau`` (Landi
Degl'Innocenti & Landolfi 2004, eq. 9.45, at disk centre mu = 1)::

    Delta = eta_I^2 (eta_I^2 - eta_Q^2 - eta_U^2 - eta_V^2 + rho_Q^2 + rho_U^2 + rho_V^2) - Pi^2
    Pi    = eta_Q rho_Q + eta_U rho_U + eta_V rho_V
    I = S0 + S1 eta_I (eta_I^2 + rho_Q^2 + rho_U^2 + rho_V^2) / Delta
    Q = -S1 [eta_I^2 eta_Q + eta_I (eta_V rho_U - eta_U rho_V) + rho_Q Pi] / Delta
    U = -S1 [eta_I^2 eta_U + eta_I (eta_Q rho_V - eta_V rho_Q) + rho_U Pi] / Delta
    V = -S1 [eta_I^2 eta_V + eta_I (eta_U rho_Q - eta_Q rho_U) + rho_V Pi] / Delta

with (gamma the inclination, chi the azimuth, phi_q the absorption profile
of the components with ``q = M_l - M_u``, each a Voigt profile shifted by its
Zeeman splitting and summed with its strength)::

    eta_I   = 1 + eta0/2 [phi_0 sin^2 gamma + (phi_-1 + phi_+1)/2 (1 + cos^2 gamma)]
    eta_Q,U = eta0/2 [phi_0 - (phi_-1 + phi_+1)/2] sin^2 gamma (cos 2chi, sin 2chi)
    eta_V   = eta0/2 (phi_+1 - phi_-1) cos gamma

and rho_Q,U,V the same with the Faraday-Voigt (dispersion) profiles psi_q in
place of phi_q (magneto-optical effects). ``phi + i psi = w(v + i a) /
sqrt(pi)``, w the Faddeeva function, ``v = (dl - dl_shift - s dlB) / dlD``
the offset in Doppler widths, ``a`` the damping. The Zeeman pattern (the
shifts s in units of ``dlB = 4.67e-13 lambda0^2 B`` and the relative
strengths) is the one of :func:`hashwfa.wfa.physics.zeeman.zeeman_pattern`, from the
line's J and g.

The signs are those of the weak-line model of :mod:`hashwfa.wfa.physics.zeeman` and
of the package's WFA (:mod:`hashwfa.wfa.physics.weak_field`): for a weak field, V tends to
``C geff B cos(gamma) dI/dlambda`` with ``C = -4.67e-13 lambda0^2`` (a test
checks it with the pixel-wise WFA). The continuum intensity is ``S0 + S1``;
continuum units mean ``S0 + S1 = 1``.

A filtergraph sees the line through its transmission profile: with
``instrument_fwhm`` > 0 the profiles are synthesised on a uniform fine grid
(step ``fine_step``) that covers the observed points +-5 sigma of the
instrument, and each observed point is the Gaussian-weighted mean of the fine
profiles around it, so any wavelength axis (unequal spacing) works.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
from scipy.special import wofz

from hashwfa.errors import HashwfaError, non_negative
from hashwfa.wfa.physics.lines import LARMOR_CONSTANT, SpectralLine, get_line
from hashwfa.wfa.physics.zeeman import zeeman_pattern

#: Speed of light [km/s], for line-of-sight velocities.
C_KMS = 299792.458
#: Default step [A] of the fine grid the profiles are synthesised on before
#: the instrument profile (a sixth of the 0.033 A Doppler width of Fe I 6173).
FINE_STEP = 0.005
#: Pixels per block of the synthesis (bounds the temporaries to a few tens of MB).
_BLOCK_ELEMENTS = 1 << 20
_SQRT_PI = math.sqrt(math.pi)
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def instrument_kernel(wavelengths: np.ndarray, fwhm_ma: float,
                      fine_step: Optional[float] = None) -> Tuple[np.ndarray, np.ndarray]:
    """The fine grid and the matrix that applies a Gaussian transmission profile.

    Args:
        wavelengths: ``(nw,)`` observed wavelengths [A from line centre], any order and spacing.
        fwhm_ma: FWHM of the Gaussian transmission profile [mA] (> 0).
        fine_step: step of the fine grid [A] (at most a third of the profile's sigma);
            None: :data:`FINE_STEP`, or a quarter of the sigma if that is smaller.

    Returns:
        ``(fine (nf,), kernel (nw, nf))``: ``observed = fine_profiles @ kernel.T``;
        each row of ``kernel`` sums to 1 (the Gaussian-weighted mean).
    """
    sigma = fwhm_ma * 1e-3 / _FWHM_PER_SIGMA
    if fine_step is None:
        fine_step = min(FINE_STEP, sigma / 4.0)
    if not fine_step > 0 or fine_step > sigma / 3.0:
        raise HashwfaError(f"milne_eddington_stokes: fine_step = {fine_step!r} A; expected > 0 and at most a "
                           f"third of the instrument's sigma ({sigma / 3.0:.4g} A); make it smaller")
    lo = math.floor((float(np.min(wavelengths)) - 5.0 * sigma) / fine_step)
    hi = math.ceil((float(np.max(wavelengths)) + 5.0 * sigma) / fine_step)
    fine = np.arange(lo, hi + 1) * fine_step
    kernel = np.exp(-0.5 * ((wavelengths[:, None] - fine[None, :]) / sigma) ** 2)
    return fine, kernel / kernel.sum(axis=1, keepdims=True)


def _checked(name: str, value: np.ndarray, low: float, strict: bool) -> None:
    bad = ~np.isfinite(value) | ((value <= low) if strict else (value < low))
    if np.any(bad):
        first = value[bad].reshape(-1)[0]
        raise HashwfaError(f"milne_eddington_stokes: {name} has {int(bad.sum())} values such as {first!r}; "
                           f"expected finite values {'>' if strict else '>='} {low:g}")


def _unno_rachkovsky(offsets: np.ndarray, line: SpectralLine, pattern: str, b: np.ndarray, gamma: np.ndarray,
                     chi: np.ndarray, dop: np.ndarray, eta0: np.ndarray, a: np.ndarray, shift: np.ndarray,
                     s0: np.ndarray, s1: np.ndarray) -> np.ndarray:
    """Stokes ``(P, 4, n)`` at ``offsets`` ``(n,)`` [A] for ``P`` pixels (parameters ``(P,)``)."""
    pat = zeeman_pattern(line, pattern)
    split = (LARMOR_CONSTANT * line.center ** 2) * b[:, None]  # (P, 1) [A per unit of pattern shift]
    x = (offsets[None, :] - shift[:, None])  # (P, n) [A]
    inv_dop = 1.0 / dop[:, None]
    damp = 1j * a[:, None]
    prof = {}
    for q in (-1, 0, 1):  # a few Zeeman components, each a vectorised (P, n) profile
        total = 0.0
        for s, strength in zip(pat.shifts[q], pat.strengths[q]):
            total = total + strength * wofz((x - s * split) * inv_dop + damp)
        prof[q] = total / _SQRT_PI  # phi + i psi
    sin2 = np.sin(gamma)[:, None] ** 2
    cosg = np.cos(gamma)[:, None]
    c2, s2 = np.cos(2 * chi)[:, None], np.sin(2 * chi)[:, None]
    half = 0.5 * eta0[:, None]
    sigma_sum = 0.5 * (prof[-1] + prof[1])
    centre = half * (prof[0] * sin2 + sigma_sum * (1.0 + cosg ** 2))  # complex: absorption + i dispersion
    linear = half * (prof[0] - sigma_sum) * sin2
    circular = half * (prof[1] - prof[-1]) * cosg
    eta_i = 1.0 + centre.real
    eta_q, eta_u, eta_v = linear.real * c2, linear.real * s2, circular.real
    rho_q, rho_u, rho_v = linear.imag * c2, linear.imag * s2, circular.imag
    rho2 = rho_q ** 2 + rho_u ** 2 + rho_v ** 2
    pi_ = eta_q * rho_q + eta_u * rho_u + eta_v * rho_v
    eta_i2 = eta_i ** 2
    delta = eta_i2 * (eta_i2 - eta_q ** 2 - eta_u ** 2 - eta_v ** 2 + rho2) - pi_ ** 2
    f = s1[:, None] / delta
    out = np.empty((b.shape[0], 4, offsets.shape[0]))
    out[:, 0] = s0[:, None] + f * eta_i * (eta_i2 + rho2)
    out[:, 1] = -f * (eta_i2 * eta_q + eta_i * (eta_v * rho_u - eta_u * rho_v) + rho_q * pi_)
    out[:, 2] = -f * (eta_i2 * eta_u + eta_i * (eta_q * rho_v - eta_v * rho_q) + rho_u * pi_)
    out[:, 3] = -f * (eta_i2 * eta_v + eta_i * (eta_u * rho_q - eta_q * rho_u) + rho_v * pi_)
    return out


def milne_eddington_stokes(
    wavelengths: np.ndarray,
    line: "SpectralLine | str",
    b: np.ndarray,
    inclination: np.ndarray,
    azimuth: np.ndarray,
    doppler_width: np.ndarray,
    eta0: np.ndarray,
    damping: np.ndarray,
    velocity: np.ndarray,
    s0: np.ndarray,
    s1: np.ndarray,
    instrument_fwhm: float = 0.0,
    fine_step: Optional[float] = None,
    pattern: str = "full",
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Milne-Eddington Stokes profiles (see the module docstring), per pixel.

    The per-pixel parameters are arrays of any shapes that broadcast to a
    common shape ``(...)`` (scalars allowed).

    Args:
        wavelengths: ``(nw,)`` observed wavelengths [A from the line centre]; any spacing.
        line: the line (name or :class:`SpectralLine`); its J and g give the Zeeman pattern.
        b: field strength |B| [G] (>= 0).
        inclination: gamma [rad] (0: towards the observer).
        azimuth: chi [rad], from +x towards +y.
        doppler_width: Doppler width [A] (> 0).
        eta0: line-to-continuum absorption ratio (>= 0).
        damping: Voigt damping a (>= 0), in Doppler widths.
        velocity: line-of-sight velocity [km/s], positive = redshift.
        s0, s1: source function at tau = 0 and its gradient per unit
            continuum optical depth (intensity units; the continuum is
            ``s0 + s1``).
        instrument_fwhm: FWHM [mA] of a Gaussian transmission profile; 0 = none
            (the profiles at the observed wavelengths themselves).
        fine_step: step [A] of the fine grid used with an instrument profile;
            None: :data:`FINE_STEP` (0.005 A), or a quarter of the instrument's
            sigma if that is smaller.
        pattern: ``"full"`` (the levels' anomalous pattern) or ``"triplet"``
            (the effective triplet), see :func:`hashwfa.wfa.physics.zeeman.zeeman_pattern`.

    Returns:
        ``(I, Q, U, V)``, each ``(..., nw)`` float64, in the units of s0 and s1.

    Raises:
        HashwfaError: for a bad wavelength axis, parameter value, instrument
            FWHM, fine step or pattern.
    """
    line = get_line(line)
    wl = np.asarray(wavelengths, dtype=np.float64)
    if wl.ndim != 1 or wl.shape[0] < 1 or not np.all(np.isfinite(wl)):
        raise HashwfaError(f"milne_eddington_stokes: wavelengths of shape {wl.shape}; expected a finite (nw,) "
                           "axis in Angstrom from the line centre")
    fwhm = non_negative(instrument_fwhm)
    if fwhm is None:
        raise HashwfaError(f"milne_eddington_stokes: instrument_fwhm = {instrument_fwhm!r}; expected a FWHM >= 0 "
                           "in mA (0 = no instrument profile)")
    params = np.broadcast_arrays(*(np.asarray(p, dtype=np.float64) for p in
                                   (b, inclination, azimuth, doppler_width, eta0, damping, velocity, s0, s1)))
    shape = params[0].shape
    flat = [p.reshape(-1) for p in params]
    for name, value, low, strict in (("b", flat[0], 0.0, False), ("doppler_width", flat[3], 0.0, True),
                                     ("eta0", flat[4], 0.0, False), ("damping", flat[5], 0.0, False)):
        _checked(name, value, low, strict)
    for name, value in zip(("inclination", "azimuth", "velocity", "s0", "s1"), (flat[1], flat[2], *flat[6:])):
        _checked(name, value, -np.inf, True)
    shift = flat[6] * (line.center / C_KMS)  # [A]
    if fwhm > 0:
        fine, kernel = instrument_kernel(wl, fwhm, fine_step)
    else:
        fine, kernel = wl, None
    n_pix = flat[0].shape[0]
    out = np.empty((n_pix, 4, wl.shape[0]))
    block = max(1, _BLOCK_ELEMENTS // max(1, fine.shape[0]))
    for start in range(0, n_pix, block):  # blocks of pixels bound the memory; each block is vectorised
        sl = slice(start, start + block)
        prof = _unno_rachkovsky(fine, line, pattern, flat[0][sl], flat[1][sl], flat[2][sl], flat[3][sl],
                                flat[4][sl], flat[5][sl], shift[sl], flat[7][sl], flat[8][sl])
        out[sl] = prof if kernel is None else prof @ kernel.T
    out = out.reshape(shape + (4, wl.shape[0]))
    return out[..., 0, :], out[..., 1, :], out[..., 2, :], out[..., 3, :]
