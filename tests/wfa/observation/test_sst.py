"""Reading SST pipeline cubes (hashwfa.wfa.observation.sst) from small files the tests write themselves."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.sst import read_sst_cube

_spec = importlib.util.spec_from_file_location("sst_files", Path(__file__).with_name("sst_files.py"))
sst_files = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sst_files)

NT, NY, NX, NW = 3, 5, 6, 7
#: Mg I b2 centre in nm (5172.6843 A), tunings -0.024..+0.024 nm.
CENTRE_NM = 517.26843
OFFSETS_NM = np.linspace(-0.024, 0.024, NW)


def _series(seed=0):
    rng = np.random.default_rng(seed)
    stokes = rng.standard_normal((NT, NY, NX, 4, NW)).astype(np.float32)
    times = 1000.0 + 20.0 * np.arange(NT)[:, None] + 0.5 * np.arange(NW)[None, :]  # (nt, ntun) s
    return stokes, CENTRE_NM + OFFSETS_NM, times


def test_round_trip_order_wavelengths_times(tmp_path):
    stokes, wave, times = _series()
    path = sst_files.write_sst_cube(tmp_path / "c_im.fits", stokes, wave, times)
    cube = read_sst_cube(path)
    assert cube.shape == (NT, NY, NX, 4, NW)
    assert cube.line.name == "5173"
    np.testing.assert_array_equal(cube.read(), stokes)
    np.testing.assert_array_equal(cube.frame(1), stokes[1])
    np.testing.assert_array_equal(cube.read([2, 0]), stokes[[2, 0]])
    # nm -> Angstrom, relative to 5172.6843 A.
    np.testing.assert_allclose(cube.wavelengths, 10.0 * OFFSETS_NM, atol=1e-9)
    np.testing.assert_allclose(cube.times, 1000.0 + 20.0 * np.arange(NT) + 0.5 * (NW - 1) / 2)
    np.testing.assert_allclose(cube.tuning_times, times)
    assert cube.date_ref == "2021-06-22T00:00:00.000000"
    assert cube.cavity is None and not cube.notes


def test_spatial_wcs_from_the_corners(tmp_path):
    stokes, wave, times = _series()
    cube = read_sst_cube(sst_files.write_sst_cube(tmp_path / "c_im.fits", stokes, wave, times))
    h = cube.spatial_header
    assert (h["CTYPE1"], h["CTYPE2"]) == ("HPLN-TAN", "HPLT-TAN")
    assert h["CRPIX1"] == 1.0 and h["CRPIX2"] == 1.0
    assert h["CRVAL1"] == pytest.approx(sst_files.ORIGIN_ARCSEC[0])
    assert h["CRVAL2"] == pytest.approx(sst_files.ORIGIN_ARCSEC[1])
    assert h["CD1_1"] == pytest.approx(sst_files.STEP_ARCSEC) and h["CD2_2"] == pytest.approx(sst_files.STEP_ARCSEC)
    assert h["CD1_2"] == pytest.approx(0.0, abs=1e-12) and h["CD2_1"] == pytest.approx(0.0, abs=1e-12)
    assert h["DATEREF"] == "2021-06-22T00:00:00.000000" and h["INSTRUME"] == "CRISP"


def test_stokes_order_from_ctype4(tmp_path):
    stokes, wave, times = _series(1)
    path = sst_files.write_sst_cube(tmp_path / "c_im.fits", stokes, wave, times, stokes_codes=(4, 3, 2, 1))
    cube = read_sst_cube(path)
    assert cube.stokes_index == (3, 2, 1, 0)
    np.testing.assert_array_equal(cube.read(), stokes)


def test_cavity_map_is_reported_not_dropped(tmp_path):
    stokes, wave, times = _series()
    cavity = np.random.default_rng(2).uniform(-4e-4, 4e-4, (NT, NY, NX))  # nm
    path = sst_files.write_sst_cube(tmp_path / "c_im.fits", stokes, wave, times, cavity_nm=cavity)
    with pytest.warns(UserWarning, match="cavity map"):
        cube = read_sst_cube(path)
    assert cube.cavity_applied is False and len(cube.notes) == 1
    np.testing.assert_allclose(cube.cavity, 10.0 * cavity.astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(cube.read(), stokes)  # the data are not resampled


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"table": False}, "WCS-TAB"),
        ({"extra": {"PS3_1": "WAVE+TIME"}}, "no column 'WAVE\\+TIME'"),
        ({"extra": {"CTYPE4": "LINEAR"}}, "CTYPE4"),
        ({"extra": {"CTYPE3": "WAVE"}}, "WAVE-TAB"),
        ({"extra": {"CUNIT3": "furlong"}}, "CUNIT3"),
    ],
)
def test_malformed_cubes_are_clear_errors(tmp_path, kwargs, message):
    stokes, wave, times = _series()
    path = sst_files.write_sst_cube(tmp_path / "c_im.fits", stokes, wave, times, **kwargs)
    with pytest.raises(HashwfaError, match=message):
        read_sst_cube(path)


def test_coordinate_table_of_the_wrong_shape(tmp_path):
    stokes, wave, times = _series()
    coords = sst_files.sst_coordinates(NT - 1, NY, NX, wave, times[:-1])
    path = sst_files.write_sst_cube(tmp_path / "c_im.fits", stokes, wave, times, coordinates=coords)
    with pytest.raises(HashwfaError, match=r"has shape \(2, 7, 2, 2, 4\); expected \(3, 7, 2, 2, 4\)"):
        read_sst_cube(path)


def test_tabulated_wavelengths_must_be_usable(tmp_path):
    stokes, wave, times = _series()
    drifting = np.stack([wave + 0.002 * t for t in range(NT)])  # 20 mA per scan: a third of a step
    path = sst_files.write_sst_cube(tmp_path / "d_im.fits", stokes, drifting, times)
    with pytest.raises(HashwfaError, match="change between scans"):
        read_sst_cube(path)
    path = sst_files.write_sst_cube(tmp_path / "r_im.fits", stokes, wave[::-1], times)
    with pytest.raises(HashwfaError, match="strictly increasing"):
        read_sst_cube(path)
    nan_wave = wave.copy()
    nan_wave[3] = np.nan
    path = sst_files.write_sst_cube(tmp_path / "n_im.fits", stokes, nan_wave, times)
    with pytest.raises(HashwfaError, match="NaN"):
        read_sst_cube(path)


def test_line_is_guessed_only_when_unambiguous(tmp_path):
    stokes, _, times = _series()
    # A Fe I 6302 scan wide enough to hold 6301.4995 A and 6302.4931 A.
    wave = np.linspace(630.14, 630.26, NW)
    path = sst_files.write_sst_cube(tmp_path / "c_im.fits", stokes, wave, times)
    with pytest.raises(HashwfaError, match="name the line"):
        read_sst_cube(path)
    cube = read_sst_cube(path, line="6302")
    np.testing.assert_allclose(cube.wavelengths, 10.0 * wave - 6302.4931, atol=1e-9)


def test_not_an_sst_cube(tmp_path):
    from astropy.io import fits

    path = tmp_path / "flat.fits"
    fits.PrimaryHDU(np.zeros((4, 7, 5, 6), np.float32)).writeto(path)
    with pytest.raises(HashwfaError, match="5"):
        read_sst_cube(path)
    with pytest.raises(HashwfaError, match="not found"):
        read_sst_cube(tmp_path / "missing.fits")


def test_frame_index_is_checked(tmp_path):
    stokes, wave, times = _series()
    cube = read_sst_cube(sst_files.write_sst_cube(tmp_path / "c_im.fits", stokes, wave, times))
    with pytest.raises(HashwfaError, match="out of range"):
        cube.frame(NT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cube.frame(NT - 1)


def _cube_with(tmp_path, name, stokes, wave, times, **kwargs):
    return sst_files.write_sst_cube(tmp_path / name, stokes, wave, times, **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_spatial_corners_are_one_error(tmp_path, bad):
    stokes, wave, times = _series()
    coords = sst_files.sst_coordinates(NT, NY, NX, wave, times)
    coords[0, 0, 0, 0, 1] = bad  # one HPLT corner
    path = _cube_with(tmp_path, "c_im.fits", stokes, wave, times, coordinates=coords)
    with pytest.raises(HashwfaError, match=r"c_im\.fits: the tabulated HPLN/HPLT coordinates .* NaN or infinite.*Fix"):
        read_sst_cube(path)


@pytest.mark.parametrize("card, value", [("PV3_3", "abc"), ("PV3_3", 2.5), ("CRVAL4", "I"), ("CDELT4", "one")])
def test_header_cards_that_are_not_numbers_are_one_error(tmp_path, card, value):
    stokes, wave, times = _series()
    path = _cube_with(tmp_path, "c_im.fits", stokes, wave, times, extra={card: value})
    with pytest.raises(HashwfaError, match=rf"c_im\.fits: header card {card} = {value!r} is not .*Fix"):
        read_sst_cube(path)


def test_an_unparsable_header_card_is_one_error(tmp_path):
    stokes, wave, times = _series()
    path = _cube_with(tmp_path, "c_im.fits", stokes, wave, times)
    raw = bytearray(path.read_bytes())
    at = raw.index(b"CRVAL3  =")
    raw[at:at + 80] = b"CRVAL3  =                  NaN".ljust(80)  # not a FITS value
    path.write_bytes(bytes(raw))
    with pytest.raises(HashwfaError, match=r"c_im\.fits: header card CRVAL3 cannot be parsed.*Fix"):
        read_sst_cube(path)


def test_a_truncated_cube_is_one_error(tmp_path):
    from hashwfa.wfa.observation.observation import Observation

    stokes, wave, times = _series()
    path = _cube_with(tmp_path, "c_im.fits", stokes, wave, times)
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])  # a copy that stopped half-way
    with pytest.raises(HashwfaError, match=r"c_im\.fits: the file has \d+ bytes .* is the file complete"):
        Observation.from_sst(path, active_indices=(2, 3, 4))


@pytest.mark.parametrize("lazy", [True, False])
def test_an_int16_cube_with_bscale_is_read_whole(tmp_path, lazy):
    from astropy.io import fits

    from hashwfa.wfa.observation.observation import Observation

    stokes, wave, times = _series()
    stokes = 1.0 + 0.1 * stokes
    path = _cube_with(tmp_path, "f_im.fits", stokes, wave, times)
    with fits.open(path) as hdul:
        scaled = fits.HDUList([fits.PrimaryHDU(hdul[0].data, header=hdul[0].header), hdul[1].copy()])
        scaled[0].scale("int16", bscale=1e-4, bzero=1.0)
        scaled.writeto(tmp_path / "s_im.fits")
    obs = Observation.from_sst(tmp_path / "s_im.fits", active_indices=(2, 3, 4), lazy=lazy)
    # int16 steps of 1e-4 around 1: each value within half a step of what was written.
    np.testing.assert_allclose(obs.stokes, stokes, atol=0.6e-4)
    assert not lazy or any("scaled" in note for note in obs.notes)
