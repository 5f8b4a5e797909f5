"""The check that a finished fit trained (hashwfa.training.untrained), on hand-made histories and maps."""

import numpy as np

from hashwfa.training.untrained import MIN_EPOCHS, untrained_message

WFA = np.linspace(-300.0, 300.0, 40).reshape(5, 8)
VALID = np.ones(WFA.shape, dtype=bool)
WEIGHTS = (1.0, 1.0, 1.0, 1.0)


def _history(blos, bqbu):
    return {"blos": {"loss": list(blos), "lr": [1.0] * len(blos)}, "bqbu": {"loss": list(bqbu), "lr": [1.0] * len(bqbu)}}


def test_a_fit_whose_loss_falls_and_map_moves_passes():
    falling = 1e-4 * (1.0 - 1e-5 * np.arange(MIN_EPOCHS))  # a fall of 2e-4: slow, but training
    assert untrained_message(_history(falling, falling), 0.01 * WFA, WFA, VALID, WEIGHTS) is None


def test_a_constant_loss_and_a_zero_map_are_an_error():
    flat = [7e-19] * MIN_EPOCHS
    message = untrained_message(_history(flat, flat), np.full(WFA.shape, -1e-6), WFA, VALID, WEIGHTS,
                                settings=" = 0.005, 1, 1000")
    assert message is not None and "\n" not in message
    assert "phase 1" in message and "phase 2" in message and "B_los is 1e-06 G rms" in message
    assert "training.lr" in message and "Fix:" in message


def test_each_criterion_alone():
    flat, falling = [1.0] * MIN_EPOCHS, list(np.linspace(1.0, 0.5, MIN_EPOCHS))
    only_loss = untrained_message(_history(falling, flat), WFA, WFA, VALID, WEIGHTS)
    assert "phase 2" in only_loss and "phase 1" not in only_loss and "B_los is" not in only_loss
    only_map = untrained_message(_history(falling, falling), 1e-4 * WFA, WFA, VALID, WEIGHTS)
    assert "B_los is" in only_map and "did not fall" not in only_map


def test_short_warm_started_and_unweighted_fits_are_not_judged():
    flat = [1.0] * (MIN_EPOCHS - 1)
    zero = np.zeros(WFA.shape)
    assert untrained_message(_history(flat, flat), zero, WFA, VALID, WEIGHTS) is None  # too few epochs
    long_flat = [1.0] * MIN_EPOCHS
    assert untrained_message(_history(long_flat, long_flat), zero, WFA, VALID, WEIGHTS, warm_start=True) is None
    # V without weight: B_los is not fitted, its map may be anything; a loss of 0 has nothing to fit.
    assert untrained_message(_history([0.0] * MIN_EPOCHS, list(np.linspace(1, 0.5, MIN_EPOCHS))), zero, WFA,
                             VALID, (1.0, 1.0, 1.0, 0.0)) is None
    # Only valid pixels count: a WFA that is non-zero only where the fit saw nothing.
    valid = WFA < 0
    hidden = np.where(valid, 0.0, WFA)
    falling = list(np.linspace(1.0, 0.5, MIN_EPOCHS))
    assert untrained_message(_history(falling, falling), zero, hidden, valid, WEIGHTS) is None
    assert untrained_message(_history(falling, falling), zero, hidden, ~valid, WEIGHTS) is not None
