"""The Level-2 header of the maps in ``field.fits``: where, when, from where, at which wavelength.

Every map extension gets the cards built here, so that astropy (``WCS``),
SunPy (``sunpy.map.Map``) and ndcube open a map with its coordinates:

- **Spatial WCS** (FITS axes 1 = x, 2 = y). The input's, as it came (an SST
  cube: the linear helioprojective WCS fitted to its tabulated corners; a
  FITS cube: its own cards; the synthetic plage: :data:`PIXEL_SCALE
  <hashwfa.wfa.synthetic.plage.PIXEL_SCALE>` arcsec per pixel around disk
  centre). A celestial axis without CUNIT gets ``deg``, the FITS default. An
  input without a spatial WCS gets a *nominal* one (:data:`NOMINAL_WCSNAME`):
  ``HPLN-TAN``/``HPLT-TAN`` of 1 arcsec per pixel from (0, 0) at pixel (1, 1),
  i.e. the coordinates count pixels. SunPy opens only maps with angular axes
  (it refuses ``CUNIT = 'pix'``), hence the nominal angles; the plate scale and
  the pointing are unknown, and the header says so.
- **Dates**: ``DATE-OBS`` (the start: the input's DATE-OBS, else DATE-BEG,
  else DATE-AVG), and for a series with ``DATEREF``, DATE-BEG/AVG/END from the
  frame times; ``MJDREF`` next to ``DATEREF`` (the same instant) so that
  astropy need not fix the header.
- **Observer**: ``HGLN_OBS``, ``HGLT_OBS`` [deg] and ``DSUN_OBS`` [m]
  (heliographic Stonyhurst) from the observatory's ``OBSGEO-X/Y/Z`` [m, ITRS]
  and the mean date, with astropy's ``EarthLocation.get_itrs`` and SunPy's
  Stonyhurst frame. Without SunPy they are left out (astropy alone has no
  Stonyhurst frame: the Sun's rotation axis is SunPy's) and a COMMENT says so.
  Observer cards the input gave are kept as they are.
- **Line**: ``WAVELNTH`` = the line centre, ``WAVEUNIT = 'Angstrom'``;
  ``RSUN_REF`` = the IAU 2015 nominal solar radius (what SunPy assumes) for a
  helioprojective map. The input's OBJECT, FILTER1, WCSNAME are kept.
- **Time axis** of a series (maps ``(nt, ny, nx)``, FITS axis 3):
  ``CTYPE3 = 'UTC'``, ``CUNIT3 = 's'``, seconds since ``DATEREF``; a linear
  axis (CRVAL3 = first time, CDELT3 = cadence) when the frames are equally
  spaced (to 1 microsecond), else ``CTYPE3 = 'UTC--TAB'`` with the times
  tabulated in a ``WCS-TAB`` binary table (column ``TIME``, one row, FITS WCS
  paper III), which astropy reads with ``WCS(header, hdulist)``. Without a
  date (synthetic data) the axis is ``'TIME'``, seconds from the series'
  start with no epoch (astropy then counts from MJD 0, 1858-11-17).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
from astropy.io import fits

__all__ = ["MapHeader", "map_header", "NOMINAL_WCSNAME", "RSUN_REF_M", "TIME_TABLE"]

#: WCSNAME of the nominal spatial WCS given to maps whose input had none.
NOMINAL_WCSNAME = "NOMINAL: pixels, 1 arcsec = 1 px"
#: Nominal solar radius [m] (IAU 2015 Resolution B3; astropy's R_sun, SunPy's default).
RSUN_REF_M = 695_700_000.0
#: Name of the binary table holding the frame times of an unequally spaced time axis (-TAB).
TIME_TABLE = "WCS-TAB"
#: Frames closer than this to a linear time axis [s] are written with one (CDELT3).
LINEAR_TIME_TOLERANCE = 1e-6

Card = Tuple[str, Any, str]

_CELESTIAL = ("HPLN", "HPLT", "HGLN", "HGLT", "CRLN", "CRLT", "SOLX", "SOLY", "RA--", "DEC-", "GLON", "GLAT")


@dataclass
class MapHeader:
    """What :func:`map_header` adds to the maps.

    Attributes:
        cards: ``(keyword, value, comment)`` for every map extension (the
            input's cards first, then what was derived).
        notes: sentences for the primary header's COMMENT cards (what is
            nominal, what was left out and why).
        tables: extra extensions the cards refer to (the ``WCS-TAB`` table of
            a tabulated time axis), to append to the file.
    """

    cards: Tuple[Card, ...]
    notes: Tuple[str, ...] = ()
    tables: Tuple[fits.BinTableHDU, ...] = field(default_factory=tuple)


def map_header(
    map_cards: Sequence[Card],
    map_shape: Sequence[int],
    *,
    wavelength: Optional[float] = None,
    times: Optional[np.ndarray] = None,
) -> MapHeader:
    """The cards of every map of ``field.fits`` (see the module docstring).

    Args:
        map_cards: the input's cards for its maps (``Observation.map_cards``).
        map_shape: ``(ny, nx)``, or ``(nt, ny, nx)`` for a series.
        wavelength: the line centre [A] (``WAVELNTH``), or None.
        times: ``(nt,)`` frame times [s] of a series (since ``DATEREF`` when
            the cards have it), or None.
    """
    cards: Dict[str, Card] = {}
    for key, value, comment in map_cards:
        cards[key] = (key, value, comment)
    notes: List[str] = []
    tables: List[fits.BinTableHDU] = []

    def has(key: str) -> bool:
        return key in cards

    def put(key: str, value: Any, comment: str) -> None:
        if key not in cards:
            cards[key] = (key, value, comment)

    ctypes = [str(cards.get(f"CTYPE{i}", ("", "", ""))[1]).strip().upper() for i in (1, 2)]
    if has("CTYPE1") and has("CTYPE2"):
        for i, ctype in zip((1, 2), ctypes):
            if ctype[:4] in _CELESTIAL:
                put(f"CUNIT{i}", "deg", "FITS default unit of a celestial axis")
    else:
        for key in [k for k in cards if k[:5] in ("CTYPE", "CUNIT", "CRPIX", "CRVAL", "CDELT")
                    or k[:2] in ("PC", "CD")]:
            del cards[key]  # half a WCS is no WCS
        for i, ctype in ((1, "HPLN-TAN"), (2, "HPLT-TAN")):
            cards[f"CTYPE{i}"] = (f"CTYPE{i}", ctype, "nominal: the input has no spatial WCS")
            cards[f"CUNIT{i}"] = (f"CUNIT{i}", "arcsec", "nominal: 1 arcsec stands for 1 pixel")
            cards[f"CRPIX{i}"] = (f"CRPIX{i}", 1.0, "")
            cards[f"CRVAL{i}"] = (f"CRVAL{i}", 0.0, "nominal")
            cards[f"CDELT{i}"] = (f"CDELT{i}", 1.0, "nominal: one pixel")
        cards["WCSNAME"] = ("WCSNAME", NOMINAL_WCSNAME, "no plate scale or pointing known")
        notes.append("The input has no spatial WCS: the maps carry a nominal helioprojective one "
                     f"(WCSNAME '{NOMINAL_WCSNAME}') whose coordinates count pixels; pointing and plate "
                     "scale are unknown.")
        ctypes = ["HPLN-TAN", "HPLT-TAN"]
    helioprojective = ctypes[0].startswith("HPLN") and ctypes[1].startswith("HPLT")

    date_ref = _time(cards.get("DATEREF", (None, None, None))[1])
    if date_ref is not None:
        put("MJDREF", float(date_ref.mjd), "MJD of DATEREF")
    if times is not None and len(map_shape) == 3:
        times = np.asarray(times, dtype=np.float64)
        if date_ref is not None:
            from astropy import units as u

            for key, seconds, what in (("DATE-BEG", times.min(), "first"), ("DATE-AVG", times.mean(), "mean"),
                                       ("DATE-END", times.max(), "last")):
                put(key, (date_ref + float(seconds) * u.s).isot, f"{what} frame time")
        _time_axis(cards, tables, times, dated=date_ref is not None)
    for key in ("DATE-BEG", "DATE-AVG"):
        if not has("DATE-OBS") and has(key):
            cards["DATE-OBS"] = ("DATE-OBS", cards[key][1], f"start of the observation (from {key})")

    if helioprojective:
        put("RSUN_REF", RSUN_REF_M, "[m] solar radius (IAU 2015 nominal)")
        notes += _observer(cards)
    if wavelength is not None:
        put("WAVELNTH", float(wavelength), "line centre")
        put("WAVEUNIT", "Angstrom", "unit of WAVELNTH")
    return MapHeader(cards=tuple(cards.values()), notes=tuple(notes), tables=tuple(tables))


def _time(value: Any) -> Optional[Any]:
    """An ISO 8601 date card as an astropy ``Time`` (UTC), None when absent or not a date."""
    if value is None:
        return None
    from astropy.time import Time  # imported on use: astropy.time is slow to import

    try:
        return Time(str(value).strip(), format="isot", scale="utc")
    except ValueError:
        return None


def _time_axis(cards: Dict[str, Card], tables: List[fits.BinTableHDU], times: np.ndarray, dated: bool) -> None:
    """The WCS of FITS axis 3, the frame times ``times`` [s]: linear or tabulated."""
    nt = times.size
    step = float(times[1] - times[0]) if nt > 1 else 1.0
    linear = nt < 2 or (step > 0 and np.max(np.abs(times[0] + step * np.arange(nt) - times)) <= LINEAR_TIME_TOLERANCE)
    ctype = "UTC" if dated else "TIME"
    since = "DATEREF" if dated else "the series' time origin (no date known)"
    cards["CUNIT3"] = ("CUNIT3", "s", "")
    if dated:
        cards["TIMESYS"] = ("TIMESYS", "UTC", "time scale of the time axis and dates")
    if linear:
        cards["CTYPE3"] = ("CTYPE3", ctype, "[s] since DATEREF" if dated else "[s] since the series' start, no date")
        cards["CRPIX3"] = ("CRPIX3", 1.0, "first frame")
        cards["CRVAL3"] = ("CRVAL3", float(times[0]), "[s] time of the first frame")
        cards["CDELT3"] = ("CDELT3", step, "[s] cadence")
    else:
        # -TAB: the intermediate coordinate CRVAL3 + CDELT3 * (p - CRPIX3) = p is the
        # 1-based index into the tabulated times.
        cards["CTYPE3"] = ("CTYPE3", "UTC--TAB" if dated else "TIME-TAB", "frame times tabulated in WCS-TAB")
        cards["CRPIX3"] = ("CRPIX3", 0.0, "")
        cards["CRVAL3"] = ("CRVAL3", 0.0, "")
        cards["CDELT3"] = ("CDELT3", 1.0, "")
        cards["PS3_0"] = ("PS3_0", TIME_TABLE, "extension of the tabulated times")
        cards["PS3_1"] = ("PS3_1", "TIME", "its column [s]")
        column = fits.Column(name="TIME", format=f"{nt}D", dim=f"(1,{nt})", unit="s",
                             array=times.reshape(1, nt, 1))
        table = fits.BinTableHDU.from_columns([column], name=TIME_TABLE)
        table.header["COMMENT"] = f"Frame times [s] since {since}: the -TAB coordinates of FITS axis 3 of the maps."
        tables.append(table)
    if any(key.startswith("CD") and "_" in key for key in cards):
        # A CD matrix replaces CDELT on every axis: without CD3_3 the time axis would get
        # wcslib's default (a step of 1).
        cards["CD3_3"] = ("CD3_3", cards["CDELT3"][1], "= CDELT3")


def _observer(cards: Dict[str, Card]) -> List[str]:
    """Add HGLN_OBS, HGLT_OBS, DSUN_OBS from OBSGEO-X/Y/Z and the date; the notes on what was left out."""
    if all(k in cards for k in ("HGLN_OBS", "HGLT_OBS", "DSUN_OBS")):
        return []
    geo = [cards.get(k, (None, None, None))[1] for k in ("OBSGEO-X", "OBSGEO-Y", "OBSGEO-Z")]
    when = next((_time(cards[k][1]) for k in ("DATE-AVG", "DATE-OBS", "DATE-BEG") if k in cards), None)
    if any(v is None for v in geo) or when is None:
        return []  # nothing to derive the observer from: SunPy assumes an observer on Earth
    try:
        from sunpy.coordinates import frames
    except ImportError:
        return ["HGLN_OBS, HGLT_OBS, DSUN_OBS left out: deriving the observer's heliographic Stonyhurst "
                "place from OBSGEO-X/Y/Z needs SunPy, which was not installed."]
    from astropy import units as u
    from astropy.coordinates import EarthLocation

    observer = (EarthLocation.from_geocentric(*(float(v) for v in geo), unit=u.m).get_itrs(when)
                .transform_to(frames.HeliographicStonyhurst(obstime=when)))
    date_key = next(k for k in ("DATE-AVG", "DATE-OBS", "DATE-BEG") if k in cards)
    cards["HGLN_OBS"] = ("HGLN_OBS", float(observer.lon.to_value(u.deg)), f"[deg] Stonyhurst, OBSGEO at {date_key}")
    cards["HGLT_OBS"] = ("HGLT_OBS", float(observer.lat.to_value(u.deg)), f"[deg] Stonyhurst, OBSGEO at {date_key}")
    cards["DSUN_OBS"] = ("DSUN_OBS", float(observer.radius.to_value(u.m)), "[m] observer-Sun distance")
    return []

