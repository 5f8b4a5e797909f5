"""Independent per-frame fits of a time series (``training.frames = "independent"``).

The comparison for the joint fit over (t, y, x) that
:class:`~hashwfa.training.solver.TwoPhaseSolver` does for a series: each
frame gets its own (y, x) fields, trained with the same settings from the
same seed, one frame after the other. The maps are stacked into
``(nt, ny, nx)``; the final loss is the reference protocol's loss of the stacked
maps over the whole series (comparable with the joint fit's); the history is
the mean over frames of each epoch's loss and learning rate. These runs keep
no checkpoint (a frame takes 1/nt of the joint run's work): an interrupted
run starts again.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from hashwfa.errors import HashwfaError
from hashwfa.training.checkpoint import STATE_FORMAT
from hashwfa.training.result import SolverResult
from hashwfa.training.solver_config import SolverConfig
from hashwfa.training.solver import TwoPhaseSolver
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.training.loss import PHASES, WFALoss
from hashwfa.wfa.observation.observation import Observation

__all__ = ["IndependentFrames"]


class IndependentFrames:
    """One two-phase solve per frame of a series.

    Args:
        observation: a series ``(nt, ny, nx, 4, nw)``.
        config: the solver settings, used for every frame.
        progress: show the progress bars of each frame's solve.

    Raises:
        HashwfaError: for a single-frame observation, and what
            :class:`TwoPhaseSolver` checks (device, backend), before any
            training.
    """

    def __init__(self, observation: Observation, config: SolverConfig, *, progress: bool = True) -> None:
        if not observation.is_series:
            raise HashwfaError("training.frames 'independent' needs a time series (nt, ny, nx, 4, nw)")
        self.observation = observation
        self.config = config
        self.progress = progress
        self.solvers: List[TwoPhaseSolver] = []
        # The first frame's solver is built now, so a bad device or backend fails early.
        self._first = TwoPhaseSolver(observation.frame(0), config, progress=progress)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Independent runs keep no checkpoint; always raises.

        Raises:
            HashwfaError: with the fix (start again).
        """
        raise HashwfaError("a run with training.frames 'independent' keeps no checkpoint and cannot resume. "
                           "Fix: start it again with --overwrite.")

    def run(
        self,
        *,
        on_checkpoint: Optional[Callable[[Dict[str, Any]], None]] = None,
        on_epoch_end: Optional[Callable[[str, int], None]] = None,
    ) -> SolverResult:
        """Fit every frame, then evaluate the stacked maps on the series.

        ``on_checkpoint`` is ignored (no checkpoints); ``on_epoch_end(phase,
        epoch)`` is called after each epoch of each frame.
        """
        obs = self.observation
        results = []
        self.solvers = []
        for t in range(obs.nt):  # frames one after the other: each solve is vectorised over its pixels
            solver = self._first if t == 0 else TwoPhaseSolver(obs.frame(t), self.config, progress=self.progress)
            results.append(solver.run(on_epoch_end=on_epoch_end))
            self.solvers.append(solver)
        maps = FieldMaps(**{name: np.stack([r.maps.as_dict()[name] for r in results])
                            for name in results[0].maps.as_dict()})
        physics = self.config.physics
        loss = WFALoss(obs, device="cpu", dtype=torch.float32, core_cutoff=physics.core_cutoff,
                       qu_form=physics.qu_form)
        history = {p: {key: list(np.mean([r.history[p][key] for r in results], axis=0))
                       for key in ("loss", "lr")} for p in PHASES}
        timings: Dict[str, float] = {}
        for r in results:
            for key, value in r.timings.items():
                timings[key] = timings.get(key, 0.0) + value
        return SolverResult(maps=maps, history=history, final_loss=loss.map_loss(maps.blos, maps.bq, maps.bu),
                            timings=timings, device=results[0].device, backend=results[0].backend)

    def release_training_data(self) -> None:
        """Let every frame's loss tensors and coordinates go once :meth:`run` has made the maps
        (:meth:`TwoPhaseSolver.release_training_data`; :meth:`model_bundle` still works)."""
        for solver in self.solvers:
            solver.release_training_data()

    def model_bundle(self) -> Dict[str, Any]:
        """``{"format", "frames": [one model bundle per frame]}`` (see
        :func:`hashwfa.training.model.fields_from_bundle` for each)."""
        return {"format": STATE_FORMAT, "frames": [s.model_bundle() for s in self.solvers]}
