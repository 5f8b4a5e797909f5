"""Series files (hashwfa.wfa.observation.stokes_fits, Observation.from_fits / from_sst): (nt, ny, nx, 4, nw) cubes with frame times."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.synthetic.series import synthetic_series

_spec = importlib.util.spec_from_file_location("sst_files", Path(__file__).with_name("sst_files.py"))
sst_files = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sst_files)


@pytest.fixture(scope="module")
def series():
    return synthetic_series(nt=3, ny=10, nx=8, seed=2, model="wfa")


def test_series_round_trip_with_times_and_mask(tmp_path, series):
    mask = np.ones((3, 10, 8), bool)
    mask[2, 4, 4] = False
    obs = Observation(series.stokes, series.wavelengths, times=[5.0, 25.0, 47.5], mask=mask)
    sp, wp = obs.write_fits(tmp_path / "s.fits", tmp_path / "w.fits")
    with fits.open(sp) as hdul:
        assert hdul[0].header["HWAXES"] == "T,Y,X,STOKES,WAVE"
        assert hdul[0].header["NAXIS5"] == 3 and hdul[0].header["NAXIS2"] == 4
        np.testing.assert_array_equal(hdul["TIMES"].data["TIME"], [5.0, 25.0, 47.5])
    back = Observation.from_fits(sp, wp)
    assert back.map_shape == (3, 10, 8)
    np.testing.assert_array_equal(back.stokes, series.stokes.astype(np.float32))
    np.testing.assert_array_equal(back.times, [5.0, 25.0, 47.5])
    np.testing.assert_array_equal(back.mask, mask)


def test_series_without_times_and_a_one_frame_series(tmp_path, series):
    obs = Observation(series.stokes[:1], series.wavelengths)
    sp, wp = obs.write_fits(tmp_path / "s.fits", tmp_path / "w.fits")
    back = Observation.from_fits(sp, wp)  # declared a series: the length-1 time axis is kept
    assert back.map_shape == (1, 10, 8) and back.times is None


def test_sstred_order_series_is_transposed(tmp_path, series):
    path = tmp_path / "s.fits"
    fits.PrimaryHDU(np.transpose(series.stokes, (0, 3, 4, 1, 2)).astype(np.float32)).writeto(path)
    fits.PrimaryHDU(series.wavelengths).writeto(tmp_path / "w.fits")
    with pytest.warns(UserWarning, match=r"\(nt, 4, nw, ny, nx\)"):
        back = Observation.from_fits(path, tmp_path / "w.fits")
    np.testing.assert_array_equal(back.stokes, series.stokes.astype(np.float32))


def test_spatial_wcs_and_dates_are_carried(tmp_path, series):
    hdr = fits.Header()
    hdr["HWAXES"] = "T,Y,X,STOKES,WAVE"
    hdr["CTYPE3"], hdr["CUNIT3"], hdr["CRPIX3"], hdr["CRVAL3"], hdr["CDELT3"] = "HPLN-TAN", "arcsec", 1.0, -10.0, 0.044
    hdr["CTYPE4"], hdr["CUNIT4"], hdr["CRPIX4"], hdr["CRVAL4"], hdr["CDELT4"] = "HPLT-TAN", "arcsec", 1.0, 20.0, 0.044
    hdr["PC3_4"] = 0.01
    hdr["DATEREF"] = "2020-08-07T00:00:00"
    path = tmp_path / "s.fits"
    fits.PrimaryHDU(series.stokes.astype(np.float32), header=hdr).writeto(path)
    fits.PrimaryHDU(series.wavelengths).writeto(tmp_path / "w.fits")
    obs = Observation.from_fits(path, tmp_path / "w.fits")
    cards = {key: value for key, value, _ in obs.map_cards}
    assert cards["CTYPE1"] == "HPLN-TAN" and cards["CTYPE2"] == "HPLT-TAN"
    assert cards["CRVAL1"] == -10.0 and cards["CRVAL2"] == 20.0 and cards["PC1_2"] == 0.01
    assert cards["DATEREF"] == "2020-08-07T00:00:00"
    assert "CTYPE3" not in cards
    assert obs.frame(1).map_cards == obs.map_cards


def test_times_table_of_the_wrong_length(tmp_path, series):
    hdr = fits.Header()
    hdr["HWAXES"] = "T,Y,X,STOKES,WAVE"
    times = fits.BinTableHDU.from_columns([fits.Column(name="TIME", format="D", array=np.array([0.0, 1.0]))],
                                          name="TIMES")
    path = tmp_path / "s.fits"
    fits.HDUList([fits.PrimaryHDU(series.stokes.astype(np.float32), header=hdr), times]).writeto(path)
    fits.PrimaryHDU(series.wavelengths).writeto(tmp_path / "w.fits")
    with pytest.raises(HashwfaError, match="2 times for 3 frames"):
        Observation.from_fits(path, tmp_path / "w.fits")


def test_sst_cube_as_an_observation(tmp_path, series):
    nt = 3
    times = 3600.0 + 15.0 * np.arange(nt)[:, None] + 0.25 * np.arange(13)[None, :]
    wave_nm = (5172.6843 + series.wavelengths) / 10.0
    cavity = np.full((nt, 10, 8), 2e-4)
    path = sst_files.write_sst_cube(tmp_path / "c_im.fits", series.stokes, wave_nm, times, cavity_nm=cavity)
    with pytest.warns(UserWarning, match="not applied"):
        obs = Observation.from_sst(path)
    assert obs.map_shape == (3, 10, 8) and obs.line.name == "5173"
    np.testing.assert_allclose(obs.wavelengths, series.wavelengths, atol=1e-6)
    np.testing.assert_allclose(obs.times, times.mean(axis=1))
    np.testing.assert_array_equal(obs.stokes, series.stokes.astype(np.float32))
    cards = {key: value for key, value, _ in obs.map_cards}
    assert cards["CTYPE1"] == "HPLN-TAN" and cards["DATEREF"].startswith("2021-06-22")
    assert len(obs.notes) == 1 and "cavity" in obs.notes[0]
    one = sst_files.write_sst_cube(tmp_path / "one_im.fits", series.stokes[:1], wave_nm, times[:1])
    single = Observation.from_sst(one)
    assert not single.is_series and single.map_shape == (10, 8)
