"""Reduced CRISP/CHROMIS cubes as the SST pipeline (SSTRED) writes them.

A reduced ``*_im.fits`` cube follows the SOLARNET layout: the primary image
has FITS axes ``[Nx, Ny, Ntuning, Nstokes, Nscans]``, i.e. numpy order
``(nscan, 4, ntun, ny, nx)``, with

- ``CTYPE1/2 = 'HPLN-TAB'/'HPLT-TAB'`` (arcsec), ``CTYPE3 = 'WAVE-TAB'``
  (``CUNIT3 = 'nm'``), ``CTYPE4 = 'STOKES'`` (values 1..4 = I, Q, U, V from
  CRVAL4, CDELT4, CRPIX4) and ``CTYPE5 = 'UTC--TAB'`` (seconds since
  ``DATEREF``);
- the tabulated coordinates in the binary-table extension named by ``PS3_0``
  (``'WCS-TAB'``), column ``PS3_1`` (``'HPLN+HPLT+WAVE+TIME'``), one row
  holding an array of numpy shape ``(nscan, ntun, 2, 2, M)``: per scan and
  tuning, the coordinates at the 2 x 2 corners of the field of view, the last
  index choosing the coordinate (``PVi_3`` of axis i, 1-based: HPLN, HPLT,
  WAVE, TIME in that order by default);
- optionally the cavity maps (a per-pixel wavelength offset from the
  etalons' cavity errors) as ``WCSDVARR`` image extension(s).

:func:`read_sst_cube` reads the headers, the coordinate table and the cavity
maps only; :meth:`SSTCube.frame` reads one scan at a time from the memory-
mapped file, so a series larger than memory can be streamed.

What is made of the coordinates:

- **Wavelengths**: those of the first scan, nm converted to Angstrom and
  given relative to the centre of the observed line (what
  :class:`hashwfa.wfa.observation.observation.Observation` expects). Scans whose
  tunings differ from the first by more than 1 % of the smallest tuning step
  are refused: the WFA fit uses one wavelength axis.
- **Times**: per scan, the mean over its tunings of the tabulated time
  (seconds since ``DATEREF``); the per-tuning times are kept too.
- **Spatial WCS**: the tabulated corners, averaged over scans and tunings,
  turned into a linear helioprojective WCS (``HPLN-TAN``/``HPLT-TAN``, CRPIX
  at pixel (1, 1), a CD matrix from the corners), with ``DATEREF`` and a few
  observation cards, for the maps written from the cube.
- **Cavity maps** are *not applied*: they shift each pixel's whole profile
  (all four Stokes parameters alike) by a few mA, and the WFA reads dI/dlambda
  from the same shifted profile, so the field it infers hardly depends on
  them. They are returned (:attr:`SSTCube.cavity`, Angstrom) and reported
  with a warning, never silently dropped.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

import numpy as np
from astropy.io import fits

from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.fits_files import (OBSERVER_KEYS, PathLike, check_complete, check_header_cards,
                                               check_regular_file, map_image)
from hashwfa.wfa.physics.lines import LINES, WAVELENGTH_UNITS, SpectralLine, get_line

#: Default name of the coordinate-table extension and of its coordinate column.
WCS_TABLE = "WCS-TAB"
WCS_COLUMN = "HPLN+HPLT+WAVE+TIME"
#: Name of the extensions holding cavity maps (the FITS lookup-distortion convention).
CAVITY_EXTENSION = "WCSDVARR"
#: Tunings of later scans may differ from the first scan's by this fraction of the smallest step.
SCAN_WAVELENGTH_TOLERANCE = 0.01
#: Observation cards copied as they are into :attr:`SSTCube.spatial_header` when present.
OBSERVATION_KEYS = ("DATEREF", "DATE-OBS", "DATE-BEG", "DATE-END", "DATE-AVG", "TELESCOP", "INSTRUME",
                    "OBSRVTRY") + OBSERVER_KEYS


@dataclass
class SSTCube:
    """An SST pipeline cube opened for reading: its coordinates, and frames on demand.

    Attributes:
        path: the FITS file.
        line: the observed line.
        wavelengths: ``(nw,)`` tuning wavelengths [A] relative to the line centre.
        times: ``(nt,)`` scan times [s] since ``date_ref``: mean over the tunings.
        tuning_times: ``(nt, nw)`` time [s] of each tuning of each scan.
        date_ref: the ``DATEREF`` card (ISO 8601), None when absent.
        spatial_header: cards for maps of this cube: a linear helioprojective
            WCS of FITS axes 1, 2 (x, y) from the tabulated corners (when the
            table has them), DATEREF and the observation cards present.
        stokes_index: the index along the cube's Stokes axis of I, Q, U, V.
        cavity: ``(m, ny, nx)`` cavity maps [A] (one per ``WCSDVARR``
            extension, m = 1 for one map of the whole cube); None when the
            file has none.
        cavity_applied: always False: the maps are reported, not applied
            (see the module docstring).
        notes: what was assumed or left out, one sentence each, for logs and
            result headers.
        unit: the cube's BUNIT ("" when absent).
        shape: ``(nt, ny, nx, 4, nw)``, the shape of :meth:`read`.
    """

    path: Path
    line: SpectralLine
    wavelengths: np.ndarray
    times: np.ndarray
    tuning_times: np.ndarray
    date_ref: Optional[str]
    spatial_header: fits.Header
    stokes_index: Tuple[int, int, int, int]
    shape: Tuple[int, int, int, int, int]
    cavity: Optional[np.ndarray] = None
    cavity_applied: bool = False
    notes: List[str] = field(default_factory=list)
    unit: str = ""
    #: The image is scaled (BSCALE/BZERO): read it without mapping the file.
    scaled: bool = False

    @property
    def nt(self) -> int:
        """Number of scans (frames)."""
        return self.shape[0]

    @property
    def ny(self) -> int:
        """Number of rows (y)."""
        return self.shape[1]

    @property
    def nx(self) -> int:
        """Number of columns (x)."""
        return self.shape[2]

    @property
    def nw(self) -> int:
        """Number of tunings (wavelengths)."""
        return self.shape[4]

    def frame(self, t: int) -> np.ndarray:
        """Scan ``t`` as a float32 ``(ny, nx, 4, nw)`` array (I, Q, U, V on axis 2).

        Only that scan is read from disk (memory-mapped section of the file).

        Raises:
            HashwfaError: for ``t`` outside ``0..nt-1`` or an unreadable file.
        """
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < self.nt:
            raise HashwfaError(f"{self.path}: frame {t!r} out of range; the cube has scans 0..{self.nt - 1}")
        try:
            with fits.open(self.path, memmap=not self.scaled) as hdul:  # astropy maps no scaled image
                block = np.asarray(hdul[0].section[int(t)], dtype=np.float32)  # (4, ntun, ny, nx)
        except (OSError, ValueError, TypeError) as exc:
            raise HashwfaError(f"{self.path}: cannot read scan {t} ({exc}); is the file complete?") from None
        block = block[list(self.stokes_index)]
        return np.ascontiguousarray(np.transpose(block, (2, 3, 0, 1)))

    def mapped(self) -> Tuple[np.ndarray, Optional[str]]:
        """The cube ``(nt, ny, nx, 4, nw)`` as a view of the file mapped in memory, nothing read yet.

        Returns ``(cube, note)``: a read-only :class:`numpy.memmap` view in
        the file's dtype (a transpose of the file's ``(nscan, 4, ntun, ny,
        nx)``), whose pages are read when used, and None; or, when the file
        cannot be mapped (see :func:`hashwfa.wfa.observation.fits_files.map_image`) or its
        Stokes axis is not in the order I, Q, U, V, the cube read whole
        (float32, :meth:`read`) and one sentence saying why.

        Raises:
            HashwfaError: an unreadable file.
        """
        data, _, _, note = map_image(self.path, "SST cube")
        if note is None and tuple(self.stokes_index) != (0, 1, 2, 3):
            note = (f"{self.path.name}: read whole into memory, not mapped lazily: its Stokes axis holds "
                    f"I, Q, U, V at positions {tuple(self.stokes_index)}")
        cube = np.transpose(data, (0, 3, 4, 1, 2))
        if note is not None:  # data is the cube read whole (scaled, integer), or mapped in another Stokes order
            return np.ascontiguousarray(cube[:, :, :, list(self.stokes_index)], dtype=np.float32), note
        return cube, None

    def read(self, frames: Optional[Sequence[int]] = None) -> np.ndarray:
        """The scans ``frames`` (default all) as float32 ``(n, ny, nx, 4, nw)``, read one by one."""
        frames = range(self.nt) if frames is None else list(frames)
        out = np.empty((len(frames),) + self.shape[1:], dtype=np.float32)
        for k, t in enumerate(frames):  # one scan in memory at a time besides the output
            out[k] = self.frame(t)
        return out


def _fail(path: Path, message: str) -> HashwfaError:
    return HashwfaError(f"{path}: {message}")


def _wavelength_factor(unit: Any, path: Path, what: str) -> float:
    key = str(unit).strip().lower()
    if key not in WAVELENGTH_UNITS or not key:
        raise _fail(path, f"{what} = {unit!r} is not a wavelength unit this reader knows "
                          f"({', '.join(WAVELENGTH_UNITS)}); SST cubes give the wavelengths in nm")
    return WAVELENGTH_UNITS[key]


def _number(header: fits.Header, key: str, default: float, path: Path) -> float:
    """The finite number of header card ``key`` (``default`` when absent)."""
    value = header.get(key, default)
    try:
        number = float(value)
        if isinstance(value, (str, bool)) or not np.isfinite(number):
            raise ValueError
    except (TypeError, ValueError):
        raise _fail(path, f"header card {key} = {value!r} is not a finite number. Fix: correct the card "
                          "(an SST pipeline cube has numbers there)") from None
    return number


def _stokes_index(header: fits.Header, n: int, path: Path) -> Tuple[int, int, int, int]:
    """Position along FITS axis 4 of Stokes I, Q, U, V from CTYPE4 and its linear WCS."""
    ctype = str(header.get("CTYPE4", "")).strip().upper()
    if ctype != "STOKES":
        raise _fail(path, f"CTYPE4 = {header.get('CTYPE4')!r}; an SST cube has the Stokes parameters on FITS "
                          "axis 4 (CTYPE4 = 'STOKES')")
    if n != 4:
        raise _fail(path, f"the Stokes axis (FITS axis 4) has {n} element(s); the WFA needs I, Q, U and V (4)")
    pixel = np.arange(1, n + 1, dtype=np.float64)
    crval, crpix, cdelt = (_number(header, key, default, path) for key, default in
                           (("CRVAL4", 0.0), ("CRPIX4", 0.0), ("CDELT4", 1.0)))
    values = crval + (pixel - crpix) * cdelt
    codes = np.rint(values).astype(int)
    if not np.allclose(values, codes) or sorted(codes.tolist()) != [1, 2, 3, 4]:
        raise _fail(path, f"the Stokes axis holds Stokes codes {values.tolist()} (CRVAL4, CDELT4, CRPIX4); "
                          "expected 1, 2, 3, 4 = I, Q, U, V in some order")
    return tuple(int(np.flatnonzero(codes == k)[0]) for k in (1, 2, 3, 4))  # type: ignore[return-value]


def _coordinate_table(hdul: fits.HDUList, header: fits.Header, nt: int, nw: int, path: Path) -> Tuple[np.ndarray, str]:
    """The tabulated coordinate array ``(nt, nw, 2, 2, M)`` and the column it came from."""
    ext = str(header.get("PS3_0", WCS_TABLE)).strip()
    column = str(header.get("PS3_1", WCS_COLUMN)).strip()
    names = [h.name for h in hdul]
    if ext.upper() not in names:
        raise _fail(path, f"no binary-table extension {ext!r} (PS3_0) with the tabulated wavelengths and times "
                          f"(extensions: {names}); this is not a complete SST pipeline cube: read it with a "
                          "separate wavelengths file instead")
    table = hdul[ext]
    if not isinstance(table, fits.BinTableHDU) or table.data is None or len(table.data) < 1:
        raise _fail(path, f"extension {ext!r} is not a binary table with one row of coordinates")
    if column not in table.columns.names:
        raise _fail(path, f"extension {ext!r} has no column {column!r} (PS3_1); it has {table.columns.names}")
    coords = np.asarray(table.data[column][0], dtype=np.float64)
    n_coords = len(column.split("+"))
    expected = (nt, nw, 2, 2, n_coords)
    if coords.shape == expected[1:] and nt == 1:
        coords = coords[None]  # a single scan written without its degenerate axis
    if coords.shape != expected:
        raise _fail(path, f"column {column!r} of {ext!r} has shape {coords.shape}; expected {expected} "
                          "(scans, tunings, 2 x 2 corners, coordinates) for this cube (tables with index "
                          "vectors, PS3_2, are not supported)")
    return coords, column


def _coordinate_number(header: fits.Header, axis: int, name: str, column: str, path: Path) -> int:
    """0-based index of axis ``axis``'s coordinate in the table's last dimension (PVi_3, 1-based)."""
    parts = column.upper().split("+")
    key = f"PV{axis}_3"
    if key in header:
        value = header[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) != int(value):
            raise _fail(path, f"header card {key} = {value!r} is not an integer (the 1-based number of the "
                              f"{name} coordinate in column {column!r}). Fix: correct the card, or delete it to "
                              "find the coordinate by its name in the column")
        number = int(value) - 1
    elif name in parts:
        number = parts.index(name)
    else:
        raise _fail(path, f"cannot tell which coordinate of column {column!r} is {name}: no {key} keyword")
    if not 0 <= number < len(parts):
        raise _fail(path, f"{key} = {header[key]!r} but column {column!r} holds {len(parts)} coordinates")
    return number


def _guess_line(wavelengths_a: np.ndarray, path: Path) -> SpectralLine:
    """The one known line whose centre lies within the tuning range (+-0.5 A)."""
    lo, hi = float(wavelengths_a.min()) - 0.5, float(wavelengths_a.max()) + 0.5
    found = [line for line in LINES.values() if lo <= line.center <= hi]
    if len(found) != 1:
        what = "no line" if not found else "lines " + ", ".join(line.name for line in found)
        raise _fail(path, f"tunings span {lo + 0.5:.3f}..{hi - 0.5:.3f} A and {what} of the known ones "
                          f"({', '.join(LINES)}) lie there; name the line (data.line / line=...)")
    return found[0]


def _linear_spatial_wcs(coords: np.ndarray, hpln: int, hplt: int, ny: int, nx: int, column: str,
                        path: Path) -> fits.Header:
    """A linear WCS of FITS axes 1 (x) and 2 (y) through the mean tabulated corners."""
    corners = coords.mean(axis=(0, 1))  # (2 [y corner], 2 [x corner], M)
    if not np.all(np.isfinite(corners[..., [hpln, hplt]])):
        raise HashwfaError(f"{path}: the tabulated HPLN/HPLT coordinates ({column!r} of {WCS_TABLE!r}) contain NaN "
                           "or infinite values, so the maps get no spatial WCS. Fix: correct the table's corners "
                           "(or drop HPLN+HPLT from its column name PS3_1 to read the cube without them)")
    hdr = fits.Header()
    origin = corners[0, 0]
    along_x = (corners[0, 1] - origin) / max(nx - 1, 1)
    along_y = (corners[1, 0] - origin) / max(ny - 1, 1)
    for axis, (ctype, k) in enumerate((("HPLN-TAN", hpln), ("HPLT-TAN", hplt)), start=1):
        hdr[f"CTYPE{axis}"] = ctype
        hdr[f"CUNIT{axis}"] = "arcsec"
        hdr[f"CRPIX{axis}"] = 1.0
        hdr[f"CRVAL{axis}"] = float(origin[k])
        hdr[f"CD{axis}_1"] = float(along_x[k])
        hdr[f"CD{axis}_2"] = float(along_y[k])
    hdr.add_comment("Spatial WCS: linear, from the SST cube's tabulated corners (mean over scans, tunings).")
    return hdr


def _derive_dates(header: fits.Header, date_ref: str, tuning_times: np.ndarray) -> None:
    """Add DATE-BEG, DATE-AVG, DATE-END (UTC, ISO 8601) from DATEREF and the tabulated times, where absent."""
    from astropy import units as u
    from astropy.time import Time  # imported on use: astropy.time is slow to import

    try:
        ref = Time(date_ref.strip(), format="isot", scale="utc")
    except ValueError:
        return  # not an ISO date: nothing can be derived (DATEREF is still carried as it is)
    for key, seconds, what in (("DATE-BEG", tuning_times.min(), "first"), ("DATE-AVG", tuning_times.mean(), "mean"),
                               ("DATE-END", tuning_times.max(), "last")):
        if key not in header:
            header[key] = ((ref + float(seconds) * u.s).isot, f"{what} tabulated time, from DATEREF")


def _cavity_maps(hdul: fits.HDUList, ny: int, nx: int, default_unit: str, path: Path) -> Optional[np.ndarray]:
    """All WCSDVARR extensions as ``(m, ny, nx)`` Angstrom, None when there are none."""
    maps = []
    for hdu in hdul:
        if hdu.name != CAVITY_EXTENSION or not isinstance(hdu, fits.ImageHDU) or hdu.data is None:
            continue
        data = np.asarray(hdu.data, dtype=np.float64)
        squeezed = data.reshape([n for n in data.shape if n != 1] or [1])
        if squeezed.shape[-2:] != (ny, nx):
            raise _fail(path, f"{CAVITY_EXTENSION} extension has shape {data.shape}; expected (..., {ny}, {nx}) "
                              "like the cube's images")
        factor = _wavelength_factor(hdu.header.get("BUNIT", default_unit), path, f"{CAVITY_EXTENSION} BUNIT")
        maps.append(squeezed.reshape(-1, ny, nx) * factor)
    return np.concatenate(maps, axis=0) if maps else None


def read_sst_cube(path: PathLike, line: Union[None, str, SpectralLine, dict] = None) -> SSTCube:
    """Open an SST pipeline cube: read its coordinates, not yet its data.

    Args:
        path: a reduced CRISP/CHROMIS ``*_im.fits`` cube (see the module docstring).
        line: the observed line; None: the one known line whose centre lies
            within the tuning range (an error when none or several do).

    Returns:
        :class:`SSTCube`; :meth:`SSTCube.frame` / :meth:`SSTCube.read` give
        the data in numpy order ``(ny, nx, 4, nw)`` / ``(nt, ny, nx, 4, nw)``.

    Raises:
        HashwfaError: a missing or non-FITS file; a primary image that is not
            5-D; CTYPE3 not ``WAVE-TAB`` or a Stokes axis that is not I, Q, U,
            V; a missing or malformed ``WCS-TAB`` table (extension, column,
            shape); non-finite or not strictly increasing wavelengths;
            tunings that change between scans; a line that cannot be told.

    Warns:
        UserWarning: when the file has cavity maps (they are not applied).
    """
    path = Path(path)
    check_regular_file(path, "SST cube")
    try:
        hdul = fits.open(path, memmap=True)
    except (OSError, ValueError, TypeError) as exc:
        raise _fail(path, f"cannot read as FITS ({exc})") from None
    with hdul:
        header = hdul[0].header
        check_header_cards(header, path)
        check_complete(path, hdul)
        scaled = _number(header, "BSCALE", 1.0, path) != 1.0 or _number(header, "BZERO", 0.0, path) != 0.0
        naxes = tuple(int(header.get(f"NAXIS{i}", 0)) for i in range(1, int(header.get("NAXIS", 0)) + 1))
        if len(naxes) != 5:
            raise _fail(path, f"primary image has FITS axes {list(naxes)}; an SST cube has 5: "
                              "[Nx, Ny, Ntuning, Nstokes, Nscans]")
        nx, ny, nw, n_stokes, nt = naxes
        ctype3 = str(header.get("CTYPE3", "")).strip().upper()
        if ctype3 != "WAVE-TAB":
            raise _fail(path, f"CTYPE3 = {header.get('CTYPE3')!r}; an SST cube has tabulated wavelengths "
                              "(CTYPE3 = 'WAVE-TAB')")
        stokes_index = _stokes_index(header, n_stokes, path)
        coords, column = _coordinate_table(hdul, header, nt, nw, path)
        wave_k = _coordinate_number(header, 3, "WAVE", column, path)
        to_angstrom = _wavelength_factor(header.get("CUNIT3", "nm"), path, "CUNIT3")
        wave = coords[:, :, 0, 0, wave_k] * to_angstrom  # (nt, nw) absolute, Angstrom
        if not np.all(np.isfinite(wave)):
            raise _fail(path, f"the tabulated wavelengths ({column!r}) contain NaN or infinite values")
        first = wave[0]
        steps = np.diff(first)
        if nw < 2 or not np.all(steps > 0):
            raise _fail(path, f"the tabulated wavelengths of scan 0 ({(first / to_angstrom).tolist()} "
                              f"{header.get('CUNIT3', 'nm')}) are not {'strictly increasing' if nw > 1 else '2 or more'}")
        drift = float(np.max(np.abs(wave - first))) if nt > 1 else 0.0
        if drift > SCAN_WAVELENGTH_TOLERANCE * float(steps.min()):
            raise _fail(path, f"the tunings change between scans by up to {drift * 1e3:.3g} mA (more than "
                              f"{SCAN_WAVELENGTH_TOLERANCE:.0%} of the smallest step); the fit needs one "
                              "wavelength axis for all scans")
        line = _guess_line(first, path) if line is None else get_line(line)
        relative = first - line.center
        if np.any(np.abs(relative) > 100.0):
            raise _fail(path, f"tunings {first.min():.3f}..{first.max():.3f} A are far from the centre of line "
                              f"{line.name} ({line.center} A); check the line")

        ctype5 = str(header.get("CTYPE5", "")).strip().upper()
        if ctype5.endswith("-TAB"):
            time_k = _coordinate_number(header, 5, "TIME", column, path)
            tuning_times = coords[:, :, 0, 0, time_k].copy()
        elif nt == 1:
            tuning_times = np.full((1, nw), _number(header, "CRVAL5", 0.0, path))
        else:
            raise _fail(path, f"CTYPE5 = {header.get('CTYPE5')!r}; {nt} scans need tabulated times "
                              "(CTYPE5 = 'UTC--TAB')")
        if not np.all(np.isfinite(tuning_times)):
            raise _fail(path, f"the tabulated times ({column!r}) contain NaN or infinite values")

        parts = column.upper().split("+")
        if "HPLN" in parts and "HPLT" in parts:
            spatial = _linear_spatial_wcs(coords, parts.index("HPLN"), parts.index("HPLT"), ny, nx, column, path)
        else:
            spatial = fits.Header()
        for key in OBSERVATION_KEYS:
            if key in header:
                spatial[key] = (header[key], header.comments[key])
        if "DATEREF" in header:
            _derive_dates(spatial, str(header["DATEREF"]), tuning_times)
        cavity = _cavity_maps(hdul, ny, nx, str(header.get("CUNIT3", "nm")), path)
        unit = str(header.get("BUNIT", ""))

    notes = []
    if cavity is not None:
        note = (f"{cavity.shape[0]} cavity map(s) ({CAVITY_EXTENSION}) not applied: per-pixel wavelength "
                f"offsets of {np.nanmin(cavity) * 1e3:.3g}..{np.nanmax(cavity) * 1e3:.3g} mA; the WFA reads "
                "dI/dlambda from the same shifted profiles")
        notes.append(note)
        warnings.warn(f"{path}: {note}", stacklevel=2)
    return SSTCube(path=path, line=line, wavelengths=relative, times=tuning_times.mean(axis=1),
                   tuning_times=tuning_times, date_ref=str(header["DATEREF"]) if "DATEREF" in header else None,
                   spatial_header=spatial, stokes_index=stokes_index, shape=(nt, ny, nx, 4, nw),
                   cavity=cavity, cavity_applied=False, notes=notes, unit=unit, scaled=scaled)
