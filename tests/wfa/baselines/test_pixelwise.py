"""Pixel-wise WFA: exact recovery on noise-free WFA data, NaN handling."""

import warnings

import numpy as np
import pytest

from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import azimuth_difference, forward_stokes, intensity_second_derivative
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.synthetic.plage import synthetic_plage


@pytest.fixture(scope="module")
def clean():
    return synthetic_plage(ny=30, nx=26, seed=4, noise=0.0, model="wfa")


@pytest.fixture(scope="module")
def clean_wing():
    return synthetic_plage(ny=30, nx=26, seed=4, noise=0.0, model="wfa", qu_form="wing")


@pytest.mark.parametrize("form", ["default", "wing"])
def test_noise_free_recovery(clean, clean_wing, form):
    """Each Q/U form recovers the field of data made with the same form; the default
    (second-derivative) data are not fit by the wing form and vice versa."""
    data = clean if form == "default" else clean_wing
    kwargs = {} if form == "default" else {"qu_form": "wing"}
    res = pixel_wfa(data.observation, **kwargs)
    truth = data.truth
    other = pixel_wfa(data.observation, qu_form="wing" if form == "default" else "second_derivative")
    strong = truth.bt > 100
    assert np.median(np.abs(other.bt / truth.bt - 1)[strong]) > 0.2
    assert res.blos.shape == (30, 26) and res.blos.dtype == np.float64
    for name in ("blos", "bq", "bu"):
        got, want = getattr(res, name), getattr(truth, name)
        # 1e-4 relative, per pixel, with a floor at 1e-4 of the map's scale for near-zero pixels
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    np.testing.assert_allclose(res.bt, truth.bt, rtol=1e-4, atol=1e-4 * truth.bt.max())
    assert azimuth_difference(res.azimuth, truth.azimuth)[truth.bt > 1].max() < 1e-4


def test_forward_model_of_recovery_reproduces_the_data(clean):
    obs = clean.observation
    res = pixel_wfa(obs)
    act = list(obs.active_indices)
    dI = obs.intensity_derivative()
    d2I = intensity_second_derivative(obs.stokes[:, :, 0], obs.wavelengths)
    model = forward_stokes(dI, obs.wavelengths, obs.line, blos=res.blos, bq=res.bq, bu=res.bu, d2I_dlambda2=d2I)
    scale = np.abs(obs.stokes[:, :, 1:, act]).max()
    for k, s in ((1, model.q), (2, model.u), (3, model.v)):
        np.testing.assert_allclose(s[..., act], obs.stokes[:, :, k, act], rtol=0, atol=1e-6 * scale)


def test_nan_exactly_at_invalid_pixels(clean):
    data = clean.observation.stokes.copy()
    data[5, 7, 0, 5] = np.nan
    data[20, 3, 2, 7] = -np.inf
    mask = np.ones((30, 26), bool)
    mask[0, 0] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obs = Observation(data, clean.observation.wavelengths, mask=mask, active_indices=clean.observation.active_indices)
    res = pixel_wfa(obs)
    ref = pixel_wfa(clean.observation)
    invalid = ~obs.valid.reshape(30, 26)
    assert invalid.sum() == 3
    for name in ("blos", "bq", "bu", "bt", "azimuth"):
        m = getattr(res, name)
        assert np.all(np.isnan(m[invalid])) and np.all(np.isfinite(m[~invalid]))
        # NaN does not spread: the other pixels are the same numbers as without it
        np.testing.assert_array_equal(m[~invalid], getattr(ref, name)[~invalid])


def test_flat_intensity_gives_zero_not_nan():
    wl = np.linspace(-0.24, 0.24, 13)
    data = np.zeros((2, 2, 4, 13))
    data[:, :, 0] = 1.0
    data[1, 1, 0] = 1.0 - 0.5 * np.exp(-(wl / 0.1) ** 2)  # one line: a frame of flat I alone has no signal
    obs = Observation(data, wl)
    res = pixel_wfa(obs)
    flat = np.ones((2, 2), bool)
    flat[1, 1] = False
    assert np.all(res.blos[flat] == 0) and np.all(res.bt[flat] == 0)


def test_default_form_on_zeeman_data():
    """On the Zeeman synthetic (not the WFA) the reference report's wing form has the opposite sign
    to the Zeeman Q, U at +-0.04 A; the default second-derivative form recovers the azimuth."""
    plage = synthetic_plage(ny=24, nx=20, seed=3, noise=0.0, model="zeeman")
    strong = plage.truth.bt > 150
    wing = pixel_wfa(plage.observation, qu_form="wing")
    second = pixel_wfa(plage.observation)
    assert np.degrees(np.median(azimuth_difference(second.azimuth, plage.truth.azimuth)[strong])) < 2
    assert np.median(np.abs(second.bt / plage.truth.bt - 1)[strong]) < 0.1
    assert np.degrees(np.median(azimuth_difference(wing.azimuth, plage.truth.azimuth)[strong])) > 80
    # B_los stays a decent approximation on the Zeeman data (within ~20 % where strong)
    big = np.abs(plage.truth.blos) > 300
    ratio = wing.blos[big] / plage.truth.blos[big]
    assert np.all((ratio > 0.9) & (ratio < 1.25))
