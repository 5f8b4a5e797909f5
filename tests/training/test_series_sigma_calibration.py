"""Calibration of the neural field's local-risk sigmas on a tiny exact-WFA synthetic series
(loose band): a joint (t, y, x) fit and one bootstrap member, a whole-series fit on redrawn noise,
through run_uncertainty; coverage against the series' known truth."""

import pytest

from hashwfa.training import EncodingConfig, IndependentFrames, SolverConfig, TrainingConfig, TwoPhaseSolver
from hashwfa.training.bootstrap import member_solver, run_uncertainty
from hashwfa.wfa.synthetic.series import synthetic_series

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(frames="joint"):
    return SolverConfig(
        encoding=EncodingConfig(version=1, backend="torch", n_levels=8, max_resolution=16),
        training=TrainingConfig(seed=0, device="cpu", epochs_per_phase=100, frames=frames),
    )


def test_series_field_sigmas_cover_the_truth(sigmas_cover_the_truth):
    series = synthetic_series(nt=3, ny=40, nx=40, seed=5, noise=1e-3, model="wfa")
    obs, truth = series.observation(), series.truth
    config = _config()
    field = TwoPhaseSolver(obs, config, progress=False).run().maps
    found = run_uncertainty(obs, field, config, field_sigmas_too=True, progress=False)
    sig = found.sigmas
    assert found.skipped is None and sig.blos.shape == (3, 40, 40)
    # 4800 points of errors correlated in space and time: loose bands around 0.683 and 0.954.
    sigmas_cover_the_truth(field, truth, sig)


def test_members_fit_the_series_the_way_the_run_did(small_observation):
    series = synthetic_series(nt=2, ny=8, nx=8, seed=0, model="wfa").observation()
    assert isinstance(member_solver(series, _config("joint"), False), TwoPhaseSolver)
    assert isinstance(member_solver(series, _config("independent"), False), IndependentFrames)
    # A single frame is fitted by one solver whatever training.frames says.
    assert isinstance(member_solver(small_observation, _config("independent"), False), TwoPhaseSolver)
