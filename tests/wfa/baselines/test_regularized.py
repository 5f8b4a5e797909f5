"""Regularised WFA: against a plain dense solve, its two limits, and the weight rules."""

import warnings

import numpy as np
import pytest

from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import wfa_coefficients
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.baselines.regularized import regularized_wfa
from hashwfa.wfa.synthetic.plage import synthetic_plage


def _per_pixel_terms(obs):
    """Data weight w_p = sum c^2 and b_p = sum d c per valid pixel, for V, Q, U (plain numpy)."""
    inp = obs.wfa_inputs()
    cv, cqu = wfa_coefficients(inp.dI_dlambda, inp.wavelengths, obs.line, d2I_dlambda2=inp.d2I_dlambda2)
    n = obs.ny * obs.nx
    out = {}
    for key, c, d in (("blos", cv, inp.v), ("bq", cqu, inp.q), ("bu", cqu, inp.u)):
        w, b = np.zeros(n), np.zeros(n)
        w[inp.index] = (c * c).sum(axis=1)
        b[inp.index] = (d * c).sum(axis=1)
        out[key] = (w, b)
    return out


def _dense_solution(w, b, ny, nx, relative_alpha):
    """Minimiser of sum_p (w_p x_p^2 - 2 b_p x_p) + alpha m sum_{4-neighbours} (x_p - x_q)^2, densely."""
    m = np.median(w[w > 0])
    n = ny * nx
    matrix = np.diag(w.astype(float))
    for y in range(ny):
        for x in range(nx):
            p = y * nx + x
            for qy, qx in ((y + 1, x), (y, x + 1)):
                if qy < ny and qx < nx:
                    q = qy * nx + qx
                    a = relative_alpha * m
                    matrix[p, p] += a
                    matrix[q, q] += a
                    matrix[p, q] -= a
                    matrix[q, p] -= a
    assert matrix.shape == (n, n)
    return np.linalg.solve(matrix, b)


@pytest.fixture(scope="module")
def tiny():
    """5 x 4 noisy WFA data with one NaN pixel."""
    data = synthetic_plage(ny=5, nx=4, seed=3, noise=1e-3, model="wfa", psf_fwhm=0)
    stokes = data.observation.stokes.copy()
    stokes[2, 1, 3, 6] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Observation(stokes, data.observation.wavelengths)


@pytest.mark.parametrize("method", ["direct", "cg"])
def test_matches_dense_solve(tiny, method):
    alpha_v, alpha_qu = 0.7, 3.0
    res = regularized_wfa(tiny, alpha=(alpha_v, alpha_qu), method=method, fill_invalid=True)
    assert res.method == method and res.rule_v == res.rule_qu == "given"
    assert (res.alpha_v, res.alpha_qu) == (alpha_v, alpha_qu)
    terms = _per_pixel_terms(tiny)
    for key, alpha in (("blos", alpha_v), ("bq", alpha_qu), ("bu", alpha_qu)):
        want = _dense_solution(*terms[key], 5, 4, alpha).reshape(5, 4)
        got = getattr(res.maps, key)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    # By default the invalid pixel is NaN and the others are unchanged.
    plain = regularized_wfa(tiny, alpha=(alpha_v, alpha_qu), method=method)
    assert np.isnan(plain.maps.blos[2, 1]) and np.isnan(plain.maps.azimuth[2, 1])
    keep = np.ones((5, 4), bool)
    keep[2, 1] = False
    np.testing.assert_array_equal(plain.maps.bq[keep], res.maps.bq[keep])


def test_small_alpha_gives_pixelwise_wfa(tiny):
    res = regularized_wfa(tiny, alpha=1e-9)
    ref = pixel_wfa(tiny)
    for key in ("blos", "bq", "bu"):
        got, want = getattr(res.maps, key), getattr(ref, key)
        assert np.array_equal(np.isnan(got), np.isnan(want))
        ok = ~np.isnan(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-5, atol=1e-6 * np.abs(want[ok]).max())


def test_large_alpha_gives_weighted_mean(tiny):
    res = regularized_wfa(tiny, alpha=1e9, fill_invalid=True)
    terms = _per_pixel_terms(tiny)
    for key in ("blos", "bq", "bu"):
        w, b = terms[key]
        mean = b.sum() / w.sum()
        got = getattr(res.maps, key)
        np.testing.assert_allclose(got, np.full((5, 4), mean), rtol=1e-5)
        # ... which is not the plain mean of the pixel-wise maps (the weights matter here)
        assert abs(np.nanmean(getattr(pixel_wfa(tiny), key)) - mean) > 1e-3 * abs(mean)


@pytest.fixture(scope="module")
def noisy():
    return synthetic_plage(ny=40, nx=36, seed=5, noise=2e-3, model="wfa")


def test_discrepancy_rule_meets_its_target(noisy):
    """The chosen alpha makes sum_p w_p |x_p - xhat_p|^2 = k P sigma^2 (within the search tolerance)."""
    obs = noisy.observation
    sigma = 2e-3
    res = regularized_wfa(obs, rule="discrepancy", noise=sigma)
    assert res.rule_v == res.rule_qu == "discrepancy" and not res.noise_estimated
    terms = _per_pixel_terms(obs)
    ref = pixel_wfa(obs)
    ratios = {}
    for group, keys in (("v", ("blos",)), ("qu", ("bq", "bu"))):
        total, count = 0.0, 0
        for key in keys:
            w, _ = terms[key]
            diff = (getattr(res.maps, key) - getattr(ref, key)).ravel()
            total += np.sum(w * diff ** 2)
            count += np.count_nonzero(w > 0)
        ratios[group] = total / (count * sigma ** 2)
    assert 0.9 < ratios["v"] < 1.1 and 0.9 < ratios["qu"] < 1.1, ratios
    assert 1e-4 < res.alpha_v < 1e4 and 1e-4 < res.alpha_qu < 1e4


def test_noise_estimate_and_smoothing_help(noisy):
    """Without sigma, the estimate (hashwfa.wfa.observation.noise) is near the true noise, and the result beats the pixel-wise WFA."""
    obs = noisy.observation
    res = regularized_wfa(obs)
    assert res.noise_estimated
    assert 0.8 * 2e-3 < res.noise_v < 1.2 * 2e-3 and 0.8 * 2e-3 < res.noise_qu < 1.2 * 2e-3
    ref = pixel_wfa(obs)
    truth = noisy.truth
    for key in ("blos", "bt"):
        err_reg = np.sqrt(np.mean((getattr(res.maps, key) - getattr(truth, key)) ** 2))
        err_pix = np.sqrt(np.mean((getattr(ref, key) - getattr(truth, key)) ** 2))
        assert err_reg < err_pix


def test_gcv_rule_chooses_a_weight_inside_the_range(noisy):
    res = regularized_wfa(noisy.observation, rule="gcv")
    assert res.rule_v == res.rule_qu == "gcv" and res.noise_v is None
    assert 1e-4 < res.alpha_v < 1e4 and 1e-4 < res.alpha_qu < 1e4


@pytest.mark.parametrize("kwargs", [{"rule": "lcurve"}, {"method": "gpu"}, {"alpha": 0.0}, {"alpha": float("nan")},
                                    {"alpha": (1.0, 2.0, 3.0)}, {"noise": -1.0}])
def test_bad_arguments_raise_our_error(tiny, kwargs):
    with pytest.raises(HashwfaError):
        regularized_wfa(tiny, **kwargs)


def test_flat_intensity_gives_zero_like_the_pixelwise_wfa():
    """No pixel has a data weight (dI/dlambda = 0 everywhere): the map is 0, not an error."""
    data = np.zeros((3, 4, 4, 13))
    data[:, :, 0] = 1.0
    # Given as valid: the scan would leave out a frame of flat I (no signal) and refuse it.
    obs = Observation(data, np.linspace(-0.24, 0.24, 13), valid=np.ones((3, 4), bool))
    res = regularized_wfa(obs, alpha=2.0)
    for key in ("blos", "bq", "bu"):
        np.testing.assert_array_equal(getattr(res.maps, key), np.zeros((3, 4)))


def _rule_ratio(obs, res, sigma, fraction):
    """sum_p w_p |x_p - xhat_p|^2 over the misfit rule's target max(k P sigma^2, f RSS(0)), V and Q/U (plain numpy)."""
    inp = obs.wfa_inputs()
    cv, cqu = wfa_coefficients(inp.dI_dlambda, inp.wavelengths, obs.line, d2I_dlambda2=inp.d2I_dlambda2)
    terms = _per_pixel_terms(obs)
    ref = pixel_wfa(obs)
    ratios = {}
    for group, keys, coef, data in (("v", ("blos",), cv, (inp.v,)), ("qu", ("bq", "bu"), cqu, (inp.q, inp.u))):
        total, count, rss0 = 0.0, 0, 0.0
        for key, d in zip(keys, data):
            w, _ = terms[key]
            diff = (getattr(res.maps, key) - getattr(ref, key)).ravel()
            total += np.sum(w * diff ** 2)
            count += np.count_nonzero(w > 0)
            xhat = getattr(ref, key).ravel()[inp.index]
            rss0 += np.sum((d - coef * xhat[:, None]) ** 2)
        ratios[group] = total / max(count * sigma ** 2, fraction * rss0)
    return ratios


def test_misfit_rule_meets_its_target_where_the_model_error_dominates():
    """Milne-Eddington Fe I 6173, little noise, every wavelength: f RSS(0) (model error) sets the target."""
    grid = [-0.24, -0.16, -0.12, -0.09, -0.065, -0.04, -0.02, 0.0, 0.02, 0.04, 0.065, 0.09, 0.12, 0.16, 0.24]
    data = synthetic_plage(ny=30, nx=28, seed=4, noise=2e-4, model="milne_eddington", line="6173", wavelengths=grid)
    obs = Observation(data.observation.stokes, data.observation.wavelengths, line="6173", derivative="spline")
    res = regularized_wfa(obs, rule=("misfit", "misfit"), noise=2e-4)
    assert res.rule_v == res.rule_qu == "misfit"
    ratios = _rule_ratio(obs, res, 2e-4, 0.05)
    assert 0.9 < ratios["v"] < 1.1 and 0.9 < ratios["qu"] < 1.1, ratios
    # ... and it smooths B_los more than the discrepancy principle, which reads the model error as signal.
    assert res.alpha_v > 2 * regularized_wfa(obs, rule="discrepancy", noise=2e-4).alpha_v


def test_misfit_rule_is_the_discrepancy_principle_where_the_noise_dominates(noisy):
    obs = noisy.observation  # WFA data (no model error), three wavelengths
    res = regularized_wfa(obs, rule="misfit", noise=2e-3)
    ratios = _rule_ratio(obs, res, 2e-3, 0.05)
    assert 0.9 < ratios["v"] < 1.1 and 0.9 < ratios["qu"] < 1.1, ratios
    ref = regularized_wfa(obs, rule="discrepancy", noise=2e-3)
    assert res.alpha_v == pytest.approx(ref.alpha_v) and res.alpha_qu == pytest.approx(ref.alpha_qu)


def test_default_rules_are_misfit_for_v_and_discrepancy_for_qu(noisy):
    res = regularized_wfa(noisy.observation)
    assert (res.rule_v, res.rule_qu) == ("misfit", "discrepancy") and res.noise_estimated
