"""The two-phase solver on a small synthetic plage (CPU, a few seconds in all)."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from hashwfa import HashwfaError
from hashwfa.training.loss import WFALoss
from hashwfa.training import (
    PHASES,
    SolverConfig,
    TwoPhaseSolver,
    fields_from_bundle,
)

# The bit-for-bit comparisons below run every solve on one thread.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def obs(small_observation, one_thread):
    return small_observation


@pytest.fixture(scope="module")
def reference(obs, small_solver_config):
    """One uninterrupted default run, shared by the tests that compare against it."""
    return TwoPhaseSolver(obs, small_solver_config(), progress=False).run()


def test_result_maps_history_and_final_loss(obs, reference, small_solver_config):
    res = reference
    for name in ("blos", "bq", "bu", "bt", "azimuth"):
        arr = getattr(res, name)
        assert arr.shape == (obs.ny, obs.nx) and arr.dtype == np.float64
        assert np.all(np.isfinite(arr))
    assert np.all((res.azimuth >= 0) & (res.azimuth < np.pi))
    np.testing.assert_allclose(res.bt, np.sqrt(np.hypot(res.bq, res.bu)))
    for phase in PHASES:
        h = res.history[phase]
        assert len(h["loss"]) == len(h["lr"]) == small_solver_config().training.epochs_per_phase
        assert h["loss"][-1] < h["loss"][0], f"loss did not fall in phase {phase}"
    assert res.device == "cpu" and res.backend == "torch"
    assert set(res.timings) >= {"setup", "blos", "bqbu", "evaluate"}
    # The final loss is the reference protocol's: all Stokes parameters of the
    # final maps over the valid pixels.
    loss = WFALoss(obs)
    valid = loss.valid_index.numpy()
    expected = loss(
        blos=torch.tensor(res.blos.reshape(-1)[valid], dtype=torch.float32),
        bqbu=torch.tensor(np.stack([res.bq.reshape(-1), res.bu.reshape(-1)], 1)[valid], dtype=torch.float32),
        phase="all",
    )
    assert res.final_loss == pytest.approx(float(expected), rel=1e-5)


def test_same_seed_same_maps_other_seed_other_maps(obs, reference, small_solver_config):
    again = TwoPhaseSolver(obs, small_solver_config(), progress=False).run()
    for name in ("blos", "bq", "bu"):
        np.testing.assert_array_equal(getattr(again, name), getattr(reference, name))
    assert again.history == reference.history
    other = TwoPhaseSolver(obs, small_solver_config(seed=1), progress=False).run()
    assert not np.array_equal(other.blos, reference.blos)


@pytest.mark.parametrize("stop_phase, stop_epoch", [("blos", 4), ("bqbu", 6)])
def test_resume_from_checkpoint_is_bit_for_bit(obs, reference, stop_phase, stop_epoch, small_solver_config):
    config = small_solver_config(checkpoint_every=2)
    saved = {}

    def keep(state):
        # The state holds live tensors (like any state_dict): copy it now,
        # as writing it to disk would.
        saved["state"] = copy.deepcopy(state)

    def stop(phase, epoch):
        if (phase, epoch) == (stop_phase, stop_epoch):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        TwoPhaseSolver(obs, config, progress=False).run(on_checkpoint=keep, on_epoch_end=stop)
    state = saved["state"]
    assert state["phase_index"] == PHASES.index(stop_phase)
    resumed = TwoPhaseSolver(obs, config, progress=False)
    resumed.load_state_dict(state)
    res = resumed.run()
    for name in ("blos", "bq", "bu"):
        np.testing.assert_array_equal(getattr(res, name), getattr(reference, name))
    assert res.history == reference.history


def test_checkpoint_with_other_settings_is_refused(obs, small_solver_config):
    solver = TwoPhaseSolver(obs, small_solver_config(epochs_per_phase=1), progress=False)
    state = solver.state_dict()
    other = TwoPhaseSolver(obs, small_solver_config(epochs_per_phase=1, lr=1e-3), progress=False)
    with pytest.raises(HashwfaError, match="training.lr"):
        other.load_state_dict(state)


def test_minibatches_and_deferred_read_back(obs, small_solver_config):
    config = small_solver_config(batch_size=128, epochs_per_phase=4, log_every=3)
    a = TwoPhaseSolver(obs, config, progress=False)
    assert not a.full_batch
    ra = a.run()
    rb = TwoPhaseSolver(obs, config, progress=False).run()
    np.testing.assert_array_equal(ra.blos, rb.blos)
    for phase in PHASES:
        assert len(ra.history[phase]["loss"]) == 4


def test_full_batch_reuses_one_coordinate_tensor(obs, monkeypatch, small_solver_config):
    solver = TwoPhaseSolver(obs, small_solver_config(epochs_per_phase=3), progress=False)
    seen = []
    for net in solver.fields.values():
        original = net.forward
        monkeypatch.setattr(net, "forward", lambda x, _f=original: (seen.append(x), _f(x))[1])
    for phase in PHASES:
        solver._train_epoch(phase)
    assert len(seen) == 2 and all(x is solver.coords for x in seen)


def test_progressive_versions_follow_the_schedule(obs, monkeypatch, small_solver_config):
    solver = TwoPhaseSolver(obs, small_solver_config(version=4, epochs_per_phase=4), progress=False)
    calls = {p: [] for p in PHASES}
    for phase, net in solver.fields.items():
        assert net.encoding.progressive
        original = net.encoding.set_active_levels
        monkeypatch.setattr(
            net.encoding, "set_active_levels", lambda a, _f=original, _p=phase: (calls[_p].append(a), _f(a))[1]
        )
    solver.run()
    n = solver.config.encoding.n_levels
    for phase in PHASES:
        levels = calls[phase]
        # One value per epoch, ramping up from a fraction of the levels, then
        # the end-of-phase value for the final evaluation.
        assert len(levels) >= 4
        assert levels[0] < n and levels[:4] == sorted(levels[:4])
        assert levels[-1] == pytest.approx(n)


def test_model_bundle_rebuilds_the_fields(obs, reference, small_solver_config):
    solver = TwoPhaseSolver(obs, small_solver_config(), progress=False)
    res = solver.run()
    fields = fields_from_bundle(solver.model_bundle(), backend="torch")
    x = torch.from_numpy(obs.coordinates())
    with torch.no_grad():
        blos = (fields["blos"](x)[:, 0] * 1.0).double().numpy().reshape(obs.ny, obs.nx)
    np.testing.assert_allclose(blos, res.blos, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_our_error(obs, small_solver_config):
    with pytest.raises(HashwfaError, match="--device cpu"):
        TwoPhaseSolver(obs, small_solver_config(device="cuda"), progress=False)


def test_config_dict_round_trip(small_solver_config):
    config = small_solver_config(version=5, lr=1e-3)
    assert SolverConfig.from_dict(config.to_dict()) == config
    assert dataclasses.asdict(config) == config.to_dict()
