"""hashwfa.wfa.observation.stokes_fits: the Stokes cube and wavelengths files, read in both axis orders."""

import numpy as np
import pytest
from astropy.io import fits

from hashwfa.wfa.observation.stokes_fits import WAVELENGTH_UNITS, read_stokes_fits


def _write(tmp_path, cube, wavelengths, unit="Angstrom"):
    sp, wp = tmp_path / "s.fits", tmp_path / "w.fits"
    fits.PrimaryHDU(cube).writeto(sp)
    hdu = fits.PrimaryHDU(wavelengths)
    hdu.header["BUNIT"] = unit
    hdu.writeto(wp)
    return sp, wp


def test_sstred_order_is_transposed_to_numpy_order(tmp_path):
    ny, nx, nw = 3, 5, 7
    swyx = np.arange(4 * nw * ny * nx, dtype=np.float64).reshape(4, nw, ny, nx)
    sp, wp = _write(tmp_path, swyx, np.linspace(-0.3, 0.3, nw))
    with pytest.warns(UserWarning, match="SSTRED"):
        files = read_stokes_fits(sp, wp, line="5173")
    assert files.stokes.shape == (ny, nx, 4, nw)
    # element (y, x, s, w) of the result is element (s, w, y, x) of the file
    for y, x, s, w in [(0, 0, 0, 0), (2, 4, 3, 6), (1, 3, 2, 5)]:
        assert files.stokes[y, x, s, w] == swyx[s, w, y, x]
    assert files.mask is None and files.line.name == "5173"


def test_wavelengths_in_milliangstrom_are_converted(tmp_path):
    nw = 5
    cube = np.zeros((2, 2, 4, nw))
    sp, wp = _write(tmp_path, cube, np.array([-200.0, -100.0, 0.0, 100.0, 200.0]), unit="mA")
    files = read_stokes_fits(sp, wp, line="5173")
    np.testing.assert_allclose(files.wavelengths, [-0.2, -0.1, 0.0, 0.1, 0.2])
    assert WAVELENGTH_UNITS["nm"] == 10.0
