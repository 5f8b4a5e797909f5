"""Calibration of the neural field's local-risk sigmas on a small exact-WFA synthetic (loose band).

Two small trainings (the field and one bootstrap member on redrawn noise) through the
current solver; coverage is measured against the synthetic's known truth.
"""


import numpy as np
import pytest
import torch

from hashwfa.wfa.uncertainty.local_risk import field_sigmas
from hashwfa.wfa.observation.noise import estimate_noise
from hashwfa.training import EncodingConfig, SolverConfig, TrainingConfig, TwoPhaseSolver
from hashwfa.wfa.synthetic.plage import synthetic_plage


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _fit(observation, seed):
    config = SolverConfig(
        encoding=EncodingConfig(version=1, backend="torch", n_levels=8, max_resolution=16),
        training=TrainingConfig(seed=seed, device="cpu", epochs_per_phase=100),
    )
    return TwoPhaseSolver(observation, config, progress=False).run().maps


def test_neural_field_sigmas_cover_the_truth(one_thread, sigmas_cover_the_truth):
    sp = synthetic_plage(ny=48, nx=48, seed=4, noise=1e-3, model="wfa")
    obs, truth = sp.observation, sp.truth
    field = _fit(obs, 0)
    result = field_sigmas(obs, field, _fit, estimate_noise(obs), members=1)
    sig, member = result.sigmas, result.members[0]
    # 2304 pixels of spatially correlated errors: loose bands around 0.683 and 0.954.
    sigmas_cover_the_truth(field, truth, sig)
    # The members' spread alone misses the field's smoothing bias in B_los.
    assert np.mean(np.abs(field.blos - truth.blos) <= np.abs(member.blos - field.blos)) < 0.5


def test_sigmas_of_a_member_started_from_the_fit_cover_the_truth(one_thread, sigmas_cover_the_truth):
    # The run's default member (uncertainty.member_start = "fit", member_epochs 0.1): the fit's
    # weights and smoothness weights, 10 of the fit's 100 epochs per phase, on the redrawn data.
    from hashwfa.training.bootstrap import FitStart, UncertaintyConfig, run_uncertainty

    sp = synthetic_plage(ny=48, nx=48, seed=4, noise=1e-3, model="wfa")
    obs, truth = sp.observation, sp.truth
    config = SolverConfig(
        encoding=EncodingConfig(version=1, backend="torch", n_levels=8, max_resolution=16),
        training=TrainingConfig(seed=0, device="cpu", epochs_per_phase=100),
    )
    solver = TwoPhaseSolver(obs, config, progress=False)
    field = solver.run().maps
    found = run_uncertainty(obs, field, config, field_sigmas_too=True, progress=False,
                            start=FitStart.of(solver), settings=UncertaintyConfig())
    assert [(m["start"], m["epochs_blos"]) for m in found.members] == [("fit", 10)]
    sigmas_cover_the_truth(field, truth, found.sigmas)
