"""The scan that decides which pixels of a cube the WFA can use, and the cube's intensity scale.

A pixel is *valid* when the user's mask allows it and every value the WFA
uses there is finite and sane: I at the wavelengths the derivatives read
(with the three-point derivative the active wavelengths and their neighbours,
the interior neighbour's three points at either end; with the spline all),
Q, U and V at the active wavelengths. Sane means finite in float32 (the
loss's precision) and within :data:`ABSURD_FACTOR` times the median |I| of
those values (the median over the I values the WFA reads at the finite
pixels: a few wavelengths per pixel, kept while the cube is scanned frame by
frame). A frame whose I is one constant (all zeros: a scan that was never
filled) has no signal and is left out like NaN pixels.

The same pass records each pixel's continuum (the larger I of the two
outermost wavelengths), whose median over the valid pixels gives the
intensity scale (:func:`intensity_scale_of`).
"""

from __future__ import annotations

import warnings
from typing import Iterable, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from hashwfa.errors import HashwfaError

__all__ = ["ABSURD_FACTOR", "PixelScan", "scan_pixels", "frame_continuum", "median_continuum",
           "intensity_scale_of", "median_in_place", "report_invalid_pixels"]

#: A value whose magnitude exceeds this many times the median |I| of the cube
#: (over the finite values the WFA reads) is absurd -- a hot pixel, a
#: saturated or corrupted read -- and its pixel is left out like a NaN pixel.
#: Real Stokes data stay within a few times the continuum; a million times
#: it only flags values that would overflow the float32 loss or dominate it.
ABSURD_FACTOR = 1e6

#: Exponents of the intensity scale are kept within these bounds (a normal float64 and its
#: inverse); a continuum beyond 2**+-1000 is not data (it still trains, unnormalised that far).
_SCALE_EXPONENT_LIMIT = 1000


def intensity_scale_of(continuum: float) -> float:
    """The power of two nearest ``continuum`` (nearest in log2), the intensity scale of
    :class:`Observation`; 1.0 for a continuum that is not a positive finite number.

    ``2 ** round(log2(continuum))``: exactly 1.0 for continua in [2**-0.5, 2**0.5).
    """
    c = float(continuum)
    if not (np.isfinite(c) and c > 0):
        return 1.0
    exponent = int(round(np.log2(c)))
    exponent = min(max(exponent, -_SCALE_EXPONENT_LIMIT), _SCALE_EXPONENT_LIMIT)
    return float(np.ldexp(1.0, exponent))


def median_in_place(values: np.ndarray) -> float:
    """The median of a 1-D array without NaN, as :func:`numpy.median` gives it in float64.

    ``values`` may be float32 (exactly converted values): the median is an
    order statistic, or the float64 mean of two, so it is the same as for the
    values in float64. The array is partitioned in place.
    """
    n = values.size
    kth = sorted({(n - 1) // 2, n // 2})
    values.partition(kth)
    return float(np.mean(values[kth].astype(np.float64)))


class PixelScan(NamedTuple):
    """What :func:`scan_pixels` found, each ``map_shape`` unless said otherwise.

    Attributes:
        finite: bool, every value the WFA reads is finite.
        sane: bool, finite and not absurd, and not in a frame without signal.
        continuum: each pixel's continuum (:func:`frame_continuum`), in the cube's unit.
        blank_frames: indices of the frames whose Stokes I is one constant.
    """

    finite: np.ndarray
    sane: np.ndarray
    continuum: np.ndarray
    blank_frames: Tuple[int, ...]


def scan_pixels(frames: Iterable[Tuple[int, np.ndarray]], map_shape: Tuple[int, ...], needed_i: Sequence[int],
                active: Sequence[int], dtype: np.dtype) -> PixelScan:
    """One pass over a cube's frames: which pixels the WFA can use, and their continuum.

    Args:
        frames: ``(t, view)`` per frame, ``view`` ``(ny, nx, 4, nw)`` as stored
            (:meth:`~hashwfa.wfa.observation.observation.Observation.frame_views`).
        map_shape: ``(ny, nx)`` or ``(nt, ny, nx)``.
        needed_i: wavelength indices of I the derivatives read.
        active: the active wavelength indices (Q, U, V are read there).
        dtype: the cube's dtype. Kept during the pass: per pixel the largest
            |I| and |Q, U, V| read, and the |I| values of the finite pixels for
            the median, in float32 when the cube is float32 or narrower (exact,
            half the memory).
    """
    needed_i, act = list(needed_i), list(active)
    series = len(map_shape) == 3
    exact32 = np.issubdtype(dtype, np.floating) and np.dtype(dtype).itemsize <= 4
    store = np.float32 if exact32 else np.float64
    shape = tuple(map_shape)
    finite = np.empty(shape, dtype=bool)
    blank = np.zeros(shape, dtype=bool)
    peak_i = np.empty(shape, dtype=store)
    peak_quv = np.empty(shape, dtype=store)
    magnitudes = np.empty(int(np.prod(shape)) * len(needed_i), dtype=store)
    continuum = np.empty(shape, dtype=store)
    n_values = 0
    for t, view in frames:
        where = (t,) if series else ()
        continuum[where] = frame_continuum(view)
        used_i = np.asarray(view[..., 0, needed_i], dtype=np.float64)
        used_quv = np.asarray(view[..., 1:, act], dtype=np.float64)
        fin = np.all(np.isfinite(used_i), axis=-1) & np.all(np.isfinite(used_quv), axis=(-2, -1))
        finite[where] = fin
        # A frame whose I is one constant (all zeros: a scan that was never filled) has no
        # signal: dI/dlambda = 0 everywhere and every map of it would read 0 G.
        kept_i = used_i[fin]
        blank[where] = kept_i.size > 0 and float(kept_i.max()) == float(kept_i.min())
        if blank[where].any():
            fin = np.zeros_like(fin)  # its values do not count in the median either
        with np.errstate(invalid="ignore", over="ignore"):
            peak_i[where] = np.max(np.abs(used_i), axis=-1)
            peak_quv[where] = np.max(np.abs(used_quv), axis=(-2, -1))
        values = np.abs(used_i[fin]).reshape(-1)
        magnitudes[n_values:n_values + values.size] = values
        n_values += values.size
        del used_i, used_quv
    limit = float(np.finfo(np.float32).max)
    if n_values:
        scale = median_in_place(magnitudes[:n_values])
        if scale > 0:
            limit = min(limit, ABSURD_FACTOR * scale)
    del magnitudes
    with np.errstate(invalid="ignore"):
        sane = finite & (peak_i <= limit) & (peak_quv <= limit)
    blank &= sane  # a frame of absurd values is reported as such
    nt = shape[0] if series else 1
    blank_frames = tuple(int(t) for t in np.flatnonzero(blank.reshape(nt, -1).any(axis=1)))
    sane &= ~blank
    return PixelScan(finite, sane, continuum, blank_frames)


def frame_continuum(view: np.ndarray) -> np.ndarray:
    """``(ny, nx)`` continuum of one frame ``(ny, nx, 4, nw)``: the larger I of the first and last
    wavelength (NaN where both are not finite); float64."""
    ends = np.asarray(view[..., 0, [0, view.shape[-1] - 1]], dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: NaN
        return np.nanmax(ends, axis=-1)


def median_continuum(continuum: np.ndarray, valid: np.ndarray) -> float:
    """Median of ``continuum`` over the ``valid`` pixels (flat bool) where it is finite and positive (NaN: none)."""
    values = np.asarray(continuum).reshape(-1)[valid]
    values = values[np.isfinite(values) & (values > 0)]
    return median_in_place(values) if values.size else float("nan")


def report_invalid_pixels(src: str, valid: np.ndarray, blank_frames: Tuple[int, ...], nt: int,
                          n_nonfinite: Optional[int], n_absurd: Optional[int], scan: Optional[PixelScan]) -> None:
    """Warn once about the pixels a scan left out (frames without signal, NaN/inf, absurd values);
    refuse data where none is left.

    Args:
        src: the data's name, for messages.
        valid: flat bool, the valid pixels.
        blank_frames, n_nonfinite, n_absurd: what the scan found (None: not scanned).
        nt: frames of the cube (1 for a single frame).
        scan: the scan itself, to name the first absurd pixel (None: not scanned).

    Raises:
        HashwfaError: no frame carries signal, or no pixel is valid.
    """
    if blank_frames and len(blank_frames) == nt:
        raise HashwfaError(
            f"{src}: Stokes I is one constant (flat or zero) at the wavelengths the WFA uses in every "
            f"{'scan' if nt > 1 else 'pixel'}: no pixel carries a WFA signal. Fix: check that Stokes I "
            "is the cube's first Stokes plane (I, Q, U, V order) and that the active wavelengths "
            "(data.active_indices) lie on the line"
        )
    if blank_frames:
        which = "the frame" if not nt > 1 else \
            f"{len(blank_frames)} of {nt} scans (t = {', '.join(map(str, blank_frames[:5]))}" \
            + (", ..." if len(blank_frames) > 5 else "") + ")"
        warnings.warn(
            f"{src}: {which} have no signal (Stokes I is one constant, e.g. all zeros, at the wavelengths "
            "the WFA uses); they are left out of every fit like NaN pixels",
            stacklevel=3,
        )
    if n_nonfinite:
        warnings.warn(
            f"{src}: {n_nonfinite} of {valid.size} pixels have NaN or infinite values at the "
            "wavelengths the WFA uses; they are left out of every fit (the pixel-wise WFA "
            "reports NaN there)",
            stacklevel=3,
        )
    if n_absurd:
        first = ", ".join(f"{axis}={i}" for axis, i in zip("tyx"[-scan.finite.ndim:], np.argwhere(scan.finite & ~scan.sane)[0]))
        warnings.warn(
            f"{src}: {n_absurd} of {valid.size} pixels have absurd values at the wavelengths "
            f"the WFA uses (beyond float32, or over {ABSURD_FACTOR:g} x the median |I|; the first "
            f"at {first}); they are left out of every fit like NaN pixels",
            stacklevel=3,
        )
    if not valid.any():
        raise HashwfaError(
            f"{src}: no valid pixel: all {valid.size} pixels are masked out or have NaN/inf or absurd values; "
            "check the mask and the data"
        )
