"""Zeeman patterns and first-order (weak-line) polarised line synthesis.

This is a forward model that is *not* the weak-field approximation: the line's
Zeeman components are shifted by their full splitting and the polarised
absorption is formed exactly, so an inversion with the WFA meets model error
(third order in B for V; the WFA's wing form for Q and U) as on real data.

Pattern: a transition between levels (J_l, g_l) and (J_u, g_u) has components
``M_u -> M_l`` with ``q = M_l - M_u`` in {-1, 0, +1}, wavelength shift
``(g_l M_l - g_u M_u) * dlB`` with ``dlB = 4.67e-13 lambda0^2 B`` [A], and
strength ``3 (J_u J_l 1; -M_u M_l -q)^2`` (Wigner 3j), normalised to 1 within
each q (Landi Degl'Innocenti & Landolfi 2004, ch. 3). ``pattern="triplet"``
uses the effective triplet instead (pi at 0, sigma at +-geff dlB).

Synthesis, in the weak-line (optically thin, first-order) limit of the
transfer equation: with ``a(dl)`` the zero-field absorption (line depth
times profile) and ``phi_q(dl) = sum_j S_qj a(dl - s_qj dlB)``::

    I = Ic - 1/2 [phi_0 sin^2(theta) + (phi_+1 + phi_-1)/2 (1 + cos^2(theta))]
    Q = -1/2 [phi_0 - (phi_+1 + phi_-1)/2] sin^2(theta) cos(2 chi)
    U = -1/2 [phi_0 - (phi_+1 + phi_-1)/2] sin^2(theta) sin(2 chi)
    V =  1/2 [phi_-1 - phi_+1] cos(theta)

The signs are those of the WFA of :mod:`hashwfa.wfa.physics.weak_field`: for B -> 0, V
tends to ``C geff B cos(theta) dI/dlambda`` and Q to
``-1/4 dlB^2 Gg sin^2(theta) cos(2 chi) d^2I/dlambda^2`` (tests check both).
"""

from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Tuple

import numpy as np

from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.lines import LARMOR_CONSTANT, SpectralLine, get_line


def wigner_3j(j1: float, j2: float, j3: float, m1: float, m2: float, m3: float) -> float:
    """Wigner 3j symbol (j1 j2 j3; m1 m2 m3) by the Racah formula (half-integers allowed)."""
    def n(x: float) -> int:
        return int(round(x))

    if abs(m1 + m2 + m3) > 1e-9 or abs(m1) > j1 + 1e-9 or abs(m2) > j2 + 1e-9 or abs(m3) > j3 + 1e-9:
        return 0.0
    if j3 < abs(j1 - j2) - 1e-9 or j3 > j1 + j2 + 1e-9:
        return 0.0
    f = math.factorial
    tri = f(n(j1 + j2 - j3)) * f(n(j1 - j2 + j3)) * f(n(-j1 + j2 + j3)) / f(n(j1 + j2 + j3 + 1))
    pre = math.sqrt(tri * f(n(j1 + m1)) * f(n(j1 - m1)) * f(n(j2 + m2)) * f(n(j2 - m2))
                    * f(n(j3 + m3)) * f(n(j3 - m3)))
    kmin = max(0, n(j2 - j3 - m1), n(j1 - j3 + m2))
    kmax = min(n(j1 + j2 - j3), n(j1 - m1), n(j2 + m2))
    total = 0.0
    for k in range(kmin, kmax + 1):
        total += (-1) ** k / (f(k) * f(n(j1 + j2 - j3) - k) * f(n(j1 - m1) - k) * f(n(j2 + m2) - k)
                              * f(n(j3 - j2 + m1) + k) * f(n(j3 - j1 - m2) + k))
    return (-1) ** n(j1 - j2 - m3) * pre * total


class ZeemanPattern(NamedTuple):
    """Zeeman components grouped by q = M_l - M_u.

    ``shifts[q]``: ``(n_q,)`` shifts in units of ``4.67e-13 lambda0^2 B`` [A/G * G];
    ``strengths[q]``: ``(n_q,)`` relative strengths summing to 1.
    """

    shifts: Dict[int, np.ndarray]
    strengths: Dict[int, np.ndarray]


def zeeman_pattern(line: "SpectralLine | str", pattern: str = "full") -> ZeemanPattern:
    """The Zeeman pattern of a line.

    Args:
        line: the line; level 1 is taken as the lower level (the pattern is
            the same with the levels swapped).
        pattern: ``"full"`` (every M_u -> M_l component, anomalous splitting)
            or ``"triplet"`` (the effective triplet: pi at 0, sigma at +-geff).

    Returns:
        :class:`ZeemanPattern` with groups q = -1, 0, +1.
    """
    line = get_line(line)
    if pattern == "triplet":
        g = line.geff
        one = np.ones(1)
        return ZeemanPattern({-1: np.array([-g]), 0: np.zeros(1), 1: np.array([g])},
                             {-1: one, 0: one.copy(), 1: one.copy()})
    if pattern != "full":
        raise HashwfaError(f"Zeeman pattern {pattern!r} unknown; use 'full' or 'triplet'")
    jl, ju, gl, gu = line.j1, line.j2, line.g1, line.g2
    shifts: Dict[int, list] = {-1: [], 0: [], 1: []}
    strengths: Dict[int, list] = {-1: [], 0: [], 1: []}
    for iu in range(int(round(2 * ju)) + 1):
        mu = -ju + iu
        for q in (-1, 0, 1):
            ml = mu + q
            if abs(ml) > jl + 1e-9:
                continue
            s = 3.0 * wigner_3j(ju, jl, 1.0, -mu, ml, -q) ** 2
            if s > 1e-14:
                shifts[q].append(gl * ml - gu * mu)
                strengths[q].append(s)
    return ZeemanPattern({q: np.asarray(v, float) for q, v in shifts.items()},
                         {q: np.asarray(v, float) for q, v in strengths.items()})


def zeeman_stokes(
    absorption: Callable[[np.ndarray], np.ndarray],
    wavelengths: np.ndarray,
    line: "SpectralLine | str",
    b: np.ndarray,
    inclination: np.ndarray,
    azimuth: np.ndarray,
    pattern: str = "full",
    continuum: "float | np.ndarray" = 1.0,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stokes I, Q, U, V of a Zeeman-split line in the weak-line limit.

    Args:
        absorption: ``a(dl)``: zero-field absorption (continuum units) at
            wavelength offsets ``dl`` [A] of shape ``(..., nw)``; it may
            depend on the pixel (broadcast over the leading axes).
        wavelengths: ``(nw,)`` Angstrom relative to line centre.
        line: the line.
        b: ``(...)`` field strength |B| in gauss (>= 0).
        inclination: ``(...)`` theta in radians (0: towards the observer).
        azimuth: ``(...)`` chi in radians, from +x towards +y.
        pattern: ``"full"`` or ``"triplet"`` (see :func:`zeeman_pattern`).
        continuum: continuum intensity Ic (scalar or ``(...)``).

    Returns:
        ``(I, Q, U, V)``, each ``(..., nw)`` float64, in continuum units.
    """
    line = get_line(line)
    pat = zeeman_pattern(line, pattern)
    wl = np.asarray(wavelengths, dtype=np.float64)
    split = (LARMOR_CONSTANT * line.center ** 2) * np.asarray(b, dtype=np.float64)[..., None]  # (..., 1) [A]
    phi = {}
    for q in (-1, 0, 1):
        total = 0.0
        for s, strength in zip(pat.shifts[q], pat.strengths[q]):
            total = total + strength * absorption(wl - s * split)
        phi[q] = total
    theta = np.asarray(inclination, dtype=np.float64)[..., None]
    chi = np.asarray(azimuth, dtype=np.float64)[..., None]
    sin2, cos2 = np.sin(theta) ** 2, np.cos(theta) ** 2
    sigma = 0.5 * (phi[1] + phi[-1])
    linear = -0.5 * (phi[0] - sigma) * sin2
    stokes_i = np.asarray(continuum, dtype=np.float64)[..., None] - 0.5 * (phi[0] * sin2 + sigma * (1.0 + cos2))
    stokes_q = linear * np.cos(2 * chi)
    stokes_u = linear * np.sin(2 * chi)
    stokes_v = 0.5 * (phi[-1] - phi[1]) * np.cos(theta)
    return stokes_i, stokes_q, stokes_u, stokes_v
