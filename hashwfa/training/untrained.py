"""A fit that did not train is an error, not a result.

A neural field that never moved from its start still gives maps (those of
the untrained network: B_los of a few hundredths of a gauss everywhere), and
a run that writes them as a result misleads. :func:`untrained_message` looks
at a finished fit with two criteria, each a symptom that no working fit
shows after :data:`MIN_EPOCHS` epochs:

A fit that starts from a baseline map (``training.init_from``) is not
judged: its start is already a fit.

- **the loss did not fall**: in a phase that has something to fit
  (a first loss above 0), no later epoch's loss is below ``(1 -``
  :data:`LOSS_TOLERANCE` ``)`` times the first. The smallest fall measured on
  working fits is about 6e-6 (phase 2 of the 24 x 20 synthetic plage, 10
  epochs at lr 1e-3; the reference protocol's lr 5e-3 falls by 7e-5 in 10
  epochs); a fit whose gradients vanish keeps the float32 loss exactly.
- **B_los is about zero where the WFA's is not**: the rms of the field's
  B_los over the valid pixels is below :data:`ZERO_FRACTION` of the
  pixel-wise WFA's (when V has a weight). The untrained network gives about
  2.5e-4 of it; working fits reach 5e-3 in 10 epochs at the reference protocol's
  lr 5e-3, 0.05 and more after 20.

Shorter fits (the few-epoch runs of tests and smoke checks) are not judged:
their maps are close to the start by design.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

__all__ = ["MIN_EPOCHS", "LOSS_TOLERANCE", "ZERO_FRACTION", "untrained_message"]

#: A phase is judged only when it ran at least this many epochs.
MIN_EPOCHS = 20
#: Relative fall of a phase's loss below which the phase did not train.
LOSS_TOLERANCE = 1e-6
#: rms(field B_los) / rms(pixel-wise B_los) below which the field's B_los is "about zero".
ZERO_FRACTION = 1e-3

_LABELS = {"blos": "phase 1 (B_los on V)", "bqbu": "phase 2 (B_Q, B_U on Q and U)"}


def _rms(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    return float(np.sqrt(np.mean(values * values))) if values.size else float("nan")


def untrained_message(
    history: Dict[str, Dict[str, List[float]]],
    field_blos: np.ndarray,
    wfa_blos: np.ndarray,
    valid: np.ndarray,
    weights: Sequence[float],
    warm_start: bool = False,
    settings: str = "",
) -> Optional[str]:
    """Why a finished fit did not train (one line), or None when it did (see the module docstring).

    Args:
        history: the solver's history, ``{phase: {"loss": [...], ...}}``.
        field_blos: the neural field's B_los map [G], any shape.
        wfa_blos: the pixel-wise WFA's B_los map [G], the same shape (NaN where invalid).
        valid: bool of the same size, the pixels the fit saw.
        weights: the Stokes weights (I, Q, U, V) of the loss.
        warm_start: whether the phases started from a baseline map
            (``training.init_from``): then nothing is judged, as the start is
            already a fit.
        settings: the run's learning-rate and scale settings, quoted in the fix.
    """
    if warm_start:
        return None
    problems = []
    for phase, entry in history.items():
        loss = [float(v) for v in entry.get("loss", [])]
        if len(loss) < MIN_EPOCHS or not loss[0] > 0:
            continue
        if min(loss[1:]) >= loss[0] * (1.0 - LOSS_TOLERANCE):
            problems.append(f"{_LABELS.get(phase, phase)}: the loss {loss[0]:.3g} did not fall in {len(loss)} epochs")
    blos_epochs = len(history.get("blos", {}).get("loss", []))
    if weights[3] > 0 and blos_epochs >= MIN_EPOCHS:
        keep = np.asarray(valid, dtype=bool).reshape(-1)
        field = _rms(np.asarray(field_blos).reshape(-1)[keep])
        wfa = _rms(np.asarray(wfa_blos).reshape(-1)[keep])
        if np.isfinite(wfa) and wfa > 0 and np.isfinite(field) and field < ZERO_FRACTION * wfa:
            problems.append(f"the field's B_los is {field:.3g} G rms where the pixel-wise WFA's is {wfa:.3g} G rms")
    if not problems:
        return None
    return ("the neural field did not train (" + "; ".join(problems) + "), so its maps are the untrained "
            "network's and are not written. Likely cause: steps too small for these data (training.lr, "
            f"training.blos_scale, training.bqbu_scale{settings}) or gradients that vanish. Fix: raise "
            "training.lr or the output scales, or start from a baseline (training.init_from = 'regularized').")


def describe_settings(training: Any) -> str:
    """``" = lr, blos_scale, bqbu_scale"`` of a :class:`~hashwfa.training.solver_config.TrainingConfig`, for the message."""
    return f" = {training.lr:g}, {training.blos_scale:g}, {training.bqbu_scale:g}"
