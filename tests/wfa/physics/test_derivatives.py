"""The derivative choice (physics.derivative): three-point or cubic spline, as matrices on I.

Oracles: polynomials and a Gaussian line with their exact derivatives, scipy's
CubicSpline applied to the spectra directly, Monte Carlo noise draws, and the
config's documented choices.
"""

import numpy as np
import pytest
from scipy.interpolate import CubicSpline

from hashwfa import HashwfaError
from hashwfa.config.run_config import load_config, validate_config
from hashwfa.run.data import load_data
from hashwfa.wfa.physics.lines import get_line
from hashwfa.wfa.observation.noise import StokesNoise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import DERIVATIVES, derivative_operators, derivatives_at
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.uncertainty.pixelwise import pixel_wfa_sigmas
from hashwfa.wfa.synthetic.plage import synthetic_plage

#: An unequal grid [A] (steps 0.03 .. 0.07).
UNEQUAL = np.array([-0.25, -0.2, -0.14, -0.1, -0.05, -0.02, 0.01, 0.05, 0.1, 0.13, 0.2, 0.24])

#: The reference report's three active wavelengths on the CRISP grid (the Observation's default is every wavelength).
SEED = (5, 6, 7)


def test_three_point_is_the_parabola_through_three_points():
    # Exact for a quadratic: D1 at interior points, D2 everywhere; the ends' slope is the chord's.
    wl = UNEQUAL
    d1, d2 = derivative_operators(wl, None, "three_point")
    assert d1.shape == d2.shape == (wl.size, wl.size)
    quad = 0.7 - 3.0 * wl + 5.0 * wl ** 2
    np.testing.assert_allclose((d1 @ quad)[1:-1], (-3.0 + 10.0 * wl)[1:-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(d2 @ quad, np.full(wl.size, 10.0), rtol=0, atol=1e-9)
    chords = np.diff(quad) / np.diff(wl)
    np.testing.assert_allclose((d1 @ quad)[[0, -1]], chords[[0, -1]], rtol=0, atol=1e-12)
    # Each interior row equals np.polyfit's parabola through the three points, differentiated.
    for i in (1, 5, 9):
        p = np.polyfit(wl[i - 1:i + 2], np.eye(wl.size)[i - 1:i + 2], 2)  # (3, nw): one parabola per e_j
        np.testing.assert_allclose(d1[i], 2 * p[0] * wl[i] + p[1], atol=1e-8)
        np.testing.assert_allclose(d2[i], 2 * p[0], atol=1e-6)


def test_spline_is_exact_for_cubics_and_three_point_is_not():
    wl = UNEQUAL
    cubic = 0.3 + wl - 4.0 * wl ** 2 + 20.0 * wl ** 3
    exact1, exact2 = 1.0 - 8.0 * wl + 60.0 * wl ** 2, -8.0 + 120.0 * wl
    d1, d2 = derivative_operators(wl, None, "spline")
    np.testing.assert_allclose(d1 @ cubic, exact1, rtol=0, atol=1e-10)
    np.testing.assert_allclose(d2 @ cubic, exact2, rtol=0, atol=1e-8)
    t1, _ = derivative_operators(wl, None, "three_point")
    assert np.max(np.abs(t1 @ cubic - exact1)) > 1e-3


def test_spline_removes_most_of_the_three_point_bias_on_a_coarse_grid():
    # A Gaussian line of 1/e half-width 0.08 A sampled at ~0.04 A steps: the core's slope.
    wl = np.linspace(-0.24, 0.24, 13) + np.array([0, 3, -2, 4, -1, 2, 0, -3, 1, -2, 4, -1, 0]) * 1e-3
    width, shift = 0.08, 0.011
    profile = 1.0 - 0.6 * np.exp(-((wl - shift) / width) ** 2)
    g = np.exp(-((wl - shift) / width) ** 2)
    exact1 = 0.6 * g * 2 * (wl - shift) / width ** 2
    exact2 = 0.6 * g * (2 / width ** 2 - 4 * (wl - shift) ** 2 / width ** 4)
    active = [4, 5, 6, 7, 8]
    errors = {}
    for method in DERIVATIVES:
        d1, d2 = derivatives_at(profile, wl, active, method)
        errors[method] = (np.max(np.abs(d1 - exact1[active])) / np.max(np.abs(exact1)),
                          np.max(np.abs(d2 - exact2[active])) / np.max(np.abs(exact2)))
    assert errors["three_point"][0] > 0.05  # the bias the choice is for
    assert errors["spline"][0] < 0.25 * errors["three_point"][0]
    # The spline's second derivative at its knots is second order like the three-point one: no gain there.
    assert errors["spline"][1] < 0.15 and errors["three_point"][1] < 0.15


@pytest.mark.parametrize("active", [[5, 6, 7], [0, 3, 11], None])
def test_operators_equal_scipy_and_the_plain_formula_on_random_spectra(active):
    rng = np.random.default_rng(4)
    spectra = rng.normal(size=(6, UNEQUAL.size))
    idx = list(range(UNEQUAL.size)) if active is None else active
    spline = CubicSpline(UNEQUAL, spectra, axis=-1)  # the independent path
    d1, d2 = derivatives_at(spectra, UNEQUAL, active, "spline")
    np.testing.assert_allclose(d1, spline(UNEQUAL[idx], 1), rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(d2, spline(UNEQUAL[idx], 2), rtol=1e-10, atol=1e-7)
    # three_point through its matrices agrees with the formula applied to the spectra.
    o1, o2 = derivative_operators(UNEQUAL, active, "three_point")
    t1, t2 = derivatives_at(spectra, UNEQUAL, active, "three_point")
    np.testing.assert_allclose(spectra @ o1.T, t1, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(spectra @ o2.T, t2, rtol=1e-12, atol=1e-7)


def test_three_wavelengths_make_both_choices_the_same_parabola():
    wl = np.array([-0.04, 0.0, 0.05])
    a, b = (derivative_operators(wl, None, m) for m in DERIVATIVES)
    np.testing.assert_allclose(a[0][1], b[0][1], atol=1e-9)  # the centre's slope
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)


def _line_cube(npix, wl, derivative, blos=120.0, bq=4e4, bu=-2.5e4):
    """``npix`` identical pixels (1, npix, 4, nw) whose Q, U, V are the WFA of a Gaussian line
    with ``derivative``'s derivatives: the pixel-wise WFA with that derivative recovers the field."""
    line = get_line("5173")
    intensity = 1.0 - 0.5 * np.exp(-((wl - 0.01) / 0.09) ** 2)
    d1, d2 = derivatives_at(intensity, wl, None, derivative)
    v = line.C * line.geff * d1 * blos
    k = -0.25 * line.C ** 2 * line.Gg * d2
    spectrum = np.stack([intensity, k * bq, k * bu, v])
    return np.broadcast_to(spectrum, (1, npix, 4, wl.size)).copy()


@pytest.mark.parametrize("derivative", DERIVATIVES)
def test_pixel_wfa_recovers_its_own_forward_model(derivative):
    wl = np.round(np.linspace(-0.24, 0.24, 13), 10)
    obs = Observation(_line_cube(3, wl, derivative), wl, derivative=derivative, active_indices=(4, 5, 6, 7, 8))
    maps = pixel_wfa(obs)
    np.testing.assert_allclose(maps.blos, 120.0, rtol=1e-9)
    np.testing.assert_allclose(maps.bq, 4e4, rtol=1e-9)
    np.testing.assert_allclose(maps.bu, -2.5e4, rtol=1e-9)


@pytest.mark.parametrize("derivative", DERIVATIVES)
def test_sigmas_match_monte_carlo_through_the_operator(derivative):
    # Noise in I enters through D1/D2 at every wavelength the derivative reads.
    wl = np.round(np.linspace(-0.24, 0.24, 13), 10)
    npix, sigma = 4000, np.array([2e-3, 1e-4, 1e-4, 1e-4])
    clean = _line_cube(npix, wl, derivative, blos=800.0, bq=8e5, bu=-5e5)
    noise = StokesNoise(sigma=np.repeat(sigma[:, None], wl.size, axis=1), method="given")
    predicted = pixel_wfa_sigmas(Observation(clean[:, :1], wl, derivative=derivative, active_indices=SEED), noise)
    rng = np.random.default_rng(11)
    noisy = clean + rng.normal(size=clean.shape) * sigma[None, None, :, None]
    maps = pixel_wfa(Observation(noisy, wl, derivative=derivative, active_indices=SEED))
    for key in ("blos", "bq", "bu"):
        measured = np.std(getattr(maps, key))
        assert measured == pytest.approx(float(getattr(predicted, key)[0, 0]), rel=0.07), key


def test_the_two_choices_propagate_different_noise():
    wl = np.round(np.linspace(-0.24, 0.24, 13), 10)
    noise = StokesNoise(sigma=np.full((4, 13), 1e-3), method="given")
    sig = {m: pixel_wfa_sigmas(Observation(_line_cube(1, wl, m), wl, derivative=m), noise).blos[0, 0]
           for m in DERIVATIVES}
    assert sig["three_point"] != pytest.approx(sig["spline"], rel=1e-3)


def test_observation_carries_the_choice_and_the_spline_needs_every_wavelength():
    wl = np.round(np.linspace(-0.24, 0.24, 13), 10)
    cube = _line_cube(4, wl, "three_point")
    cube[0, 1, 0, 0] = np.nan  # far blue wing of I: the three-point stencil of 5, 6, 7 does not read it
    with pytest.warns(UserWarning):
        spline = Observation(cube, wl, derivative="spline", active_indices=SEED)
    three = Observation(cube, wl, active_indices=SEED)
    assert three.derivative == "three_point" and three.valid.tolist() == [True] * 4
    assert spline.valid.tolist() == [True, False, True, True]
    assert spline.with_stokes(cube, "again").derivative == "spline"
    d1, d2 = spline.derivative_operators()
    assert d1.shape == d2.shape == (3, 13)
    inputs = spline.wfa_inputs()
    expected = CubicSpline(wl, cube[0, [0, 2, 3], 0], axis=-1)(wl[[5, 6, 7]], 1)
    np.testing.assert_allclose(inputs.dI_dlambda, expected, rtol=1e-10, atol=1e-9)
    series = Observation(np.stack([cube, cube]), wl, derivative="spline", active_indices=SEED)
    assert series.frame(1).derivative == "spline"


def test_an_unknown_derivative_is_refused_with_the_choices():
    wl = np.round(np.linspace(-0.24, 0.24, 13), 10)
    with pytest.raises(HashwfaError, match="three_point, spline"):
        Observation(_line_cube(1, wl, "three_point"), wl, derivative="akima")
    with pytest.raises(HashwfaError, match="three_point, spline"):
        derivative_operators(wl, None, "five_point")


def test_config_key_reaches_the_observation_and_a_bad_value_names_the_key():
    cfg = validate_config({"physics": {"derivative": "spline"}, "data": {"synthetic": {"ny": 6, "nx": 5}}})
    assert cfg.solver.physics.derivative == "spline"
    assert load_data(cfg).observation.derivative == "spline"
    # A run's defaults: the spline for dI/dlambda, the three-point parabola for d2I/dlambda2.
    assert (validate_config({}).physics.derivative, validate_config({}).physics.derivative_qu) == ("spline", "three_point")
    with pytest.raises(HashwfaError) as info:
        validate_config({"physics": {"derivative": "akima"}})
    message = str(info.value)
    assert "physics.derivative" in message and "three_point" in message and "spline" in message


def test_synthetic_plage_observation_takes_the_choice_without_changing_the_data():
    a = synthetic_plage(ny=6, nx=5, derivative="spline")
    b = synthetic_plage(ny=6, nx=5)
    assert a.observation.derivative == "spline" and b.observation.derivative == "three_point"
    np.testing.assert_array_equal(a.observation.stokes, b.observation.stokes)


def test_config_file_override(tmp_path):
    path = tmp_path / "c.json"
    path.write_text("{}")
    assert load_config(path, ["physics.derivative=spline"]).physics.derivative == "spline"


def test_q_and_u_can_keep_the_three_point_second_derivative():
    wl = UNEQUAL
    spline1, spline2 = derivative_operators(wl, [4, 5, 6], "spline")
    three1, three2 = derivative_operators(wl, [4, 5, 6], "three_point")
    mixed1, mixed2 = derivative_operators(wl, [4, 5, 6], "spline", "three_point")
    np.testing.assert_array_equal(mixed1, spline1)
    np.testing.assert_array_equal(mixed2, three2)
    cube = _line_cube(3, np.round(np.linspace(-0.24, 0.24, 13), 10), "three_point")
    grid = np.round(np.linspace(-0.24, 0.24, 13), 10)
    obs = Observation(cube, grid, derivative="spline", derivative_qu="three_point", active_indices=SEED)
    assert (obs.derivative, obs.derivative_qu) == ("spline", "three_point")
    assert obs.with_stokes(cube, "again").derivative_qu == "three_point"
    inputs = obs.wfa_inputs()
    intensity = cube[0, :, 0]
    # d2 by the plain parabola through the three points (independent of the package).
    h0, h1 = grid[6] - grid[5], grid[7] - grid[6]
    plain = 2 * (h0 * intensity[:, 7] - (h0 + h1) * intensity[:, 6] + h1 * intensity[:, 5]) / (h0 * h1 * (h0 + h1))
    np.testing.assert_allclose(inputs.d2I_dlambda2[:, 1], plain, rtol=1e-12)
    np.testing.assert_allclose(inputs.dI_dlambda, CubicSpline(grid, intensity, axis=-1)(grid[[5, 6, 7]], 1),
                               rtol=1e-10, atol=1e-9)
    assert Observation(cube, grid, derivative="spline").derivative_qu == "spline"


def test_config_key_derivative_qu():
    cfg = validate_config({"physics": {"derivative": "spline", "derivative_qu": "three_point"},
                           "data": {"synthetic": {"ny": 6, "nx": 5}}})
    obs = load_data(cfg).observation
    assert (obs.derivative, obs.derivative_qu) == ("spline", "three_point")
    assert validate_config({}).physics.derivative_qu == "three_point"  # the default; null = physics.derivative
    with pytest.raises(HashwfaError, match="physics.derivative_qu"):
        validate_config({"physics": {"derivative_qu": "akima"}})
