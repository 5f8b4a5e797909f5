"""Observations: validation, coordinates, NaN pixels, absolute wavelengths, FITS."""

import warnings

import numpy as np
import pytest
from astropy.io import fits

import hashwfa
from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.lines import SpectralLine
from hashwfa.wfa.observation.observation import Observation

WL = np.round(np.linspace(-0.24, 0.24, 13), 10)


def cube(ny=4, nx=5, nw=13, seed=0):
    rng = np.random.default_rng(seed)
    wl = np.linspace(-0.24, 0.24, nw)
    out = np.empty((ny, nx, 4, nw))
    out[:, :, 0] = 1 - 0.5 * np.exp(-((wl / 0.12) ** 2))
    out[:, :, 1:] = 1e-3 * rng.standard_normal((ny, nx, 3, nw))
    return out


def test_basic_properties_and_coordinates():
    assert Observation(cube(), WL, line="5173").active_indices == tuple(range(13))  # default: every wavelength
    obs = Observation(cube(), WL, line="5173", active_indices=(7, 5, 6))
    assert (obs.ny, obs.nx, obs.nw, obs.n_pixels, obs.n_valid) == (4, 5, 13, 20, 20)
    assert obs.active_indices == (5, 6, 7)
    np.testing.assert_allclose(obs.active_wavelengths, [-0.04, 0.0, 0.04], atol=1e-12)
    c = obs.coordinates()
    assert c.dtype == np.float32 and c.shape == (20, 2)
    # row-major (y, x); first pixel centre at -1, last at +1
    np.testing.assert_allclose(c[0], [-1, -1])
    np.testing.assert_allclose(c[-1], [1, 1])
    np.testing.assert_allclose(c[1], [-1, -0.5])  # x moves fastest
    np.testing.assert_allclose(c[5], [-1 + 2 / 3, -1])
    assert obs.flat_stokes.shape == (20, 4, 13)
    assert np.shares_memory(obs.flat_stokes, obs.stokes)


def test_active_indices_are_sorted():
    obs = Observation(cube(), WL, active_indices=[7, 5, 6])
    assert obs.active_indices == (5, 6, 7)


@pytest.mark.parametrize(
    "stokes, wl, kwargs, words",
    [
        (cube()[0], WL, {}, ["3 dimensions", "(ny, nx, 4, nw)"]),
        (cube()[:, :, :3], WL, {}, ["Stokes axis", "expected 4"]),
        (np.transpose(cube(3, 5), (2, 3, 0, 1)), WL, {}, ["Stokes axis", "np.transpose"]),
        (np.transpose(cube(4, 5), (2, 3, 0, 1)), WL, {}, ["nw = 5", "np.transpose"]),
        (cube(), WL[:-1], {}, ["wavelengths", "nw = 13", "(13,)"]),
        (cube(), WL[::-1], {}, ["strictly increasing"]),
        (cube(), np.where(np.arange(13) == 4, WL[3], WL), {}, ["strictly increasing", "index 3"]),
        (cube(), np.where(np.arange(13) == 4, np.nan, WL), {}, ["NaN"]),
        (cube(), WL, {"active_indices": (5, 6, 13)}, ["active_indices", "out of range", "0..12"]),
        (cube(), WL, {"active_indices": (-1, 6)}, ["active_indices", "out of range"]),
        (cube(), WL, {"active_indices": (5, 5)}, ["active_indices", "repeat"]),
        (cube(), WL, {"active_indices": ()}, ["active_indices", "empty"]),
        (cube(), WL, {"weights": (1, 1, 1)}, ["weights", "4"]),
        (cube(), WL, {"weights": (1, -1, 1, 1)}, ["weights"]),
        (cube(), WL, {"mask": np.ones((5, 4), bool)}, ["mask", "(4, 5)"]),
        (cube(), WL * 1000, {}, ["wavelengths", "mA"]),
    ],
)
def test_bad_input_raises_our_error_naming_the_problem(stokes, wl, kwargs, words):
    with pytest.raises(HashwfaError) as err:
        Observation(stokes, wl, source="my_cube.fits", **kwargs)
    msg = str(err.value)
    assert "my_cube.fits" in msg
    for word in words:
        assert word in msg, msg


def test_absolute_wavelengths_are_converted_with_a_warning():
    line = SpectralLine("5173", 5172.6843, 1, 1, 1.5, 2.0)
    with pytest.warns(UserWarning, match="absolute Angstrom"):
        obs = Observation(cube(), WL + 5172.6843, line=line)
    np.testing.assert_allclose(obs.wavelengths, WL, atol=1e-9)
    with pytest.warns(UserWarning, match="absolute nm"):
        obs = Observation(cube(), (WL + 5172.6843) / 10, line="5173")
    np.testing.assert_allclose(obs.wavelengths, WL, atol=1e-9)
    with pytest.raises(HashwfaError, match="8542"):
        Observation(cube(), WL + 5172.6843, line="8542")  # absolute, but not around this line


def test_nan_pixels_reported_once_and_excluded():
    data = cube()
    data[1, 2, 0, 6] = np.nan  # I at an active wavelength
    data[3, 4, 3, 5] = np.inf  # V at an active wavelength
    data[0, 0, 1, 0] = np.nan  # Q at an unused wavelength: harmless
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obs = Observation(data, WL, active_indices=(5, 6, 7))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and "2 of 20 pixels" in messages[0]
    assert obs.n_nonfinite == 2 and obs.n_valid == 18
    assert not obs.valid[1 * 5 + 2] and not obs.valid[3 * 5 + 4] and obs.valid[0]
    inputs = obs.wfa_inputs()
    for arr in (inputs.dI_dlambda, inputs.d2I_dlambda2, inputs.q, inputs.u, inputs.v):
        assert arr.shape == (18, 3) and np.all(np.isfinite(arr))


def test_mask_and_all_invalid():
    mask = np.ones((4, 5), bool)
    mask[0] = False
    obs = Observation(cube(), WL, mask=mask)
    assert obs.n_valid == 15
    np.testing.assert_array_equal(obs.valid_index, np.arange(5, 20))
    with pytest.raises(HashwfaError, match="no valid pixel"):
        Observation(cube(), WL, mask=np.zeros((4, 5), bool))


def test_fits_round_trip(tmp_path):
    data = cube(6, 7, seed=3)
    data[2, 3, 2, 6] = np.nan
    mask = np.ones((6, 7), bool)
    mask[0, :2] = False
    with pytest.warns(UserWarning, match="1 of 42"):
        obs = Observation(data, WL, line="8542", active_indices=(4, 6, 8), weights=(1, 2, 3, 4), mask=mask,
                          unit="Ic")
    sp, wp = obs.write_fits(tmp_path / "stokes.fits", tmp_path / "wl.fits", header={"OBSERVER": "test"})
    with fits.open(sp) as hdul:
        hdr = hdul[0].header
        assert hdul[0].data.shape == (6, 7, 4, 13)
        assert (hdr["NAXIS1"], hdr["NAXIS2"], hdr["NAXIS3"], hdr["NAXIS4"]) == (13, 4, 7, 6)
        assert hdr["BUNIT"] == "Ic" and hdr["CTYPE2"] == "STOKES" and hdr["HWAXES"] == "Y,X,STOKES,WAVE"
        assert hdr["LINE"] == "8542" and hdr["LINECEN"] == 8542.091
        assert hdr["HWVERS"] == hashwfa.__version__ and hdr["ORIGIN"] == "hashwfa"
        assert hdr["ACTIVE"] == "4,6,8" and hdr["OBSERVER"] == "test"
        assert hdul["MASK"].data.sum() == 40
    with fits.open(wp) as hdul:
        assert hdul[0].header["BUNIT"] == "Angstrom" and hdul[0].header["WAVEREF"] == "LINE_CENTRE"
        assert hdul[0].data.dtype.kind == "f" and hdul[0].data.dtype.itemsize == 8

    with pytest.warns(UserWarning, match="1 of 42"):
        back = Observation.from_fits(sp, wp, active_indices=(4, 6, 8), weights=(1, 2, 3, 4))
    assert back.line.name == "8542"  # from the header
    np.testing.assert_array_equal(back.wavelengths, obs.wavelengths)
    np.testing.assert_allclose(back.stokes, obs.stokes.astype(np.float32), rtol=0, atol=0, equal_nan=True)
    np.testing.assert_array_equal(back.mask, mask)
    np.testing.assert_array_equal(back.valid, obs.valid)
    assert back.unit == "Ic" and back.weights == (1, 2, 3, 4)
    with pytest.raises(HashwfaError, match="exists"):
        obs.write_fits(sp, wp)
    obs.write_fits(sp, wp, overwrite=True, dtype=np.float64)
    with pytest.warns(UserWarning):
        exact = Observation.from_fits(sp, wp, active_indices=(4, 6, 8))
    np.testing.assert_array_equal(exact.stokes, obs.stokes)


def test_from_fits_sstred_order_absolute_wavelengths_and_errors(tmp_path):
    data = cube(3, 4)
    fits.PrimaryHDU(np.transpose(data, (2, 3, 0, 1))[None].astype(np.float32)).writeto(tmp_path / "sst.fits")
    whdr = fits.Header()
    whdr["BUNIT"] = "nm"
    fits.PrimaryHDU((WL + 5172.6843) / 10, header=whdr).writeto(tmp_path / "wl_nm.fits")
    with pytest.warns(UserWarning) as record:
        obs = Observation.from_fits(tmp_path / "sst.fits", tmp_path / "wl_nm.fits", line="5173")
    text = " ".join(str(w.message) for w in record)
    assert "(4, nw, ny, nx)" in text and "absolute Angstrom" in text
    np.testing.assert_allclose(obs.stokes, data.astype(np.float32))
    np.testing.assert_allclose(obs.wavelengths, WL, atol=1e-9)

    fits.PrimaryHDU(WL[:-1]).writeto(tmp_path / "wl_short.fits")
    fits.PrimaryHDU(data).writeto(tmp_path / "cube.fits")
    with pytest.raises(HashwfaError) as err:
        Observation.from_fits(tmp_path / "cube.fits", tmp_path / "wl_short.fits")
    assert "cube.fits" in str(err.value) and "wl_short.fits" in str(err.value) and "(13,)" in str(err.value)
    with pytest.raises(HashwfaError, match="not found"):
        Observation.from_fits(tmp_path / "missing.fits", tmp_path / "wl_short.fits")
    (tmp_path / "junk.fits").write_text("not a fits file")
    with pytest.raises(HashwfaError, match="junk.fits"):
        Observation.from_fits(tmp_path / "junk.fits", tmp_path / "wl_short.fits")
    fits.PrimaryHDU(np.zeros((2, 13))).writeto(tmp_path / "wl_2d.fits")
    with pytest.raises(HashwfaError, match="1-D"):
        Observation.from_fits(tmp_path / "cube.fits", tmp_path / "wl_2d.fits")
