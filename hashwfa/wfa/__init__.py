"""Weak-field physics: spectral lines, observations, the WFA forward model and
loss, the pixel-wise and the spatially regularised WFA, SST pipeline cubes, and a
synthetic plage (single frame or time series) with known truth.

This subpackage takes magnetic-field values, not networks: it never imports
:mod:`hashwfa.encodings` or :mod:`hashwfa.training` (the solver that couples
physics and encodings is :mod:`hashwfa.training`).
"""

from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.wfa.physics.lines import LINES, SpectralLine, get_line
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import (
    azimuth_difference,
    bqbu_to_bt_azimuth,
    bt_azimuth_to_bqbu,
    forward_stokes,
    intensity_derivative,
    wfa_coefficients,
)
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.baselines.regularized import RegularizedResult, regularized_wfa
from hashwfa.wfa.observation.sst import SSTCube, read_sst_cube
from hashwfa.wfa.synthetic.plage import SyntheticPlage, synthetic_plage
from hashwfa.wfa.synthetic.series import SyntheticSeries, synthetic_series

__all__ = [
    "FieldMaps",
    "LINES",
    "Observation",
    "RegularizedResult",
    "SSTCube",
    "SpectralLine",
    "SyntheticPlage",
    "SyntheticSeries",
    "azimuth_difference",
    "bqbu_to_bt_azimuth",
    "bt_azimuth_to_bqbu",
    "forward_stokes",
    "get_line",
    "intensity_derivative",
    "pixel_wfa",
    "regularized_wfa",
    "read_sst_cube",
    "synthetic_plage",
    "synthetic_series",
    "wfa_coefficients",
]
