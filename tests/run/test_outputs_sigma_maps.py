"""field.fits carries the sigma maps and the noise header when they are given."""

import numpy as np
from astropy.io import fits

from hashwfa.run.outputs import write_field_fits
from hashwfa.wfa.physics.maps import FieldMaps, FieldSigmas
from hashwfa.wfa.observation.noise import given_noise


def test_field_fits_with_sigmas_and_noise(tmp_path):
    ones = np.ones((3, 4))
    maps = FieldMaps.from_bqbu(ones, ones, ones)
    sig = FieldSigmas(blos=2 * ones, bq=3 * ones, bu=4 * ones, bt=5 * ones, azimuth=0.1 * ones)
    path = tmp_path / "field.fits"
    write_field_fits(path, maps, maps, provenance={}, config={"a": 1}, sigmas=sig, wfa_sigmas=sig,
                     noise=given_noise([1e-3, 2e-3, 3e-3, 4e-3], nw=5))
    with fits.open(path) as hdul:
        assert hdul[0].header["NOISE_V"] == 4e-3
        assert hdul[0].header["NOISEMTH"] == "given"
        assert hdul["WFA_SIGMA_BLOS"].header["BUNIT"] == "G"
        np.testing.assert_array_equal(hdul["SIGMA_BTRANS"].data, 5.0)
        np.testing.assert_allclose(hdul["WFA_SIGMA_AZIMUTH"].data, 0.1, rtol=1e-6)


def test_field_fits_without_sigmas_has_none(tmp_path):
    ones = np.ones((3, 4))
    maps = FieldMaps.from_bqbu(ones, ones, ones)
    path = tmp_path / "field.fits"
    write_field_fits(path, maps, maps, provenance={}, config={})
    with fits.open(path) as hdul:
        assert not any("SIGMA" in h.name for h in hdul)
        assert "NOISEMTH" not in hdul[0].header
