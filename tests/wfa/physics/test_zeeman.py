"""Zeeman patterns and the weak-line synthesis: known 3j values, and the weak-field
limit of the exact Zeeman profiles against the WFA with analytic derivatives."""

import math

import numpy as np
import pytest

from hashwfa.wfa.physics.lines import LINES, get_line
from hashwfa.wfa.physics.zeeman import wigner_3j, zeeman_pattern, zeeman_stokes

D, W = 0.5, 0.1  # Gaussian absorption: depth [Ic], 1/e half-width [A]


def absorption(x):
    return D * np.exp(-((x / W) ** 2))


def test_wigner_3j_known_values():
    # (j j 0; m -m 0) = (-1)^(j-m) / sqrt(2j+1)
    assert wigner_3j(1, 1, 0, 1, -1, 0) == pytest.approx(1 / math.sqrt(3))
    assert wigner_3j(1, 1, 0, 0, 0, 0) == pytest.approx(-1 / math.sqrt(3))
    assert wigner_3j(1.5, 1.5, 0, 0.5, -0.5, 0) == pytest.approx(-0.5)
    assert wigner_3j(1, 1, 1, 0, 0, 0) == 0.0  # odd sum with all m = 0
    assert wigner_3j(1, 1, 1, 1, 1, 0) == 0.0  # m's do not add up


@pytest.mark.parametrize("name", sorted(LINES))
def test_pattern_strengths_normalised_and_barycentre_is_geff(name):
    pat = zeeman_pattern(name)
    for q in (-1, 0, 1):
        assert pat.strengths[q].sum() == pytest.approx(1.0, abs=1e-12)
    # sigma barycentres at -+geff (DESIGN's geff, by hand in test_wfa_lines)
    line = get_line(name)
    assert np.sum(pat.strengths[1] * pat.shifts[1]) == pytest.approx(line.geff)
    assert np.sum(pat.strengths[-1] * pat.shifts[-1]) == pytest.approx(-line.geff)


@pytest.mark.parametrize("name", sorted(LINES))
def test_weak_field_limit_is_the_wfa(name):
    """For a weak field the Zeeman profiles tend to V = C geff B_los dI/dl and
    Q = -1/4 dlB^2 Gg B_t^2 cos 2chi d2I/dl2 (analytic derivatives of I = 1 - a)."""
    line = get_line(name)
    x = np.linspace(-0.3, 0.3, 61)
    b, theta, chi = 5.0, 0.7, 0.3
    stokes_i, q, u, v = zeeman_stokes(absorption, x, line, np.array(b), np.array(theta), np.array(chi))
    di = 2 * x / W ** 2 * absorption(x)  # d(1 - a)/dx
    d2i = -(4 * x ** 2 / W ** 4 - 2 / W ** 2) * absorption(x)
    dlb = 4.67e-13 * line.center ** 2 * b
    v_wfa = -4.67e-13 * line.center ** 2 * line.geff * b * math.cos(theta) * di
    qu = -0.25 * dlb ** 2 * line.Gg * math.sin(theta) ** 2 * d2i
    assert np.abs(v - v_wfa).max() < 1e-4 * np.abs(v_wfa).max()
    assert np.abs(q - qu * math.cos(2 * chi)).max() < 1e-4 * np.abs(qu).max()
    assert np.abs(u - qu * math.sin(2 * chi)).max() < 1e-4 * np.abs(qu).max()
    assert np.abs(stokes_i - (1 - absorption(x))).max() < 1e-5  # I changes at second order only


def test_zero_field_and_triplet():
    x = np.linspace(-0.3, 0.3, 31)
    i, q, u, v = zeeman_stokes(absorption, x, "5173", np.zeros(2), np.full(2, 0.5), np.zeros(2))
    np.testing.assert_allclose(i, 1 - absorption(x)[None].repeat(2, 0))
    assert np.abs(np.concatenate([q, u, v])).max() == 0.0
    # Fe I 6302 (J 1 -> 0) is a normal triplet: full pattern == effective triplet
    args = (absorption, x, "6302", np.array(1500.0), np.array(1.0), np.array(0.4))
    for a, b in zip(zeeman_stokes(*args, pattern="full"), zeeman_stokes(*args, pattern="triplet")):
        np.testing.assert_allclose(a, b, atol=1e-14)


def test_strong_longitudinal_field_splits_sigma_components():
    # theta = 0: I has the two sigma components at +-geff dlB
    line = get_line("6302")
    x = np.linspace(-0.3, 0.3, 6001)
    b = 3000.0
    i, _, _, _ = zeeman_stokes(lambda d: D * np.exp(-((d / 0.02) ** 2)), x, line, np.array(b), np.array(0.0),
                               np.array(0.0))
    split = 4.67e-13 * line.center ** 2 * line.geff * b
    minima = x[np.argsort(i)[:2]]
    np.testing.assert_allclose(np.sort(minima), [-split, split], atol=2e-4)
