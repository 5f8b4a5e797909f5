"""The noise of the Stokes parameters: estimated from the data, or given.

The uncertainty maps (:mod:`hashwfa.wfa.uncertainty`) propagate one noise
sigma per Stokes parameter and wavelength, in the intensity unit of the cube.
It comes from one of two places:

- **given** (``data.noise`` in a config): one value per Stokes parameter
  ``(4,)`` (the same at every wavelength) or one per Stokes parameter and
  wavelength ``(4, nw)`` (:func:`given_noise`);
- **estimated** (the default, :func:`estimate_noise`): photon noise is white
  from pixel to pixel while the solar signal, seen through the telescope's
  point-spread function, varies smoothly over a few pixels. So for each
  Stokes parameter and wavelength the image minus the mean of its four
  neighbours, ``r = x[y, x] - (x[y-1, x] + x[y+1, x] + x[y, x-1] + x[y, x+1]) / 4``,
  is nearly pure noise of variance ``1.25 sigma^2``, and
  ``sigma = 1.4826 MAD(r) / sqrt(1.25)`` (the median absolute deviation,
  scaled to a Gaussian sigma, ignores the few pixels where strong, sharp
  signal survives the high-pass). The noise is taken as white in wavelength
  too: each Stokes parameter gets one sigma, pooled over the third of the
  wavelengths whose own estimate is smallest (where the signal is weakest,
  usually the far wings), so that leaking signal at the strong wavelengths
  does not inflate it.

What the estimate cannot see: noise that is correlated from pixel to pixel
(e.g. after image restoration with a large kernel, or a resampled cube) is
underestimated by the high-pass; give ``data.noise`` for such data. Left
out: pixels the user's mask excludes, pixels with a non-finite value
anywhere in their four-neighbour stencil, and residuals that are exactly 0
(a constant fill, such as the zero corners of a rotated SST field, would
otherwise pull the median down; real noise is never exactly flat).

Memory: the medians need every residual of a (Stokes, wavelength) plane at
once. A cube in memory is filtered in one pass (residuals as large as the
cube, float64). A lazy cube (:class:`~hashwfa.wfa.observation.observation.Observation`
mapped from its file) is filtered frame by frame, :data:`PLANES_PER_PASS`
planes per pass over the file, and then once more per Stokes parameter for
its pooled wavelengths: at most ``max(PLANES_PER_PASS, ceil(nw / 3)) x 8``
bytes per pixel at a time. The medians are exact either way, so the result
is the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.arguments import STOKES_NAMES
from hashwfa.wfa.observation.observation import Observation

__all__ = ["StokesNoise", "estimate_noise", "given_noise", "resolve_noise", "MAD_TO_SIGMA", "HIGHPASS_VARIANCE"]

#: The median absolute deviation of a Gaussian times this is its sigma (1 / Phi^-1(3/4)).
MAD_TO_SIGMA = 1.482602218505602
#: Variance of the four-neighbour high-pass of unit white noise: 1 + 4 / 16.
HIGHPASS_VARIANCE = 1.25
#: Fraction of the wavelengths (those with the smallest estimates) pooled per Stokes parameter.
QUIET_FRACTION = 1.0 / 3.0
#: (Stokes, wavelength) planes whose residuals a lazy cube's estimate keeps per pass over the file.
PLANES_PER_PASS = 4


@dataclass(frozen=True)
class StokesNoise:
    """Noise sigma of each Stokes parameter at each wavelength.

    Attributes:
        sigma: ``(4, nw)`` float64, Stokes I, Q, U, V by wavelength, in the
            intensity unit of the cube (e.g. the continuum intensity).
        method: how it was obtained, short enough for a FITS card:
            ``"given"`` or ``"spatial-highpass-MAD"``.
        detail: one sentence saying what was used (which wavelengths, how
            many pixels), for logs and the history file.
    """

    sigma: np.ndarray
    method: str
    detail: str = ""

    @property
    def per_stokes(self) -> np.ndarray:
        """``(4,)`` root mean square of :attr:`sigma` over the wavelengths (I, Q, U, V)."""
        return np.sqrt(np.mean(np.asarray(self.sigma, np.float64) ** 2, axis=1))

    def at(self, indices: Any) -> np.ndarray:
        """``(4, len(indices))`` sigma at the given wavelength indices (e.g. the active ones)."""
        return np.asarray(self.sigma, np.float64)[:, list(indices)]

    def header_cards(self) -> Dict[str, Tuple[Any, str]]:
        """FITS cards: ``NOISE_I``, ``NOISE_Q``, ``NOISE_U``, ``NOISE_V`` (rms over the
        wavelengths, intensity units) and ``NOISEMTH`` (the method)."""
        cards: Dict[str, Tuple[Any, str]] = {}
        for name, value in zip(STOKES_NAMES, self.per_stokes):
            cards[f"NOISE_{name}"] = (float(value), f"noise sigma of Stokes {name} (rms over wavelengths)")
        cards["NOISEMTH"] = (self.method, "how the noise was found")
        return cards

    def as_dict(self) -> Dict[str, Any]:
        """Plain-JSON form (for history files): sigma per Stokes, per Stokes and wavelength, method."""
        return {
            "per_stokes": {n: float(v) for n, v in zip(STOKES_NAMES, self.per_stokes)},
            "sigma": np.asarray(self.sigma, np.float64).tolist(),
            "method": self.method,
            "detail": self.detail,
        }


def given_noise(values: Any, nw: int, source: str = "data.noise") -> StokesNoise:
    """The noise a user gave: ``(4,)`` (per Stokes) or ``(4, nw)`` (per Stokes and wavelength).

    Args:
        values: numbers in the intensity unit of the cube, finite and >= 0.
        nw: number of wavelengths of the observation.
        source: name of the setting, for messages.

    Raises:
        HashwfaError: a shape other than ``(4,)`` or ``(4, nw)``, or values that
            are not finite and non-negative.
    """
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise HashwfaError(f"{source} = {values!r}; expected 4 numbers (I, Q, U, V) or 4 lists of {nw}") from None
    if arr.shape == (4,):
        arr = np.repeat(arr[:, None], nw, axis=1)
    elif arr.shape != (4, nw):
        raise HashwfaError(
            f"{source} has shape {arr.shape}; expected (4,) (one sigma per Stokes parameter I, Q, U, V) "
            f"or (4, {nw}) (per Stokes parameter and wavelength)"
        )
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise HashwfaError(f"{source} = {values!r}; every sigma must be finite and >= 0 (intensity units)")
    return StokesNoise(sigma=arr, method="given", detail=f"given by {source}")


def _highpass(stokes: np.ndarray) -> np.ndarray:
    """``(..., ny-2, nx-2, 4, nw)`` image minus the mean of its four neighbours (interior pixels).

    Leading axes (the frames of a series) are kept: each frame is filtered on its own.
    """
    s = stokes
    c = s[..., 1:-1, 1:-1, :, :]
    return c - 0.25 * (s[..., 2:, 1:-1, :, :] + s[..., :-2, 1:-1, :, :] + s[..., 1:-1, 2:, :, :] + s[..., 1:-1, :-2, :, :])


def _mad_sigma(residual: np.ndarray, axis: Any) -> np.ndarray:
    """Gaussian sigma from the median absolute deviation of a high-pass residual (NaN ignored)."""
    centre = np.nanmedian(residual, axis=axis, keepdims=True)
    mad = np.nanmedian(np.abs(residual - centre), axis=axis)
    return MAD_TO_SIGMA * mad / math.sqrt(HIGHPASS_VARIANCE)


def _plane_residuals(observation: Observation, planes: Sequence[Tuple[int, int]]) -> np.ndarray:
    """``(n, len(planes))`` high-pass residuals of the (Stokes, wavelength) ``planes`` over all frames.

    Row order: interior pixels of frame 0 row-major, then frame 1...; NaN
    where a residual is left out (see the module docstring). One pass over
    the frames, reading only those planes.
    """
    ny, nx = observation.ny, observation.nx
    per_frame = (ny - 2) * (nx - 2)
    k_index = [k for k, _ in planes]
    w_index = [w for _, w in planes]
    out = np.empty((observation.nt * per_frame, len(planes)))
    for t, view in observation.frame_views():
        values = np.asarray(view[:, :, k_index, w_index], dtype=np.float64)[..., None]  # (ny, nx, G, 1)
        with np.errstate(invalid="ignore"):
            residual = _highpass(values)[..., 0]  # (ny-2, nx-2, G)
        mask = observation.mask[t] if observation.is_series else observation.mask
        keep = np.isfinite(residual) & (residual != 0.0) & mask[1:-1, 1:-1, None]
        out[t * per_frame:(t + 1) * per_frame] = np.where(keep, residual, np.nan).reshape(per_frame, len(planes))
    return out


def _lazy_plane_sigmas(observation: Observation) -> Tuple[np.ndarray, np.ndarray]:
    """``(per_wavelength, n_finite)``, both ``(4, nw)``, :data:`PLANES_PER_PASS` planes per pass."""
    nw = observation.nw
    planes = [(k, w) for k in range(4) for w in range(nw)]
    per_wavelength = np.empty(4 * nw)
    n_finite = np.empty(4 * nw, dtype=np.int64)
    for start in range(0, len(planes), PLANES_PER_PASS):
        group = planes[start:start + PLANES_PER_PASS]
        residual = _plane_residuals(observation, group)
        n_finite[start:start + len(group)] = np.count_nonzero(np.isfinite(residual), axis=0)
        if n_finite[start:start + len(group)].min() >= 9:
            per_wavelength[start:start + len(group)] = _mad_sigma(residual, axis=0)
        del residual
    return per_wavelength.reshape(4, nw), n_finite.reshape(4, nw)


def estimate_noise(observation: Observation) -> StokesNoise:
    """Estimate the noise of each Stokes parameter from the data (see the module docstring).

    Args:
        observation: the :class:`Observation` (its whole cube is used; a
            lazy cube is read frame by frame, several times).

    Returns:
        :class:`StokesNoise` with one sigma per Stokes parameter, repeated over
        the wavelengths, method ``"spatial-highpass-MAD"``.

    Raises:
        HashwfaError: an image smaller than 3 x 3 pixels or with fewer than 9
            interior pixels whose stencil is finite (too few to estimate;
            give ``data.noise`` instead).
    """
    ny, nx, nw = observation.ny, observation.nx, observation.nw
    if ny < 3 or nx < 3:
        raise HashwfaError(
            f"{observation.source}: {ny} x {nx} pixels are too few to estimate the noise from the data "
            "(needs at least 3 x 3); give it in the config as data.noise (4 sigmas: I, Q, U, V)"
        )
    too_few = HashwfaError(
        f"{observation.source}: fewer than 9 unmasked pixels with finite, not constant neighbours at some "
        "Stokes parameter and wavelength; cannot estimate the noise; give it in the config as data.noise"
    )
    residual: Optional[np.ndarray] = None
    if observation.is_lazy:
        per_wavelength, n_finite = _lazy_plane_sigmas(observation)
        if n_finite.min() < 9:
            raise too_few
    else:
        stokes = observation.stokes  # (ny, nx, 4, nw), or (nt, ny, nx, 4, nw) for a series
        with np.errstate(invalid="ignore"):
            residual = _highpass(stokes)  # (..., ny-2, nx-2, 4, nw); NaN where any stencil value is NaN
        keep = np.isfinite(residual) & (residual != 0.0) & observation.mask[..., 1:-1, 1:-1, None, None]
        residual = np.where(keep, residual, np.nan).reshape(-1, 4, nw)
        n_finite = np.count_nonzero(np.isfinite(residual), axis=0)  # (4, nw)
        if n_finite.min() < 9:
            raise too_few
        per_wavelength = _mad_sigma(residual, axis=0)  # (4, nw)
    n_quiet = max(1, int(math.ceil(QUIET_FRACTION * nw)))
    sigma = np.empty(4)
    chosen = []
    for k in range(4):  # four Stokes parameters, each a vectorised pooled MAD
        quiet = np.sort(np.argsort(per_wavelength[k], kind="stable")[:n_quiet])
        chosen.append(quiet)
        if residual is not None:
            pooled = residual[:, k, quiet].reshape(-1)
        else:  # the same values, read again (median: order does not matter)
            pooled = _plane_residuals(observation, [(k, int(w)) for w in quiet]).reshape(-1)
        sigma[k] = float(_mad_sigma(pooled, axis=0))
        del pooled
    detail = (
        f"per Stokes parameter: MAD of the image minus its 4-neighbour mean over "
        f"{int(n_finite.min())}+ interior pixels, pooled over the {n_quiet} of {nw} wavelengths with the "
        "smallest estimates ("
        + "; ".join(f"{n}: {','.join(str(int(i)) for i in q)}" for n, q in zip(STOKES_NAMES, chosen))
        + ")"
    )
    return StokesNoise(sigma=np.repeat(sigma[:, None], nw, axis=1), method="spatial-highpass-MAD", detail=detail)


def resolve_noise(observation: Observation, given: Optional[Any] = None) -> StokesNoise:
    """The noise to use: ``given`` (``data.noise``) when it is not None, else :func:`estimate_noise`."""
    if given is not None:
        return given_noise(given, observation.nw)
    return estimate_noise(observation)
