"""Local-risk sigma maps of a time series: the (t, y, x) window against a plain reference, the noise
redraw of a series, and calibration of a known linear smoother on a small synthetic series."""

import math

import numpy as np
import pytest

from hashwfa.errors import HashwfaError
from hashwfa.wfa.uncertainty.local_risk import field_sigmas, gaussian_smooth, redraw_noise
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.observation.noise import given_noise
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.synthetic.series import synthetic_series


def _reference_smooth_series(img, s, st):
    """Plain loops: weighted mean over the finite points within 4 sigma (rounded up) of each axis, with
    the weight exp(-dy^2/2s^2 - dx^2/2s^2 - dt^2/2st^2); st = 0: the frame alone."""
    nt, ny, nx = img.shape
    r = max(1, math.ceil(4 * s))
    rt = max(1, math.ceil(4 * st)) if st > 0 else 0
    out = np.full(img.shape, np.nan)
    for t in range(nt):
        for y in range(ny):
            for x in range(nx):
                num = den = 0.0
                for tt in range(max(0, t - rt), min(nt, t + rt + 1)):
                    for yy in range(max(0, y - r), min(ny, y + r + 1)):
                        for xx in range(max(0, x - r), min(nx, x + r + 1)):
                            if np.isfinite(img[tt, yy, xx]):
                                e = ((yy - y) ** 2 + (xx - x) ** 2) / s ** 2 + ((tt - t) / st) ** 2 if st > 0 \
                                    else ((yy - y) ** 2 + (xx - x) ** 2) / s ** 2
                                w = math.exp(-0.5 * e)
                                num += w * img[tt, yy, xx]
                                den += w
                if den > 0:
                    out[t, y, x] = num / den
    return out


def test_series_window_matches_plain_reference():
    rng = np.random.default_rng(2)
    img = rng.standard_normal((5, 7, 6))
    img[1, 3, 4] = np.nan
    img[4, 0, 0] = -np.inf
    np.testing.assert_allclose(gaussian_smooth(img, 1.2, 0.8), _reference_smooth_series(img, 1.2, 0.8),
                               rtol=1e-10, atol=1e-13)
    # No window along time: each frame smoothed on its own.
    np.testing.assert_allclose(gaussian_smooth(img, 1.2), _reference_smooth_series(img, 1.2, 0.0),
                               rtol=1e-10, atol=1e-13)


def test_a_window_along_time_needs_a_series():
    with pytest.raises(HashwfaError, match="series"):
        gaussian_smooth(np.zeros((4, 5)), 1.0, sigma_frames=1.0)
    with pytest.raises(HashwfaError, match="shape"):
        gaussian_smooth(np.zeros((2, 3, 4, 5)), 1.0)


def test_redraw_of_a_series_keeps_its_times_and_adds_independent_noise():
    series = synthetic_series(nt=3, ny=40, nx=30, seed=1, noise=1e-3, model="wfa", cadence=12.0)
    obs = series.observation()
    sigma = np.array([1e-3, 2e-3, 3e-3, 4e-3])
    drawn = redraw_noise(obs, given_noise(sigma, obs.nw), np.random.default_rng(0))
    assert drawn.is_series and drawn.map_shape == obs.map_shape
    np.testing.assert_array_equal(drawn.times, [0.0, 12.0, 24.0])
    assert drawn.map_cards == obs.map_cards
    diff = drawn.stokes - obs.stokes  # (nt, ny, nx, 4, nw)
    # Standard deviation per Stokes parameter over 3 * 40 * 30 * nw draws: within 3 %.
    np.testing.assert_allclose(diff.std(axis=(0, 1, 2, 4)), sigma, rtol=0.03)
    # Frames draw independently: the correlation of two frames' draws is ~0.
    a, b = diff[0].ravel(), diff[1].ravel()
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.02


def _block_mean(img, b):
    """Known linear smoother of each frame: the mean over b x b blocks, shape kept."""
    nt, ny, nx = img.shape
    m = img.reshape(nt, ny // b, b, nx // b, b).mean(axis=(2, 4))
    return np.repeat(np.repeat(m, b, axis=1), b, axis=2)


def test_series_sigmas_of_a_known_linear_smoother_are_calibrated():
    # Exact-WFA series (no model error), noise 1e-3; the "field" smooths each frame's pixel-wise
    # maps over blocks (noise and smoothing bias, as a neural field has), the member does the same
    # on the redrawn series. Coverage is measured against the series' truth.
    series = synthetic_series(nt=3, ny=48, nx=44, seed=2, noise=1e-3, model="wfa")
    obs, truth = series.observation(), series.truth
    noise = given_noise([1e-3] * 4, obs.nw)

    def fit(o, k):
        w = pixel_wfa(o)
        return FieldMaps.from_bqbu(_block_mean(w.blos, 2), _block_mean(w.bq, 4), _block_mean(w.bu, 4))

    field = fit(obs, 0)
    for frames in (0.0, 1.0):
        found = field_sigmas(obs, field, fit, noise, members=1, seed=3, smoothing_frames=frames)
        assert found.sigmas.blos.shape == (3, 48, 44) and found.wfa_sigmas.blos.shape == (3, 48, 44)
        r = np.abs(field.blos - truth.blos) / found.sigmas.blos
        assert 0.6 <= np.mean(r <= 1) <= 0.8 and 0.88 <= np.mean(r <= 2) <= 0.99, (frames, np.mean(r <= 1))
        rt = np.abs(field.bt - truth.bt) / found.sigmas.bt
        assert 0.5 <= np.mean(rt <= 1) <= 0.9 and 0.8 <= np.mean(rt <= 2) <= 1.0, (frames, np.mean(rt <= 1))
