"""The synthetic time series (hashwfa.wfa.synthetic.series): shapes, frame 0, noise, advection, azimuths."""

import math

import numpy as np
import pytest

from hashwfa.errors import HashwfaError
from hashwfa.wfa.synthetic.plage import synthetic_plage
from hashwfa.wfa.synthetic.series import synthetic_series


def _wrapped(angle):
    """Angle difference folded into [-pi/2, pi/2) (azimuths are defined modulo pi)."""
    return np.mod(angle + np.pi / 2, np.pi) - np.pi / 2


def test_shapes_times_and_frame_zero_is_the_plage():
    s = synthetic_series(nt=3, ny=24, nx=20, seed=5, cadence=12.5)
    assert s.stokes.shape == (3, 24, 20, 4, 13)
    for name, value in s.truth.as_dict().items():
        assert value.shape == (3, 24, 20), name
    np.testing.assert_array_equal(s.times, [0.0, 12.5, 25.0])
    plage = synthetic_plage(ny=24, nx=20, seed=5)
    np.testing.assert_array_equal(s.stokes[0], plage.observation.stokes)
    for name, value in plage.truth.as_dict().items():
        np.testing.assert_array_equal(s.frame_truth(0).as_dict()[name], value)
    whole = s.observation()
    assert whole.map_shape == (3, 24, 20)
    np.testing.assert_array_equal(whole.times, s.times)
    obs = s.frame_observation(2)
    assert obs.stokes.shape == (24, 20, 4, 13) and obs.active_indices == (5, 6, 7)
    np.testing.assert_array_equal(obs.stokes, s.stokes[2])


def test_fresh_noise_of_the_requested_level_in_every_frame():
    kwargs = dict(nt=3, ny=24, nx=20, seed=1, model="wfa", flow=(0.5, 0.0))
    clean = synthetic_series(noise=0.0, **kwargs)
    noisy = synthetic_series(noise=1e-2, **kwargs)
    np.testing.assert_array_equal(noisy.truth.blos, clean.truth.blos)  # the noise does not change the field
    draws = (noisy.stokes - clean.stokes).reshape(3, -1)  # 24 * 20 * 4 * 13 = 24960 draws per frame
    for frame in draws:
        assert abs(frame.std() / 1e-2 - 1.0) < 0.03  # 5 sigma of the std estimate is ~2.2 %
        assert abs(frame.mean()) < 5 * 1e-2 / math.sqrt(frame.size)
    corr = np.corrcoef(draws)
    off_diagonal = corr[~np.eye(3, dtype=bool)]
    assert np.all(np.abs(off_diagonal) < 5 / math.sqrt(draws.shape[1]))


def test_advection_shift_is_measured_in_the_truth():
    s = synthetic_series(nt=3, ny=48, nx=40, seed=2, model="wfa", noise=0.0, flow=(1.0, 2.0), azimuth_rate=0.0)
    a, b = s.truth.blos[0], s.truth.blos[2]
    # Best integer match (least squares) over the interior, away from the inflow edges and the PSF's borders.
    m = 10
    core = a[m:-m, m:-m]
    scores = {}
    for dy in range(-4, 5):
        for dx in range(-6, 7):
            window = b[m + dy:b.shape[0] - m + dy, m + dx:b.shape[1] - m + dx]
            scores[(dy, dx)] = float(np.sum((window - core) ** 2))
    assert min(scores, key=scores.get) == (2, 4)
    # A whole-pixel drift reproduces the field exactly there.
    np.testing.assert_allclose(b[m + 2:-m + 2, m + 4:-m + 4], core, atol=1e-6 * np.abs(core).max())


@pytest.mark.parametrize("vx", [0.5, 0.25])
def test_subpixel_drift_is_measured(vx):
    s = synthetic_series(nt=2, ny=40, nx=40, seed=4, model="wfa", noise=0.0, flow=(0.0, vx), azimuth_rate=0.0)
    a, b = s.truth.blos[0], s.truth.blos[1]
    # The truth is smooth (PSF of 3.4 px FWHM): frame 1 is, to first order, frame 0 interpolated
    # linearly a fraction w of the way to its copy one pixel to the right; fit w by least squares.
    here, left, moved = a[8:-8, 8:-8], a[8:-8, 7:-9], b[8:-8, 8:-8]
    step = left - here
    w = float(np.sum((moved - here) * step) / np.sum(step * step))
    assert w == pytest.approx(vx, abs=0.02)


def test_azimuths_evolve_at_the_given_rate_without_flow():
    s = synthetic_series(nt=3, ny=24, nx=20, seed=3, model="wfa", noise=0.0, flow=(0.0, 0.0), azimuth_rate=5.0)
    rms_rate = math.degrees(float(np.sqrt(np.mean(s.azimuth_rate ** 2))))
    assert 0.5 < rms_rate < 20.0  # a smooth random map of 5 deg/frame expected rms on a small image
    for k in (1, 2):
        np.testing.assert_allclose(s.intrinsic.blos[k], s.intrinsic.blos[0])
        np.testing.assert_allclose(s.intrinsic.bt[k], s.intrinsic.bt[0], rtol=1e-9, atol=1e-9)
        turned = _wrapped(s.intrinsic.azimuth[k] - s.intrinsic.azimuth[0])
        np.testing.assert_allclose(turned, _wrapped(k * s.azimuth_rate), atol=1e-7)
    assert not np.allclose(s.truth.azimuth[2], s.truth.azimuth[0])


def test_a_still_series_repeats_the_field():
    s = synthetic_series(nt=2, ny=16, nx=16, seed=0, model="wfa", noise=1e-3, flow=(0.0, 0.0), azimuth_rate=0.0)
    for name, value in s.truth.as_dict().items():
        np.testing.assert_allclose(value[1], value[0], err_msg=name)
    assert not np.array_equal(s.stokes[1], s.stokes[0])


@pytest.mark.parametrize("kwargs, message", [
    ({"nt": 0}, "nt"),
    ({"flow": (1.0,)}, "flow"),
    ({"flow": (float("nan"), 0.0)}, "flow"),
    ({"cadence": 0.0}, "cadence"),
    ({"azimuth_rate": -1.0}, "azimuth_rate"),
    ({"noise": -1.0}, "noise"),
    ({"active_indices": (5, 20)}, "active_indices"),
])
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(HashwfaError, match=message):
        synthetic_series(**{"nt": 2, "ny": 8, "nx": 8, "model": "wfa", **kwargs})


def test_write_fits_round_trip(tmp_path):
    from astropy.io import fits

    from hashwfa.wfa.physics.maps import FieldMaps
    from hashwfa.wfa.observation.observation import Observation

    s = synthetic_series(nt=2, ny=8, nx=6, seed=1, model="wfa", cadence=30.0)
    paths = s.write_fits(tmp_path)
    obs = Observation.from_fits(paths["stokes"], paths["wavelengths"])
    assert obs.map_shape == (2, 8, 6)
    np.testing.assert_array_equal(obs.times, [0.0, 30.0])
    np.testing.assert_array_equal(obs.stokes, s.stokes.astype(np.float32))
    truth = FieldMaps.from_fits(paths["truth"])
    np.testing.assert_array_equal(truth.blos, s.truth.blos.astype(np.float32))
    with fits.open(paths["truth"]) as hdul:
        np.testing.assert_array_equal(hdul["TIMES"].data["TIME"], [0.0, 30.0])
    with pytest.raises(HashwfaError, match="exists"):
        s.write_fits(tmp_path)
