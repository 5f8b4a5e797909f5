"""data.synthetic.wavelengths (the synthetic grid) and data.active_indices = null (every wavelength)."""

import numpy as np
import pytest

from hashwfa import HashwfaError
from hashwfa.config.run_config import validate_config
from hashwfa.run.data import load_data
from hashwfa.run.outputs import active_wavelengths_text
from hashwfa.wfa.observation.observation import Observation

FE_GRID = [-0.24, -0.16, -0.12, -0.09, -0.065, -0.04, -0.02, 0.0, 0.02, 0.04, 0.065, 0.09, 0.12, 0.16, 0.24]


def small(**synthetic):
    return {"ny": 8, "nx": 9, "noise": 0.0, **synthetic}


def test_config_grid_reaches_the_observation_and_every_wavelength_is_active():
    cfg = validate_config({"line": "fe6173", "data": {"synthetic": small(model="milne_eddington", wavelengths=FE_GRID)}})
    assert cfg.data.active_indices is None
    obs = load_data(cfg).observation
    np.testing.assert_array_equal(obs.wavelengths, FE_GRID)
    assert obs.active_indices == tuple(range(15))
    assert obs.line.name == "6173"


def test_default_grid_with_null_active_uses_all_thirteen_crisp_points():
    obs = load_data(validate_config({"data": {"synthetic": small()}})).observation
    np.testing.assert_allclose(obs.wavelengths, np.linspace(-0.24, 0.24, 13), atol=1e-12)
    assert obs.active_indices == tuple(range(13))
    seed = load_data(validate_config({"data": {"synthetic": small(), "active_indices": [5, 6, 7]}})).observation
    assert seed.active_indices == (5, 6, 7)


@pytest.mark.parametrize("grid, words", [
    ([0.1, 0.0, 0.2], "not strictly increasing"),
    ([0.0, 0.1], "has 2 wavelength"),
    ([6173.2, 6173.3, 6173.4], "not absolute"),
])
def test_bad_grid_is_refused_naming_the_key(grid, words):
    with pytest.raises(HashwfaError, match="data.synthetic.wavelengths") as info:
        validate_config({"data": {"synthetic": small(wavelengths=grid)}})
    assert words in str(info.value)


def test_active_index_outside_the_synthetic_grid_is_refused_naming_the_key():
    with pytest.raises(HashwfaError, match=r"data.active_indices.*outside the 3 synthetic wavelengths"):
        validate_config({"data": {"synthetic": small(wavelengths=[-0.1, 0.0, 0.1]), "active_indices": [1, 3]}})


def test_active_wavelengths_text_lists_the_offsets_in_angstrom():
    wl = np.array([-0.08, -0.04, 0.0, 0.04, 0.08])
    stokes = np.ones((2, 2, 4, 5))
    stokes[:, :, 0] -= 0.5 * np.exp(-(wl / 0.05) ** 2)
    assert active_wavelengths_text(Observation(stokes, wl, active_indices=(1, 2, 3))) == "-0.04,0,0.04"
    assert active_wavelengths_text(Observation(stokes, wl)) == "-0.08,-0.04,0,0.04,0.08"
