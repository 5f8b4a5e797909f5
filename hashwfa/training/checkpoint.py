"""Checkpoints: the format version and the check that a saved state fits a config.

A checkpoint is :meth:`hashwfa.training.solver.TwoPhaseSolver.state_dict`
saved with :func:`torch.save`: ``{"format", "config", "phase_index", "epoch",
"history", "timings", "fields", "optimizers", "schedulers", "generator"}``.
Model bundles (:func:`hashwfa.training.model.model_bundle`) carry the same
``format``.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import torch

from hashwfa.errors import HashwfaError
from hashwfa.schema import differing_keys
from hashwfa.training.loss import PHASES

__all__ = ["STATE_FORMAT", "RESUMABLE_CHANGES", "check_resumable", "check_state_layout", "DAMAGED_FIX"]

#: The fix for a checkpoint that cannot be resumed.
DAMAGED_FIX = "Fix: start the run again with --overwrite (or --out DIR for a new run)."

# Bumped when the layout of checkpoints or model bundles changes.
STATE_FORMAT = 1

#: Config keys (or sections, ending in ".") that may change between the
#: sessions of one run: the device, the optional outputs, and what only the
#: sigma maps use (computed after the fit, never checkpointed).
RESUMABLE_CHANGES = ("training.device", "output.", "uncertainty.", "data.noise")


def check_resumable(state: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Raise unless ``state`` (a checkpoint) continues a run of ``config`` (``SolverConfig.to_dict()``).

    Raises:
        HashwfaError: the state has another format, or was saved with other
            settings (naming them).
    """
    if not isinstance(state, Mapping):
        raise HashwfaError(f"the checkpoint is a {type(state).__name__}, not a training state. {DAMAGED_FIX}")
    if state.get("format") != STATE_FORMAT:
        raise HashwfaError(
            f"checkpoint format {state.get('format')!r} is not {STATE_FORMAT}: it was written "
            "by another hashwfa version. Fix: start the run again with --overwrite."
        )
    if not isinstance(state.get("config"), Mapping):
        raise HashwfaError(f"the checkpoint has no valid 'config' entry. {DAMAGED_FIX}")
    diff = differing_keys(config, state["config"], RESUMABLE_CHANGES)
    if diff:
        raise HashwfaError(
            "the checkpoint was written with different settings ("
            + ", ".join(diff)
            + "). Fix: resume with the original config, or start again with --overwrite."
        )


def _damaged(what: str) -> HashwfaError:
    return HashwfaError(f"the checkpoint is damaged: {what}. {DAMAGED_FIX}")


def check_state_layout(state: Mapping[str, Any], epochs_per_phase: int) -> None:
    """Raise unless ``state`` has the layout :meth:`TwoPhaseSolver.state_dict` writes.

    Checks the entries, their types, where training stands (``phase_index``
    in ``0..len(PHASES)``, ``epoch`` in ``0..epochs_per_phase``), that the
    history holds one loss per epoch done, and that every field tensor is
    finite. Tensor shapes are checked by loading them into the model.

    Raises:
        HashwfaError: naming the first problem found, with the fix.
    """
    kinds = {"phase_index": int, "epoch": int, "history": Mapping, "timings": Mapping, "fields": Mapping,
             "optimizers": Mapping, "schedulers": Mapping, "generator": torch.Tensor}
    for key, kind in kinds.items():
        if key not in state:
            raise _damaged(f"it has no {key!r} entry")
        value = state[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise _damaged(f"its {key!r} entry is a {type(value).__name__}, not a {getattr(kind, '__name__', kind)}")
    phase_index, epoch = state["phase_index"], state["epoch"]
    if not 0 <= phase_index <= len(PHASES):
        raise _damaged(f"phase_index = {phase_index} is not in 0..{len(PHASES)}")
    if not 0 <= epoch <= epochs_per_phase:
        raise _damaged(f"epoch = {epoch} is not in 0..{epochs_per_phase} (training.epochs_per_phase)")
    for name in ("fields", "optimizers", "schedulers"):
        missing = [p for p in PHASES if not isinstance(state[name].get(p), Mapping)]
        if missing:
            raise _damaged(f"its {name!r} entry lacks phase {missing[0]!r}")
    history = state["history"]
    for i, phase in enumerate(PHASES):
        entry = history.get(phase)
        if not isinstance(entry, Mapping) or not all(isinstance(entry.get(k), (list, tuple)) for k in ("loss", "lr")):
            raise _damaged(f"its history of phase {phase!r} is not {{'loss': [...], 'lr': [...]}}")
        # One loss per epoch done; the current phase's may lag (losses are read back every log_every epochs).
        done = epochs_per_phase if i < phase_index else (epoch if i == phase_index else 0)
        n_loss = len(entry["loss"])
        if n_loss != len(entry["lr"]) or n_loss > done or (i != phase_index and n_loss != done):
            raise _damaged(
                f"its history of phase {phase!r} has {n_loss} losses, but phase_index = "
                f"{phase_index}, epoch = {epoch} means {done} epochs done"
            )
        if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in (*entry["loss"], *entry["lr"])):
            raise _damaged(f"its history of phase {phase!r} holds a value that is not a finite number")
        for key, tensor in state["fields"][phase].items():
            if not isinstance(tensor, torch.Tensor):
                raise _damaged(f"fields.{phase}.{key} is a {type(tensor).__name__}, not a tensor")
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise _damaged(f"fields.{phase}.{key} holds NaN or infinite weights (a diverged run)")
