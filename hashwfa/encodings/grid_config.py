"""tiny-cuda-nn grid configs: validation, tcnn's defaults, and the level table.

A tcnn grid encoding is described by a JSON dict such as::

    {"otype": "HashGrid", "n_levels": 16, "n_features_per_level": 2,
     "log2_hashmap_size": 19, "base_resolution": 16, "per_level_scale": 1.5,
     "interpolation": "Linear"}

:func:`parse_grid_config` checks such a dict the way a user needs it checked
(unknown keys with a close-match suggestion, values out of range) and fills
in tcnn's defaults for absent keys. :class:`GridLayout` then derives the
per-level table that tcnn computes in its ``GridEncodingTemplated``
constructor: scale, vertices per axis, entries, offset, dense or hashed.
Everything here is host-side bookkeeping; the lookup itself lives in
:mod:`hashwfa.encodings.grid_lookup`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from hashwfa.errors import HashwfaError, did_you_mean

# tcnn's coherent-prime hash: corner coordinate of dimension d is multiplied
# by PRIMES[d] (uint32 arithmetic) and the products are XOR-ed.
PRIMES: tuple[int, ...] = (1, 2654435761, 805459861, 3674653429, 2097192037, 1434869437, 2165219737)

# tcnn's grid_index() only forms a dense index when the resolution is at most
# this value for the dimension count (beyond it the uint32 stride overflows);
# above it a hashed level hashes whatever its table size.
MAX_DENSE_BASE: dict[int, int] = {1: 0xFFFFFFFF, 2: 0xFFFF, 3: 0x659, 4: 0xFF}

MAX_N_LEVELS = 128  # tcnn's MAX_N_LEVELS
FEATURES_PER_LEVEL = (1, 2, 4, 8)
#: Interpolations inside a cell, the one place they are spelled (the config
#: schema imports this). The first three are tcnn's (2^D corners of the
#: cell); the cubic ones are the torch grid's own (the 4^D vertices around
#: the point, see :mod:`hashwfa.encodings.grid_lookup`).
TCNN_INTERPOLATIONS: tuple[str, ...] = ("Nearest", "Linear", "Smoothstep")
CUBIC_INTERPOLATIONS: tuple[str, ...] = ("CatmullRom", "BSpline")
INTERPOLATIONS: tuple[str, ...] = TCNN_INTERPOLATIONS + CUBIC_INTERPOLATIONS

# otype -> default grid type, as in tcnn's create_grid_encoding.
_OTYPES = {"grid": "Hash", "hashgrid": "Hash", "densegrid": "Dense"}
_TYPES = {"hash": "Hash", "dense": "Dense"}

_KNOWN_KEYS = (
    "otype",
    "type",
    "n_levels",
    "n_features",
    "n_grid_features",
    "n_features_per_level",
    "log2_hashmap_size",
    "base_resolution",
    "per_level_scale",
    "interpolation",
    "hash",
    "stochastic_interpolation",
    "fixed_point_pos",
)


@dataclass(frozen=True)
class GridConfig:
    """A validated tcnn grid config with tcnn's defaults filled in.

    Attributes:
        n_input_dims: D, the number of coordinates per point (1 to 4).
        grid_type: ``"Hash"`` or ``"Dense"``.
        n_levels: L, the number of resolution levels.
        n_features_per_level: F, features stored per table entry (1, 2, 4, 8).
        log2_hashmap_size: log2 of the maximum entries per hashed level.
        base_resolution: vertices per axis of the coarsest level.
        per_level_scale: growth factor of the scale between levels.
        interpolation: one of :data:`INTERPOLATIONS`: tcnn's ``"Nearest"``,
            ``"Linear"``, ``"Smoothstep"``, or the torch grid's cubic
            ``"CatmullRom"``, ``"BSpline"``.
    """

    n_input_dims: int
    grid_type: str
    n_levels: int
    n_features_per_level: int
    log2_hashmap_size: int
    base_resolution: int
    per_level_scale: float
    interpolation: str

    def to_tcnn(self) -> dict[str, Any]:
        """The config as the JSON dict tiny-cuda-nn takes (every key explicit)."""
        return {
            "otype": "HashGrid" if self.grid_type == "Hash" else "DenseGrid",
            "type": self.grid_type,
            "n_levels": self.n_levels,
            "n_features_per_level": self.n_features_per_level,
            "log2_hashmap_size": self.log2_hashmap_size,
            "base_resolution": self.base_resolution,
            "per_level_scale": self.per_level_scale,
            "interpolation": self.interpolation,
        }


def _integer(config: Mapping[str, Any], key: str, default: int, low: int, high: int | None = None) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise HashwfaError(f"grid config key {key!r} must be an integer, got {value!r}.")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise HashwfaError(f"grid config key {key!r} must be {bound}, got {value}.")
    return value


def parse_grid_config(n_input_dims: int, config: Mapping[str, Any]) -> GridConfig:
    """Validate a tcnn grid config dict and fill in tcnn's defaults.

    Defaults follow tiny-cuda-nn: ``n_levels`` 16, ``n_features_per_level`` 2,
    ``log2_hashmap_size`` 19, ``base_resolution`` 16, ``interpolation``
    ``"Linear"``, ``per_level_scale`` 2.0 for hash grids and
    ``(256 / base_resolution) ** (1 / (n_levels - 1))`` for dense grids.

    Args:
        n_input_dims: D, coordinates per point; 1 to 4.
        config: the JSON dict (``otype`` one of ``Grid``, ``HashGrid``,
            ``DenseGrid``).

    Raises:
        HashwfaError: an unknown key (with a close match), a wrong type or a
            value out of range; the message names the key.
    """
    if not isinstance(config, Mapping):
        raise HashwfaError(f"grid config must be a dict (tcnn JSON), got {type(config).__name__}.")
    if isinstance(n_input_dims, bool) or not isinstance(n_input_dims, (int, np.integer)) or not 1 <= n_input_dims <= 4:
        raise HashwfaError(f"n_input_dims must be an integer from 1 to 4, got {n_input_dims!r}.")
    for key in config:
        if key not in _KNOWN_KEYS:
            raise HashwfaError(
                f"unknown grid config key {key!r}.{did_you_mean(key, _KNOWN_KEYS)} "
                f"Known keys: {', '.join(_KNOWN_KEYS)}."
            )

    otype = str(config.get("otype", "Grid"))
    if otype.lower() not in _OTYPES:
        raise HashwfaError(
            f"grid config 'otype' {otype!r} is not a grid this package supports; "
            f"use 'HashGrid', 'DenseGrid' or 'Grid'.{did_you_mean(otype, ['HashGrid', 'DenseGrid', 'Grid'])}"
        )
    grid_type = str(config.get("type", _OTYPES[otype.lower()]))
    if grid_type.lower() not in _TYPES:
        raise HashwfaError(f"grid config 'type' {grid_type!r} is not supported; use 'Hash' or 'Dense'.")
    grid_type = _TYPES[grid_type.lower()]

    n_features_per_level = config.get("n_features_per_level", 2)
    if isinstance(n_features_per_level, bool) or n_features_per_level not in FEATURES_PER_LEVEL:
        raise HashwfaError(
            f"grid config 'n_features_per_level' must be one of 1, 2, 4, 8 (tcnn's kernels), got {n_features_per_level!r}."
        )
    n_features_per_level = int(n_features_per_level)

    feature_keys = [k for k in ("n_features", "n_grid_features") if k in config]
    if feature_keys:
        if "n_levels" in config:
            raise HashwfaError(
                f"grid config sets both {feature_keys[0]!r} and 'n_levels'; one determines the other, keep one."
            )
        n_features = _integer(config, feature_keys[0], 0, 1)
        if n_features % n_features_per_level:
            raise HashwfaError(
                f"grid config {feature_keys[0]!r} = {n_features} must be a multiple of n_features_per_level = {n_features_per_level}."
            )
        n_levels = n_features // n_features_per_level
    else:
        n_levels = _integer(config, "n_levels", 16, 1, MAX_N_LEVELS)
    if not 1 <= n_levels <= MAX_N_LEVELS:
        raise HashwfaError(f"grid config gives {n_levels} levels; tcnn allows 1 to {MAX_N_LEVELS}.")

    log2_hashmap_size = _integer(config, "log2_hashmap_size", 19, 1, 31)
    base_resolution = _integer(config, "base_resolution", 16, 1)

    if "per_level_scale" in config:
        per_level_scale = config["per_level_scale"]
        if isinstance(per_level_scale, bool) or not isinstance(per_level_scale, (int, float, np.floating, np.integer)):
            raise HashwfaError(f"grid config 'per_level_scale' must be a number, got {per_level_scale!r}.")
        per_level_scale = float(per_level_scale)
        if not math.isfinite(per_level_scale) or per_level_scale <= 0:
            raise HashwfaError(f"grid config 'per_level_scale' must be a positive number, got {per_level_scale!r}.")
    elif grid_type == "Dense" and n_levels > 1:
        per_level_scale = float(np.exp(np.float32(np.log(np.float32(256.0) / np.float32(base_resolution))) / np.float32(n_levels - 1)))
    else:
        per_level_scale = 2.0

    interpolation = str(config.get("interpolation", "Linear"))
    match = [name for name in INTERPOLATIONS if name.lower() == interpolation.lower()]
    if not match:
        raise HashwfaError(
            f"grid config 'interpolation' {interpolation!r} is not one of {', '.join(INTERPOLATIONS)}."
            f"{did_you_mean(interpolation, INTERPOLATIONS)}"
        )
    hash_type = str(config.get("hash", "CoherentPrime"))
    if hash_type.lower() != "coherentprime":
        raise HashwfaError(f"grid config 'hash' {hash_type!r}: only tcnn's default 'CoherentPrime' is supported.")
    for flag in ("stochastic_interpolation", "fixed_point_pos"):
        if config.get(flag, False):
            raise HashwfaError(f"grid config {flag!r} = true is not supported by hashwfa's torch grid; remove it.")

    return GridConfig(
        n_input_dims=int(n_input_dims),
        grid_type=grid_type,
        n_levels=n_levels,
        n_features_per_level=n_features_per_level,
        log2_hashmap_size=log2_hashmap_size,
        base_resolution=base_resolution,
        per_level_scale=per_level_scale,
        interpolation=match[0],
    )


def _next_multiple(value: int, multiple: int) -> int:
    return (value + multiple - 1) // multiple * multiple


@dataclass(frozen=True)
class GridLayout:
    """The per-level table tcnn derives from a :class:`GridConfig`.

    All arrays have one entry per level, shape ``(L,)``.

    Attributes:
        config: the config the table was derived from.
        scales: ``base * 2^(l * log2(per_level_scale)) - 1`` in float32, as tcnn
            computes it; a point ``x`` in [0, 1] sits at ``scale * x + 0.5``.
        resolutions: vertices per axis, ``ceil(scale) + 1``.
        sizes: table entries of the level (``res^D`` rounded up to a multiple
            of 8, capped at ``2^log2_hashmap_size`` for hash grids).
        offsets: first entry of each level in the flat table.
        hashed: whether the level indexes through the spatial hash.
        n_entries: total entries over all levels.
    """

    config: GridConfig
    scales: np.ndarray
    resolutions: np.ndarray
    sizes: np.ndarray
    offsets: np.ndarray
    hashed: np.ndarray
    n_entries: int

    @classmethod
    def from_config(cls, config: GridConfig) -> "GridLayout":
        """Derive the level table exactly as tcnn's constructor does."""
        dims = config.n_input_dims
        # tcnn: grid_scale(level, std::log2(per_level_scale), base) in float32 on
        # the host. log2f/exp2f there are correctly rounded, so evaluate in
        # float64 and round once (numpy's float32 exp2/log2 can be an ulp off,
        # which moves ceil() for scales that land on integers). On the GPU tcnn
        # recomputes the scale with fast-math exp2f, within an ulp or two.
        log2_scale = np.float32(np.log2(np.float64(np.float32(config.per_level_scale))))
        levels = np.arange(config.n_levels, dtype=np.float32)
        exponents = (levels * log2_scale).astype(np.float32)
        powers = np.exp2(exponents.astype(np.float64)).astype(np.float32)
        scales = (powers * np.float32(config.base_resolution) - np.float32(1.0)).astype(np.float32)
        resolutions = (np.ceil(scales).astype(np.int64) + 1).astype(np.int64)
        max_params = (2**32 - 1) // 2
        sizes, hashed = [], []
        for res in resolutions.tolist():  # host-side, once per construction
            dense = res**dims
            size = _next_multiple(min(dense, max_params), 8)
            if config.grid_type == "Hash":
                size = min(size, 2**config.log2_hashmap_size)
            # tcnn's grid_index: the dense index is used when it fits the level's
            # table and the stride arithmetic cannot overflow; otherwise hash.
            is_hashed = config.grid_type == "Hash" and (res > MAX_DENSE_BASE[dims] or size < dense)
            sizes.append(size)
            hashed.append(is_hashed)
        sizes_arr = np.asarray(sizes, dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes_arr)[:-1]]).astype(np.int64)
        return cls(
            config=config,
            scales=scales,
            resolutions=resolutions,
            sizes=sizes_arr,
            offsets=offsets,
            hashed=np.asarray(hashed, dtype=bool),
            n_entries=int(sizes_arr.sum()),
        )

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector: entries times features."""
        return self.n_entries * self.config.n_features_per_level

    @property
    def n_output_dims(self) -> int:
        """Width of the encoding, ``L * F``."""
        return self.config.n_levels * self.config.n_features_per_level
