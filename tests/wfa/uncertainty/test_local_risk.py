"""Local-risk sigma maps of a smoothed field: smoothing against a plain reference, calibration on a
known linear smoother of a small synthetic, and the noise redraw."""

import math

import numpy as np
import pytest

from hashwfa.errors import HashwfaError
from hashwfa.wfa.uncertainty.local_risk import field_sigmas, gaussian_smooth, local_risk_sigmas, redraw_noise
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.observation.noise import given_noise
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.uncertainty.pixelwise import pixel_wfa_sigmas
from hashwfa.wfa.synthetic.plage import synthetic_plage


def _reference_smooth(img, s):
    """Plain double loop: Gaussian-weighted mean over the finite pixels within 4 sigma (rounded up)."""
    ny, nx = img.shape
    r = max(1, math.ceil(4 * s))
    out = np.full(img.shape, np.nan)
    for y in range(ny):
        for x in range(nx):
            num = den = 0.0
            for yy in range(max(0, y - r), min(ny, y + r + 1)):
                for xx in range(max(0, x - r), min(nx, x + r + 1)):
                    if np.isfinite(img[yy, xx]):
                        w = math.exp(-0.5 * ((yy - y) ** 2 + (xx - x) ** 2) / s ** 2)
                        num += w * img[yy, xx]
                        den += w
            if den > 0:
                out[y, x] = num / den
    return out


def test_gaussian_smooth_matches_plain_reference():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((9, 12))
    img[3, 4] = np.nan
    img[0, 0] = np.inf
    np.testing.assert_allclose(gaussian_smooth(img, 1.3), _reference_smooth(img, 1.3), rtol=1e-12)
    np.testing.assert_array_equal(gaussian_smooth(img, 0.0)[1:], img[1:])


def _block_mean(img, b):
    """Known linear smoother for the oracle field: the mean over b x b blocks (a projection, like
    a least-squares fit of a piecewise-constant field), shape kept."""
    ny, nx = img.shape
    m = img.reshape(ny // b, b, nx // b, b).mean(axis=(1, 3))
    return np.repeat(np.repeat(m, b, axis=0), b, axis=1)


def test_local_risk_sigmas_are_calibrated_for_a_linear_smoother():
    # Exact-WFA synthetic (no model error), noise 1e-3. The "field" is a Gaussian smoothing of the
    # pixel-wise B_los, B_Q, B_U (a linear smoother with both noise and smoothing bias); its members
    # smooth the pixel-wise maps of redrawn data. Coverage is measured against the truth.
    sp = synthetic_plage(ny=64, nx=60, seed=3, noise=1e-3, model="wfa")
    obs, truth = sp.observation, sp.truth
    noise = given_noise([1e-3] * 4, obs.nw)
    rng = np.random.default_rng(1)

    def smoothed_fit(o):
        w = pixel_wfa(o)
        return w, FieldMaps.from_bqbu(_block_mean(w.blos, 2), _block_mean(w.bq, 4), _block_mean(w.bu, 4))

    pix, field = smoothed_fit(obs)
    member_pix, member = smoothed_fit(redraw_noise(obs, noise, rng))
    sig = local_risk_sigmas(field, pix, pixel_wfa_sigmas(obs, noise), [member], [member_pix])
    # The whole recipe, with the smoother as the "training": same calibration.
    calls = []

    def fit(o, k):
        calls.append(k)
        return smoothed_fit(o)[1]

    recipe = field_sigmas(obs, field, fit, noise, members=2, seed=7)
    assert calls == [1, 2] and len(recipe.members) == 2
    r = np.abs(field.blos - truth.blos) / recipe.sigmas.blos
    assert 0.6 <= np.mean(r <= 1) <= 0.8 and 0.88 <= np.mean(r <= 2) <= 0.99
    np.testing.assert_array_equal(recipe.wfa_sigmas.blos, pixel_wfa_sigmas(obs, noise).blos)
    err_blos = np.abs(field.blos - truth.blos) / sig.blos
    assert 0.6 <= np.mean(err_blos <= 1) <= 0.8
    assert 0.88 <= np.mean(err_blos <= 2) <= 0.99
    d_az = np.abs((field.azimuth - truth.azimuth + math.pi / 2) % math.pi - math.pi / 2)
    for ratio in (np.abs(field.bt - truth.bt) / sig.bt, d_az / sig.azimuth):
        assert 0.5 <= np.mean(ratio <= 1) <= 0.85
        assert 0.8 <= np.mean(ratio <= 2) <= 0.99
    # Without the risk (the members' spread alone) B_los would be far too confident here.
    spread = np.abs(member.blos - field.blos)
    assert np.mean(np.abs(field.blos - truth.blos) <= spread) < 0.5


def test_local_risk_needs_a_member():
    m = FieldMaps.from_bqbu(np.ones((3, 3)), np.ones((3, 3)), np.ones((3, 3)))
    sp = synthetic_plage(ny=3, nx=3, noise=1e-3)
    sig = pixel_wfa_sigmas(sp.observation, given_noise([1e-3] * 4, 13))
    with pytest.raises(HashwfaError, match="member"):
        local_risk_sigmas(m, m, sig, [], [])
    with pytest.raises(HashwfaError, match="one per member"):
        local_risk_sigmas(m, m, sig, [m], [])
    with pytest.raises(HashwfaError, match="member"):
        field_sigmas(sp.observation, m, lambda o, k: m, given_noise([1e-3] * 4, 13), members=0)


def test_redraw_noise_adds_the_given_sigma():
    sp = synthetic_plage(ny=30, nx=30, noise=1e-3)
    obs = sp.observation
    sigma = np.array([1e-3, 2e-3, 3e-3, 4e-3])
    new = redraw_noise(obs, given_noise(sigma, obs.nw), np.random.default_rng(0))
    diff = new.stokes - obs.stokes
    np.testing.assert_allclose(diff.std(axis=(0, 1, 3)), sigma, rtol=0.05)
    assert new.active_indices == obs.active_indices and new.line == obs.line
    np.testing.assert_array_equal(new.wavelengths, obs.wavelengths)
