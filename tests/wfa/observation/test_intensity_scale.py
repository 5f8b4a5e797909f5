"""The intensity scale of an observation (any unit fits the same) and the data's footprint."""

import warnings

import numpy as np
import pytest

from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.maps import FieldMaps, FieldSigmas
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.observation.pixel_scan import intensity_scale_of
from hashwfa.wfa.synthetic.plage import synthetic_plage
from hashwfa.wfa.synthetic.series import synthetic_series


@pytest.fixture(scope="module")
def plage():
    return synthetic_plage(ny=12, nx=10, seed=4, noise=2e-3)


def _like(obs, stokes, **kw):
    return Observation(stokes, obs.wavelengths, line=obs.line, active_indices=obs.active_indices, **kw)


@pytest.mark.parametrize("continuum, expected", [
    (1.0, 1.0), (0.71, 1.0), (1.41, 1.0), (0.70, 0.5), (1.42, 2.0), (3e-8, 2.0 ** -25), (2500.0, 2048.0),
    (0.0, 1.0), (-3.0, 1.0), (float("nan"), 1.0), (float("inf"), 1.0)])
def test_scale_is_the_nearest_power_of_two(continuum, expected):
    # Oracle: 2 ** round(log2(c)) by hand; 2**-0.5 = 0.7071 and 2**0.5 = 1.4142 bound the factor 1.
    assert intensity_scale_of(continuum) == expected


def test_continuum_unit_data_have_scale_exactly_one(plage):
    assert plage.observation.intensity_scale == 1.0


@pytest.mark.parametrize("factor, scale", [(3e-8, 2.0 ** -25), (2500.0, 2048.0), (2.0 ** 40, 2.0 ** 40)])
def test_wfa_inputs_are_the_cube_over_the_scale(plage, factor, scale):
    obs = plage.observation
    scaled = _like(obs, obs.stokes * factor)
    assert scaled.intensity_scale == scale
    a, b = obs.wfa_inputs(), scaled.wfa_inputs()
    np.testing.assert_array_equal(a.index, b.index)
    for name in ("dI_dlambda", "d2I_dlambda2", "q", "u", "v"):
        # Oracle: the cube's own values times factor / scale (a power of two when factor is one: exact).
        np.testing.assert_allclose(getattr(b, name), getattr(a, name) * (factor / scale), rtol=1e-12, atol=0)
    np.testing.assert_allclose(scaled.intensity_derivative(), obs.intensity_derivative() * factor / scale,
                               rtol=1e-12)


def test_the_continuum_is_the_outer_wavelengths_over_the_valid_pixels(plage):
    obs = plage.observation
    cube = obs.stokes * 2500.0
    cube[..., 0, 0] = np.nan  # the blue end missing everywhere: the red end alone
    cube[:6, :, 3, 6] = np.nan  # half the pixels invalid (V at an active wavelength) ...
    cube[:6, :, 0, -1] = 1e9  # ... with a continuum that would otherwise decide the median
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scaled = _like(obs, cube)
    expected = float(np.median(cube[6:, :, 0, -1]))
    assert scaled.intensity_scale == 2.0 ** round(np.log2(expected))


def test_lazy_given_valid_frames_and_redraws_keep_the_scale(plage, tmp_path):
    obs = plage.observation
    scaled = _like(obs, obs.stokes * 3e-8)
    paths = scaled.write_fits(tmp_path / "s.fits", tmp_path / "w.fits")
    lazy = Observation.from_fits(*paths, active_indices=obs.active_indices)
    assert lazy.is_lazy and lazy.intensity_scale == 2.0 ** -25
    # Valid pixels given (a data-parallel rank): the continuum is read without the scan.
    assert Observation.from_fits(*paths, active_indices=obs.active_indices,
                                 valid=lazy.valid).intensity_scale == 2.0 ** -25
    assert Observation.from_fits(*paths, active_indices=obs.active_indices, valid=lazy.valid,
                                 intensity_scale=4.0).intensity_scale == 4.0
    # A redraw keeps its parent's scale even when its own continuum would round the other way.
    assert lazy.with_stokes(np.asarray(lazy.stokes) * 1.9, "redraw").intensity_scale == 2.0 ** -25
    with pytest.raises(HashwfaError, match="intensity_scale"):
        _like(obs, obs.stokes, intensity_scale=0.0)
    series = synthetic_series(nt=3, ny=8, nx=7, seed=1)
    s_obs = Observation(series.stokes * 2500.0, series.wavelengths, line=series.line,
                        active_indices=series.active_indices)
    assert s_obs.intensity_scale == 2048.0 and s_obs.frame(1).intensity_scale == 2048.0


def test_footprint_excludes_border_connected_invalid_pixels_only(plage):
    obs = plage.observation
    cube = obs.stokes.copy()
    y, x = np.mgrid[:obs.ny, :obs.nx]
    corner = (y + x) < 4
    cube[corner] = np.nan
    cube[6, 5] = np.nan  # an isolated bad pixel
    cube[2:4, 7:9] = np.nan  # a hole of 4 pixels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        holed = _like(obs, cube)
    assert np.array_equal(holed.footprint(), ~corner)
    assert plage.observation.footprint().all()
    maps = FieldMaps.from_bqbu(np.ones(corner.shape), np.ones(corner.shape), np.zeros(corner.shape))
    blanked = maps.blanked(corner)
    for values in blanked.as_dict().values():
        assert np.all(np.isnan(values[corner])) and np.all(np.isfinite(values[~corner]))
    sigmas = FieldSigmas(*(np.ones(corner.shape) for _ in range(5)))
    assert all(np.isnan(v[corner]).all() and (v[~corner] == 1).all() for v in sigmas.blanked(corner).as_dict().values())
    assert maps.blanked(np.zeros_like(corner)) is maps  # nothing outside: the same maps, bit for bit
