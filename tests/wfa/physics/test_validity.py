"""WEAKFLD: Zeeman splitting over the line's width from I, against closed forms."""

import numpy as np

from hashwfa.wfa.physics.lines import get_line
from hashwfa.wfa.physics.validity import doppler_width, weak_field_ratio, zeeman_splitting


def gaussian_line(wl, width, depth=0.6, centre=0.0):
    return 1.0 - depth * np.exp(-(((wl - centre) / width) ** 2))


def test_width_of_a_gaussian_line_on_a_fine_and_an_unequal_grid():
    # Line centred on a grid point, step h: the parabola through 0, +-h gives exactly
    # h / sqrt(1 - exp(-h^2 / D^2)) (-> D as h -> 0).
    for h, n in ((0.001, 700), (0.02, 35), (0.04, 18)):  # out to 0.7 A: the continuum is reached
        grid = h * np.arange(-n, n + 1)
        for width in (0.03, 0.05, 0.1):
            exact = h / np.sqrt(1 - np.exp(-(h / width) ** 2))
            assert abs(doppler_width(gaussian_line(grid, width), grid) / exact - 1) < 1e-9
        assert abs(doppler_width(gaussian_line(grid, 0.1), grid) / 0.1 - 1) < 1.1 * (h / 0.1) ** 2 / 4  # leading order
    # Coarse unequal grid, line off the grid points: the chord's curvature makes it wider by ~h^2 / (4 D^2).
    grid = np.array([-0.3, -0.2, -0.12, -0.07, -0.03, 0.0, 0.035, 0.08, 0.14, 0.22, 0.3])
    est = doppler_width(gaussian_line(grid, 0.1, centre=0.01), grid)
    assert 1.0 < est / 0.1 < 1.0 + 0.05 ** 2 / (4 * 0.1 ** 2) + 0.02


def test_width_is_unit_free_and_vectorised_with_nan_where_undefined():
    wl = np.linspace(-0.3, 0.3, 31)
    stokes = np.stack([gaussian_line(wl, 0.06), 1e5 * gaussian_line(wl, 0.06),
                       gaussian_line(wl, 0.06, centre=0.35),  # minimum at the grid's end
                       np.full(31, 1.0)])  # no line
    bad = stokes.copy()
    bad[0, 5] = np.nan
    w = doppler_width(stokes.reshape(2, 2, 31), wl)
    assert w.shape == (2, 2)
    assert abs(w[0, 0] / w[0, 1] - 1) < 1e-12 and abs(w[0, 0] / 0.06 - 1) < 0.02 ** 2 / (4 * 0.06 ** 2) + 1e-3
    assert np.isnan(w[1, 0]) and np.isnan(w[1, 1])
    assert np.isnan(doppler_width(bad, wl)[0])


def test_ratio_is_the_splitting_of_the_field_strength_over_the_width():
    line = get_line("6173")  # geff 2.5, lambda0 6173.334 A
    # 1 kG in Fe I 6173: 4.6686e-13 * 6173.334^2 * 2.5 * 1000 = 0.04448 A.
    assert abs(float(zeeman_splitting(1000.0, "6173")) - 4.6686e-13 * 6173.334 ** 2 * 2.5e3) < 1e-12
    assert abs(float(zeeman_splitting(-1000.0, line)) - 0.044480) < 1e-5
    r = weak_field_ratio(np.array([600.0, 0.0]), np.array([800.0, 0.0]), np.array([0.0889607, 0.05]), line)
    np.testing.assert_allclose(r, [0.5, 0.0], rtol=1e-4, atol=0)
