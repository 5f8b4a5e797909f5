"""Damaged checkpoints are refused with what is wrong and the fix, never a raw error or a half-trained result."""

import copy
import json

import pytest
import torch

from hashwfa.run import outputs as results
from hashwfa.cli.train import build_parser, main
from hashwfa.run.train import run
from hashwfa.errors import HashwfaError
from hashwfa.training import TwoPhaseSolver


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def solver_and_state(small_observation, small_solver_config):
    """A solver and the checkpoint it wrote after epoch 3 of phase 1 (of 4)."""
    config = small_solver_config(epochs_per_phase=4, checkpoint_every=1)
    solver = TwoPhaseSolver(small_observation, config, progress=False)
    saved = []

    def stop(phase, epoch):
        if epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        solver.run(on_checkpoint=lambda s: saved.append(copy.deepcopy(s)), on_epoch_end=stop)
    return small_observation, config, saved[-1]


def _first_key(fields):
    return next(iter(fields))


def _damage(state, how):
    state = copy.deepcopy(state)
    if how == "no-fields":
        del state["fields"]
    elif how == "wrong-shape":
        key = _first_key(state["fields"]["blos"])
        state["fields"]["blos"][key] = torch.zeros(3, 1)
    elif how == "history-string":
        state["history"] = "abc"
    elif how == "phase-99":
        state["phase_index"] = 99
    elif how == "epoch-negative":
        state["epoch"] = -1
    elif how == "history-too-long":
        state["history"]["blos"]["loss"].append(1.0)
        state["history"]["blos"]["lr"].append(1.0)
    elif how == "nan-weights":
        key = _first_key(state["fields"]["bqbu"])
        state["fields"]["bqbu"][key][..., 0] = float("nan")
    elif how == "no-optimizer-phase":
        del state["optimizers"]["bqbu"]
    elif how == "optimizer-groups":
        state["optimizers"]["blos"]["param_groups"] = []
    elif how == "generator-list":
        state["generator"] = [1, 2, 3]
    elif how == "timings-string":
        state["timings"] = {"blos": "slow"}
    elif how == "not-a-dict":
        state = [state]
    return state


CASES = {
    "no-fields": "no 'fields' entry",
    "wrong-shape": "does not fit this model",
    "history-string": "'history' entry is a str",
    "phase-99": "phase_index = 99",
    "epoch-negative": "epoch = -1",
    "history-too-long": "has 4 losses",
    "nan-weights": "NaN or infinite weights",
    "no-optimizer-phase": "lacks phase 'bqbu'",
    "optimizer-groups": "does not fit this model",
    "generator-list": "'generator' entry is a list",
    "timings-string": "does not fit this model",
    "not-a-dict": "not a training state",
}


@pytest.mark.parametrize("how", list(CASES))
def test_damaged_state_is_a_hashwfa_error_naming_problem_and_fix(solver_and_state, how):
    observation, config, state = solver_and_state
    fresh = TwoPhaseSolver(observation, config, progress=False)
    with pytest.raises(HashwfaError) as info:
        fresh.load_state_dict(_damage(state, how))
    assert CASES[how] in str(info.value) and "--overwrite" in str(info.value)


def test_undamaged_state_still_loads(solver_and_state):
    observation, config, state = solver_and_state
    fresh = TwoPhaseSolver(observation, config, progress=False)
    fresh.load_state_dict(copy.deepcopy(state))
    assert (fresh.phase_index, fresh.epoch) == (0, 3)


@pytest.mark.parametrize("how", ["no-fields", "wrong-shape", "history-string", "phase-99"])
def test_cli_resume_from_a_damaged_checkpoint_exits_2_and_writes_nothing(tmp_path, how, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({
        "data": {"synthetic": {"ny": 12, "nx": 10, "seed": 1}},
        "encoding": {"version": 1, "n_levels": 4, "max_resolution": 8},
        "network": {"n_neurons": 16},
        "training": {"epochs_per_phase": 3, "device": "cpu", "checkpoint_every": 1},
        "output": {"quicklook": False},
    }))
    out = tmp_path / "out"

    def stop(phase, epoch):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(build_parser().parse_args([str(config), "--out", str(out), "--quiet"]), on_epoch_end=stop)
    checkpoint = out / results.CHECKPOINT_PT
    torch.save(_damage(results.load_checkpoint(checkpoint), how), checkpoint)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main([str(config), "--out", str(out), "--quiet", "--resume"]) == 2
    err = capsys.readouterr().err
    assert str(checkpoint) in err and CASES[how] in err and "--overwrite" in err and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
