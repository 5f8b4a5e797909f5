"""Warm start (training.init_from): the fit to a baseline map, its effect, and resuming."""

import io

import numpy as np
import pytest
import torch

from hashwfa.config.run_config import validate_config
from hashwfa.errors import HashwfaError
from hashwfa.training import PHASES, TwoPhaseSolver
from hashwfa.training.model import build_field
from hashwfa.training.warm_start import fit_to_map
from hashwfa.wfa.baselines.pixelwise import pixel_wfa

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fit_to_map_learns_a_smooth_map(small_solver_config):
    """A field fitted to a Gaussian blob: the relative error falls from ~1 to a few per cent."""
    config = small_solver_config()
    net = build_field(config, "blos", backend="torch", device="cpu")
    y, x = np.meshgrid(np.linspace(-1, 1, 24), np.linspace(-1, 1, 20), indexing="ij")
    coords = torch.tensor(np.stack([y.ravel(), x.ravel()], 1), dtype=torch.float32)
    blob = 800.0 * np.exp(-((y - 0.2) ** 2 + (x + 0.3) ** 2) / 0.2)
    target = torch.tensor(blob.reshape(-1, 1), dtype=torch.float32)

    def relative_error():
        with torch.no_grad():
            return float(((net(coords) - target) ** 2).mean() / (target ** 2).mean())

    before = relative_error()
    reported = fit_to_map(net, coords, target, steps=150, lr=0.02, batch_size=10_000)
    after = relative_error()
    assert before > 0.9
    assert after < 0.05 and reported < 0.05
    # Minibatches (in order) reach the same kind of fit.
    net2 = build_field(config, "blos", backend="torch", device="cpu")
    assert fit_to_map(net2, coords, target, steps=60, lr=0.02, batch_size=100) < 0.05


def test_warm_start_lowers_the_first_wfa_loss(small_observation, small_solver_config):
    """Started from the pixel-wise WFA map (the per-pixel least-squares solution of the WFA
    loss), the first epoch's loss is far below a random start's, in both phases."""
    obs = small_observation
    cold = TwoPhaseSolver(obs, small_solver_config(epochs_per_phase=2), progress=False).run()
    warm_solver = TwoPhaseSolver(obs, small_solver_config(epochs_per_phase=2, init_from="pixelwise",
                                                          init_epochs=150, lr=0.02), progress=False)
    warm = warm_solver.run()
    # B_los is fitted closely; the pixel-wise B_Q, B_U are mostly noise, which a smooth field leaves out.
    assert warm.history["blos"]["init_loss"][0] < 0.05
    assert warm.history["bqbu"]["init_loss"][0] < 0.6
    for phase in PHASES:
        assert "init_loss" not in cold.history[phase]
    assert warm.history["blos"]["loss"][0] < 0.1 * cold.history["blos"]["loss"][0]
    assert warm.history["bqbu"]["loss"][0] < cold.history["bqbu"]["loss"][0]
    # ... and the warm map is close to the pixel-wise one it started from.
    ref = pixel_wfa(obs)
    assert np.sqrt(np.mean((warm.maps.blos - ref.blos) ** 2)) < 0.3 * np.sqrt(np.mean(ref.blos ** 2))


def test_resume_after_phase_one_repeats_the_warm_start(small_observation, small_solver_config):
    """A run resumed from the end-of-phase-1 checkpoint fits phase 2 to the baseline again,
    exactly as the uninterrupted run did (bit for bit on one CPU thread)."""
    config = small_solver_config(epochs_per_phase=3, init_from="regularized", init_epochs=5)
    full = TwoPhaseSolver(small_observation, config, progress=False).run()
    states = []
    first = TwoPhaseSolver(small_observation, config, progress=False)

    def keep(state):
        if state["phase_index"] == 0 and state["epoch"] == 3:
            buffer = io.BytesIO()
            torch.save(state, buffer)
            states.append(buffer)

    first.run(on_checkpoint=keep)
    assert len(states) == 1
    states[0].seek(0)
    resumed = TwoPhaseSolver(small_observation, config, progress=False)
    resumed.load_state_dict(torch.load(states[0], weights_only=True))
    again = resumed.run()
    np.testing.assert_array_equal(again.maps.bq, full.maps.bq)
    np.testing.assert_array_equal(again.maps.blos, full.maps.blos)
    assert again.history["blos"]["init_loss"] == full.history["blos"]["init_loss"]


def test_unknown_init_is_a_config_error():
    with pytest.raises(HashwfaError, match="training.init_from"):
        validate_config({"training": {"init_from": "zeros"}}, "c.json")
