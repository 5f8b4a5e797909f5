"""Fitting a time series: the (t, y, x) geometry, the joint field, independent per-frame fits."""

import dataclasses

import numpy as np
import pytest
import torch

from hashwfa.errors import HashwfaError
from hashwfa.training import IndependentFrames, TwoPhaseSolver, fields_from_bundle, time_share
from hashwfa.wfa.synthetic.series import synthetic_series


@pytest.fixture(scope="module")
def series():
    return synthetic_series(nt=3, ny=12, nx=10, seed=3, model="wfa", noise=1e-3).observation()


def test_time_share():
    # 9 frames, 2 frames per finest cell, finest scale 33 - 1 = 32: 8 frame steps over 4 cells of 1/32.
    assert time_share(9, 2.0, 33) == pytest.approx(8 / 64)
    assert time_share(9, 0.1, 33) == 1.0  # capped: the series spans the whole box
    assert time_share(1, 2.0, 33) == 1.0


@pytest.mark.parametrize("frames_per_cell", [0.5, 1.0, 2.0])
def test_finest_cells_span_the_chosen_number_of_frames(series, small_solver_config, frames_per_cell):
    config = small_solver_config(frames_per_cell=frames_per_cell)
    solver = TwoPhaseSolver(series, config, progress=False)
    encoding = solver.fields["blos"].encoding
    assert encoding.n_input_dims == 3
    coords = torch.from_numpy(series.coordinates())
    unit = encoding.unit_coordinates(coords).numpy().reshape(3, 12, 10, 3)
    finest_scale = config.encoding.max_resolution - 1  # tcnn: scale of the last level
    steps = np.diff(unit[:, 0, 0, 0]) * finest_scale  # finest cells per frame step
    np.testing.assert_allclose(steps, 1.0 / frames_per_cell, rtol=1e-5)
    # Space fills the box as for a single frame.
    np.testing.assert_allclose(unit[0, [0, -1], 0, 1], [0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(unit[0, 0, [0, -1], 2], [0.0, 1.0], atol=1e-6)


def test_joint_fit_of_a_series(series, small_solver_config, one_thread):
    clean = synthetic_series(nt=3, ny=12, nx=10, seed=3, model="wfa", noise=0.0).observation()
    solver = TwoPhaseSolver(clean, small_solver_config(epochs_per_phase=30, lr=0.05), progress=False)
    zero = solver.loss.map_loss(*(np.zeros(clean.map_shape),) * 3)
    result = solver.run()
    assert result.maps.shape == (3, 12, 10)
    assert np.all(np.isfinite(result.maps.blos))
    assert result.final_loss < 0.1 * zero  # the field explains most of the signal of all frames
    # The saved model rebuilds the same (t, y, x) field.
    fields = fields_from_bundle(solver.model_bundle())
    coords = torch.from_numpy(clean.coordinates())
    with torch.no_grad():
        blos = (fields["blos"](coords)[:, 0] * solver.scales["blos"]).double().numpy()
    np.testing.assert_allclose(blos.reshape(3, 12, 10), result.maps.blos, rtol=1e-5, atol=1e-4)


def test_independent_frames_are_the_single_frame_fits(series, small_solver_config, one_thread):
    config = small_solver_config(frames="independent", epochs_per_phase=6)
    result = IndependentFrames(series, config, progress=False).run()
    assert result.maps.shape == (3, 12, 10)
    for t in (0, 2):
        alone = TwoPhaseSolver(series.frame(t), config, progress=False).run()
        np.testing.assert_array_equal(result.maps.blos[t], alone.maps.blos)
        np.testing.assert_array_equal(result.maps.bq[t], alone.maps.bq)


def test_independent_frames_refuse_what_they_cannot_do(series, small_solver_config):
    with pytest.raises(HashwfaError, match="needs a time series"):
        IndependentFrames(series.frame(0), small_solver_config(), progress=False)
    with pytest.raises(HashwfaError, match="cannot resume"):
        IndependentFrames(series, small_solver_config(), progress=False).load_state_dict({})


@pytest.mark.parametrize("version", range(7))
@pytest.mark.parametrize("interpolation", ["Linear", "Smoothstep", "CatmullRom", "BSpline"])
def test_every_version_and_interpolation_fits_a_series_in_3d(series, small_solver_config, version, interpolation):
    config = small_solver_config(version=version, epochs_per_phase=2)
    config = dataclasses.replace(config, encoding=dataclasses.replace(config.encoding, interpolation=interpolation))
    solver = TwoPhaseSolver(series, config, progress=False)
    assert all(field.encoding.n_input_dims == 3 for field in solver.fields.values())
    result = solver.run()
    assert result.maps.shape == (3, 12, 10) and np.all(np.isfinite(result.maps.bq))


def test_independent_frames_let_every_frames_training_data_go(series, small_solver_config):
    frames = IndependentFrames(series, small_solver_config(epochs_per_phase=2), progress=False)
    frames.run()
    assert len(frames.solvers) == 3 and all(s.loss is not None for s in frames.solvers)
    frames.release_training_data()
    assert all(s.loss is None and s.coords is None for s in frames.solvers)
    assert len(frames.model_bundle()["frames"]) == 3  # the fields remain
