"""WFA physics: derivatives on unequal grids, the forward model, field conversions."""

import math

import numpy as np
import pytest
import torch

from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.weak_field import (
    azimuth_difference,
    bqbu_to_bt_azimuth,
    bt_azimuth_to_bqbu,
    forward_stokes,
    intensity_derivative,
    intensity_second_derivative,
    inverse_offset,
    wfa_coefficients,
)

# An unequal grid in Angstrom.
GRID = np.array([-0.30, -0.22, -0.17, -0.10, -0.06, -0.01, 0.02, 0.07, 0.13, 0.20, 0.31])
W = 0.1  # Gaussian 1/e half-width [A]


def gauss(x):
    return np.exp(-((x / W) ** 2))


def gauss_d1(x):
    return -2 * x / W ** 2 * gauss(x)


def gauss_d2(x):
    return (4 * x ** 2 / W ** 4 - 2 / W ** 2) * gauss(x)


def gauss_d3(x):
    u = x / W
    return (-8 * u ** 3 + 12 * u) / W ** 3 * gauss(x)


def gauss_d4(x):
    u = x / W
    return (16 * u ** 4 - 48 * u ** 2 + 12) / W ** 4 * gauss(x)


def test_derivative_of_gaussian_within_three_point_error():
    got = intensity_derivative(gauss(GRID), GRID)
    err = np.abs(got - gauss_d1(GRID))
    dense = np.linspace(GRID[0], GRID[-1], 20001)
    d2max, d3max = np.abs(gauss_d2(dense)).max(), np.abs(gauss_d3(dense)).max()
    h = np.diff(GRID)
    # interior: |error| <= h0 h1 / 6 * max|f'''| (Taylor remainder of the parabola)
    bound = h[:-1] * h[1:] / 6 * d3max
    assert np.all(err[1:-1] <= bound * (1 + 1e-9))
    # ends: one-sided slope, |error| <= h / 2 * max|f''|
    assert err[0] <= h[0] / 2 * d2max and err[-1] <= h[-1] / 2 * d2max
    # second order: halving unequal spacings (0.03, 0.05 A) around 0.05 A divides the error by ~4
    errs = []
    for t in (1.0, 0.5):
        x = np.array([0.05 - 0.03 * t, 0.05, 0.05 + 0.05 * t])
        errs.append(abs(intensity_derivative(gauss(x), x)[1] - gauss_d1(0.05)))
    assert 3.5 < errs[0] / errs[1] < 4.5


def test_second_derivative_of_gaussian_within_three_point_error():
    got = intensity_second_derivative(gauss(GRID), GRID)
    want = gauss_d2(GRID)
    err = np.abs(got - want)[1:-1]
    h0, h1 = np.diff(GRID)[:-1], np.diff(GRID)[1:]
    dense = np.linspace(GRID[0], GRID[-1], 20001)
    d4max = np.abs(gauss_d4(dense)).max()
    # Taylor: error = (h1 - h0)/3 f3(x_i) + (h0^2 - h0 h1 + h1^2)/12 f4(xi), fN the N-th derivative
    bound = np.abs(h1 - h0) / 3 * np.abs(gauss_d3(GRID[1:-1])) + (h0 ** 2 - h0 * h1 + h1 ** 2) / 12 * d4max
    assert np.all(err <= bound * (1 + 1e-9))
    # the leading error term is right: subtract it and what is left is within the f4 term
    lead = (h1 - h0) / 3 * gauss_d3(GRID[1:-1])
    assert np.all(np.abs(got[1:-1] - want[1:-1] - lead) <= (h0 ** 2 - h0 * h1 + h1 ** 2) / 12 * d4max * (1 + 1e-9))
    # the ends copy their interior neighbours
    assert got[0] == got[1] and got[-1] == got[-2]
    # orders: unequal spacings (0.03, 0.05 A) around 0.05 A converge at first order (error / 2),
    # equal spacings at second order (error / 4)
    for (a, b), lo, hi in (((0.03, 0.05), 1.7, 2.3), ((0.02, 0.02), 3.7, 4.3)):
        errs = []
        for t in (1.0, 0.5):
            x = np.array([0.05 - a * t, 0.05, 0.05 + b * t])
            errs.append(abs(intensity_second_derivative(gauss(x), x)[1] - gauss_d2(0.05)))
        assert lo < errs[0] / errs[1] < hi
    # the CRISP grid (equal 0.04 A steps) at the active wavelengths of a 0.14 A line: within 6 %
    wl = np.linspace(-0.24, 0.24, 13)
    line = 1 - 0.6 * np.exp(-((wl / 0.14) ** 2))
    exact = -0.6 * (4 * wl ** 2 / 0.14 ** 4 - 2 / 0.14 ** 2) * np.exp(-((wl / 0.14) ** 2))
    np.testing.assert_allclose(intensity_second_derivative(line, wl)[5:8], exact[5:8], rtol=0.06)


def test_derivatives_exact_for_a_parabola_on_unequal_grid():
    f = 3.0 - 2.0 * GRID + 5.0 * GRID ** 2
    d1 = intensity_derivative(f, GRID)
    np.testing.assert_allclose(d1[1:-1], -2.0 + 10.0 * GRID[1:-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(intensity_second_derivative(f, GRID), 10.0, rtol=1e-10)


def test_derivative_along_any_axis_and_leading_shapes():
    cube = np.stack([gauss(GRID), 2 * gauss(GRID)])[None]  # (1, 2, nw)
    d = intensity_derivative(cube, GRID)
    np.testing.assert_allclose(d[0, 1], 2 * d[0, 0])
    d_t = intensity_derivative(np.moveaxis(cube, -1, 0), GRID, axis=0)
    np.testing.assert_allclose(np.moveaxis(d_t, 0, -1), d)


@pytest.mark.parametrize("wl, words", [(GRID[:-1], "shape"), (GRID[::-1], "increasing")])
def test_derivative_bad_wavelengths(wl, words):
    with pytest.raises(HashwfaError, match=words):
        intensity_derivative(gauss(GRID), wl)


def test_core_cutoff():
    dl = np.array([-0.1, -0.035, 0.0, 0.02, 0.036, 0.1])
    np.testing.assert_array_equal(inverse_offset(dl), [-10.0, 0.0, 0.0, 0.0, 1 / 0.036, 10.0])


def test_forward_model_against_hand_numbers():
    # Fe I 6302: C = -4.67e-13 * 6302.4931^2 = -1.8549902801680735e-05 A/G, geff = 2.49
    wl = np.array([-0.08, 0.0, 0.08])
    dI = np.array([2.0, 0.0, -2.0])
    out = forward_stokes(dI, wl, "6302", blos=np.array(100.0))
    assert out.v[0] == pytest.approx(-0.009237851595237006, rel=1e-12)  # C geff B dI, by hand
    assert out.q is None and out.u is None
    # Mg I b2: 0.75 C^2 Gg dI / dl * B_Q with Gg = 2.875, dl = 0.08, dI = -1.5, B_Q = 1e5 G^2
    out = forward_stokes(np.array([-1.5, 0.0, -1.5]), wl, "5173", bq=np.array(1e5), bu=np.array(-2e5),
                         qu_form="wing")
    assert out.q[0] == pytest.approx(-(-0.000631245127383021), rel=1e-12)  # dl = -0.08 flips the sign
    assert out.q[2] == pytest.approx(-0.000631245127383021, rel=1e-12)
    assert out.q[1] == 0.0  # line core
    np.testing.assert_allclose(out.u, -2 * out.q)


def test_forward_model_torch_matches_numpy():
    rng = np.random.default_rng(1)
    wl = np.linspace(-0.24, 0.24, 13)
    dI, d2I = rng.normal(size=(5, 13)), rng.normal(size=(5, 13)) * 30
    blos, bq, bu = rng.normal(size=5) * 300, rng.normal(size=5) * 1e5, rng.normal(size=5) * 1e5
    for form in ("second_derivative", "wing"):
        ref = forward_stokes(dI, wl, "5173", blos=blos, bq=bq, bu=bu, qu_form=form, d2I_dlambda2=d2I)
        t = forward_stokes(torch.tensor(dI), wl, "5173", blos=torch.tensor(blos), bq=torch.tensor(bq),
                           bu=torch.tensor(bu), qu_form=form, d2I_dlambda2=torch.tensor(d2I))
        for a, b in zip(ref, t):
            np.testing.assert_allclose(b.numpy(), a, rtol=1e-12)
        cv, cqu = wfa_coefficients(dI, wl, "5173", qu_form=form, d2I_dlambda2=d2I)
        np.testing.assert_allclose(cv * blos[:, None], ref.v)
        np.testing.assert_allclose(cqu * bq[:, None], ref.q)


def test_second_derivative_form_is_the_default():
    wl = np.linspace(-0.24, 0.24, 13)
    d2 = np.full(13, 40.0)
    out = forward_stokes(np.zeros(13), wl, "5173", bq=np.array(1e5), bu=np.array(0.0), d2I_dlambda2=d2)
    c = -4.67e-13 * 5172.6843 ** 2
    np.testing.assert_allclose(out.q, -0.25 * c * c * 2.875 * 40.0 * 1e5, rtol=1e-12)
    np.testing.assert_array_equal(out.u, 0.0)
    _, cqu = wfa_coefficients(np.zeros(13), wl, "5173", d2I_dlambda2=d2)
    np.testing.assert_allclose(cqu * 1e5, out.q, rtol=1e-15)
    # V alone needs no second derivative
    assert forward_stokes(np.ones(13), wl, "5173", blos=np.array(1.0)).v is not None
    with pytest.raises(HashwfaError, match="d2I_dlambda2"):
        forward_stokes(np.zeros(13), wl, "5173", bq=np.array(1.0), bu=np.array(1.0))
    with pytest.raises(HashwfaError, match="d2I_dlambda2"):
        wfa_coefficients(np.zeros(13), wl, "5173")
    with pytest.raises(HashwfaError, match="both"):
        forward_stokes(np.zeros(13), wl, "5173", bq=np.array(1.0))
    with pytest.raises(HashwfaError, match="qu_form"):
        wfa_coefficients(np.zeros(13), wl, "5173", qu_form="core")


def test_conversions_round_trip_and_range():
    rng = np.random.default_rng(0)
    bt = rng.uniform(0, 1500, 1000)
    phi = rng.uniform(0, math.pi, 1000)
    bq, bu = bt_azimuth_to_bqbu(bt, phi)
    np.testing.assert_allclose(bq, bt ** 2 * np.cos(2 * phi))
    bt2, phi2 = bqbu_to_bt_azimuth(bq, bu)
    np.testing.assert_allclose(bt2, bt, rtol=1e-12)
    assert np.all(azimuth_difference(phi2, phi) < 1e-9)
    assert np.all((phi2 >= 0) & (phi2 < math.pi))
    # (B_Q^2 + B_U^2)^(1/4), by hand: B_Q = 3e4, B_U = 4e4 -> 5e4 -> 223.606797749979
    bt3, phi3 = bqbu_to_bt_azimuth(3e4, 4e4)
    assert bt3 == pytest.approx(223.606797749979)
    assert phi3 == pytest.approx(0.5 * math.atan2(4.0, 3.0))


def test_azimuth_edges_stay_in_zero_pi():
    bq = np.array([-1.0, -1.0, -1.0, 1.0, 1.0, 0.0])
    bu = np.array([0.0, -0.0, -1e-300, -1e-300, 0.0, -1.0])
    _, phi = bqbu_to_bt_azimuth(bq, bu)
    assert np.all((phi >= 0) & (phi < math.pi))
    np.testing.assert_allclose(phi[:2], math.pi / 2)
    assert phi[5] == pytest.approx(3 * math.pi / 4)
    _, phi_t = bqbu_to_bt_azimuth(torch.tensor(bq), torch.tensor(bu))
    assert torch.all((phi_t >= 0) & (phi_t < math.pi))
    np.testing.assert_allclose(phi_t.numpy(), phi, atol=1e-15)


def test_azimuth_difference_wraps():
    assert azimuth_difference(0.01, math.pi - 0.01) == pytest.approx(0.02)
    assert azimuth_difference(0.0, math.pi / 2) == pytest.approx(math.pi / 2)
