"""Multi-resolution grid encodings (tiny-cuda-nn's and an exact PyTorch twin)."""

from hashwfa.encodings.grid import TorchGrid
from hashwfa.encodings.grid_config import GridConfig, GridLayout, parse_grid_config

__all__ = ["TorchGrid", "GridConfig", "GridLayout", "parse_grid_config"]
