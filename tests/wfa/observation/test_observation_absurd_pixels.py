"""Absurd pixels (hot, saturated, beyond float32) are left out of the fit like NaN pixels."""

import warnings

import numpy as np
import pytest

from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.synthetic.plage import synthetic_plage


@pytest.fixture(scope="module")
def plage():
    return synthetic_plage(ny=6, nx=5, seed=4, noise=1e-3)


def _with(observation, stokes_index, value, where=(2, 3), wavelength=6):
    cube = observation.stokes.copy()
    cube[where[0], where[1], stokes_index, wavelength] = value
    return cube


@pytest.mark.parametrize(
    "stokes_index, value",
    [(0, 1e25), (3, 1e30), (0, 1e19), (1, -1e7), (0, 1e39)],  # 1e39: finite in float64, inf in float32
    ids=["I=1e25", "V=1e30", "I=1e19", "Q=-1e7", "I=1e39"],
)
def test_absurd_value_leaves_its_pixel_out_like_nan_and_is_reported(plage, stokes_index, value):
    obs = plage.observation
    wl = obs.wavelengths
    with pytest.warns(UserWarning, match=r"1 of 30 pixels have absurd values.*y=2, x=3"):
        hot = Observation(_with(obs, stokes_index, value), wl, active_indices=obs.active_indices)
    with pytest.warns(UserWarning, match="NaN or infinite"):
        nan = Observation(_with(obs, stokes_index, np.nan), wl, active_indices=obs.active_indices)
    # Oracle: the same cube with a NaN in that place (and one pixel fewer than the clean cube).
    np.testing.assert_array_equal(hot.valid, nan.valid)
    assert hot.n_valid == obs.n_valid - 1
    inputs = hot.wfa_inputs()
    assert all(np.all(np.isfinite(a)) for a in (inputs.dI_dlambda, inputs.q, inputs.u, inputs.v))


def test_ordinary_data_and_other_units_are_not_absurd(plage):
    obs = plage.observation
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # Counts instead of continuum units, and a strong but real V signal (5 x I_c).
        scaled = Observation(_with(obs, 3, 5.0) * 3e4, obs.wavelengths, active_indices=obs.active_indices)
    assert scaled.n_valid == obs.n_pixels


def test_value_at_an_unused_wavelength_does_not_count(plage):
    obs = plage.observation
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = Observation(_with(obs, 3, 1e30, wavelength=0), obs.wavelengths, active_indices=obs.active_indices)
    assert ok.n_valid == obs.n_pixels


def test_all_pixels_absurd_is_no_valid_pixel():
    cube = np.full((2, 2, 4, 5), 1e39)
    with pytest.raises(HashwfaError, match="absurd"), pytest.warns(UserWarning):
        Observation(cube, np.linspace(-0.2, 0.2, 5), active_indices=(2,))
