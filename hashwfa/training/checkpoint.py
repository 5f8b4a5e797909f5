"""Checkpoints: the format version and the check that a saved state fits a config.

A checkpoint is :meth:`hashwfa.training.solver.TwoPhaseSolver.state_dict`
saved with :func:`torch.save`: ``{"format", "config", "phase_index", "epoch",
"history", "timings", "fields", "optimizers", "schedulers", "generator"}``.
Model bundles (:func:`hashwfa.training.model.model_bundle`) carry the same
``format``.
"""

from __future__ import annotations

from typing import Any, Mapping

from hashwfa.errors import HashwfaError
from hashwfa.schema import differing_keys

__all__ = ["STATE_FORMAT", "RESUMABLE_CHANGES", "check_resumable"]

# Bumped when the layout of checkpoints or model bundles changes.
STATE_FORMAT = 1

#: Config keys (or sections, ending in ".") that may change between the
#: sessions of one run: the device, and the optional outputs.
RESUMABLE_CHANGES = ("training.device", "output.")


def check_resumable(state: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    """Raise unless ``state`` (a checkpoint) continues a run of ``config`` (``SolverConfig.to_dict()``).

    Raises:
        HashwfaError: the state has another format, or was saved with other
            settings (naming them).
    """
    if state.get("format") != STATE_FORMAT:
        raise HashwfaError(
            f"checkpoint format {state.get('format')!r} is not {STATE_FORMAT}: it was written "
            "by another hashwfa version. Fix: start the run again with --overwrite."
        )
    diff = differing_keys(config, state["config"], RESUMABLE_CHANGES)
    if diff:
        raise HashwfaError(
            "the checkpoint was written with different settings ("
            + ", ".join(diff)
            + "). Fix: resume with the original config, or start again with --overwrite."
        )
