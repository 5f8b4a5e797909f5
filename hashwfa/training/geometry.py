"""Where the observation's coordinates lie in the grid: the field's input
dimensions and the box mapped onto the grid's [0, 1]^D.

A single frame has coordinates (y, x) in [-1, 1]^2 (pixel centres, see
:meth:`hashwfa.wfa.observation.observation.Observation.coordinates`), mapped onto the
whole grid box. A time series has (t, y, x): space fills the box as for one
frame, and time only a share of its first axis, chosen so that a cell of the
finest grid level spans ``training.frames_per_cell`` frames. Time has far
fewer samples than space (tens of frames against hundreds of pixels), and a
field that may change from one frame to the next at the finest level would
fit each frame's noise on its own; with several frames per finest cell the
field is smooth in time at every level and averages the noise of those
frames. The finest level's cells are ``1 / (max_resolution - 1)`` of the box
(the grid's scale ``max_resolution - 1``, docs/ARCHITECTURE.md section 3),
so ``nt`` evenly spaced frames take a share
``(nt - 1) / (frames_per_cell * (max_resolution - 1))`` of the time axis, at
most all of it; with uneven frame times the mean spacing counts.

Every version works in 3-D as the grids do. V6's plane (a single-level
dense grid at ``max_resolution``) gets the field's input dimensions too: for
a series it is a dense (t, y, x) volume at ``max_resolution``, its time axis
covering the same share of the box (so it varies over the same number of
frames as the finest level), about ``max_resolution^3`` entries. A 2-D plane
shared by all frames was the alternative; it would hold a static part of the
field and leave all change in time to the hashed levels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["FieldGeometry", "field_geometry", "time_share"]


@dataclass(frozen=True)
class FieldGeometry:
    """The field's inputs.

    Attributes:
        n_input_dims: 2 for (y, x), 3 for (t, y, x).
        bounding_box: ``[[low_0, ...], [high_0, ...]]``, the coordinate box
            mapped onto the grid's [0, 1]^D, or None for [-1, 1]^D.
    """

    n_input_dims: int = 2
    bounding_box: Optional[List[List[float]]] = None

    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON form, stored in model bundles."""
        return {"n_input_dims": self.n_input_dims, "bounding_box": self.bounding_box}

    @classmethod
    def from_dict(cls, d: Optional[Dict[str, Any]]) -> "FieldGeometry":
        """Inverse of :meth:`to_dict`; None (bundles of single frames before series existed) is 2-D."""
        if not d:
            return cls()
        box = d.get("bounding_box")
        return cls(int(d["n_input_dims"]), None if box is None else [[float(v) for v in row] for row in box])


def time_share(n_frames: int, frames_per_cell: float, max_resolution: int) -> float:
    """Share of the grid box's time axis that ``n_frames`` evenly spaced frames span,
    so that a finest-level cell spans ``frames_per_cell`` frames; in (0, 1]."""
    if n_frames < 2:
        return 1.0
    finest_scale = max(int(max_resolution) - 1, 1)
    return min(1.0, (n_frames - 1) / (float(frames_per_cell) * finest_scale))


def field_geometry(map_shape: Sequence[int], frames_per_cell: float, max_resolution: int) -> FieldGeometry:
    """The geometry of maps of ``map_shape``: ``(ny, nx)`` or ``(nt, ny, nx)``.

    For a series the time coordinate's [-1, 1] is mapped onto
    ``[0, time_share]`` of the grid's first axis (the box's time range is
    ``[-1, -1 + 2 / share]``); space always fills the box.
    """
    if len(map_shape) == 2:
        return FieldGeometry()
    share = time_share(int(map_shape[0]), frames_per_cell, max_resolution)
    return FieldGeometry(3, [[-1.0, -1.0, -1.0], [-1.0 + 2.0 / share, 1.0, 1.0]])
