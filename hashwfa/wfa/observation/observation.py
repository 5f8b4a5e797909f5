"""Observations: a Stokes cube, its wavelengths, the line, and what to fit.

In memory the cube is a numpy array ``(ny, nx, 4, nw)``: rows y, columns x,
Stokes I, Q, U, V, wavelengths, or for a time series ``(nt, ny, nx, 4, nw)``
with optional frame times; the wavelengths are Angstrom relative to the
line centre. Files (the cube and its wavelengths as two FITS files, and the
SSTRED/CRISPEX order) are read and written by :mod:`hashwfa.wfa.observation.stokes_fits`; SST
pipeline cubes (wavelengths and times inside) by :mod:`hashwfa.wfa.observation.sst`.

A pixel is *valid* when the user's mask allows it and every value the WFA
uses there is finite and sane (:mod:`hashwfa.wfa.observation.pixel_scan`).
Invalid pixels are left out of every loss and estimate; their count is
reported once, when the observation is built.

**Intensity scale.** Any intensity unit works (the continuum intensity,
counts, W m^-2 Hz^-1 sr^-1 ...): the WFA inputs (:meth:`Observation.wfa_inputs`,
:meth:`Observation.intensity_derivative`) are the cube divided by
:attr:`Observation.intensity_scale`, the power of two nearest the median
continuum intensity (:func:`~hashwfa.wfa.observation.pixel_scan.intensity_scale_of`; the continuum of a pixel is
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
from typing import Any, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np

from hashwfa.errors import HashwfaError
from hashwfa.host.memory import check_fits_in_memory
from hashwfa.wfa.observation.fits_files import PathLike, forget_pages
from hashwfa.wfa.observation.stokes_fits import read_stokes_fits, write_stokes_fits
from hashwfa.wfa.physics.lines import SpectralLine, get_line
from hashwfa.wfa.physics.weak_field import DEFAULT_DERIVATIVE, check_derivative, derivative_operators, derivatives_at
from hashwfa.wfa.observation.arguments import (checked_active_indices, checked_cube_layout, checked_mask, checked_times,
                                               checked_wavelengths, checked_weights)
from hashwfa.wfa.observation.fingerprint import data_fingerprint, file_state
from hashwfa.wfa.observation.pixel_scan import (frame_continuum, intensity_scale_of, median_continuum,
                                                report_invalid_pixels, scan_pixels)
from hashwfa.wfa.observation.sst import read_sst_cube
from hashwfa.wfa.observation.wavelengths import relative_wavelengths
from hashwfa.wfa.observation.wfa_inputs import WFAInputs, wfa_inputs_from



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
        lead = checked_cube_layout(cube, src)  # 1 for a series: the time axis comes first
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
        #: For a lazy cube: its file and the (size, mtime_ns) it had when mapped (checked before each pass).
        self._file = getattr(self.stokes, "filename", None) if self.is_lazy else None
        self._file_state = file_state(self._file) if self._file else None
        ny, nx, _, nw = self.stokes.shape[lead:]
        map_shape = self.stokes.shape[:-2]
        if min(map_shape) < 1:
            raise HashwfaError(f"{src}: Stokes cube has shape {cube.shape}; it has no pixels")
        #: What the reader assumed or left out, one sentence each (e.g. SST cavity maps).
        self.notes: list = []
        self.map_cards: Tuple[Tuple[str, Any, str], ...] = tuple(tuple(card) for card in map_cards)  # type: ignore[misc]

        self.times = checked_times(times, map_shape, lead, src)
        wl = checked_wavelengths(wavelengths, cube.shape, nw, src)
        self.wavelengths, self.wavelength_reference = relative_wavelengths(wl, self.line, src)

        self.active_indices: Tuple[int, ...] = checked_active_indices(active_indices, self.wavelengths, src)
        self.weights: Tuple[float, float, float, float] = checked_weights(weights, src)

        user_mask = checked_mask(mask, map_shape, src)
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
            #: Frames (indices) without signal: Stokes I one constant (e.g. all zeros); () when not scanned.
            self.blank_frames: Tuple[int, ...] = ()
        else:
            scan = scan_pixels(self.frame_views(), self.map_shape, self._needed_intensity(), self.active_indices,
                               self.stokes.dtype)
            finite, sane, continuum = scan.finite, scan.sane, scan.continuum
            self.blank_frames = scan.blank_frames
            self.n_nonfinite = int(np.count_nonzero(~finite))
            self.n_absurd = int(np.count_nonzero(finite & ~sane))
            self.valid = (sane & user_mask).reshape(-1)
        report_invalid_pixels(src, self.valid, self.blank_frames, self.nt, self.n_nonfinite, self.n_absurd,
                              None if valid is not None else scan)
        if intensity_scale is not None:
            scale = float(intensity_scale)
            if not (np.isfinite(scale) and scale > 0):
                raise HashwfaError(f"{src}: intensity_scale = {intensity_scale!r}; expected a positive finite "
                                   "number (the divisor of the cube for the fit), or None to derive it from the data")
        else:
            if continuum is None:  # the valid pixels were given: read the continuum only
                continuum = np.empty(self.map_shape)
                for t, view in self.frame_views():
                    continuum[(t,) if self.is_series else ()] = frame_continuum(view)
            scale = intensity_scale_of(median_continuum(continuum, self.valid))
        #: The cube divided by this is what the WFA reads (:meth:`wfa_inputs`): a power of two near
        #: the median continuum intensity, in the cube's unit (1.0 for data in continuum units).
        self.intensity_scale: float = scale

    def frame_views(self) -> Iterator[Tuple[int, np.ndarray]]:
        """The cube frame by frame, as stored: ``(t, (ny, nx, 4, nw) view)``; one item for a single frame.

        For a lazy cube (a :class:`numpy.memmap`) each view is in the file's
        dtype and is read when used; once the caller moves on to the next
        frame its pages are let go (:func:`hashwfa.wfa.observation.fits_files.forget_pages`),
        so a pass over the series holds one frame at a time.
        """
        self._check_spectra("frame_views()")
        self.check_file_unchanged()
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
    def check_file_unchanged(self) -> None:
        """Raise when the file a lazy cube is mapped from changed since it was mapped (a no-op otherwise).

        A mapped file that is truncated ends the process with SIGBUS when a
        page past its new end is read, and one rewritten in place gives other
        data than those scanned; the size and modification time, read before
        each pass over the data, catch both when they happen between passes.

        Raises:
            HashwfaError: the file's size or modification time changed, or it is gone.
        """
        if self._file is None:
            return
        now = file_state(self._file)
        if now != self._file_state:
            what = "is gone" if now is None else (
                f"was truncated to {now[0]} bytes (from {self._file_state[0]})" if now[0] < self._file_state[0]
                else "was rewritten")
            raise HashwfaError(f"{self._file}: the cube {what} while this run maps it. Fix: leave the data "
                               "unchanged during a run; restore them and continue with --resume (or start "
                               "again with --overwrite)")

    def fingerprint(self) -> Dict[str, str]:
        """A cheap identity of the data (:func:`~hashwfa.wfa.observation.fingerprint.data_fingerprint`
        of the cube, its wavelengths, mask, times, line, unit and map cards); checks first that a
        mapped file did not change."""
        self.check_file_unchanged()
        return data_fingerprint(self.stokes, self.wavelengths, self.mask, self.times,
                                (self.line.name, self.line.center, self.unit, self.map_cards), self.is_lazy)

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
        self.check_file_unchanged()
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
        plain = self.derivative == self.derivative_qu == "three_point"
        return wfa_inputs_from(index, spectra, self.wavelengths, self.active_indices, self.derivative,
                               self.derivative_qu, None if plain else self.derivative_operators())

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
