"""Milne-Eddington profiles: the unpolarised closed form (scipy's Voigt profile),
the instrument profile against the analytic Gaussian convolution, the weak-field
limit against the package's pixel-wise WFA, symmetries, and the synthetic plage
made with it."""

import math

import numpy as np
import pytest
from scipy.special import voigt_profile

from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.lines import get_line
from hashwfa.wfa.physics.milne_eddington import milne_eddington_stokes
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.synthetic.plage import synthetic_plage
from hashwfa.wfa.physics.zeeman import zeeman_stokes

C_KMS = 299792.458
ATM = dict(doppler_width=0.033, eta0=6.0, damping=0.12, velocity=0.4, s0=0.3, s1=0.7)


def test_zero_field_is_the_closed_form():
    """B = 0: I = S0 + S1 / (1 + eta0 phi), phi the area-normalised Voigt profile in
    Doppler units (Gaussian sigma 1/sqrt(2), Lorentzian half-width a); Q = U = V = 0."""
    wl = np.linspace(-0.3, 0.3, 121)
    line = get_line("6173")
    shape = (3,)
    dop = np.array([0.025, 0.033, 0.04])
    eta0 = np.array([2.0, 6.0, 15.0])
    a = np.array([0.0, 0.1, 0.5])
    vel = np.array([-1.0, 0.0, 2.0])
    i, q, u, v = milne_eddington_stokes(wl, line, np.zeros(shape), 0.7, 0.3, dop, eta0, a, vel, 0.25, 0.75)
    x = (wl[None, :] - (vel * line.center / C_KMS)[:, None]) / dop[:, None]
    phi = voigt_profile(x, 1 / math.sqrt(2), a[:, None])
    np.testing.assert_allclose(i, 0.25 + 0.75 / (1 + eta0[:, None] * phi), rtol=1e-12, atol=1e-12)
    assert np.abs(np.stack([q, u, v])).max() == 0.0


def test_instrument_profile_is_the_gaussian_convolution():
    """A weak Gaussian line (a = 0, eta0 << 1) is linear in phi: through a Gaussian
    filter it stays a Gaussian of the summed variances, on any (unequal) grid."""
    wl = np.array([-0.25, -0.17, -0.11, -0.065, -0.03, -0.01, 0.0, 0.012, 0.035, 0.07, 0.12, 0.2, 0.25])
    dop, eta0, fwhm = 0.033, 1e-4, 65.0
    i, _, _, _ = milne_eddington_stokes(wl, "6173", 0.0, 0.0, 0.0, dop, eta0, 0.0, 0.0, 0.0, 1.0,
                                        instrument_fwhm=fwhm)
    s_line = dop / math.sqrt(2)
    s_inst = fwhm * 1e-3 / (2 * math.sqrt(2 * math.log(2)))
    s_tot = math.hypot(s_line, s_inst)
    depth = eta0 / math.sqrt(math.pi) * s_line / s_tot * np.exp(-0.5 * (wl / s_tot) ** 2)
    np.testing.assert_allclose(1 - i, depth, rtol=2e-3, atol=1e-4 * depth.max())


@pytest.mark.parametrize("name", ["6173", "6301"])
@pytest.mark.parametrize("gamma", [0.4, 2.5])
def test_weak_field_limit_is_the_package_wfa(name, gamma):
    """A weak field on a fine grid: the package's pixel-wise WFA (three-point
    derivative) recovers B_los = B cos(gamma) within 1 %, sign included (6301 has
    an anomalous pattern)."""
    wl = np.round(np.arange(-0.3, 0.3 + 1e-9, 0.005), 10)
    b = np.array([[10.0, 30.0, 50.0]])
    i, q, u, v = milne_eddington_stokes(wl, name, b, gamma, 0.6, **ATM)
    obs = Observation(np.stack([i, q, u, v], axis=2), wl, line=name, active_indices=range(wl.size))
    blos = pixel_wfa(obs).blos
    np.testing.assert_allclose(blos, b * math.cos(gamma), rtol=0.01)


@pytest.mark.parametrize("name", ["6173", "6301"])
def test_weak_line_limit_is_the_zeeman_weak_line_model(name):
    """eta0 << 1: to first order in eta0 the solution is the weak-line synthesis of
    hashwfa.wfa.physics.zeeman with absorption S1 eta0 phi (separate code), at any field
    strength: a strong field checks the splitting, strengths and signs of the pattern."""
    wl = np.linspace(-0.3, 0.3, 241)
    dop, a, eta0, s1, vel = 0.03, 0.15, 1e-4, 0.7, 0.8
    shift = vel * get_line(name).center / C_KMS
    b, gamma, chi = np.array([2500.0]), np.array([0.8]), np.array([0.35])
    me = milne_eddington_stokes(wl, name, b, gamma, chi, dop, eta0, a, vel, 1 - s1, s1)

    def absorption(dl):
        return s1 * eta0 * voigt_profile((dl - shift) / dop, 1 / math.sqrt(2), a)

    weak = zeeman_stokes(absorption, wl, name, b, gamma, chi)
    scale = s1 * eta0
    for x, y in zip(me, weak):
        np.testing.assert_allclose(x, y, atol=2e-4 * scale)
    assert np.abs(me[3]).max() > 0.05 * scale and np.abs(me[1]).max() > 0.02 * scale


def test_symmetries():
    wl = np.linspace(-0.3, 0.3, 41)
    args = dict(doppler_width=0.03, eta0=8.0, damping=0.2, velocity=0.5, s0=0.2, s1=0.8)
    i, q, u, v = milne_eddington_stokes(wl, "6301", 1200.0, 0.6, 0.4, **args)
    # B -> -B (inclination -> pi - inclination) flips V and keeps I; Faraday rotation
    # turns the other way, so Q and U are those of the mirror azimuth -chi (U sign-flipped)
    i2, q2, u2, v2 = milne_eddington_stokes(wl, "6301", 1200.0, math.pi - 0.6, 0.4, **args)
    _, q_mirror, u_mirror, _ = milne_eddington_stokes(wl, "6301", 1200.0, 0.6, -0.4, **args)
    np.testing.assert_allclose(i2, i, atol=1e-13)
    np.testing.assert_allclose(v2, -v, atol=1e-13)
    np.testing.assert_allclose(q2, q_mirror, atol=1e-13)
    np.testing.assert_allclose(u2, -u_mirror, atol=1e-13)
    assert np.abs(q2 - q).max() > 1e-4  # magneto-optical effects are on
    # azimuth + pi/2 flips Q and U, keeps I and V
    i3, q3, u3, v3 = milne_eddington_stokes(wl, "6301", 1200.0, 0.6, 0.4 + math.pi / 2, **args)
    np.testing.assert_allclose(i3, i, atol=1e-13)
    np.testing.assert_allclose(v3, v, atol=1e-13)
    np.testing.assert_allclose(q3, -q, atol=1e-13)
    np.testing.assert_allclose(u3, -u, atol=1e-13)
    assert np.abs(q).max() > 1e-3 and np.abs(u).max() > 1e-3 and np.abs(v).max() > 1e-2


@pytest.mark.parametrize("kwargs, words", [
    (dict(doppler_width=0.0), "doppler_width"),
    (dict(eta0=-1.0), "eta0"),
    (dict(instrument_fwhm=-5.0), "instrument_fwhm"),
    (dict(instrument_fwhm=65.0, fine_step=0.02), "fine_step"),
])
def test_bad_arguments(kwargs, words):
    args = dict(ATM, **kwargs)
    with pytest.raises(HashwfaError, match=words):
        milne_eddington_stokes(np.linspace(-0.2, 0.2, 5), "6173", 100.0, 0.5, 0.1, **args)


FE_GRID = (-0.24, -0.16, -0.12, -0.09, -0.065, -0.04, -0.02, 0.0, 0.02, 0.04, 0.065, 0.09, 0.12, 0.16, 0.24)


def test_synthetic_plage_milne_eddington():
    kwargs = dict(ny=24, nx=22, seed=4, noise=0.0, model="milne_eddington", line="fe6173", wavelengths=FE_GRID,
                  active_indices=range(len(FE_GRID)))
    plage = synthetic_plage(**kwargs)
    stokes = plage.observation.stokes
    assert stokes.shape == (24, 22, 4, len(FE_GRID)) and np.all(np.isfinite(stokes))
    np.testing.assert_array_equal(synthetic_plage(**kwargs).observation.stokes, stokes)
    # continuum units, a line of Fe I 6173's depth
    assert np.all(stokes[..., 0, [0, -1]] > 0.9) and 0.3 < stokes[..., 0, 7].min() < 0.8
    # the same field as the other models
    zeeman = synthetic_plage(**dict(kwargs, model="zeeman"))
    np.testing.assert_array_equal(zeeman.truth.blos, plage.truth.blos)
    for key in ("doppler_width", "eta0", "damping", "s1"):
        assert plage.atmosphere[key].shape == (24, 22) and np.ptp(plage.atmosphere[key]) > 0
    # the pixel-wise WFA recovers the truth roughly (a loose band: model error of the WFA)
    res = pixel_wfa(plage.observation)
    t = plage.truth.blos
    slope = np.sum(res.blos * t) / np.sum(t * t)
    assert 0.75 < slope < 1.25
    assert np.corrcoef(res.blos.ravel(), t.ravel())[0, 1] > 0.95


def test_synthetic_series_and_config_select_milne_eddington(tmp_path):
    from astropy.io import fits

    from hashwfa.config.run_config import load_config
    from hashwfa.run.data import load_data
    from hashwfa.wfa.synthetic.series import synthetic_series

    kwargs = dict(ny=12, nx=10, seed=2, noise=1e-3, model="milne_eddington", line="fe6173", wavelengths=FE_GRID,
                  active_indices=(6, 7, 8), instrument_fwhm=60.0)
    series = synthetic_series(nt=2, **kwargs)
    plage = synthetic_plage(**kwargs)
    np.testing.assert_array_equal(series.stokes[0], plage.observation.stokes)  # frame 0 is the plage
    assert series.atmosphere["eta0"].shape == (2, 12, 10)
    assert series.parameters["instrument_fwhm"] == 60.0
    paths = plage.write_fits(tmp_path / "plage")
    with fits.open(paths["truth"]) as hdul:
        assert hdul[0].header["MODEL"] == "milne_eddington" and hdul[0].header["INSTFWHM"] == 60.0
        np.testing.assert_allclose(hdul["ETA0"].data, plage.atmosphere["eta0"], rtol=1e-6)
    with pytest.raises(HashwfaError, match="instrument_fwhm"):
        synthetic_plage(**dict(kwargs, instrument_fwhm=-1.0))
    # the config key selects it (with the config's line and default grid)
    path = tmp_path / "c.json"
    path.write_text('{"line": "fe6173", "data": {"synthetic": {"ny": 8, "nx": 6, "model": "milne_eddington", '
                    '"instrument_fwhm": 60.0}}}')
    loaded = load_data(load_config(path))
    direct = synthetic_plage(ny=8, nx=6, model="milne_eddington", line="fe6173", instrument_fwhm=60.0)
    np.testing.assert_array_equal(loaded.observation.stokes, direct.observation.stokes)
    off = synthetic_plage(ny=8, nx=6, model="milne_eddington", line="fe6173", instrument_fwhm=0.0)
    assert np.abs(off.observation.stokes - direct.observation.stokes).max() > 1e-3  # the filter matters
