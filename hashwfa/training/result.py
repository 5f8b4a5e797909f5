"""What a finished two-phase solve returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from hashwfa.wfa.physics.maps import FieldMaps

__all__ = ["SolverResult"]


@dataclass
class SolverResult:
    """What a finished solve returns.

    Attributes:
        maps: the neural field's :class:`~hashwfa.wfa.physics.maps.FieldMaps`,
            ``(ny, nx)``, or ``(nt, ny, nx)`` for a series, float64 over the whole field of view (masked pixels
            included: the neural field is defined everywhere): ``blos`` [G],
            ``bq``, ``bu`` [G^2], ``bt`` = (B_Q^2 + B_U^2)^(1/4) [G],
            ``azimuth`` = atan2(B_U, B_Q) / 2 in [0, pi) [rad]. The same
            maps are attributes of the result itself (``result.blos``...).
        history: ``{"blos": {"loss": [...], "lr": [...]}, "bqbu": {...}}``,
            one entry per epoch: the mean training loss of the epoch and the
            learning rate it was trained with.
        final_loss: loss of the reference protocol (phase ``"all"``: V, Q and U) of
            the final fields over the valid pixels.
        timings: wall-clock seconds: ``setup`` (this session), ``blos``,
            ``bqbu``, ``evaluate`` (summed over resumed sessions).
        device: the torch device the solve ran on, e.g. ``"cpu"``.
        backend: the grid backend actually used, ``"torch"`` or ``"tcnn"``.
    """

    maps: FieldMaps
    history: Dict[str, Dict[str, List[float]]]
    final_loss: float
    timings: Dict[str, float]
    device: str
    backend: str

    @property
    def blos(self) -> np.ndarray:
        """(ny, nx) B_los [G]."""
        return self.maps.blos

    @property
    def bq(self) -> np.ndarray:
        """(ny, nx) B_Q [G^2]."""
        return self.maps.bq

    @property
    def bu(self) -> np.ndarray:
        """(ny, nx) B_U [G^2]."""
        return self.maps.bu

    @property
    def bt(self) -> np.ndarray:
        """(ny, nx) B_t [G]."""
        return self.maps.bt

    @property
    def azimuth(self) -> np.ndarray:
        """(ny, nx) azimuth in [0, pi) [rad]."""
        return self.maps.azimuth
