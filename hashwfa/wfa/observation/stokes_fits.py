"""Observation files: a Stokes cube and its wavelengths as two FITS files.

On disk (:func:`write_stokes_fits`) the cube is the primary image of a FITS
file in numpy order ``(ny, nx, 4, nw)``: rows y, columns x, Stokes I, Q, U,
V, wavelengths, i.e. in FITS terms ``NAXIS1 = nw`` (wavelength, fastest),
``NAXIS2 = 4`` (Stokes, ``CTYPE2 = 'STOKES'``, 1..4 = I, Q, U, V), ``NAXIS3 =
nx``, ``NAXIS4 = ny``; the header keyword ``HWAXES = 'Y,X,STOKES,WAVE'``
records it. The wavelengths are the 1-D primary image of a second FITS file,
in Angstrom relative to the line centre (``BUNIT = 'Angstrom'``, ``WAVEREF =
'LINE_CENTRE'``). :func:`read_stokes_fits` also reads the SSTRED/CRISPEX
order (numpy ``(4, nw, ny, nx)``, optionally with a leading time axis of
length 1), wavelengths in nm, mA or absolute, and says what it assumed.

A time series is the same with a leading time axis: numpy ``(nt, ny, nx, 4,
nw)`` (``NAXIS5 = nt``, ``HWAXES = 'T,Y,X,STOKES,WAVE'``), the frame times,
when known, in a binary-table extension ``TIMES`` (column ``TIME``, seconds,
since the header's ``DATEREF`` when it has one); the SSTRED order ``(nt, 4,
nw, ny, nx)`` is read too. The spatial WCS of the image axes (FITS axes 3
and 4 of this layout, 1 and 2 of the SSTRED order) and the observation dates
are returned as cards to carry over into maps made from the cube.
:meth:`hashwfa.wfa.observation.observation.Observation.from_fits` and
:meth:`~hashwfa.wfa.observation.observation.Observation.write_fits` use these.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
from astropy.io import fits

from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.fits_files import OBSERVER_KEYS, PathLike, map_image, provenance_cards, read_image, write_atomic
from hashwfa.wfa.physics.lines import LINES, WAVELENGTH_UNITS, SpectralLine, get_line


__all__ = ["AXES_KEYWORD_VALUE", "SERIES_AXES_KEYWORD_VALUE", "WAVELENGTH_UNITS", "StokesFiles", "read_stokes_fits",
           "times_table", "write_stokes_fits"]

#: Numpy axis order of the cube on disk and in memory (see module docstring).
AXES_KEYWORD_VALUE = "Y,X,STOKES,WAVE"
#: The same for a time series.
SERIES_AXES_KEYWORD_VALUE = "T,Y,X,STOKES,WAVE"
#: Name of the binary-table extension with the frame times of a series, and its column.
TIMES_EXTENSION, TIMES_COLUMN = "TIMES", "TIME"
#: Cards about the observation's date copied into maps made from a cube.
DATE_KEYS = ("DATEREF", "DATE-BEG", "DATE-END", "DATE-AVG", "DATE-OBS", "TELESCOP", "INSTRUME", "OBSRVTRY")
#: Per-axis WCS keywords (without the axis number) carried over for the image axes.
_AXIS_KEYS = ("CTYPE", "CUNIT", "CRPIX", "CRVAL", "CDELT", "CNAME", "CSYER", "CROTA")

#: Finest sampling believed without a stated unit: lambda0 / step above this
#: (6e5; the finest common sampling, Hinode SP's 21.5 mA at 6302 A, is about
#: 3e5) means the numbers are not Angstrom.
MAX_RESOLVING_POWER = 6e5



class StokesFiles(NamedTuple):
    """What a Stokes cube file and its wavelengths file hold.

    Attributes:
        stokes: ``(ny, nx, 4, nw)`` or ``(nt, ny, nx, 4, nw)``, the cube in
            numpy order (I, Q, U, V on the last axis but one).
        wavelengths: ``(nw,)`` float64, Angstrom (relative to the line centre
            unless the file said ``WAVEREF = 'ABSOLUTE'`` -- then already
            converted -- or the values are absolute: the observation converts
            those with a warning).
        line: the observed line.
        mask: ``(ny, nx)`` bool from a ``MASK`` extension (True = use), or None.
        unit: the cube's BUNIT ("" if absent).
        stokes_path, wavelengths_path: the files read.
        times: ``(nt,)`` frame times [s] of a series from the ``TIMES``
            table, or None.
        map_cards: ``(keyword, value, comment)`` cards for maps of this cube
            (FITS axes 1 = x, 2 = y): its spatial WCS and dates; may be empty.
        notes: what the reader did that a user may want to know (a cube
            that could not be mapped lazily), one sentence each.
    """

    stokes: np.ndarray
    wavelengths: np.ndarray
    line: SpectralLine
    mask: Optional[np.ndarray]
    unit: str
    stokes_path: Path
    wavelengths_path: Path
    times: Optional[np.ndarray] = None
    map_cards: Tuple[Tuple[str, Any, str], ...] = ()
    notes: Tuple[str, ...] = ()


def read_stokes_fits(
    stokes_path: PathLike,
    wavelengths_path: PathLike,
    line: Union[None, str, SpectralLine, Dict[str, Any]] = None,
    axis_order: str = "auto",
    lazy: bool = False,
) -> StokesFiles:
    """Read a Stokes-cube FITS file and a wavelengths FITS file.

    Args:
        stokes_path: FITS file whose primary image is the cube; numpy
            order ``(ny, nx, 4, nw)`` (this package's layout) or
            ``(4, nw, ny, nx)`` (SSTRED/CRISPEX; a leading time axis of
            length 1 is dropped), or a series ``(nt, ny, nx, 4, nw)`` /
            ``(nt, 4, nw, ny, nx)``. A ``MASK`` image extension and a
            ``TIMES`` table (series) are read.
        wavelengths_path: FITS file whose primary image is the ``(nw,)``
            wavelengths. Unit from BUNIT (nm and mA are converted);
            without a unit Angstrom, unless the steps are then implausibly
            fine (:data:`MAX_RESOLVING_POWER`), which is an error asking
            for BUNIT. ``WAVEREF = 'ABSOLUTE'`` is converted here.
        line: the line; None takes the cube's LINE header keyword (a
            line this package does not know is rebuilt from LINECEN,
            LINEJ1/J2/G1/G2), else ``"5173"``. A line given here must
            agree with a LINE keyword in the cube's header.
        axis_order: ``"auto"`` (header HWAXES, else the shape decides),
            ``"yxsw"`` for ``(ny, nx, 4, nw)`` or ``"swyx"`` for
            ``(4, nw, ny, nx)`` (each with a leading time axis for a series).
        lazy: map the cube from the file instead of reading it
            (:func:`hashwfa.wfa.observation.fits_files.map_image`): ``stokes`` is then a
            read-only :class:`numpy.memmap` view in the file's dtype, in numpy
            order (a transposed view for the SSTRED order), whose pages are
            read when used. A cube that cannot be mapped (integer, scaled,
            compressed) is read whole, with a note in ``notes``.

    Raises:
        HashwfaError: missing or unreadable files, wavelengths that are
            not 1-D, an unknown unit, no unit and steps too fine for
            Angstrom, a shape that fits no layout, a
            ``line`` that contradicts the cube's LINE keyword.
    """
    spath, wpath = Path(stokes_path), Path(wavelengths_path)
    wl, whdr, _ = read_image(wpath, "wavelengths")
    if wl.ndim != 1:
        if wl.size == max(wl.shape, default=0):
            wl = wl.reshape(-1)  # (1, nw) or (nw, 1): an unambiguous 1-D axis
        else:
            raise HashwfaError(
                f"{wpath}: wavelengths image has shape {wl.shape}; expected a 1-D image (nw,) "
                "in the primary HDU"
            )
    wl = wl.astype(np.float64)
    unit_given = "BUNIT" in whdr or "CUNIT1" in whdr
    unit = str(whdr.get("BUNIT", whdr.get("CUNIT1", "Angstrom"))).strip().lower()
    scale = WAVELENGTH_UNITS
    if unit not in scale:
        raise HashwfaError(
            f"{wpath}: wavelength unit BUNIT = {unit!r} is not understood; use 'Angstrom', 'nm' or 'mA'"
        )
    wl = wl * scale[unit]

    notes: Tuple[str, ...] = ()
    if lazy:
        data, shdr, file_mask, note = map_image(spath, "Stokes cube")
        notes = (note,) if note else ()
    else:
        data, shdr, file_mask = read_image(spath, "Stokes cube")
    if line is None:
        line = get_line(_line_from_header(shdr, spath))
    else:
        line = get_line(line)
        _check_header_line(shdr, line, spath)
    if not unit_given:
        _check_sampling_as_angstrom(wl, line, wpath)
    if str(whdr.get("WAVEREF", "")).strip().upper() == "ABSOLUTE":
        wl = wl - line.center
        warnings.warn(f"{wpath}: WAVEREF = 'ABSOLUTE': subtracted the centre of line {line.name} "
                      f"({line.center} A)", stacklevel=3)
    sstred_order = _is_sstred_order(data, shdr, wl.shape[0], axis_order)
    cube = _to_yxsw(data, shdr, wl.shape[0], axis_order, spath)
    mask = file_mask.astype(bool) if file_mask is not None else None
    times = _read_times(spath, cube.shape[0]) if cube.ndim == 5 else None
    image_axes = (1, 2) if sstred_order else (3, 4)
    cards = _map_cards(shdr, *image_axes)
    return StokesFiles(cube, wl, line, mask, str(shdr.get("BUNIT", "")), spath, wpath, times, cards, notes)


def _is_sstred_order(data: np.ndarray, header: fits.Header, nw: int, axis_order: str) -> bool:
    """Whether the cube's image axes are FITS axes 1, 2 (SSTRED order) rather than 3, 4."""
    if axis_order.lower() == "swyx":
        return True
    if axis_order.lower() == "yxsw" or str(header.get("HWAXES", "")).strip():
        return False
    core = data.shape[-4:]
    return data.ndim >= 4 and core[0] == 4 and core[1] == nw and not (core[2] == 4 and core[3] == nw)


def _read_times(path: Path, nt: int) -> Optional[np.ndarray]:
    """The ``TIMES`` table's ``TIME`` column [s] when the file has one, else None."""
    try:
        with fits.open(path, memmap=False) as hdul:
            if TIMES_EXTENSION not in [h.name for h in hdul]:
                return None
            table = hdul[TIMES_EXTENSION]
            if not isinstance(table, fits.BinTableHDU) or TIMES_COLUMN not in table.columns.names:
                raise HashwfaError(f"{path}: extension {TIMES_EXTENSION!r} is not a table with a column "
                                   f"{TIMES_COLUMN!r} (frame times in seconds)")
            times = np.asarray(table.data[TIMES_COLUMN], dtype=np.float64).reshape(-1)
    except (OSError, ValueError, TypeError) as exc:
        if isinstance(exc, HashwfaError):
            raise
        raise HashwfaError(f"{path}: cannot read the {TIMES_EXTENSION} table ({exc})") from None
    if times.shape != (nt,):
        raise HashwfaError(f"{path}: {TIMES_EXTENSION} table has {times.size} times for {nt} frames; "
                           "give one time per frame (seconds)")
    return times


def _map_cards(header: fits.Header, x_axis: int, y_axis: int) -> Tuple[Tuple[str, Any, str], ...]:
    """The spatial WCS of the image axes ``x_axis``, ``y_axis`` renumbered to 1, 2, the date and observer cards."""
    cards = []
    if f"CTYPE{x_axis}" in header or f"CTYPE{y_axis}" in header:
        for new, old in ((1, x_axis), (2, y_axis)):
            for key in _AXIS_KEYS:
                if f"{key}{old}" in header:
                    cards.append((f"{key}{new}", header[f"{key}{old}"], header.comments[f"{key}{old}"]))
        for kind in ("PC", "CD"):
            for i_new, i_old in ((1, x_axis), (2, y_axis)):
                for j_new, j_old in ((1, x_axis), (2, y_axis)):
                    key = f"{kind}{i_old}_{j_old}"
                    if key in header:
                        cards.append((f"{kind}{i_new}_{j_new}", header[key], header.comments[key]))
    for key in DATE_KEYS + OBSERVER_KEYS:
        if key in header:
            cards.append((key, header[key], header.comments[key]))
    return tuple(cards)


def write_stokes_fits(
    stokes: np.ndarray,
    wavelengths: np.ndarray,
    line: SpectralLine,
    stokes_path: PathLike,
    wavelengths_path: PathLike,
    *,
    unit: str,
    active_indices: Sequence[int],
    weights: Sequence[float],
    mask: np.ndarray,
    times: Optional[np.ndarray] = None,
    overwrite: bool = False,
    header: Optional[Dict[str, Any]] = None,
    dtype: Any = np.float32,
) -> Tuple[Path, Path]:
    """Write a Stokes cube and its wavelengths as two FITS files.

    ``stokes``: ``(ny, nx, 4, nw)``, or ``(nt, ny, nx, 4, nw)`` for a series
    (with ``times`` [s], one per frame); ``wavelengths``: ``(nw,)`` [A]
    relative to the line centre; ``unit``: the intensity unit; ``mask``:
    ``(ny, nx)`` bool, True = use; ``active_indices``, ``weights``: the fit's
    wavelengths and Stokes weights, recorded in the header.

    ``stokes_path``: primary image ``(ny, nx, 4, nw)`` in numpy order (see
    the module docstring), ``dtype`` (float32 by default: 7 significant
    digits, far below any noise), BUNIT, the line (LINE, LINECEN [A],
    LINEJ1/J2/G1/G2), ACTIVE indices, WEIGHTS, provenance (ORIGIN,
    HWVERS, DATE) and a ``MASK`` image extension (uint8, 1 = use) when a
    mask excludes pixels. ``wavelengths_path``: primary 1-D float64 image,
    Angstrom relative to the line centre. ``header``: extra cards
    (keyword -> value or (value, comment)) for the cube's header.

    Writes are atomic. Returns the two paths.

    Raises:
        HashwfaError: when a file exists and ``overwrite`` is False.
    """
    series = stokes.ndim == 5
    line_cards = [
        ("LINE", line.name, "spectral line (hashwfa name)"),
        ("LINECEN", line.center, "[Angstrom] line centre wavelength"),
        ("LINEJ1", line.j1, "J of level 1 (lower)"),
        ("LINEJ2", line.j2, "J of level 2 (upper)"),
        ("LINEG1", line.g1, "Lande g of level 1"),
        ("LINEG2", line.g2, "Lande g of level 2"),
    ]
    hdr = fits.Header()
    hdr["BUNIT"] = (unit, "intensity unit (Ic: continuum intensity)")
    if series:
        hdr["HWAXES"] = (SERIES_AXES_KEYWORD_VALUE, "numpy axis order (FITS NAXIS5..NAXIS1)")
    else:
        hdr["HWAXES"] = (AXES_KEYWORD_VALUE, "numpy axis order (FITS NAXIS4..NAXIS1)")
    hdr["CTYPE2"] = ("STOKES", "FITS axis 2 is Stokes: 1..4 = I, Q, U, V")
    hdr["CRPIX2"], hdr["CRVAL2"], hdr["CDELT2"] = 1.0, 1.0, 1.0
    for key, value, comment in line_cards:
        hdr[key] = (value, comment)
    hdr["ACTIVE"] = (",".join(str(i) for i in active_indices), "active wavelength indices (0-based)")
    hdr["WEIGHTS"] = (",".join(f"{w:g}" for w in weights), "loss weights of I, Q, U, V")
    hdr["WAVEFILE"] = (Path(wavelengths_path).name, "file with the wavelength axis")
    for key, value, comment in provenance_cards():
        hdr[key] = (value, comment)
    for key, value in (header or {}).items():
        hdr[key] = value
    if series:
        hdr.add_comment("Axes (numpy order): time, y, x, Stokes (I, Q, U, V), wavelength.")
        hdr.add_comment("FITS order: NAXIS1 = wavelength, NAXIS2 = Stokes, NAXIS3 = x, NAXIS4 = y, NAXIS5 = time.")
    else:
        hdr.add_comment("Axes (numpy order): y, x, Stokes (I, Q, U, V), wavelength.")
        hdr.add_comment("FITS order: NAXIS1 = wavelength, NAXIS2 = Stokes, NAXIS3 = x, NAXIS4 = y.")
    hdus = [fits.PrimaryHDU(stokes.astype(dtype), header=hdr)]
    if not mask.all():
        mhdr = fits.Header()
        mhdr["COMMENT"] = "1 = pixel used by the fit, 0 = masked out by the user"
        hdus.append(fits.ImageHDU(mask.astype(np.uint8), header=mhdr, name="MASK"))
    if series and times is not None:
        hdus.append(times_table(times))

    whdr = fits.Header()
    whdr["BUNIT"] = ("Angstrom", "wavelength unit")
    whdr["WAVEREF"] = ("LINE_CENTRE", "wavelengths are offsets from LINECEN")
    for key, value, comment in line_cards[:2]:
        whdr[key] = (value, comment)
    for key, value, comment in provenance_cards():
        whdr[key] = (value, comment)
    sp = write_atomic(fits.HDUList(hdus), stokes_path, overwrite)
    wp = write_atomic(fits.HDUList([fits.PrimaryHDU(np.asarray(wavelengths).astype(np.float64), header=whdr)]),
                      wavelengths_path, overwrite)
    return sp, wp


def times_table(times: np.ndarray) -> fits.BinTableHDU:
    """The ``TIMES`` binary-table extension: one row per frame, column ``TIME`` [s]."""
    column = fits.Column(name=TIMES_COLUMN, format="D", unit="s", array=np.asarray(times, dtype=np.float64))
    table = fits.BinTableHDU.from_columns([column], name=TIMES_EXTENSION)
    table.header["COMMENT"] = "Frame times of the series, seconds (since DATEREF when the primary header has it)."
    return table


def _line_from_header(header: fits.Header, path: Path) -> Union[str, Dict[str, Any]]:
    """The line named by a cube header: a known name, a definition, or the default 5173."""
    name = header.get("LINE")
    if name is None:
        return "5173"
    name = str(name).strip()
    if name in LINES:
        return name
    keys = ("LINECEN", "LINEJ1", "LINEJ2", "LINEG1", "LINEG2")
    if all(k in header for k in keys):
        return {"name": name, "center": header["LINECEN"], "j1": header["LINEJ1"], "j2": header["LINEJ2"],
                "g1": header["LINEG1"], "g2": header["LINEG2"]}
    return name  # get_line raises the error listing the known lines


def angstrom_sampling_problem(wl: np.ndarray, line: SpectralLine) -> Optional[str]:
    """Why wavelengths without a unit cannot be Angstrom, or None when they can.

    Nm read as Angstrom are 10x too close together, and B comes out 10x too
    small. A median step finer than ``line.center / MAX_RESOLVING_POWER``
    samples the line more finely than any spectrograph or filtergraph does,
    so the unit must be given. Absolute values (any ``|w| >= 100``) are left
    to :func:`hashwfa.wfa.observation.wavelengths.relative_wavelengths`, whose
    magnitude tells Angstrom from nm.

    Args:
        wl: ``(nw,)`` the wavelengths as given, read as Angstrom.
        line: the observed line.
    """
    steps = np.diff(wl)
    if steps.size == 0 or not np.all(np.isfinite(steps)):
        return None  # the observation reports these
    if np.any(np.abs(wl) >= 100.0):
        return None
    step = float(np.median(np.abs(steps)))
    finest = line.center / MAX_RESOLVING_POWER
    if 0 < step < finest:
        return (f"their median step {step:.3g} A is finer than any instrument samples line {line.name} "
                f"(< {finest:.2g} A); they look like nm ({10 * step:.3g} A steps)")
    return None


def _check_sampling_as_angstrom(wl: np.ndarray, line: SpectralLine, path: Path) -> None:
    """Refuse wavelengths without a unit whose steps are implausibly fine when read as Angstrom
    (:func:`angstrom_sampling_problem`)."""
    problem = angstrom_sampling_problem(wl, line)
    if problem is not None:
        raise HashwfaError(
            f"{path}: the wavelengths have no unit (no BUNIT), so they were read as Angstrom, but then "
            f"{problem}. Fix: set BUNIT = 'nm' "
            "(or 'Angstrom' if the steps really are that fine) in the wavelengths file's header"
        )


def _check_header_line(header: fits.Header, line: SpectralLine, path: Path) -> None:
    """Raise when the cube's LINE keyword names another line than ``line`` (the caller's choice)."""
    name = header.get("LINE")
    if name is None:
        return
    name = str(name).strip()
    try:
        same = get_line(name).name == line.name  # a known name or alias
    except HashwfaError:
        same = name == line.name  # a line this package does not know, defined in the header
    if not same:
        raise HashwfaError(
            f"{path}: the cube's header says LINE = {name!r} but line {line.name!r} was asked for "
            f"({line.center} A). Fix: drop the explicit line (in a config: remove 'line') to use "
            f"the header's, or correct the header if line {line.name!r} is right"
        )


def _to_yxsw(data: np.ndarray, header: fits.Header, nw: int, axis_order: str, path: Path) -> np.ndarray:
    """Bring a cube read from FITS into numpy order ``(ny, nx, 4, nw)``."""
    order = axis_order.lower()
    if order not in ("auto", "yxsw", "swyx"):
        raise HashwfaError(f"axis_order = {axis_order!r}; use 'auto', 'yxsw' (ny, nx, 4, nw) or 'swyx' (4, nw, ny, nx)")
    declared = str(header.get("HWAXES", "")).replace(" ", "").upper()
    if data.ndim == 5 and data.shape[0] == 1 and declared != SERIES_AXES_KEYWORD_VALUE:
        warnings.warn(f"{path}: dropped a leading axis of length 1 (time) from shape {data.shape}", stacklevel=4)
        data = data[0]
    core = data.shape[-4:] if data.ndim in (4, 5) else data.shape
    if order == "auto":
        if declared in (AXES_KEYWORD_VALUE, SERIES_AXES_KEYWORD_VALUE):
            order = "yxsw"
        elif data.ndim in (4, 5) and core[2] == 4 and core[3] == nw:
            order = "yxsw"
        elif data.ndim in (4, 5) and core[0] == 4 and core[1] == nw:
            order = "swyx"
            lead, full = ("", "(ny, nx, 4, nw)") if data.ndim == 4 else ("nt, ", "(nt, ny, nx, 4, nw)")
            warnings.warn(
                f"{path}: cube of shape {data.shape} read as ({lead}4, nw, ny, nx) (SSTRED/CRISPEX order) and "
                f"transposed to {full}", stacklevel=4)
        else:
            order = "yxsw"  # let Observation report what is wrong with the shape
    if order == "swyx":
        if data.ndim not in (4, 5):
            raise HashwfaError(
                f"{path}: cube has shape {data.shape} ({data.ndim} dimensions); expected 4 "
                "dimensions (4, nw, ny, nx), or 5 (nt, 4, nw, ny, nx), for axis_order 'swyx'")
        data = np.transpose(data, (2, 3, 0, 1) if data.ndim == 4 else (0, 3, 4, 1, 2))
    return data
