"""Test helper: write small cubes in the SST pipeline's SOLARNET layout.

No real SST cube is available to the tests, so they write their own, laid
out as SSTRED's ``red::fitscube_addwcs`` documents it (primary image in
numpy order ``(nscan, 4, ntun, ny, nx)``, coordinates in a ``WCS-TAB``
binary table, cavity maps as ``WCSDVARR``), and read them back. Written
independently of :mod:`hashwfa.wfa.observation.sst` (it is the oracle of its tests).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from astropy.io import fits

#: Corner arcsec of the default linear spatial coordinates: origin and step per pixel.
ORIGIN_ARCSEC = (-120.0, 250.0)
STEP_ARCSEC = 0.044


def sst_coordinates(nt: int, ny: int, nx: int, wavelengths_nm: np.ndarray, times: np.ndarray) -> np.ndarray:
    """The ``(nt, ntun, 2, 2, 4)`` coordinate array: HPLN, HPLT at the corners, WAVE [nm], TIME [s].

    ``wavelengths_nm`` is ``(ntun,)`` or ``(nt, ntun)``; ``times`` is ``(nt, ntun)``.
    """
    wave = np.broadcast_to(np.asarray(wavelengths_nm, float), (nt, np.shape(wavelengths_nm)[-1]))
    ntun = wave.shape[1]
    coords = np.zeros((nt, ntun, 2, 2, 4))
    for jy in range(2):
        for ix in range(2):
            coords[:, :, jy, ix, 0] = ORIGIN_ARCSEC[0] + STEP_ARCSEC * ix * (nx - 1)
            coords[:, :, jy, ix, 1] = ORIGIN_ARCSEC[1] + STEP_ARCSEC * jy * (ny - 1)
    coords[..., 2] = wave[:, :, None, None]
    coords[..., 3] = np.asarray(times, float)[:, :, None, None]
    return coords


def write_sst_cube(
    path: Path,
    stokes: np.ndarray,
    wavelengths_nm: np.ndarray,
    times: np.ndarray,
    stokes_codes: Sequence[int] = (1, 2, 3, 4),
    cavity_nm: Optional[np.ndarray] = None,
    table: bool = True,
    column: str = "HPLN+HPLT+WAVE+TIME",
    coordinates: Optional[np.ndarray] = None,
    extra: Optional[dict] = None,
) -> Path:
    """Write ``stokes`` ``(nt, ny, nx, 4, nw)`` (I, Q, U, V) as an SST ``*_im.fits`` cube.

    ``stokes_codes``: the Stokes codes along the file's Stokes axis, a linear
    sequence (1, 2, 3, 4) or (4, 3, 2, 1). ``cavity_nm``: ``(nt, ny, nx)``
    written as a ``WCSDVARR`` extension. ``table=False`` leaves out the
    ``WCS-TAB`` extension; ``coordinates`` replaces the coordinate array;
    ``extra``: header cards to set (a None value deletes the card).
    """
    stokes = np.asarray(stokes, dtype=np.float32)
    nt, ny, nx, _, nw = stokes.shape
    codes = list(stokes_codes)
    data = np.transpose(stokes, (0, 3, 4, 1, 2))  # (nt, 4, nw, ny, nx)
    data = np.ascontiguousarray(data[:, [c - 1 for c in codes]])
    hdr = fits.Header()
    hdr["INSTRUME"] = "CRISP"
    hdr["TELESCOP"] = "Swedish 1-meter Solar Telescope"
    hdr["BUNIT"] = "Ic"
    hdr["DATEREF"] = "2021-06-22T00:00:00.000000"
    for axis, (ctype, unit) in enumerate((("HPLN-TAB", "arcsec"), ("HPLT-TAB", "arcsec"), ("WAVE-TAB", "nm")), 1):
        hdr[f"CTYPE{axis}"] = ctype
        hdr[f"CUNIT{axis}"] = unit
        hdr[f"PS{axis}_0"] = "WCS-TAB"
        hdr[f"PS{axis}_1"] = column
        hdr[f"PV{axis}_3"] = axis
        hdr[f"CRPIX{axis}"], hdr[f"CRVAL{axis}"], hdr[f"CDELT{axis}"] = 0, 0, 1
    hdr["CTYPE4"] = "STOKES"
    hdr["CRPIX4"], hdr["CRVAL4"], hdr["CDELT4"] = 1, codes[0], codes[1] - codes[0]
    hdr["CTYPE5"], hdr["CUNIT5"] = "UTC--TAB", "s"
    hdr["PS5_0"], hdr["PS5_1"], hdr["PV5_3"] = "WCS-TAB", column, 4
    hdr["CRPIX5"], hdr["CRVAL5"], hdr["CDELT5"] = 0, 0, 1
    for key, value in (extra or {}).items():
        if value is None:
            hdr.remove(key, ignore_missing=True)
        else:
            hdr[key] = value
    hdus = [fits.PrimaryHDU(data, header=hdr)]
    if table:
        coords = sst_coordinates(nt, ny, nx, wavelengths_nm, times) if coordinates is None else coordinates
        cols = [
            fits.Column(name=column, format=f"{coords.size}D", dim="(" + ",".join(str(n) for n in coords.shape[::-1]) + ")",
                        array=coords[None]),
            fits.Column(name="HPLN-INDEX", format="2E", array=np.array([[1.0, nx]])),
            fits.Column(name="HPLT-INDEX", format="2E", array=np.array([[1.0, ny]])),
        ]
        hdus.append(fits.BinTableHDU.from_columns(cols, name="WCS-TAB"))
    if cavity_nm is not None:
        cav = fits.ImageHDU(np.asarray(cavity_nm, np.float32).reshape(nt, 1, 1, ny, nx), name="WCSDVARR")
        cav.header["BUNIT"] = "nm"
        hdus.append(cav)
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return path
