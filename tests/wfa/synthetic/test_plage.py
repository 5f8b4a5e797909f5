"""The synthetic plage: grid, determinism, realism bounds (telescope PSF, flux
concentrations, transverse field), FITS files, errors."""

import math
import time

import numpy as np
import pytest
from astropy.io import fits

import hashwfa
from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import azimuth_difference
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.synthetic.plage import psf_fwhm_pixels, synthetic_plage


def test_default_size_grid_and_speed():
    t0 = time.perf_counter()
    plage = synthetic_plage()
    elapsed = time.perf_counter() - t0
    assert elapsed < 10.0  # ~0.2-0.5 s on one core; generous for slow CI
    obs = plage.observation
    assert obs.stokes.shape == (200, 178, 4, 13)
    np.testing.assert_allclose(obs.wavelengths, -0.24 + 0.04 * np.arange(13), atol=1e-12)
    assert obs.active_indices == (5, 6, 7) and obs.line.name == "5173" and obs.unit == "Ic"
    t = plage.truth
    assert t.blos.shape == (200, 178)
    # plage: kG concentrations but within what the WFA handles, a weaker extended field
    assert 900 < np.abs(t.blos).max() <= 1500
    assert 0.01 < np.mean(np.abs(t.blos) > 500) < 0.2
    assert np.median(np.abs(t.blos)) < 150
    assert np.all((t.azimuth >= 0) & (t.azimuth < math.pi))
    np.testing.assert_allclose(t.bq, t.bt ** 2 * np.cos(2 * t.azimuth), atol=1e-6 * t.bt.max() ** 2)
    a = plage.atmosphere
    assert 0.3 <= a["depth"].min() and a["depth"].max() <= 0.9
    assert np.abs(a["shift"]).max() < 0.05  # a few tenths of km/s
    # the noise matters for the weak field: the pixel-wise B_los error there is several gauss
    res = pixel_wfa(obs)
    weak = np.abs(t.blos) < 100
    assert np.sqrt(np.mean((res.blos - t.blos)[weak] ** 2)) > 5.0


def test_psf_width_from_the_telescope():
    # by hand: 1.03 * 5172.6843e-10 m / 0.97 m = 5.4927e-7 rad = 0.11330 arcsec;
    # hypot(0.11330, 0.10 seeing) = 0.15112 arcsec; / 0.044 arcsec/px = 3.4345 px
    assert psf_fwhm_pixels("5173") == pytest.approx(3.4345, abs=1e-3)
    assert psf_fwhm_pixels("8542") > psf_fwhm_pixels("5173")  # diffraction grows with wavelength
    plage = synthetic_plage(ny=12, nx=10, seed=1)
    assert plage.parameters["psf_fwhm"] == pytest.approx(3.4345, abs=1e-3)
    assert plage.parameters["pixel_scale"] == 0.044


@pytest.mark.parametrize("fwhm", [None, 2.0])
def test_truth_is_the_psf_weighted_intrinsic_field(fwhm):
    ndimage = pytest.importorskip("scipy.ndimage")
    plage = synthetic_plage(ny=40, nx=34, seed=2, noise=0.0, psf_fwhm=fwhm)
    sigma = plage.parameters["psf_fwhm"] / (2 * math.sqrt(2 * math.log(2)))
    for name in ("blos", "bq", "bu"):
        # independent oracle: scipy's Gaussian filter, half-sample-symmetric ("reflect") borders
        want = ndimage.gaussian_filter(getattr(plage.intrinsic, name), sigma, mode="reflect", truncate=4.0)
        np.testing.assert_allclose(getattr(plage.truth, name), want, rtol=1e-10,
                                   atol=1e-10 * np.abs(want).max())
    t = plage.truth
    np.testing.assert_allclose(t.bt, (t.bq ** 2 + t.bu ** 2) ** 0.25, rtol=1e-12)
    # no PSF: the truth is the intrinsic field
    sharp = synthetic_plage(ny=40, nx=34, seed=2, noise=0.0, psf_fwhm=0)
    np.testing.assert_array_equal(sharp.truth.blos, sharp.intrinsic.blos)
    np.testing.assert_array_equal(sharp.intrinsic.blos, plage.intrinsic.blos)


@pytest.fixture(scope="module")
def default_plages():
    return [synthetic_plage(seed=s, noise=0.0) for s in (0, 1)]


def test_structures_are_resolved_not_single_pixels(default_plages):
    for plage in default_plages:
        blos = plage.truth.blos
        b = np.abs(blos)
        # the steepest curvature is that of a Gaussian of sigma >= ~2.4 px (1-px blobs give ~1)
        d2 = max(np.abs(np.diff(blos, 2, axis=0)).max(), np.abs(np.diff(blos, 2, axis=1)).max())
        assert d2 < 0.15 * b.max()
        # every strong concentration is several px across: >= half its peak 2 px from its centre
        inner = b[2:-2, 2:-2]
        peak = (inner > 800) & np.all([inner >= b[2 + dy:b.shape[0] - 2 + dy, 2 + dx:b.shape[1] - 2 + dx]
                                       for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
        y, x = np.nonzero(peak)
        assert len(y) >= 5
        for dy, dx in ((2, 0), (-2, 0), (0, 2), (0, -2)):
            assert np.all(b[y + 2 + dy, x + 2 + dx] >= 0.5 * b[y + 2, x + 2])


def test_transverse_field_is_plage_like(default_plages):
    for plage in default_plages:
        t, b = plage.truth, np.abs(plage.truth.blos)
        flank = (b > 200) & (b < 600)  # around the concentrations
        quiet = b < 50
        assert np.median(t.bt[flank]) > 250  # several hundred G in and around them
        assert np.median(t.bt[quiet]) < 200  # weaker elsewhere
        # azimuth coherent over several px where the field is measurable
        strong = t.bt > 200
        d = np.concatenate([azimuth_difference(t.azimuth[:, 3:], t.azimuth[:, :-3])[strong[:, 3:] & strong[:, :-3]],
                            azimuth_difference(t.azimuth[3:], t.azimuth[:-3])[strong[3:] & strong[:-3]]])
        assert np.degrees(np.median(d)) < 10
        # the weak-field regime of Mg I b2
        assert np.hypot(plage.intrinsic.blos, plage.intrinsic.bt).max() < 1800
        assert b.max() < 1500


def test_deterministic_and_seeded():
    a = synthetic_plage(ny=20, nx=16, seed=5)
    b = synthetic_plage(ny=20, nx=16, seed=5)
    c = synthetic_plage(ny=20, nx=16, seed=6)
    np.testing.assert_array_equal(a.observation.stokes, b.observation.stokes)
    np.testing.assert_array_equal(a.truth.blos, b.truth.blos)
    assert not np.array_equal(a.truth.blos, c.truth.blos)
    # another noise level: same field, same noise pattern scaled
    clean = synthetic_plage(ny=20, nx=16, seed=5, noise=0.0)
    loud = synthetic_plage(ny=20, nx=16, seed=5, noise=2e-3)
    np.testing.assert_array_equal(clean.truth.bt, a.truth.bt)
    np.testing.assert_allclose(loud.observation.stokes - clean.observation.stokes,
                               2 * (a.observation.stokes - clean.observation.stokes), atol=1e-12)
    noise = a.observation.stokes - clean.observation.stokes
    assert noise.std() == pytest.approx(1e-3, rel=0.05)


def test_models_differ_but_share_the_field():
    z = synthetic_plage(ny=16, nx=14, seed=1, noise=0.0, model="zeeman")
    w = synthetic_plage(ny=16, nx=14, seed=1, noise=0.0, model="wfa")
    np.testing.assert_array_equal(z.truth.blos, w.truth.blos)
    assert not np.allclose(z.observation.stokes, w.observation.stokes)
    assert z.parameters["model"] == "zeeman" and w.parameters["model"] == "wfa"


def test_write_fits(tmp_path):
    plage = synthetic_plage(ny=12, nx=10, seed=3)
    paths = plage.write_fits(tmp_path / "plage")
    assert sorted(p.name for p in paths.values()) == ["stokes.fits", "truth.fits", "wavelengths.fits"]
    with fits.open(paths["truth"]) as hdul:
        assert hdul[0].header["HWVERS"] == hashwfa.__version__ and hdul[0].header["SEED"] == 3
        units = {h.name: h.header.get("BUNIT") for h in hdul[1:]}
    assert units["BLOS"] == "G" and units["BTRANS"] == "G" and units["BQ"] == "G2"
    assert units["BU"] == "G2" and units["AZIMUTH"] == "rad" and units["WIDTH"] == "Angstrom"
    with fits.open(paths["stokes"]) as hdul:
        assert hdul[0].header["MODEL"] == "zeeman" and hdul[0].header["NOISE"] == 1e-3
        assert hdul[0].header["PSFFWHM"] == pytest.approx(plage.parameters["psf_fwhm"])
    intrinsic = FieldMaps.from_fits(paths["truth"], prefix="INTR_")
    np.testing.assert_allclose(intrinsic.blos, plage.intrinsic.blos, rtol=1e-6)
    obs = Observation.from_fits(paths["stokes"], paths["wavelengths"])
    np.testing.assert_allclose(obs.stokes, plage.observation.stokes, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(obs.wavelengths, plage.observation.wavelengths)
    truth = FieldMaps.from_fits(paths["truth"])
    np.testing.assert_allclose(truth.blos, plage.truth.blos, rtol=1e-6)
    np.testing.assert_allclose(truth.azimuth, plage.truth.azimuth, rtol=1e-6)
    with pytest.raises(HashwfaError, match="exists"):
        plage.write_fits(tmp_path / "plage")
    plage.write_fits(tmp_path / "plage", overwrite=True)


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"ny": 1}, "ny"),
        ({"nx": 2.5}, "nx"),
        ({"seed": -1}, "seed"),
        ({"noise": -1e-3}, "noise"),
        ({"noise": float("nan")}, "noise"),
        ({"model": "milne"}, "model"),
        ({"pattern": "quartet"}, "pattern"),
        ({"line": "9999"}, "5173"),
        ({"wavelengths": [0.1, 0.0, 0.2]}, "increasing"),
        ({"psf_fwhm": -1.0}, "psf_fwhm"),
        ({"psf_fwhm": float("inf")}, "psf_fwhm"),
        ({"qu_form": "core"}, "qu_form"),
        ({"model": "wfa", "wavelengths": [-0.1, 0.1]}, "3 wavelengths"),
    ],
)
def test_bad_arguments(kwargs, words):
    with pytest.raises(HashwfaError, match=words):
        synthetic_plage(**{"ny": 8, "nx": 8, **kwargs})
