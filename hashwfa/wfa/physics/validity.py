"""Where the weak-field approximation holds: the Zeeman splitting of the field over the line's width.

The WFA is first order in ``Delta_B / Delta_D``: the Zeeman splitting of the
field,

    Delta_B = 4.6686e-13 lambda0^2 geff |B|        (A; lambda0 in A, |B| in G),

against the width of the observed line. The WFA drops the terms of higher
order in the ratio

    WEAKFLD = Delta_B / Delta_D,

so the ratio maps where the WFA's B is trustworthy (``WEAKFLD`` << 1) and
where it is not (near 1 and above, the splitting resolves the line). The
sign and size of the error depend on the line and the wavelengths fitted:
on Milne-Eddington Fe I 6173 data through a 65 mA filter, noise-free, the
pixel-wise B_los over every wavelength of a fine grid is 0-7 % too high
where WEAKFLD < 0.3 and 13-15 % where it is 0.3-0.4 (BENCHMARKS.md,
"Derivatives of I and the WFA's model error").

**The width from I, per pixel** (:func:`doppler_width`): the observed line's
core is fitted by the parabola through the lowest sample and its two
neighbours (exact for unequal spacing), which gives the core intensity
``I_c`` and the curvature ``I''``; with the continuum ``I_cont`` the
largest sample of the profile, the width is that of the Gaussian with the
same depth and curvature, ``Delta_D = sqrt(2 (I_cont - I_c) / I'')``
(a Gaussian depression ``d exp(-(dl / Delta_D)^2)`` has ``I'' = 2 d /
Delta_D^2`` at its centre). It is the width the data show, instrument
broadening included, which is what the WFA's derivative sees. On a grid
with step h it is about ``h^2 / (4 Delta_D^2)`` relative too wide (the
parabola's chord underestimates the curvature); where the grid does not reach
the continuum, the depth, and so the width, is underestimated and the ratio
errs high (on the cautious side). Pixels with no minimum inside the grid's
interior, or no positive curvature, get NaN.
"""

from __future__ import annotations

from typing import Union

import numpy as np

from hashwfa.wfa.physics.lines import SpectralLine, get_line

__all__ = ["ZEEMAN_CONSTANT", "zeeman_splitting", "doppler_width", "weak_field_ratio"]

#: Zeeman splitting constant: Delta_B [A] = ZEEMAN_CONSTANT lambda0^2 [A^2] geff |B| [G].
ZEEMAN_CONSTANT = 4.6686e-13


def zeeman_splitting(b_abs: np.ndarray, line: Union[str, SpectralLine]) -> np.ndarray:
    """``Delta_B = 4.6686e-13 lambda0^2 geff |B|`` [A] of field strengths ``b_abs`` [G] (any shape)."""
    line = get_line(line)
    return ZEEMAN_CONSTANT * line.center ** 2 * line.geff * np.abs(np.asarray(b_abs, dtype=np.float64))


def doppler_width(intensity: np.ndarray, wavelengths: np.ndarray) -> np.ndarray:
    """The observed line's Gaussian-equivalent width per spectrum [A] (see the module docstring).

    Args:
        intensity: ``(..., nw)`` Stokes I in any unit (only ratios enter).
        wavelengths: ``(nw,)`` strictly increasing [A], nw >= 3.

    Returns:
        ``(...)`` float64 width ``sqrt(2 (I_cont - I_c) / I'')`` [A]; NaN where
        the lowest sample is at an end of the grid, the curvature is not
        positive, or the spectrum is not finite.
    """
    I = np.asarray(intensity, dtype=np.float64)
    wl = np.asarray(wavelengths, dtype=np.float64)
    nw = wl.shape[0]
    finite = np.all(np.isfinite(I), axis=-1)
    filled = np.where(finite[..., None], I, 0.0)
    k = np.argmin(filled, axis=-1)
    interior = finite & (k > 0) & (k < nw - 1)
    j = np.clip(k, 1, nw - 2)
    x0, x1, x2 = wl[j - 1], wl[j], wl[j + 1]
    take = lambda idx: np.take_along_axis(filled, idx[..., None], axis=-1)[..., 0]  # noqa: E731
    y0, y1, y2 = take(j - 1), take(j), take(j + 1)
    # Newton's divided differences: p(x) = y1 + s (x - x1) + a (x - x1)^2 through the three points.
    d01 = (y1 - y0) / (x1 - x0)
    d12 = (y2 - y1) / (x2 - x1)
    a = (d12 - d01) / (x2 - x0)
    s = d12 - a * (x2 - x1)
    with np.errstate(divide="ignore", invalid="ignore"):
        core = y1 - s * s / (4.0 * a)
        depth = np.max(filled, axis=-1) - core
        width = np.sqrt(depth / a)  # 2 depth / I'' with I'' = 2 a
    ok = interior & (a > 0) & (depth > 0)
    return np.where(ok, width, np.nan)


def weak_field_ratio(blos: np.ndarray, bt: np.ndarray, width: np.ndarray,
                     line: Union[str, SpectralLine]) -> np.ndarray:
    """``WEAKFLD = Delta_B / Delta_D``: the Zeeman splitting of ``|B| = sqrt(B_los^2 + B_t^2)`` [G]
    over the line's width ``width`` [A] (:func:`doppler_width`); arrays of one shape, float64."""
    b_abs = np.hypot(np.asarray(blos, dtype=np.float64), np.asarray(bt, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return zeeman_splitting(b_abs, line) / np.asarray(width, dtype=np.float64)
