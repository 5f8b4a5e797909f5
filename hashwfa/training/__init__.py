"""Training: neural fields of the pixel coordinates fitted through the WFA loss.

Couples :mod:`hashwfa.encodings` (the fields) to :mod:`hashwfa.wfa` (the
observation and the loss). The settings of a solve (:mod:`.settings`), the
model it trains and its saved form (:mod:`.model`), where it runs
(:mod:`.device`), the two-phase loop and its evaluation (:mod:`.solver`),
the warm start from a WFA map (:mod:`.warm_start`), checkpoints
(:mod:`.checkpoint`), gradient normalisation (:mod:`.gradients`) and the
result (:mod:`.result`). A time series is fitted as one field over
(t, y, x) placed in the grid by :mod:`.geometry`, or frame by frame
(:mod:`.frames`).
"""

from hashwfa.training.checkpoint import STATE_FORMAT, check_resumable
from hashwfa.training.device import DEVICES, grid_backend_for, resolve_device
from hashwfa.training.independent_frames import IndependentFrames
from hashwfa.training.geometry import FieldGeometry, field_geometry, time_share
from hashwfa.training.model import build_field, fields_from_bundle, model_bundle
from hashwfa.training.result import SolverResult
from hashwfa.training.solver_config import EncodingConfig, NetworkConfig, PhysicsConfig, SolverConfig, TrainingConfig
from hashwfa.training.solver import TwoPhaseSolver
from hashwfa.training.loss import PHASES

__all__ = [
    "DEVICES",
    "EncodingConfig",
    "FieldGeometry",
    "IndependentFrames",
    "NetworkConfig",
    "PHASES",
    "PhysicsConfig",
    "STATE_FORMAT",
    "SolverConfig",
    "SolverResult",
    "TrainingConfig",
    "TwoPhaseSolver",
    "build_field",
    "check_resumable",
    "field_geometry",
    "fields_from_bundle",
    "grid_backend_for",
    "model_bundle",
    "resolve_device",
    "time_share",
]
