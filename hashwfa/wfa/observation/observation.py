"""Observations: a Stokes cube, its wavelengths, the line, and what to fit.

In memory the cube is a numpy array ``(ny, nx, 4, nw)``: rows y, columns x,
Stokes I, Q, U, V, wavelengths, or for a time series ``(nt, ny, nx, 4, nw)``
with optional frame times; the wavelengths are Angstrom relative to the
line centre. Files (the cube and its wavelengths as two FITS files, and the
SSTRED/CRISPEX order) are read and written by :mod:`hashwfa.wfa.observation.stokes_fits`; SST
pipeline cubes (wavelengths and times inside) by :mod:`hashwfa.wfa.observation.sst`.

A pixel is *valid* when the user's mask allows it and every value the WFA
uses there is finite and sane: I at the wavelengths the derivatives read
(with the three-point derivative the active wavelengths and their neighbours,
the interior neighbour's three points at either end; with the spline all),
Q, U and V at the active wavelengths. Sane means finite in
float32 (the loss's precision) and within :data:`ABSURD_FACTOR` times the
median |I| of those values (the median over the I values the WFA reads at
the finite pixels: a few wavelengths per pixel, kept while the cube is
scanned frame by frame). Invalid pixels are left out of every loss and
estimate; their count is reported once, when the observation is built.

**Intensity scale.** Any intensity unit works (the continuum intensity,
counts, W m^-2 Hz^-1 sr^-1 ...): the WFA inputs (:meth:`Observation.wfa_inputs`,
:meth:`Observation.intensity_derivative`) are the cube divided by
:attr:`Observation.intensity_scale`, the power of two nearest the median
continuum intensity (:func:`intensity_scale_of`; the continuum of a pixel is
the larger I of the two outermost wavelengths, the median is over the valid
pixels). Dividing by a power of two is exact in floating point, and for data
already in continuum units (continuum between 0.71 and 1.41) the scale is
exactly 1: nothing changes there. Without it, a cube in physical units
(I ~ 3e-8) gives the float32 loss gradients of 1e-25, far below the
optimiser's thresholds, and the fields never move. The maps are in gauss
whatever the unit (the WFA is scale invariant); the noise
(:mod:`hashwfa.wfa.observation.noise`) stays in the cube's unit, and whatever combines it
with the WFA inputs divides it by the same scale.

**Lazy cubes.** A cube given as a :class:`numpy.memmap` (what
:meth:`Observation.from_fits` and :meth:`Observation.from_sst` give by
default: the file mapped, not read) is kept as it is, in the file's dtype;
nothing converts the whole cube to float64. Whatever reads spectra (the
valid-pixel scan, :meth:`Observation.wfa_inputs`, the pixel-wise and
regularised WFA, the noise estimate, the loss) reads it one frame at a time
(:meth:`Observation.frame_views`; a single frame is one chunk) and converts
that frame to float64, so the results are the same as for the cube in
memory as float64, and the host memory is one frame plus what is computed.
"""

from __future__ import annotations

import itertools
import warnings
from pathlib import Path
from typing import Any, Dict, Iterator, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from hashwfa.errors import HashwfaError
from hashwfa.host.memory import check_fits_in_memory
from hashwfa.wfa.observation.fits_files import PathLike, forget_pages
from hashwfa.wfa.observation.stokes_fits import read_stokes_fits, write_stokes_fits
from hashwfa.wfa.physics.lines import SpectralLine, get_line
from hashwfa.wfa.physics.weak_field import DEFAULT_DERIVATIVE, check_derivative, derivative_operators, derivatives_at
from hashwfa.wfa.observation.sst import read_sst_cube

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


#: Largest |lambda - lambda0| [A] we accept as an offset from the line centre;
#: wavelengths within this distance of the centre are taken as absolute.
MAX_OFFSET = 100.0

STOKES_NAMES = ("I", "Q", "U", "V")


class WFAInputs(NamedTuple):
    """What the WFA needs from an observation, for its P valid pixels.

    Attributes:
        index: ``(P,)`` int64 flat pixel indices (row-major over the map grid).
        dI_dlambda: ``(P, A)`` dI/dlambda at the A active wavelengths [1/A].
        d2I_dlambda2: ``(P, A)`` d^2I/dlambda^2 there [1/A^2] (None if nw < 3).
        q, u, v: ``(P, A)`` observed Stokes Q, U, V at the active wavelengths.

    Intensities are the cube's divided by :attr:`Observation.intensity_scale`.
        wavelengths: ``(A,)`` active wavelengths relative to line centre [A].
    """

    index: np.ndarray
    dI_dlambda: np.ndarray
    d2I_dlambda2: Optional[np.ndarray]
    q: np.ndarray
    u: np.ndarray
    v: np.ndarray
    wavelengths: np.ndarray


def relative_wavelengths(
    wavelengths: np.ndarray, line: SpectralLine, source: str
) -> Tuple[np.ndarray, str]:
    """Wavelengths in Angstrom relative to the line centre, whatever was given.

    Offsets (all ``|w| < 100`` A) are returned as they are. Values within 100 A
    of the line centre are taken as absolute Angstrom, values within 10 nm of
    it as absolute nm; both are converted with a warning that says so.

    Args:
        wavelengths: ``(nw,)`` finite values.
        line: the observed line (its centre decides what "absolute" means).
        source: name of the data, for messages.

    Returns:
        ``(relative, reference)`` with ``reference`` ``"line centre"`` or a
        phrase describing the conversion done.

    Raises:
        HashwfaError: when the values fit none of these readings.
    """
    wl = np.asarray(wavelengths, dtype=np.float64)
    if np.all(np.abs(wl) < MAX_OFFSET):
        return wl, "line centre"
    c = line.center
    span = f"{wl.min():.6g} .. {wl.max():.6g}"
    if np.all(np.abs(wl - c) < MAX_OFFSET):
        rel, how = wl - c, "absolute Angstrom"
    elif np.all(np.abs(10.0 * wl - c) < MAX_OFFSET):
        rel, how = 10.0 * wl - c, "absolute nm"
    else:
        raise HashwfaError(
            f"{source}: wavelengths span {span}, which is neither offsets from the line centre in "
            f"Angstrom (|offset| < {MAX_OFFSET:g}) nor absolute wavelengths around line {line.name} "
            f"({c} A); give Angstrom relative to the line centre (mA: divide by 1000), or choose "
            "the right line"
        )
    warnings.warn(
        f"{source}: wavelengths ({span}) look like {how}; assumed {how} and converted them to "
        f"Angstrom relative to the centre of line {line.name} ({c} A)",
        stacklevel=3,
    )
    return rel, f"converted from {how}"


def _median_in_place(values: np.ndarray) -> float:
    """The median of a 1-D array without NaN, as :func:`numpy.median` gives it in float64.

    ``values`` may be float32 (exactly converted values): the median is an
    order statistic, or the float64 mean of two, so it is the same as for the
    values in float64. The array is partitioned in place.
    """
    n = values.size
    kth = sorted({(n - 1) // 2, n // 2})
    values.partition(kth)
    return float(np.mean(values[kth].astype(np.float64)))


def _check_weights(weights: Tuple[float, ...], source: str) -> None:
    """Refuse weights that fit nothing; warn when one phase's map would be unconstrained."""
    _, w_q, w_u, w_v = weights
    if w_q == w_u == w_v == 0:
        raise HashwfaError(
            f"{source}: weights = {list(weights)} give Stokes Q, U and V no weight: nothing would be "
            "fitted and every map would be the untrained network's output. Fix: give V (B_los) and Q, U "
            "(B_t, azimuth) positive weights (in a config: data.weights, e.g. [1, 1, 1, 1])"
        )
    unconstrained = [m for m, off in (("B_los (weight of V is 0)", w_v == 0),
                                      ("B_Q, B_U (weights of Q and U are 0)", w_q == w_u == 0)) if off]
    if unconstrained:
        warnings.warn(f"{source}: weights = {list(weights)}: {unconstrained[0]}: not fitted, its map is the "
                      "untrained network's output", stacklevel=3)


def _as_float_tuple(values: Any, n: int, what: str, source: str) -> Tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise HashwfaError(f"{source}: {what} must be {n} numbers, got {values!r}") from None
    if len(out) != n or not all(np.isfinite(v) and v >= 0 for v in out):
        raise HashwfaError(
            f"{source}: {what} = {values!r}; expected {n} finite non-negative numbers "
            f"(one per Stokes parameter {', '.join(STOKES_NAMES[:n])})"
        )
    return out


class Observation:
    """A Stokes cube (one frame or a time series) with its wavelength axis, line and fit settings.

    A *pixel* below is a point of the map grid :attr:`map_shape`: ``(y, x)``
    for one frame, ``(t, y, x)`` for a series; flat pixel indices run over
    that grid in row-major order.

    Args:
        stokes: ``(ny, nx, 4, nw)`` array, Stokes I, Q, U, V along axis 2, or
            a series ``(nt, ny, nx, 4, nw)`` (Stokes along axis 3), in any
            intensity unit (usually the continuum intensity). Stored as
            float64 (not copied when it already is; do not modify it after),
            except a :class:`numpy.memmap` (a cube mapped from its file, see
            the module docstring), which is kept as it is and read frame
            by frame.
        wavelengths: ``(nw,)`` strictly increasing, Angstrom relative to the
            line centre. Absolute Angstrom or nm are accepted and converted
            (with a warning saying so).
        line: the observed line (:class:`SpectralLine`, name such as
            ``"5173"``, or a definition dict; see :func:`get_line`).
        active_indices: wavelength indices used by the fit (distinct, in
            ``0..nw-1``); stored sorted. None (the default): every wavelength.
        weights: per-Stokes weights (I, Q, U, V) of the loss; I has no WFA
            model and its weight is kept only for the record.
        mask: ``(ny, nx)`` bool, True = use the pixel (in every frame of a
            series), or ``(nt, ny, nx)`` for a series; None = all.
        source: name of the data used in messages (file name, "synthetic").
        unit: the intensity unit, written as BUNIT (e.g. ``"Ic"``: normalised
            to the continuum; ``""`` if unknown).
        times: ``(nt,)`` frame times of a series [s], finite and strictly
            increasing; None: not known (the frames are taken as evenly
            spaced). Only for a series.
        map_cards: ``(keyword, value, comment)`` FITS cards to carry into
            maps made from this observation (spatial WCS of FITS axes 1 = x
            and 2 = y, DATEREF and other dates); kept as :attr:`map_cards`.
        valid: the valid pixels, ``map_shape`` bool, as another process
            found them from the same data and mask (rank 0 of a data-parallel
            fit, which scanned the cube): the spectra are then not scanned
            here, nothing is warned, and :attr:`n_nonfinite` and
            :attr:`n_absurd` are None. None: scan the spectra.
        intensity_scale: the divisor of the cube for the WFA inputs
            (:attr:`intensity_scale`), e.g. the scale of the observation a
            bootstrap member's redraw or a frame comes from, or the one
            rank 0 of a data-parallel fit found; a positive finite number
            (a power of two keeps the division exact). None: the power of
            two nearest the median continuum intensity of the valid pixels
            (:func:`intensity_scale_of`; see the module docstring).
        derivative: how dI/dlambda and d^2I/dlambda^2 are estimated, one of
            :data:`hashwfa.wfa.physics.weak_field.DERIVATIVES` (``"three_point"``, the
            default, or ``"spline"`` through all wavelengths); kept as
            :attr:`derivative`, used by :meth:`wfa_inputs` and everything
            that fits or propagates noise through this observation.
        derivative_qu: the same choice for d^2I/dlambda^2 alone (the Q/U
            model); None = ``derivative``. Kept as :attr:`derivative_qu`.

    Raises:
        HashwfaError: wrong number of dimensions, a Stokes axis that is not 4,
            wavelength length mismatch, wavelengths not strictly increasing or
            not finite, active indices out of range or repeated, bad weights,
            an unknown derivative,
            a mask of the wrong shape, no valid pixel at all, or weights
            that give Q, U and V no weight (nothing to fit).

    Warns:
        UserWarning: once, with the number of pixels that have NaN or
            infinite values, once with the number that have absurd values
            (see the module docstring; both are left out of every fit); and
            when absolute wavelengths were converted.
    """

    def __init__(
        self,
        stokes: np.ndarray,
        wavelengths: np.ndarray,
        line: Union[str, SpectralLine, Dict[str, Any]] = "5173",
        active_indices: Optional[Sequence[int]] = None,
        weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        mask: Optional[np.ndarray] = None,
        source: Optional[str] = None,
        unit: str = "",
        times: Optional[Sequence[float]] = None,
        map_cards: Sequence[Tuple[str, Any, str]] = (),
        valid: Optional[np.ndarray] = None,
        intensity_scale: Optional[float] = None,
        derivative: str = DEFAULT_DERIVATIVE,
        derivative_qu: Optional[str] = None,
    ) -> None:
        self.source = str(source) if source is not None else "observation"
        src = self.source
        self.line = get_line(line)
        self.unit = str(unit)

        cube = stokes if isinstance(stokes, np.memmap) else np.asarray(stokes)
        if cube.ndim not in (4, 5):
            raise HashwfaError(
                f"{src}: Stokes cube has shape {cube.shape} ({cube.ndim} dimensions); expected 4 "
                "dimensions (ny, nx, 4, nw) with I, Q, U, V along axis 2, or 5 (nt, ny, nx, 4, nw) "
                "for a time series"
            )
        lead = cube.ndim - 4  # 1 for a series: the time axis comes first
        if cube.shape[lead + 2] != 4:
            hint = ""
            if cube.shape[lead] == 4:
                order = "(4, nw, ny, nx)" if lead == 0 else "(nt, 4, nw, ny, nx)"
                axes = "(2, 3, 0, 1)" if lead == 0 else "(0, 3, 4, 1, 2)"
                hint = f" (a {order} cube converts with np.transpose(cube, {axes}))"
            layout = "(ny, nx, 4, nw)" if lead == 0 else "(nt, ny, nx, 4, nw)"
            raise HashwfaError(
                f"{src}: Stokes cube has shape {cube.shape}; its Stokes axis (axis {lead + 2}) has length "
                f"{cube.shape[lead + 2]}, expected 4 (I, Q, U, V) in shape {layout}{hint}"
            )
        if not np.issubdtype(cube.dtype, np.number):
            raise HashwfaError(f"{src}: Stokes cube has dtype {cube.dtype}; expected a float array")
        #: True when :attr:`stokes` is the cube mapped from its file (read frame by frame).
        self.is_lazy = isinstance(cube, np.memmap)
        if self.is_lazy:
            self.stokes = cube
        else:
            if cube.dtype != np.float64:  # the float64 copy is the largest allocation of a FITS cube
                check_fits_in_memory(cube.size * 8, f"{src}: the float64 copy of the cube {cube.shape}",
                                     "crop the cube to the region of interest")
            self.stokes = np.asarray(cube, dtype=np.float64)
        self._dI: Optional[np.ndarray] = None
        self._released = False
        #: How dI/dlambda and d^2I/dlambda^2 are estimated (:data:`hashwfa.wfa.physics.weak_field.DERIVATIVES`).
        self.derivative: str = check_derivative(derivative, f"{src}: derivative")
        #: How d^2I/dlambda^2 (the Q/U model) is estimated.
        self.derivative_qu: str = check_derivative(derivative if derivative_qu is None else derivative_qu,
                                                   f"{src}: derivative_qu")
        self._operators: Optional[Tuple[np.ndarray, Optional[np.ndarray]]] = None
        ny, nx, _, nw = self.stokes.shape[lead:]
        map_shape = self.stokes.shape[:-2]
        if min(map_shape) < 1:
            raise HashwfaError(f"{src}: Stokes cube has shape {cube.shape}; it has no pixels")
        #: What the reader assumed or left out, one sentence each (e.g. SST cavity maps).
        self.notes: list = []
        self.map_cards: Tuple[Tuple[str, Any, str], ...] = tuple(tuple(card) for card in map_cards)  # type: ignore[misc]
        self.times: Optional[np.ndarray] = None
        if times is not None:
            if lead == 0:
                raise HashwfaError(f"{src}: frame times given for a single frame; times are only for a "
                                   "series (nt, ny, nx, 4, nw)")
            tt = np.asarray(times, dtype=np.float64).reshape(-1)
            if tt.shape != (map_shape[0],) or not np.all(np.isfinite(tt)) or not np.all(np.diff(tt) > 0):
                raise HashwfaError(
                    f"{src}: frame times {np.asarray(times).tolist()!r}; expected {map_shape[0]} finite, "
                    "strictly increasing values in seconds, one per frame"
                )
            self.times = tt

        wl = np.asarray(wavelengths, dtype=np.float64) if np.ndim(wavelengths) else np.asarray([wavelengths], float)
        if wl.ndim != 1 or wl.shape[0] != nw:
            hint = ""
            if wl.ndim == 1 and cube.shape[0] == 4 and cube.shape[1] == wl.shape[0]:
                hint = (" (the cube looks like (4, nw, ny, nx); convert it with "
                        "np.transpose(cube, (2, 3, 0, 1)))")
            raise HashwfaError(
                f"{src}: wavelengths have shape {wl.shape} but the Stokes cube {cube.shape} has "
                f"nw = {nw} wavelengths (axis 3); expected wavelengths of shape ({nw},){hint}"
            )
        if nw < 2:
            raise HashwfaError(f"{src}: the cube has {nw} wavelength; dI/dlambda needs at least 2 (ideally 3+)")
        if not np.all(np.isfinite(wl)):
            raise HashwfaError(f"{src}: wavelengths contain NaN or infinite values; all {nw} must be finite")
        steps = np.diff(wl)
        if not np.all(steps > 0):
            k = int(np.argmax(steps <= 0))
            raise HashwfaError(
                f"{src}: wavelengths are not strictly increasing (index {k}: {wl[k]:.6g} then "
                f"{k + 1}: {wl[k + 1]:.6g}); sort the wavelengths and the cube's axis 3 together "
                "and drop duplicates"
            )
        self.wavelengths, self.wavelength_reference = relative_wavelengths(wl, self.line, src)

        if active_indices is None:
            active_indices = range(nw)
        try:
            idx = [int(i) for i in active_indices]
            if any(int(i) != i for i in active_indices):
                raise ValueError
        except (TypeError, ValueError):
            raise HashwfaError(
                f"{src}: active_indices = {active_indices!r}; expected a list of integer wavelength indices"
            ) from None
        if not idx:
            raise HashwfaError(f"{src}: active_indices is empty; give at least one index in 0..{nw - 1}")
        bad = [i for i in idx if not 0 <= i < nw]
        if bad:
            centre = int(np.argmin(np.abs(self.wavelengths)))
            around = sorted({min(max(centre + k, 0), nw - 1) for k in (-1, 0, 1)})
            raise HashwfaError(
                f"{src}: active_indices {tuple(idx)} out of range: {bad} not in 0..{nw - 1} "
                f"for nw = {nw} wavelengths. Fix: use 0-based indices in 0..{nw - 1} (in a config: "
                f"data.active_indices), e.g. {around}, the wavelengths around the line centre"
            )
        if len(set(idx)) != len(idx):
            raise HashwfaError(f"{src}: active_indices {tuple(idx)} repeat an index; list each once")
        self.active_indices: Tuple[int, ...] = tuple(sorted(idx))
        self.weights: Tuple[float, float, float, float] = _as_float_tuple(weights, 4, "weights", src)  # type: ignore[assignment]
        _check_weights(self.weights, src)

        if mask is None:
            user_mask = np.ones(map_shape, dtype=bool)
        else:
            user_mask = np.asarray(mask)
            if user_mask.shape != map_shape and user_mask.shape != (ny, nx):
                also = f" or {map_shape}" if lead else ""
                raise HashwfaError(
                    f"{src}: mask has shape {user_mask.shape}; expected ({ny}, {nx}){also} like the cube's "
                    "leading axes (True = use the pixel)"
                )
            user_mask = np.broadcast_to(user_mask.astype(bool), map_shape)
        self.mask = user_mask

        continuum: Optional[np.ndarray] = None
        if valid is not None:
            given = np.asarray(valid)
            if given.dtype != bool or given.size != int(np.prod(map_shape)):
                raise HashwfaError(f"{src}: valid has shape {given.shape} and dtype {given.dtype}; expected a "
                                   f"bool array of {map_shape} (the valid pixels)")
            self.valid = given.reshape(-1) & user_mask.reshape(-1)
            self.n_nonfinite: Optional[int] = None
            self.n_absurd: Optional[int] = None
        else:
            finite, sane, continuum = self._scan_values()
            self.n_nonfinite = int(np.count_nonzero(~finite))
            self.n_absurd = int(np.count_nonzero(finite & ~sane))
            self.valid = (sane & user_mask).reshape(-1)
        if self.n_nonfinite:
            warnings.warn(
                f"{src}: {self.n_nonfinite} of {self.valid.size} pixels have NaN or infinite values at the "
                "wavelengths the WFA uses; they are left out of every fit (the pixel-wise WFA "
                "reports NaN there)",
                stacklevel=2,
            )
        if self.n_absurd:
            first = ", ".join(f"{axis}={i}" for axis, i in zip("tyx"[-finite.ndim:], np.argwhere(finite & ~sane)[0]))
            warnings.warn(
                f"{src}: {self.n_absurd} of {self.valid.size} pixels have absurd values at the wavelengths "
                f"the WFA uses (beyond float32, or over {ABSURD_FACTOR:g} x the median |I|; the first "
                f"at {first}); they are left out of every fit like NaN pixels",
                stacklevel=2,
            )
        if not self.valid.any():
            raise HashwfaError(
                f"{src}: no valid pixel: all {self.valid.size} pixels are masked out or have NaN/inf or absurd values; "
                "check the mask and the data"
            )
        if intensity_scale is not None:
            scale = float(intensity_scale)
            if not (np.isfinite(scale) and scale > 0):
                raise HashwfaError(f"{src}: intensity_scale = {intensity_scale!r}; expected a positive finite "
                                   "number (the divisor of the cube for the fit), or None to derive it from the data")
        else:
            if continuum is None:  # the valid pixels were given: read the continuum only
                continuum = self._continuum()
            scale = intensity_scale_of(self._median_continuum(continuum))
        #: The cube divided by this is what the WFA reads (:meth:`wfa_inputs`): a power of two near
        #: the median continuum intensity, in the cube's unit (1.0 for data in continuum units).
        self.intensity_scale: float = scale

    def _scan_values(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(finite, sane, continuum)``: ``map_shape`` bool where the values the WFA reads are finite,
        and sane, and each pixel's continuum (:meth:`_frame_continuum`).

        One pass over the frames (see the module docstring). Kept meanwhile:
        per pixel the largest |I| and |Q, U, V| read, and the |I| values of
        the finite pixels for the median (in float32 when the cube is float32
        or narrower: exact, half the memory).
        """
        needed_i = self._needed_intensity()
        act = list(self.active_indices)
        exact32 = np.issubdtype(self.stokes.dtype, np.floating) and self.stokes.dtype.itemsize <= 4
        store = np.float32 if exact32 else np.float64
        shape = self.map_shape
        frame_shape = shape[-2:]
        finite = np.empty(shape, dtype=bool)
        peak_i = np.empty(shape, dtype=store)
        peak_quv = np.empty(shape, dtype=store)
        magnitudes = np.empty(self.n_pixels * len(needed_i), dtype=store)
        continuum = np.empty(shape, dtype=store)
        n_values = 0
        for t, view in self.frame_views():
            continuum[(t,) if self.is_series else ()] = self._frame_continuum(view)
            used_i = np.asarray(view[..., 0, needed_i], dtype=np.float64)
            used_quv = np.asarray(view[..., 1:, act], dtype=np.float64)
            fin = np.all(np.isfinite(used_i), axis=-1) & np.all(np.isfinite(used_quv), axis=(-2, -1))
            where = (t,) if self.is_series else ()
            finite[where] = fin
            with np.errstate(invalid="ignore", over="ignore"):
                peak_i[where] = np.max(np.abs(used_i), axis=-1)
                peak_quv[where] = np.max(np.abs(used_quv), axis=(-2, -1))
            values = np.abs(used_i[fin]).reshape(-1)
            magnitudes[n_values:n_values + values.size] = values
            n_values += values.size
            del used_i, used_quv
        assert finite.shape == shape and frame_shape == (self.ny, self.nx)
        limit = float(np.finfo(np.float32).max)
        if n_values:
            scale = _median_in_place(magnitudes[:n_values])
            if scale > 0:
                limit = min(limit, ABSURD_FACTOR * scale)
        del magnitudes
        with np.errstate(invalid="ignore"):
            sane = finite & (peak_i <= limit) & (peak_quv <= limit)
        return finite, sane, continuum

    def _frame_continuum(self, view: np.ndarray) -> np.ndarray:
        """``(ny, nx)`` continuum of one frame: the larger I of the first and last wavelength
        (NaN where both are not finite); float64."""
        ends = np.asarray(view[..., 0, [0, self.nw - 1]], dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: NaN
            return np.nanmax(ends, axis=-1)

    def _continuum(self) -> np.ndarray:
        """``map_shape`` continuum of every pixel (:meth:`_frame_continuum`), one pass over the frames."""
        out = np.empty(self.map_shape)
        for t, view in self.frame_views():
            out[(t,) if self.is_series else ()] = self._frame_continuum(view)
        return out

    def _median_continuum(self, continuum: np.ndarray) -> float:
        """Median of ``continuum`` over the valid pixels where it is finite and positive (NaN: none)."""
        values = np.asarray(continuum).reshape(-1)[self.valid]
        values = values[np.isfinite(values) & (values > 0)]
        return _median_in_place(values) if values.size else float("nan")

    def frame_views(self) -> Iterator[Tuple[int, np.ndarray]]:
        """The cube frame by frame, as stored: ``(t, (ny, nx, 4, nw) view)``; one item for a single frame.

        For a lazy cube (a :class:`numpy.memmap`) each view is in the file's
        dtype and is read when used; once the caller moves on to the next
        frame its pages are let go (:func:`hashwfa.wfa.observation.fits_files.forget_pages`),
        so a pass over the series holds one frame at a time.
        """
        self._check_spectra("frame_views()")
        for t in range(self.nt):
            view = self.stokes[t] if self.is_series else self.stokes
            yield t, view
            if self.is_lazy:
                forget_pages(view)

    def derivative_operators(self) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """``(D1, D2)``, ``(A, nw)`` float64 [1/A, 1/A^2]: dI/dlambda and d^2I/dlambda^2 at the
        active wavelengths as matrices acting on I (:func:`hashwfa.wfa.physics.weak_field.derivative_operators`
        for :attr:`derivative` and :attr:`derivative_qu`); D2 is None when ``nw < 3``. Built once."""
        if self._operators is None:
            self._operators = derivative_operators(self.wavelengths, self.active_indices, self.derivative,
                                                   self.derivative_qu)
        return self._operators

    def _needed_intensity(self) -> list:
        """Sorted wavelength indices of I that the derivatives at the active wavelengths read."""
        if self.derivative == self.derivative_qu == "three_point":
            return sorted({j for i in self.active_indices for j in self._stencil(i, self.nw)})
        d1, d2 = self.derivative_operators()
        used = np.any(d1 != 0, axis=0) if d2 is None else np.any((d1 != 0) | (d2 != 0), axis=0)
        return [int(j) for j in np.flatnonzero(used)]

    @staticmethod
    def _stencil(i: int, nw: int) -> Tuple[int, ...]:
        """Wavelength indices of I that dI/dlambda and d^2I/dlambda^2 at index ``i`` depend on."""
        if nw < 3:
            return tuple(range(nw))
        i = min(max(i, 1), nw - 2)  # the ends use their interior neighbour's stencil
        return (i - 1, i, i + 1)

    # ------------------------------------------------------------------ sizes
    @property
    def is_series(self) -> bool:
        """True for a time series ``(nt, ny, nx, 4, nw)``."""
        return self.stokes.ndim == 5

    @property
    def map_shape(self) -> Tuple[int, ...]:
        """Shape of the maps: ``(ny, nx)``, or ``(nt, ny, nx)`` for a series."""
        return self.stokes.shape[:-2]

    @property
    def nt(self) -> int:
        """Number of frames (1 for a single frame)."""
        return self.stokes.shape[0] if self.is_series else 1

    @property
    def ny(self) -> int:
        """Number of rows (y)."""
        return self.stokes.shape[-4]

    @property
    def nx(self) -> int:
        """Number of columns (x)."""
        return self.stokes.shape[-3]

    @property
    def nw(self) -> int:
        """Number of wavelengths."""
        return self.stokes.shape[-1]

    @property
    def n_pixels(self) -> int:
        """All pixels of the map grid, ``ny * nx`` (times ``nt`` for a series), valid or not."""
        return int(np.prod(self.map_shape))

    @property
    def n_valid(self) -> int:
        """Number of valid pixels."""
        return int(np.count_nonzero(self.valid))

    @property
    def valid_index(self) -> np.ndarray:
        """``(P,)`` int64 flat indices (row-major over :attr:`map_shape`) of the valid pixels."""
        return np.flatnonzero(self.valid).astype(np.int64)

    def footprint(self) -> np.ndarray:
        """``map_shape`` bool: the pixels inside the data's footprint, where the maps mean something.

        Outside are the invalid pixels (:attr:`valid`: NaN, absurd or masked
        out) connected to the image border through invalid pixels, frame by
        frame (4-neighbours): the corners of a derotated field, a cropped
        edge. Invalid pixels enclosed by valid ones (an isolated bad pixel, a
        masked spot) are inside: a neural field fills them from their
        surroundings. All True when every pixel is valid.
        """
        valid = self.valid.reshape(self.map_shape)
        inside = np.ones(self.map_shape, dtype=bool)
        if valid.all():
            return inside
        from scipy import ndimage

        for t in range(self.nt):  # frames: a few, each labelled in one vectorised pass
            where = (t,) if self.is_series else ()
            labels, _ = ndimage.label(~valid[where])  # 4-connected invalid regions
            edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
            inside[where] = ~np.isin(labels, np.unique(edge[edge > 0]))
        return inside

    @property
    def active_wavelengths(self) -> np.ndarray:
        """``(A,)`` active wavelengths relative to line centre [A]."""
        return self.wavelengths[list(self.active_indices)]

    def frame(self, t: int) -> "Observation":
        """Frame ``t`` of a series as a single-frame :class:`Observation`
        (same wavelengths, line, active indices, weights, unit and
        :attr:`intensity_scale`; the frame's mask; a view of the cube, not a copy).

        Raises:
            HashwfaError: for a single frame, or ``t`` outside ``0..nt-1``.
        """
        if not self.is_series:
            raise HashwfaError(f"{self.source}: not a series; frame() needs a (nt, ny, nx, 4, nw) cube")
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < self.nt:
            raise HashwfaError(f"{self.source}: frame {t!r} out of range 0..{self.nt - 1}")
        self._check_spectra("frame()")
        when = f", t = {self.times[t]:g} s" if self.times is not None else ""
        with warnings.catch_warnings():
            # The series already reported its non-finite pixels once.
            warnings.simplefilter("ignore", UserWarning)
            return Observation(self.stokes[t], self.wavelengths, line=self.line, active_indices=self.active_indices,
                               weights=self.weights, mask=self.mask[t], source=f"{self.source} [frame {t}{when}]",
                               unit=self.unit, map_cards=self.map_cards, intensity_scale=self.intensity_scale,
                               derivative=self.derivative, derivative_qu=self.derivative_qu)

    def with_stokes(self, stokes: np.ndarray, source: str, valid: Optional[np.ndarray] = None) -> "Observation":
        """The same observation with another cube of the same shape (e.g. a bootstrap member's noise redraw).

        Wavelengths, line, active indices, weights, mask, unit, frame times,
        map cards, derivatives and :attr:`intensity_scale` are this observation's (a
        noise redraw must not change the scale of the fit); ``stokes`` (an array or a
        :class:`numpy.memmap`) and ``valid`` are as for :class:`Observation`.

        Raises:
            HashwfaError: ``stokes`` has another shape; and what :class:`Observation` checks.
        """
        if tuple(np.shape(stokes)) != tuple(self.stokes.shape):
            raise HashwfaError(f"{source}: cube of shape {np.shape(stokes)}; expected {self.stokes.shape} "
                               f"like {self.source}")
        return Observation(stokes, self.wavelengths, line=self.line, active_indices=self.active_indices,
                           weights=self.weights, mask=self.mask, source=source, unit=self.unit, times=self.times,
                           map_cards=self.map_cards, valid=valid, intensity_scale=self.intensity_scale,
                           derivative=self.derivative, derivative_qu=self.derivative_qu)

    # ------------------------------------------------------------------ views
    def coordinates(self, index: Optional[np.ndarray] = None) -> np.ndarray:
        """Pixel-centre coordinates, ``np.float32 (n_pixels, D)``: columns (y, x),
        or (t, y, x) for a series; with ``index`` (flat pixel indices), only
        those rows ``(len(index), D)``, made without the whole grid.

        Pixel centres are spread evenly over [-1, 1] along each spatial axis
        (first pixel at -1, last at +1; 0 for an axis of length 1), rows in
        row-major order like :attr:`valid`. The time coordinate maps the
        first frame to -1 and the last to +1, in proportion to the frame
        times when they are known (evenly spaced otherwise).
        """
        def axis(n: int) -> np.ndarray:
            return np.linspace(-1.0, 1.0, n) if n > 1 else np.zeros(1)

        axes = [axis(self.ny), axis(self.nx)]
        if self.is_series:
            t = axis(self.nt)
            if self.times is not None and self.nt > 1:
                t = 2.0 * (self.times - self.times[0]) / (self.times[-1] - self.times[0]) - 1.0
            axes.insert(0, t)
        if index is not None:
            index = np.asarray(index, dtype=np.int64).reshape(-1)
            out = np.empty((index.size, len(axes)), dtype=np.float32)
            step = 1 << 20  # the integer and float64 temporaries stay this many rows long
            for start in range(0, index.size, step):
                where = np.unravel_index(index[start:start + step], self.map_shape)
                for k, (a, i) in enumerate(zip(axes, where)):
                    out[start:start + i.size, k] = a[i]
            return out
        grids = np.meshgrid(*axes, indexing="ij")
        return np.stack([g.reshape(-1) for g in grids], axis=1).astype(np.float32)

    @property
    def holds_spectra(self) -> bool:
        """False once :meth:`release_spectra` has let the cube go (only the shapes and the valid mask remain)."""
        return not self._released

    def release_spectra(self) -> None:
        """Let the cube (and the cached dI/dlambda) go, keeping the shapes, mask and valid pixels.

        For a data-parallel rank other than 0, once its loss holds its shard
        of the points: a cube in memory frees ``n_pixels x 4 x nw x 8`` bytes;
        a lazy cube lets its file mapping go. :attr:`stokes` becomes a read-only
        NaN array of the same shape that occupies one element (zero strides),
        so :attr:`map_shape`, :meth:`coordinates` and :attr:`valid_index`
        still work; what needs the spectra raises :class:`HashwfaError`.
        """
        self.stokes = np.broadcast_to(np.array(np.nan), self.stokes.shape)
        self._dI = None
        self._released = True

    def _check_spectra(self, what: str) -> None:
        if not self.holds_spectra:
            raise HashwfaError(f"{self.source}: {what} needs the spectra, which this process released "
                               "(release_spectra: a data-parallel rank other than 0)")

    @property
    def flat_stokes(self) -> np.ndarray:
        """``(n_pixels, 4, nw)`` view of the cube, pixels in row-major order over :attr:`map_shape`
        (for a lazy cube: in the file's dtype, a copy when the file's order is not this one)."""
        self._check_spectra("flat_stokes")
        return self.stokes.reshape(self.n_pixels, 4, self.nw)

    def intensity_derivative(self) -> np.ndarray:
        """dI/dlambda ``map_shape + (nw,)`` [intensity/A, the cube's unit / :attr:`intensity_scale`]
        by :attr:`derivative` (NaN/inf only where I is not finite; with the spline, at every
        wavelength of such a pixel).

        Of the whole cube, kept (float64, ``n_pixels x nw x 8`` bytes, also
        for a lazy cube); the fit reads :meth:`wfa_inputs` instead.
        """
        self._check_spectra("intensity_derivative")
        if self._dI is None:
            with np.errstate(invalid="ignore", over="ignore"):
                intensity = np.asarray(self.stokes[..., 0, :], dtype=np.float64)
                if self.intensity_scale != 1.0:
                    intensity = intensity * (1.0 / self.intensity_scale)
                self._dI = derivatives_at(intensity, self.wavelengths, None, self.derivative, second=False)[0]
        return self._dI

    def wfa_inputs(self, rows: Optional[slice] = None) -> WFAInputs:
        """The valid pixels' dI/dlambda, d^2I/dlambda^2 and Q, U, V at the active wavelengths (float64),
        of the cube divided by :attr:`intensity_scale`.

        Computed from the valid pixels only, with non-finite values at
        wavelengths the WFA does not read zeroed first, so no NaN or inf
        reaches the result. The chunks of :meth:`wfa_input_chunks`, joined.

        Args:
            rows: keep only these rows (``start:stop``) of the valid pixels
                (a rank's shard, :func:`hashwfa.training.distributed.shard_rows`);
                only their spectra are read and copied, so the float64 copies
                are ``rows``-sized, not ``n_valid``-sized. None: all valid pixels.
        """
        chunks = self.wfa_input_chunks(rows)
        first = next(chunks)
        n = self.n_valid if rows is None else len(self.valid_index[rows])
        if first.index.shape[0] == n:  # one chunk: a single frame, or rows within one frame
            return first
        out = WFAInputs(
            index=np.empty(n, dtype=np.int64),
            dI_dlambda=np.empty((n,) + first.dI_dlambda.shape[1:]),
            d2I_dlambda2=None if first.d2I_dlambda2 is None else np.empty((n,) + first.d2I_dlambda2.shape[1:]),
            q=np.empty((n,) + first.q.shape[1:]),
            u=np.empty((n,) + first.u.shape[1:]),
            v=np.empty((n,) + first.v.shape[1:]),
            wavelengths=first.wavelengths,
        )
        done = 0
        for chunk in itertools.chain([first], chunks):
            part = slice(done, done + chunk.index.shape[0])
            done = part.stop
            for name in ("index", "dI_dlambda", "d2I_dlambda2", "q", "u", "v"):
                target = getattr(out, name)
                if target is not None:
                    target[part] = getattr(chunk, name)
        return out

    def wfa_input_chunks(self, rows: Optional[slice] = None) -> Iterator[WFAInputs]:
        """:meth:`wfa_inputs` frame by frame: one :class:`WFAInputs` per frame that has rows (in order).

        Only the spectra of those rows are read (for a lazy cube, from the
        frames they lie in), so a caller that consumes one chunk at a time
        holds one frame's spectra in float64. A single frame is one chunk;
        a series with no row in a frame gives nothing for it, and no row at
        all gives one empty chunk.
        """
        self._check_spectra("wfa_inputs")
        index = self.valid_index if rows is None else self.valid_index[rows]
        per_frame = self.ny * self.nx
        frames = index // per_frame
        bounds = np.flatnonzero(np.diff(frames)) + 1
        starts = np.concatenate([[0], bounds]).astype(np.int64)
        stops = np.concatenate([bounds, [index.size]]).astype(np.int64)
        if index.size == 0:
            starts, stops = np.zeros(1, np.int64), np.zeros(1, np.int64)
        for start, stop in zip(starts, stops):
            part = index[start:stop]
            t = int(frames[start]) if part.size else 0
            view = self.stokes[t] if self.is_series else self.stokes
            ys, xs = np.divmod(part - t * per_frame, self.nx)
            spectra = np.asarray(view[ys, xs], dtype=np.float64)  # (p, 4, nw): only these pixels (a copy)
            if self.intensity_scale != 1.0:  # a power of two: exact
                if not spectra.flags.writeable:
                    spectra = spectra.copy()
                spectra *= 1.0 / self.intensity_scale
            if self.is_lazy:
                forget_pages(view)
            yield self._inputs_from(part, spectra)

    def _inputs_from(self, index: np.ndarray, spectra: np.ndarray) -> WFAInputs:
        """:class:`WFAInputs` of the pixels ``index`` from their float64 spectra ``(P, 4, nw)``."""
        act = list(self.active_indices)
        intensity = spectra[:, 0, :]
        intensity = np.where(np.isfinite(intensity), intensity, 0.0)
        plain = self.derivative == self.derivative_qu == "three_point"
        dI, d2I = derivatives_at(intensity, self.wavelengths, act, self.derivative,
                                 operators=None if plain else self.derivative_operators(),
                                 method_qu=self.derivative_qu)
        return WFAInputs(
            index=index,
            dI_dlambda=np.ascontiguousarray(dI),
            d2I_dlambda2=None if d2I is None else np.ascontiguousarray(d2I),
            q=np.ascontiguousarray(spectra[:, 1, act]),
            u=np.ascontiguousarray(spectra[:, 2, act]),
            v=np.ascontiguousarray(spectra[:, 3, act]),
            wavelengths=self.active_wavelengths,
        )

    def __repr__(self) -> str:
        frames = f"nt={self.nt}, " if self.is_series else ""
        return (
            f"Observation({self.source!r}, shape=({frames}ny={self.ny}, nx={self.nx}, 4, nw={self.nw}), "
            f"line={self.line.name}, active={self.active_indices}, valid={self.n_valid}/{self.n_pixels})"
        )

    # ------------------------------------------------------------------ FITS
    def write_fits(
        self,
        stokes_path: PathLike,
        wavelengths_path: PathLike,
        overwrite: bool = False,
        header: Optional[Dict[str, Any]] = None,
        dtype: Any = np.float32,
    ) -> Tuple[Path, Path]:
        """Write the cube and the wavelengths as two FITS files (:func:`hashwfa.wfa.observation.stokes_fits.write_stokes_fits`).

        Returns the two paths. Raises :class:`HashwfaError` when a file
        exists and ``overwrite`` is False.
        """
        return write_stokes_fits(self.stokes, self.wavelengths, self.line, stokes_path, wavelengths_path,
                                 unit=self.unit, active_indices=self.active_indices, weights=self.weights,
                                 mask=self.mask, times=self.times if self.is_series else None,
                                 overwrite=overwrite, header=header, dtype=dtype)

    @classmethod
    def from_fits(
        cls,
        stokes_path: PathLike,
        wavelengths_path: PathLike,
        line: Union[None, str, SpectralLine, Dict[str, Any]] = None,
        active_indices: Optional[Sequence[int]] = None,
        weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        mask: Optional[np.ndarray] = None,
        axis_order: str = "auto",
        lazy: bool = True,
        valid: Optional[np.ndarray] = None,
        intensity_scale: Optional[float] = None,
        derivative: str = DEFAULT_DERIVATIVE,
        derivative_qu: Optional[str] = None,
    ) -> "Observation":
        """Read an observation from a Stokes-cube FITS file and a wavelengths FITS file.

        The files, ``line`` and ``axis_order`` are read as
        :func:`hashwfa.wfa.observation.stokes_fits.read_stokes_fits` says; ``active_indices``,
        ``weights`` and ``mask`` are as for :class:`Observation` (``mask``
        overrides a MASK extension). ``lazy`` (the default) maps the cube
        from the file instead of reading it (see the module docstring; a
        cube that cannot be mapped is read, with a note in :attr:`notes`);
        False reads it into memory as float64. ``valid``, ``intensity_scale``, ``derivative``,
        ``derivative_qu``: as for :class:`Observation`.

        Raises:
            HashwfaError: what :func:`~hashwfa.wfa.observation.stokes_fits.read_stokes_fits` and
                :class:`Observation` check (messages name the file).
        """
        files = read_stokes_fits(stokes_path, wavelengths_path, line=line, axis_order=axis_order, lazy=lazy)
        try:
            obs = cls(files.stokes, files.wavelengths, line=files.line, active_indices=active_indices,
                      weights=weights, mask=files.mask if mask is None else mask,
                      source=str(files.stokes_path), unit=files.unit, times=files.times,
                      map_cards=files.map_cards, valid=valid, intensity_scale=intensity_scale,
                      derivative=derivative, derivative_qu=derivative_qu)
        except HashwfaError as exc:
            if "wavelength" in str(exc):
                # Name both files: the fix may be in either.
                raise HashwfaError(f"{exc} (wavelengths read from {files.wavelengths_path})") from None
            raise
        obs.notes = list(files.notes)
        return obs

    @classmethod
    def from_sst(
        cls,
        path: PathLike,
        line: Union[None, str, SpectralLine, Dict[str, Any]] = None,
        active_indices: Optional[Sequence[int]] = None,
        weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
        mask: Optional[np.ndarray] = None,
        lazy: bool = True,
        valid: Optional[np.ndarray] = None,
        intensity_scale: Optional[float] = None,
        derivative: str = DEFAULT_DERIVATIVE,
        derivative_qu: Optional[str] = None,
    ) -> "Observation":
        """Read a reduced CRISP/CHROMIS cube of the SST pipeline (:func:`hashwfa.wfa.observation.sst.read_sst_cube`):
        wavelengths and frame times from its ``WCS-TAB`` table, no wavelengths file.

        A cube of one scan gives a single-frame observation, more scans a
        series with the scan times. The cube's spatial WCS and dates are kept
        as :attr:`map_cards`; what the reader assumed or left out (cavity
        maps, a cube read whole) is in :attr:`notes`. ``lazy`` (the default)
        maps the cube from the file (:meth:`hashwfa.wfa.observation.sst.SSTCube.mapped`);
        False reads it (float32, then float64). ``valid``, ``intensity_scale``, ``derivative``,
        ``derivative_qu``: as for :class:`Observation`. The cube may be in any intensity unit
        (BUNIT, e.g. the pipeline's W m^-2 Hz^-1 sr^-1): the fit divides it
        by :attr:`Observation.intensity_scale`.

        Raises:
            HashwfaError: what :func:`~hashwfa.wfa.observation.sst.read_sst_cube` and
                :class:`Observation` check.
        """
        cube = read_sst_cube(path, line=line)
        notes = list(cube.notes)
        if lazy:
            stokes, note = cube.mapped()
            notes += [note] if note else []
        else:
            stokes = cube.read()
        cards = tuple((key, cube.spatial_header[key], cube.spatial_header.comments[key])
                      for key in cube.spatial_header if key not in ("COMMENT", "HISTORY", ""))
        series = cube.nt > 1
        obs = cls(stokes if series else stokes[0], cube.wavelengths, line=cube.line, active_indices=active_indices,
                  weights=weights, mask=mask, source=str(cube.path), unit=cube.unit,
                  times=cube.times if series else None, map_cards=cards, valid=valid,
                  intensity_scale=intensity_scale, derivative=derivative, derivative_qu=derivative_qu)
        obs.notes = notes
        return obs
