"""Noise of the Stokes parameters: estimated from synthetic cubes with known injected noise, or given."""

import numpy as np
import pytest

from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.noise import estimate_noise, given_noise, resolve_noise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.synthetic.plage import CRISP_WAVELENGTHS, synthetic_plage


@pytest.mark.parametrize("model, line, noise, seed", [("zeeman", "5173", 1e-3, 0), ("wfa", "6302", 3e-3, 1)])
def test_estimate_recovers_injected_noise_on_synthetic_plage(model, line, noise, seed):
    sp = synthetic_plage(ny=48, nx=44, seed=seed, noise=noise, model=model, line=line)
    est = estimate_noise(sp.observation)
    assert est.sigma.shape == (4, 13)
    assert est.method == "spatial-highpass-MAD"
    # ~10^4 residuals per Stokes parameter: a few per cent of scatter; loose band.
    np.testing.assert_allclose(est.per_stokes, noise, rtol=0.1)
    # one value per Stokes parameter, repeated over the wavelengths
    assert np.all(est.sigma == est.sigma[:, :1])


def test_estimate_ignores_smooth_signal_and_strong_wavelengths():
    rng = np.random.default_rng(3)
    ny, nx, nw = 60, 50, 9
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    sigmas = np.array([2e-3, 1e-3, 1.5e-3, 0.5e-3])
    # A plane in y and x (removed exactly by the 4-neighbour high-pass), large against the noise.
    signal = (0.3 + 0.01 * yy - 0.02 * xx)[..., None, None] * np.ones((1, 1, 4, nw))
    cube = signal + sigmas[None, None, :, None] * rng.standard_normal((ny, nx, 4, nw))
    # Sharp, strong "signal" at 3 of the 9 wavelengths must not enter (the quiet third is used).
    cube[..., [2, 4, 6]] += 0.05 * rng.standard_normal((ny, nx, 4, 3))
    obs = Observation(cube, np.linspace(-0.2, 0.2, nw), line="5173", active_indices=(3, 4, 5))
    est = estimate_noise(obs)
    # Independent oracle: the injected sigmas.
    np.testing.assert_allclose(est.per_stokes, sigmas, rtol=0.08)
    assert "wavelengths" in est.detail


def test_estimate_skips_nonfinite_pixels():
    rng = np.random.default_rng(4)
    cube = 1e-3 * rng.standard_normal((40, 40, 4, 5))
    cube[5, 7, :, :] = np.nan
    with pytest.warns(UserWarning):
        obs = Observation(cube, np.linspace(-0.1, 0.1, 5), active_indices=(1, 2, 3))
    est = estimate_noise(obs)
    assert np.all(np.isfinite(est.sigma))
    np.testing.assert_allclose(est.per_stokes, 1e-3, rtol=0.1)


def test_estimate_ignores_constant_fill_and_masked_pixels():
    rng = np.random.default_rng(5)
    wl = np.linspace(-0.1, 0.1, 5)
    filled = 2e-3 * rng.standard_normal((50, 50, 4, 5))
    filled[:25, :25] = 0.0  # zero-filled corner (a rotated field of view): a quarter of the pixels
    np.testing.assert_allclose(estimate_noise(Observation(filled, wl, active_indices=(1, 2, 3))).per_stokes,
                               2e-3, rtol=0.08)
    noisy = 2e-3 * rng.standard_normal((50, 50, 4, 5))
    noisy[25:, 25:] *= 10.0  # a much noisier region the user masks out
    mask = np.ones((50, 50), bool)
    mask[24:, 24:] = False
    obs = Observation(noisy, wl, active_indices=(1, 2, 3), mask=mask)
    np.testing.assert_allclose(estimate_noise(obs).per_stokes, 2e-3, rtol=0.08)


def test_estimate_refuses_tiny_images():
    obs = Observation(np.random.default_rng(0).normal(1.0, 0.1, (2, 5, 4, 5)), np.linspace(-0.1, 0.1, 5), active_indices=(1, 2, 3))
    with pytest.raises(HashwfaError, match="data.noise"):
        estimate_noise(obs)


def test_given_noise_per_stokes_and_per_wavelength():
    one = given_noise([1e-3, 2e-3, 3e-3, 4e-3], nw=5)
    assert one.method == "given"
    np.testing.assert_array_equal(one.sigma, np.array([[1e-3] * 5, [2e-3] * 5, [3e-3] * 5, [4e-3] * 5]))
    np.testing.assert_allclose(one.at([1, 2]), [[1e-3] * 2, [2e-3] * 2, [3e-3] * 2, [4e-3] * 2])
    table = np.arange(1, 21, dtype=float).reshape(4, 5) * 1e-4
    full = given_noise(table.tolist(), nw=5)
    np.testing.assert_array_equal(full.sigma, table)
    np.testing.assert_allclose(full.per_stokes, np.sqrt(np.mean(table ** 2, axis=1)))
    cards = full.header_cards()
    assert set(cards) == {"NOISE_I", "NOISE_Q", "NOISE_U", "NOISE_V", "NOISEMTH"}
    assert cards["NOISEMTH"][0] == "given"
    assert cards["NOISE_Q"][0] == pytest.approx(np.sqrt(np.mean(table[1] ** 2)))


@pytest.mark.parametrize("bad", [[1e-3, 1e-3, 1e-3], [[1e-3] * 4] * 4, [1e-3, -1e-3, 1e-3, 1e-3],
                                 [1e-3, np.nan, 1e-3, 1e-3], "loud"])
def test_given_noise_rejects_bad_values(bad):
    with pytest.raises(HashwfaError, match="data.noise"):
        given_noise(bad, nw=5)


def test_resolve_prefers_the_given_noise():
    sp = synthetic_plage(ny=20, nx=20, noise=1e-3)
    assert resolve_noise(sp.observation, [1, 2, 3, 4]).method == "given"
    assert resolve_noise(sp.observation).method == "spatial-highpass-MAD"
    assert len(CRISP_WAVELENGTHS) == resolve_noise(sp.observation).sigma.shape[1]
