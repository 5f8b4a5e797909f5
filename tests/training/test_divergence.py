"""A diverging fit stops with where and why, and never leaves a checkpoint with non-finite weights."""

import copy
import json

import pytest
import torch

from hashwfa.cli.train import main
from hashwfa.run import outputs as results
from hashwfa.training import TwoPhaseSolver
from hashwfa.training.divergence import DivergenceError

pytestmark = pytest.mark.usefixtures("one_thread")


def _all_finite(state):
    return all(bool(torch.isfinite(t).all()) for f in state["fields"].values() for t in f.values())


def test_huge_learning_rate_stops_with_phase_epoch_and_cause(small_observation, small_solver_config):
    solver = TwoPhaseSolver(small_observation, small_solver_config(lr=1e6, checkpoint_every=1), progress=False)
    saved = []
    with pytest.raises(DivergenceError, match=r"phase 1/2 \(blos\), epoch \d+ of 12.*learning rate") as info:
        solver.run(on_checkpoint=lambda state: saved.append(copy.deepcopy(state)))
    assert "training.lr" in str(info.value) and "--overwrite" in str(info.value)
    assert saved and all(_all_finite(s) for s in saved)
    # The last checkpoint written is a valid place to resume from.
    again = TwoPhaseSolver(small_observation, small_solver_config(lr=1e6, checkpoint_every=1), progress=False)
    again.load_state_dict(saved[-1])
    assert again.epoch == saved[-1]["epoch"]


def test_parameters_turned_nan_by_a_step_are_never_checkpointed(small_observation, small_solver_config):
    solver = TwoPhaseSolver(small_observation, small_solver_config(checkpoint_every=1), progress=False)
    step = solver.optimizers["blos"].step
    calls = []

    def poisoned_step(*args, **kwargs):  # the third step leaves a NaN weight (its loss was finite)
        out = step(*args, **kwargs)
        calls.append(1)
        if len(calls) == 3:
            with torch.no_grad():
                next(solver.fields["blos"].parameters()).view(-1)[0] = float("nan")
        return out

    solver.optimizers["blos"].step = poisoned_step
    saved = []
    with pytest.raises(DivergenceError, match=r"parameters are no longer finite in phase 1/2 \(blos\), epoch 3"):
        solver.run(on_checkpoint=lambda state: saved.append(copy.deepcopy(state)))
    assert [s["epoch"] for s in saved] == [1, 2]
    assert all(_all_finite(s) for s in saved)


def test_cli_divergence_is_one_message_and_exit_2(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({
        "data": {"synthetic": {"ny": 12, "nx": 10, "seed": 1}},
        "encoding": {"version": 1, "n_levels": 4, "max_resolution": 8},
        "network": {"n_neurons": 16},
        "training": {"epochs_per_phase": 5, "device": "cpu", "lr": 1e6, "checkpoint_every": 1},
        "output": {"quicklook": False},
    }))
    out = tmp_path / "out"
    assert main([str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "diverged" in err and "epoch" in err and "Traceback" not in err
    assert not (out / results.FIELD_FITS).exists()
    # Epoch 1 still had a finite loss: its checkpoint is there, and finite.
    assert _all_finite(results.load_checkpoint(out / results.CHECKPOINT_PT))
