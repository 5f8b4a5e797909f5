"""The sigma maps of a run (hashwfa.training.bootstrap): members, seeds, noise, fallbacks."""

import numpy as np
import pytest
import torch

import hashwfa.training.bootstrap as uncertainty_module
from hashwfa.wfa.baselines.products import Baselines
from hashwfa.training import TwoPhaseSolver
from hashwfa.training.penalty import PenaltyWeights
from hashwfa.training.bootstrap import UncertaintyConfig, member_seed, run_uncertainty
from hashwfa.wfa.observation.noise import given_noise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.synthetic.plage import synthetic_plage

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def fitted(small_observation, small_solver_config, one_thread):
    config = small_solver_config(seed=7)
    return config, TwoPhaseSolver(small_observation, config, progress=False).run().maps


def test_member_seeds_are_the_run_seed_plus_multiples_of_1000():
    assert [member_seed(7, k) for k in (1, 2, 3)] == [1007, 2007, 3007]
    assert member_seed(2**63 - 1, 1) == 999  # kept in 63 bits, like the fields' seeds


def test_members_train_with_their_seeds_and_the_maps_are_reproducible(small_observation, fitted):
    config, maps = fitted
    said = []
    first = run_uncertainty(small_observation, maps, config, field_sigmas_too=True,
                            settings=UncertaintyConfig(members=2), progress=False, say=said.append)
    assert [m["seed"] for m in first.members] == [1007, 2007]
    assert len(said) == 2 and "member 1/2" in said[0] and "seed 1007" in said[0]
    assert first.noise.method == "spatial-highpass-MAD"
    again = run_uncertainty(small_observation, maps, config, field_sigmas_too=True,
                            settings=UncertaintyConfig(members=2), progress=False)
    for name in ("blos", "bq", "bu", "bt", "azimuth"):
        a, b = getattr(first.sigmas, name), getattr(again.sigmas, name)
        assert np.all(np.isfinite(a)) and np.all(a > 0), name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert first.history()["members"] == first.members and first.history()["field_sigmas"] is True


def test_without_field_sigmas_nothing_trains_and_the_given_noise_is_used(small_observation, fitted, monkeypatch):
    config, maps = fitted

    class NoTraining:
        def __init__(self, *args, **kwargs):
            raise AssertionError("no member may train without field_sigmas_too")

    monkeypatch.setattr(uncertainty_module, "TwoPhaseSolver", NoTraining)
    noise = given_noise([0.0, 1e-3, 1e-3, 2e-3], small_observation.nw)
    found = run_uncertainty(small_observation, maps, config, baselines=Baselines(small_observation, given_noise=noise), progress=False)
    assert found.noise is noise and found.sigmas is None and found.members == []
    # No noise in I: B_los is linear in V, so its sigma is sigma_V times the norm of
    # d B_los / d V over the active wavelengths, measured here by finite differences.
    obs = small_observation
    base = pixel_wfa(obs, core_cutoff=config.physics.core_cutoff, qu_form=config.physics.qu_form).blos
    squares = np.zeros_like(base)
    h = 1e-4
    for a in obs.active_indices:
        cube = obs.stokes.copy()
        cube[..., 3, a] += h
        moved = Observation(cube, obs.wavelengths, line=obs.line, active_indices=obs.active_indices,
                            weights=obs.weights, mask=obs.mask, unit=obs.unit)
        squares += ((pixel_wfa(moved, core_cutoff=config.physics.core_cutoff,
                               qu_form=config.physics.qu_form).blos - base) / h) ** 2
    np.testing.assert_allclose(found.wfa_sigmas.blos, 2e-3 * np.sqrt(squares), rtol=1e-4)


def test_noise_that_cannot_be_estimated(small_solver_config):
    tiny = synthetic_plage(ny=2, nx=3, seed=0, noise=1e-3).observation
    maps = synthetic_plage(ny=2, nx=3, seed=0, noise=1e-3).truth
    found = run_uncertainty(tiny, maps, small_solver_config(), progress=False)
    assert found.noise is None and found.wfa_sigmas is None and found.history()["noise"] is None
    assert "WFA_SIGMA" in found.skipped and "data.noise" in found.skipped
    # Asked for the field's sigmas too: still no error (the fit's maps must be written), both left out.
    found = run_uncertainty(tiny, maps, small_solver_config(), field_sigmas_too=True, progress=False)
    assert found.sigmas is None and found.wfa_sigmas is None and not found.members
    assert "SIGMA_* and WFA_SIGMA_*" in found.skipped and found.history()["skipped"] == found.skipped


def test_member_config_trains_the_fraction_of_the_epochs_without_a_warm_start(small_solver_config):
    config = small_solver_config(seed=7, init_from="pixelwise")
    member = uncertainty_module.member_config(config, UncertaintyConfig(member_epochs=0.25))
    assert member.training.epochs_per_phase == 3  # 12 * 0.25
    assert member.training.init_from == "none" and member.training.seed == 7 and member.encoding == config.encoding
    tiny = uncertainty_module.member_config(config, UncertaintyConfig(member_epochs=0.0))
    assert tiny.training.epochs_per_phase == 1  # at least one epoch
    series = uncertainty_module.member_config(config, UncertaintyConfig(member_epochs=0.25, member_epochs_series=0.5),
                                              series=True)
    assert series.training.epochs_per_phase == 6  # 12 * 0.5: a joint series has its own fraction


def test_a_member_from_the_fit_starts_from_its_weights_and_trains_the_short_schedule(small_observation,
                                                                                    small_solver_config):
    config = small_solver_config(seed=7, epochs_per_phase=40)
    fit = TwoPhaseSolver(small_observation, config, progress=False)
    fitted = fit.run()
    maps = fitted.maps
    fields = {p: {k: v.clone() for k, v in f.state_dict().items()} for p, f in fit.fields.items()}
    given = uncertainty_module.FitStart(fields=fields, penalty_weights={"blos": PenaltyWeights(0.5, 0.0, 0.1)})
    assert uncertainty_module.member_solver(small_observation, config, False, start=given).penalty_weights == \
        {"blos": PenaltyWeights(0.5, 0.0, 0.1)}  # the fit's smoothness weights, not chosen again
    start = uncertainty_module.FitStart.of(fit)
    member = uncertainty_module.member_solver(small_observation, config, False, start=start,
                                              settings=UncertaintyConfig(member_epochs=0.25))
    for p, field in member.fields.items():  # the member's own initialisation is replaced by the fit's weights
        for k, v in field.state_dict().items():
            assert torch.equal(v, fields[p][k]), (p, k)
    result = member.run()
    assert [len(result.history[p]["loss"]) for p in ("blos", "bqbu")] == [10, 10]  # 40 * 0.25
    # On the same data, from the fitted weights: its first epoch is where the fit ended, not where it began
    # (B_los; the small (B_Q, B_U) field's loss hardly moves in 40 epochs).
    first, last = fitted.history["blos"]["loss"][0], fitted.history["blos"]["loss"][-1]
    assert abs(result.history["blos"]["loss"][0] - last) < 0.1 * (first - last)
    found = run_uncertainty(small_observation, maps, config, field_sigmas_too=True, progress=False,
                            start=start, settings=UncertaintyConfig(member_epochs=0.25))
    assert [(m["start"], m["epochs_blos"]) for m in found.members] == [("fit", 10)]
    scratch = run_uncertainty(small_observation, maps, config, field_sigmas_too=True, progress=False,
                              start=start, settings=UncertaintyConfig(member_start="scratch"))
    assert [(m["start"], m["epochs_blos"]) for m in scratch.members] == [("scratch", 40)]
