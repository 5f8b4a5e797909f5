"""The grid encodings of the reference report, built from their registry entries.

What each version is (grid type, smoother, progressive mask, plane) is
declared once, in :mod:`hashwfa.encodings.registry`; this module builds it.
:func:`encoding_configs` returns the tiny-cuda-nn JSON configs a version uses;
:class:`HashEncoding` builds them on the chosen backend and maps coordinates
from a bounding box to the grid's [0, 1]^D.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from hashwfa.encodings.backend import make_grid, resolve_backend
from hashwfa.encodings.coordinates import CoordinateCache, require_finite
from hashwfa.encodings.grid_config import FEATURES_PER_LEVEL, GridLayout, parse_grid_config
from hashwfa.encodings.points import check_points
from hashwfa.encodings.progressive import ProgressiveMask
from hashwfa.encodings.registry import PROGRESSIVE_VERSIONS, REGISTRY, VERSION_NUMBERS, VERSIONS, versions_text
from hashwfa.encodings.smoothing import LevelSmoother
from hashwfa.errors import HashwfaError

# Tables beyond this many values are not something a user means to allocate.
_MAX_PARAMS = 2**31


_SEED_STEP = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, as in splitmix64


def derive_seed(seed: int, stream: int) -> int:
    """A seed for the ``stream``-th random component built from one user seed.

    ``derive_seed(seed, 0) == seed``; other streams are far apart, so that the
    components of one model (grid, plane, smoother, head) and of models with
    neighbouring seeds (the solver's two fields use ``seed`` and ``seed + 1``)
    never start from the same random sequence. Returns a value in [0, 2^63).
    """
    return (int(seed) + int(stream) * _SEED_STEP) % 2**63


def _version(version: Any) -> int:
    """``version`` as an int in VERSIONS (accepts 3, "3", "V3", "v3")."""
    value: Any = version
    if isinstance(value, str):
        text = value.strip()
        value = text[1:] if text[:1] in ("V", "v") else text
        value = int(value) if value.isdigit() else None
    elif isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        value = None
    if value is None or int(value) not in VERSIONS:
        raise HashwfaError(
            f"unknown encoding version {version!r}; choose one of {VERSION_NUMBERS[0]}-{VERSION_NUMBERS[-1]} "
            f"({versions_text()})."
        )
    return int(value)


def _positive_int(value: Any, key: str, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise HashwfaError(f"{key} must be an integer >= {low}, got {value!r}.")
    return int(value)


def per_level_scale(n_levels: int, base_resolution: int, max_resolution: int) -> float:
    """tcnn's ``per_level_scale`` from the user's resolutions: ``(max / base)^(1 / (L - 1))`` (1.0 for L = 1)."""
    if n_levels == 1:
        return 1.0
    return float((max_resolution / base_resolution) ** (1.0 / (n_levels - 1)))


def encoding_configs(
    version: Union[int, str],
    n_levels: int = 16,
    n_features_per_level: int = 2,
    log2_hashmap_size: int = 19,
    base_resolution: int = 16,
    max_resolution: int = 2048,
    interpolation: str = "Linear",
    plane_resolution: Optional[int] = None,
) -> dict[str, dict[str, Any]]:
    """The tiny-cuda-nn JSON configs of a version, for users to inspect or reuse.

    Args:
        version: a version number (see :data:`~hashwfa.encodings.registry.REGISTRY`).
        n_levels: L (>= 1).
        n_features_per_level: F, one of 1, 2, 4, 8.
        log2_hashmap_size: log2 of the maximum entries per hashed level.
        base_resolution: resolution of the coarsest level.
        max_resolution: resolution of the finest level (>= base_resolution);
            ``per_level_scale = (max / base)^(1 / (L - 1))``.
        interpolation: ``"Linear"``, ``"Smoothstep"``, ``"Nearest"`` (tcnn's) or
            the cubic ``"CatmullRom"``, ``"BSpline"`` (torch grid only; see
            :data:`~hashwfa.encodings.grid_config.INTERPOLATIONS`).
        plane_resolution: vertices per axis of V6's plane (>= 2); None =
            ``max_resolution``. Only for versions with a plane.

    Returns:
        ``{"grid": config}``, plus ``"plane"`` for versions with a plane (V6): a single-level
        ``DenseGrid`` with ``base_resolution = plane_resolution`` (tcnn's level 0
        has ``scale = base - 1`` and ``ceil(scale) + 1 = plane_resolution``
        vertices per axis). Every key is explicit.

    Raises:
        HashwfaError: an unknown version, an invalid value (the message names
            the key), or a ``plane_resolution`` for a version without a plane.
    """
    v = _version(version)
    n_levels = _positive_int(n_levels, "n_levels")
    if isinstance(n_features_per_level, bool) or n_features_per_level not in FEATURES_PER_LEVEL:
        raise HashwfaError(
            f"n_features_per_level must be one of 1, 2, 4, 8 (tcnn's kernels), got {n_features_per_level!r}."
        )
    base_resolution = _positive_int(base_resolution, "base_resolution")
    max_resolution = _positive_int(max_resolution, "max_resolution")
    if max_resolution < base_resolution:
        raise HashwfaError(
            f"max_resolution ({max_resolution}) is smaller than base_resolution ({base_resolution}); "
            "raise max_resolution or lower base_resolution."
        )
    spec = REGISTRY[v]
    if plane_resolution is not None and not spec.plane:
        raise HashwfaError(
            f"plane_resolution applies to versions with a dense plane (V6), not version {v} "
            f"({spec.report_name}); leave it null."
        )
    plane_resolution = max_resolution if plane_resolution is None else _positive_int(
        plane_resolution, "plane_resolution", low=2)
    grid = {
        "otype": spec.grid,
        "type": spec.grid[: -len("Grid")],
        "n_levels": n_levels,
        "n_features_per_level": int(n_features_per_level),
        "log2_hashmap_size": int(log2_hashmap_size),
        "base_resolution": base_resolution,
        "per_level_scale": per_level_scale(n_levels, base_resolution, max_resolution),
        "interpolation": interpolation,
    }
    configs = {"grid": grid}
    if spec.plane:
        configs["plane"] = {
            "otype": "DenseGrid",
            "type": "Dense",
            "n_levels": 1,
            "n_features_per_level": int(n_features_per_level),
            "log2_hashmap_size": int(log2_hashmap_size),
            "base_resolution": plane_resolution,
            "per_level_scale": 1.0,
            "interpolation": interpolation,
        }
    return configs


def _bounding_box(bounding_box: Any, n_input_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(low [D], high [D])`` float64 from ``None``, ``(lo, hi)`` or ``[[lo_0..], [hi_0..]]``."""
    if bounding_box is None:
        return torch.full((n_input_dims,), -1.0, dtype=torch.float64), torch.ones(n_input_dims, dtype=torch.float64)
    try:
        box = torch.as_tensor(np.asarray(bounding_box, dtype=np.float64))
    except (TypeError, ValueError):
        box = None
    if box is not None and box.shape == (2,):
        box = box[:, None].expand(2, n_input_dims)
    if box is None or box.shape != (2, n_input_dims):
        raise HashwfaError(
            f"bounding_box must be (low, high) for every axis or [[low_0, ..., low_{n_input_dims - 1}], "
            f"[high_0, ..., high_{n_input_dims - 1}]] (shape [2, {n_input_dims}]), got {bounding_box!r}."
        )
    low, high = box[0].clone(), box[1].clone()
    if not (torch.isfinite(box).all() and (high > low).all()):
        raise HashwfaError(
            f"bounding_box needs finite values with high > low on every axis, got low={low.tolist()}, "
            f"high={high.tolist()} (the first row is the lower corner, the second the upper corner)."
        )
    return low, high


class HashEncoding(torch.nn.Module):
    """One of the grid encodings of :data:`~hashwfa.encodings.registry.REGISTRY`.

    Args:
        version: a version number (see :data:`~hashwfa.encodings.registry.REGISTRY`; also ``"V3"``).
        n_input_dims: D, coordinates per point.
        n_levels: L, resolution levels of the main grid.
        n_features_per_level: F (1, 2, 4 or 8).
        log2_hashmap_size: log2 of the maximum entries of a hashed level.
        base_resolution: vertices per axis of the coarsest level.
        max_resolution: vertices per axis of the finest level (and of V6's plane
            when ``plane_resolution`` is None).
        interpolation: ``"Linear"``, ``"Smoothstep"``, ``"Nearest"`` (tcnn's) or
            the cubic ``"CatmullRom"``, ``"BSpline"`` (torch grid only; see
            :data:`~hashwfa.encodings.grid_config.INTERPOLATIONS`).
        bounding_box: the coordinate box mapped onto the grid's [0, 1]^D:
            ``None`` for [-1, 1]^D, ``(low, high)`` for the same range on every
            axis, or ``[[low_0, ...], [high_0, ...]]`` (lower corner, upper
            corner). Points outside are clamped onto the box.
        backend: ``"auto"``, ``"tcnn"`` or ``"torch"`` (see :func:`make_grid`).
        plane_resolution: vertices per axis of V6's plane; None = ``max_resolution``.
        seed: initialisation seed; the main grid uses ``seed``, V6's plane
            ``derive_seed(seed, 1)`` and the smoother ``derive_seed(seed, 2)``.
        dtype: dtype of the torch path (float32; float64 for gradient checks).

    Attributes:
        version, n_input_dims, n_levels, n_features_per_level, n_output_dims,
        interpolation, backend (``"tcnn"`` or ``"torch"``), progressive, configs.
        grid: the main grid module (``params``: the flat tcnn-layout table).
        smoother: :class:`LevelSmoother` or None.
        mask: :class:`ProgressiveMask` or None (the progressive versions).
        plane: V6's DenseGrid plane or None.

    ``forward(x)``: ``x [N, D]`` floating, in the bounding box ->
    ``[N, n_output_dims]`` float32 (the ``dtype`` of the torch path); output
    columns are level-major, ``out[:, l * F + f]``, V6's plane last.
    """

    def __init__(
        self,
        version: Union[int, str],
        n_input_dims: int = 2,
        n_levels: int = 16,
        n_features_per_level: int = 2,
        log2_hashmap_size: int = 19,
        base_resolution: int = 16,
        max_resolution: int = 2048,
        interpolation: str = "Linear",
        bounding_box: Optional[Sequence[Any]] = None,
        backend: str = "auto",
        seed: int = 1337,
        dtype: torch.dtype = torch.float32,
        plane_resolution: Optional[int] = None,
    ) -> None:
        super().__init__()
        self.version = _version(version)
        self.n_input_dims = _positive_int(n_input_dims, "n_input_dims")
        self.configs = encoding_configs(
            self.version,
            n_levels=n_levels,
            n_features_per_level=n_features_per_level,
            log2_hashmap_size=log2_hashmap_size,
            base_resolution=base_resolution,
            max_resolution=max_resolution,
            interpolation=interpolation,
            plane_resolution=plane_resolution,
        )
        if dtype not in (torch.float32, torch.float64):
            raise HashwfaError(f"HashEncoding dtype must be torch.float32 or torch.float64, got {dtype}.")
        for name, config in self.configs.items():
            layout = GridLayout.from_config(parse_grid_config(self.n_input_dims, config))
            if layout.n_params > _MAX_PARAMS:
                key = "plane_resolution" if name == "plane" else "max_resolution"
                raise HashwfaError(
                    f"version {self.version}'s {name} would hold {layout.n_params:,} values "
                    f"({key}={config['base_resolution'] if name == 'plane' else max_resolution} in "
                    f"{self.n_input_dims} dimensions); lower {key} or use a HashGrid version."
                )
        self.n_levels = int(n_levels)
        self.n_features_per_level = int(n_features_per_level)
        self.max_resolution = int(max_resolution)
        self.plane_resolution = int(self.configs["plane"]["base_resolution"]) if "plane" in self.configs else None
        self.interpolation = parse_grid_config(self.n_input_dims, self.configs["grid"]).interpolation  # canonical name
        self.backend = resolve_backend(backend, self.interpolation)
        self.seed = int(seed)

        self.grid = make_grid(self.n_input_dims, self.configs["grid"], backend=self.backend, seed=self.seed, dtype=dtype)
        self.plane = (
            make_grid(self.n_input_dims, self.configs["plane"], backend=self.backend,
                      seed=derive_seed(self.seed, 1), dtype=dtype)
            if "plane" in self.configs
            else None
        )
        self.spec = REGISTRY[self.version]
        if self.spec.smoother is not None:
            self.smoother: Optional[LevelSmoother] = LevelSmoother(
                self.n_levels,
                self.n_features_per_level,
                per_level=self.spec.smoother == "per_level",
                seed=derive_seed(self.seed, 2),
                dtype=dtype,
            )
        else:
            self.smoother = None
        self.mask = ProgressiveMask(self.n_levels, self.n_features_per_level) if self.spec.progressive else None

        low, high = _bounding_box(bounding_box, self.n_input_dims)
        self.register_buffer("box_low", low.to(dtype), persistent=False)
        self.register_buffer("box_size", (high - low).to(dtype), persistent=False)
        self._unit_cache = CoordinateCache()  # served only inside static_coordinates()

    # ------------------------------------------------------------------ info

    @property
    def n_output_dims(self) -> int:
        """Encoding width: ``L * F``, plus ``F`` for V6's plane."""
        return (self.n_levels + (1 if self.plane is not None else 0)) * self.n_features_per_level

    @property
    def progressive(self) -> bool:
        """Whether this version has the progressive level mask (:data:`~hashwfa.encodings.registry.PROGRESSIVE_VERSIONS`)."""
        return self.mask is not None

    @property
    def active_levels(self) -> float:
        """The mask's ``active_levels`` (``n_levels`` for versions without a mask)."""
        return self.mask.active_levels if self.mask is not None else float(self.n_levels)

    @property
    def description(self) -> str:
        """The version's entry in :data:`VERSIONS`."""
        return self.spec.description

    @property
    def bounding_box(self) -> tuple[list[float], list[float]]:
        """``(low, high)`` corners of the coordinate box."""
        return self.box_low.tolist(), (self.box_low + self.box_size).tolist()

    def extra_repr(self) -> str:
        return (
            f"version={self.version} ({self.spec.report_name}), n_input_dims={self.n_input_dims}, "
            f"n_output_dims={self.n_output_dims}, backend={self.backend!r}"
        )

    def set_active_levels(self, active_levels: float) -> None:
        """Set the progressive mask's ``active_levels`` (float in ``[1, n_levels]``).

        Only progressive versions (see :attr:`progressive`) have a mask.
        Calling this on another version raises :class:`HashwfaError` instead
        of doing nothing: a schedule that silently had no effect would make
        V2 and V4 indistinguishable without anyone noticing.
        """
        if self.mask is None:
            raise HashwfaError(
                f"version {self.version} ({self.spec.report_name}) has no progressive level mask; "
                f"set_active_levels applies to versions {', '.join(map(str, PROGRESSIVE_VERSIONS))} "
                "(check encoding.progressive first)."
            )
        self.mask.set_active_levels(active_levels)

    # --------------------------------------------------------------- forward

    def _check_input(self, x: Any) -> None:
        check_points(x, self.n_input_dims, "encoding", "in the bounding box")

    def unit_coordinates(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, D]`` in the bounding box -> ``[N, D]`` in [0, 1] (clamped), the grid's dtype.

        Inside :func:`~hashwfa.encodings.coordinates.static_coordinates`, a
        second call with the same tensor returns the same result tensor, so
        that the grids' own cached lookups (keyed on their input) hold too.

        Raises:
            HashwfaError: a wrong shape or dtype, or a NaN or infinite
                coordinate (clamping would hide an infinity).
        """
        self._check_input(x)
        cached = self._unit_cache.get(x)
        if cached is not None:
            return cached
        require_finite(x, "encoding input")
        low = self.box_low
        unit = ((x.to(low.dtype) - low) / self.box_size).clamp(0.0, 1.0).contiguous()
        self._unit_cache.put(x, unit)
        return unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode ``x [N, D]`` (in the bounding box) into ``[N, n_output_dims]``."""
        unit = self.unit_coordinates(x)
        features = self.grid(unit)
        if self.smoother is not None:
            features = self.smoother(features)
        if self.mask is not None:
            features = self.mask(features)
        if self.plane is not None:
            features = torch.cat([features, self.plane(unit).to(features.dtype)], dim=1)
        return features

    def clear_cache(self) -> None:
        """Forget the cached coordinates (and the torch grids' cached lookups)."""
        self._unit_cache.clear()
        for grid in (self.grid, self.plane):
            if grid is not None and hasattr(grid, "clear_cache"):
                grid.clear_cache()

    def __getstate__(self) -> dict[str, Any]:
        # Pickling or deep-copying must not carry the caller's coordinate tensor along.
        state = super().__getstate__()
        state["_unit_cache"] = CoordinateCache()
        return state

    def _apply(self, fn, recurse=True):  # type: ignore[override]
        # .to()/.cuda()/.double() make the cached coordinates stale.
        self._unit_cache.clear()
        return super()._apply(fn, recurse)
