"""Multi-resolution grid encodings (tiny-cuda-nn's and an exact PyTorch twin).

Knows nothing of solar physics. The versions (declared in
:mod:`hashwfa.encodings.registry`, built by :class:`HashEncoding`),
the neural field that puts an MLP head on one (:class:`NeuralField`), the
grid on either backend (:func:`make_grid`) and the pure-PyTorch grid itself
(:class:`TorchGrid`), and :func:`static_coordinates`, the opt-in that lets
a training loop reuse the lookup of a coordinate tensor it never modifies.
"""

from hashwfa.encodings.backend import BACKENDS, TcnnGrid, make_grid, resolve_backend, tcnn_status
from hashwfa.encodings.coordinates import static_coordinates
from hashwfa.encodings.neural_field import NeuralField
from hashwfa.encodings.grid import TorchGrid
from hashwfa.encodings.grid_config import INTERPOLATIONS, GridConfig, GridLayout, parse_grid_config
from hashwfa.encodings.progressive import ProgressiveMask, progressive_schedule
from hashwfa.encodings.smoothing import LevelSmoother
from hashwfa.encodings.registry import REGISTRY, VERSIONS, VersionSpec
from hashwfa.encodings.hash_encoding import HashEncoding, encoding_configs, per_level_scale

__all__ = [
    "BACKENDS",
    "GridConfig",
    "GridLayout",
    "HashEncoding",
    "INTERPOLATIONS",
    "LevelSmoother",
    "NeuralField",
    "ProgressiveMask",
    "REGISTRY",
    "TcnnGrid",
    "TorchGrid",
    "VERSIONS",
    "VersionSpec",
    "encoding_configs",
    "make_grid",
    "parse_grid_config",
    "per_level_scale",
    "progressive_schedule",
    "resolve_backend",
    "static_coordinates",
    "tcnn_status",
]
