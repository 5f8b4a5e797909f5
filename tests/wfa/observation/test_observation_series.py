"""Observations of a time series (nt, ny, nx, 4, nw): shapes, coordinates, validity, per-frame WFA."""

import numpy as np
import pytest

from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.synthetic.series import synthetic_series


@pytest.fixture(scope="module")
def series():
    return synthetic_series(nt=3, ny=12, nx=10, seed=7, model="wfa")


def test_series_shapes_and_coordinates(series):
    times = np.array([0.0, 10.0, 40.0])
    obs = Observation(series.stokes, series.wavelengths, times=times)
    assert obs.is_series and obs.map_shape == (3, 12, 10) and obs.nt == 3
    assert (obs.ny, obs.nx, obs.nw) == (12, 10, 13) and obs.n_pixels == 360 and obs.n_valid == 360
    xy = obs.coordinates()
    assert xy.shape == (360, 3) and xy.dtype == np.float32
    grid = xy.reshape(3, 12, 10, 3)
    # Time in proportion to the frame times, first frame -1, last +1.
    np.testing.assert_allclose(grid[:, 0, 0, 0], [-1.0, -1.0 + 2 * 10 / 40, 1.0], rtol=1e-6)
    np.testing.assert_allclose(grid[1, :, 0, 1], np.linspace(-1, 1, 12), rtol=1e-6)
    np.testing.assert_allclose(grid[2, 0, :, 2], np.linspace(-1, 1, 10), rtol=1e-6)
    # Without times the frames are evenly spaced.
    even = Observation(series.stokes, series.wavelengths).coordinates().reshape(3, 12, 10, 3)
    np.testing.assert_allclose(even[:, 0, 0, 0], [-1.0, 0.0, 1.0])
    single = Observation(series.stokes[1], series.wavelengths)
    assert single.nt == 1 and not single.is_series and single.coordinates().shape == (120, 2)


def test_pixel_wfa_of_a_series_is_the_wfa_of_each_frame(series):
    maps = pixel_wfa(Observation(series.stokes, series.wavelengths, active_indices=series.active_indices))
    assert maps.shape == (3, 12, 10)
    for t in range(3):
        frame = pixel_wfa(series.frame_observation(t))
        for name, value in frame.as_dict().items():
            np.testing.assert_array_equal(maps.as_dict()[name][t], value, err_msg=name)


def test_masks_and_nonfinite_values_per_frame(series):
    stokes = series.stokes.copy()
    stokes[1, 2, 3, 3, 6] = np.nan  # V at an active wavelength, frame 1 only
    with pytest.warns(UserWarning, match="1 of 360 pixels"):
        obs = Observation(stokes, series.wavelengths)
    valid = obs.valid.reshape(3, 12, 10)
    assert not valid[1, 2, 3] and valid[0, 2, 3] and valid[2, 2, 3] and obs.n_valid == 359
    spatial = np.ones((12, 10), bool)
    spatial[0, :] = False
    assert Observation(series.stokes, series.wavelengths, mask=spatial).n_valid == 3 * 110
    per_frame = np.ones((3, 12, 10), bool)
    per_frame[2] = False
    assert Observation(series.stokes, series.wavelengths, mask=per_frame).n_valid == 240
    with pytest.raises(HashwfaError, match="mask has shape"):
        Observation(series.stokes, series.wavelengths, mask=np.ones((3, 10), bool))


@pytest.mark.parametrize("times, message", [
    ([0.0, 1.0], "expected 3 finite"),
    ([0.0, 2.0, 1.0], "strictly increasing"),
    ([0.0, np.nan, 1.0], "finite"),
])
def test_bad_frame_times(series, times, message):
    with pytest.raises(HashwfaError, match=message):
        Observation(series.stokes, series.wavelengths, times=times)


def test_shapes_refused_with_a_hint(series):
    with pytest.raises(HashwfaError, match="only for a series"):
        Observation(series.stokes[0], series.wavelengths, times=[0.0])
    sst_order = np.transpose(series.stokes, (0, 3, 4, 1, 2))  # (nt, 4, nw, ny, nx)
    with pytest.raises(HashwfaError, match=r"np.transpose\(cube, \(0, 3, 4, 1, 2\)\)"):
        Observation(sst_order, series.wavelengths)
    with pytest.raises(HashwfaError, match="6 dimensions"):
        Observation(series.stokes[None], series.wavelengths)


def test_frame_of_a_series(series):
    mask = np.ones((3, 12, 10), bool)
    mask[1, 0, 0] = False
    obs = Observation(series.stokes, series.wavelengths, mask=mask, times=[0.0, 20.0, 40.0], weights=(1, 2, 3, 4))
    one = obs.frame(1)
    assert not one.is_series and one.map_shape == (12, 10) and one.n_valid == 119
    np.testing.assert_array_equal(one.stokes, series.stokes[1])
    assert one.weights == (1.0, 2.0, 3.0, 4.0) and one.active_indices == obs.active_indices
    assert "frame 1" in one.source and "t = 20 s" in one.source
    with pytest.raises(HashwfaError, match="out of range"):
        obs.frame(3)
    with pytest.raises(HashwfaError, match="not a series"):
        one.frame(0)


def test_with_stokes_keeps_everything_but_the_cube():
    rng = np.random.default_rng(0)
    cube = 1.0 + 0.01 * rng.standard_normal((2, 4, 3, 4, 5))
    wl = np.linspace(-0.2, 0.2, 5)
    mask = np.ones((4, 3), dtype=bool)
    mask[0, 0] = False
    obs = Observation(cube, wl, active_indices=(1, 2, 3), weights=(1.0, 2.0, 3.0, 4.0), mask=mask,
                      source="a", unit="Ic", times=(0.0, 15.0), map_cards=(("DATEREF", "2026-01-01", "ref"),))
    other = 2.0 * cube
    copy = obs.with_stokes(other, source="b")
    assert copy.source == "b" and np.array_equal(copy.stokes, other)
    assert np.array_equal(copy.wavelengths, obs.wavelengths) and copy.line.name == obs.line.name
    assert copy.active_indices == (1, 2, 3) and copy.weights == (1.0, 2.0, 3.0, 4.0) and copy.unit == "Ic"
    assert np.array_equal(copy.times, [0.0, 15.0]) and copy.map_cards == obs.map_cards
    assert np.array_equal(copy.valid, obs.valid) and not copy.valid[0]  # the mask came along
    with pytest.raises(HashwfaError, match="expected"):
        obs.with_stokes(cube[:1], source="c")


def test_a_scan_without_signal_is_warned_and_left_out(series):
    stokes = series.stokes.copy()
    stokes[1] = 0.0  # a scan never filled
    stokes[2, ..., 0, :] = 1.0  # a flat I: no line, dI/dlambda = 0 everywhere
    with pytest.warns(UserWarning, match=r"2 of 3 scans \(t = 1, 2\) have no signal"):
        obs = Observation(stokes, series.wavelengths)
    valid = obs.valid.reshape(obs.map_shape)
    assert valid[0].all() and not valid[1:].any() and obs.blank_frames == (1, 2)
    # One frame without signal has no valid pixel at all.
    with pytest.raises(HashwfaError, match="Stokes I is one constant .* no pixel carries a WFA signal"):
        Observation(stokes[1], series.wavelengths)
