"""The research-only sigma variants of scripts/research_series_uncertainty.py against independent oracles
(Monte Carlo, the linearised limit, closed forms on constant maps)."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest

from hashwfa.wfa.fields import FieldMaps, FieldSigmas


@pytest.fixture(scope="module")
def script(repo_root):
    spec = importlib.util.spec_from_file_location("research_series_uncertainty_script",
                                                  repo_root / "scripts" / "research_series_uncertainty.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _field(bq, bu, blos=0.0):
    bq, bu = np.asarray(bq, dtype=np.float64), np.asarray(bu, dtype=np.float64)
    return FieldMaps.from_bqbu(np.full(bq.shape, blos), bq, bu)


def test_gaussian_propagation_matches_monte_carlo(script):
    # Weak, moderate and strong signal against the risk, unequal risks of B_Q and B_U.
    bq = np.array([[2.0e3, 3.0e4, -2.0e5]])
    bu = np.array([[-1.0e3, 1.0e4, 5.0e4]])
    rq = np.array([[1.0e8, 2.0e8, 4.0e8]])
    ru = np.array([[4.0e8, 1.0e8, 1.0e8]])
    # 64 nodes: the wrapped azimuth difference is not smooth, and Gauss-Hermite converges slowly on it
    # (12-24 nodes are 2 % off at |B_QU| ~ 2 sigma).
    sig_bt, sig_az = script._gaussian_propagation(_field(bq, bu), rq, ru, nodes=64)
    rng = np.random.default_rng(0)
    n = 1_000_000
    for j in range(3):
        q = bq[0, j] - math.sqrt(rq[0, j]) * rng.standard_normal(n)
        u = bu[0, j] - math.sqrt(ru[0, j]) * rng.standard_normal(n)
        bt0 = (bq[0, j] ** 2 + bu[0, j] ** 2) ** 0.25
        az0 = 0.5 * math.atan2(bu[0, j], bq[0, j])
        d_bt = bt0 - (q * q + u * u) ** 0.25
        d_az = (az0 - 0.5 * np.arctan2(u, q) + math.pi / 2) % math.pi - math.pi / 2
        assert sig_bt[0, j] == pytest.approx(math.sqrt(np.mean(d_bt ** 2)), rel=0.01)
        assert sig_az[0, j] == pytest.approx(math.sqrt(np.mean(d_az ** 2)), rel=0.01)


def test_gaussian_propagation_reduces_to_the_linearisation_at_high_signal(script):
    bq, bu, rq, ru = 3.0e5, -2.0e5, 1.0e6, 4.0e6
    sig_bt, sig_az = script._gaussian_propagation(_field([[bq]], [[bu]]), np.array([[rq]]), np.array([[ru]]))
    p = bq * bq + bu * bu
    # d(P^(1/4)) = (B_Q dB_Q + B_U dB_U) / (2 P^(3/4)); d(atan2(B_U, B_Q) / 2) = (B_Q dB_U - B_U dB_Q) / (2 P).
    assert sig_bt[0, 0] == pytest.approx(math.sqrt(bq * bq * rq + bu * bu * ru) / (2 * p ** 0.75), rel=1e-3)
    assert sig_az[0, 0] == pytest.approx(math.sqrt(bu * bu * rq + bq * bq * ru) / (2 * p), rel=1e-3)


def test_variants_on_constant_maps_follow_their_closed_forms(script):
    shape = (3, 12, 12)
    bq, bu = np.full(shape, 4.0e4), np.full(shape, 3.0e4)  # P constant: proportional = no reweighting
    field = _field(bq, bu, blos=100.0)
    # Pixel-wise WFA off by a constant, with a known sigma; the member differs by constants too.
    d_w, s_w, d_m, d_mw = 2.0e3, 1.0e3, 1.5e3, 500.0
    pix = _field(bq + d_w, bu + d_w, blos=100.0)
    sigw = FieldSigmas(blos=np.full(shape, 5.0), bq=np.full(shape, s_w), bu=np.full(shape, s_w),
                       bt=np.zeros(shape), azimuth=np.zeros(shape))
    member = _field(bq + d_m, bu + d_m, blos=100.0)
    member_pix = _field(bq + d_w + d_mw, bu + d_w + d_mw, blos=100.0)
    sure = d_w ** 2 - s_w ** 2 + 2 * d_m * d_mw  # per point, the same everywhere
    var = 0.5 * d_m ** 2
    expected = {"max": max(sure, 2 * var), "half": max(sure, var), "proportional": var + max(sure - var, 0.0)}
    for risk, r in expected.items():
        sig = script._variant_sigmas(field, pix, sigw, [member], [member_pix], risk, "linear", 3.0, 6.0, 1.0)
        np.testing.assert_allclose(sig.bq, math.sqrt(r), rtol=1e-9)
        # Equal risks r of B_Q and B_U: sigma(B_t) = sqrt(P r) / (2 P^(3/4)) = sqrt(r) / (2 P^(1/4)).
        p = 4.0e4 ** 2 + 3.0e4 ** 2
        np.testing.assert_allclose(sig.bt, math.sqrt(r) / (2 * p ** 0.25), rtol=1e-9)
    # SIMEX: the member's excess B_t adds in quadrature.
    base = script._variant_sigmas(field, pix, sigw, [member], [member_pix], "half", "linear", 3.0, 6.0, 1.0)
    with_bias = script._variant_sigmas(field, pix, sigw, [member], [member_pix], "half", "linear", 3.0, 6.0, 1.0,
                                       bt_bias="simex")
    excess = (((bq + d_m) ** 2 + (bu + d_m) ** 2) ** 0.25 - (bq ** 2 + bu ** 2) ** 0.25)[0, 0, 0]
    np.testing.assert_allclose(with_bias.bt, np.sqrt(base.bt ** 2 + excess ** 2), rtol=1e-9)
