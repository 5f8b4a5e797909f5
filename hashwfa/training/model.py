"""The model: one neural field per training phase, and its saved form.

The model of a solve is two :class:`~hashwfa.encodings.NeuralField` s of the
pixel coordinates, one per phase (:data:`~hashwfa.training.loss.PHASES`):
``"blos"`` with one output and ``"bqbu"`` with two. This module builds them
from a :class:`SolverConfig` and turns trained fields into a model bundle
(what ``model.pt`` holds) and back. Where they run is
:mod:`hashwfa.training.device`.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Union

import torch

from hashwfa.encodings import HashEncoding, NeuralField
from hashwfa.training.checkpoint import STATE_FORMAT
from hashwfa.training.geometry import FieldGeometry
from hashwfa.training.solver_config import SolverConfig
from hashwfa.training.loss import PHASES

__all__ = [
    "N_OUTPUTS",
    "build_field",
    "model_bundle",
    "fields_from_bundle",
]

#: Outputs of each phase's field: B_los [G]; (B_Q, B_U) [G^2].
N_OUTPUTS: Dict[str, int] = {"blos": 1, "bqbu": 2}


def _seed_for(seed: int, phase: str) -> int:
    # Distinct, reproducible seeds for the two fields; kept in 63 bits.
    return (seed + PHASES.index(phase)) % (2**63)


def build_field(
    config: SolverConfig,
    phase: str,
    backend: Optional[str] = None,
    device: Optional[torch.device] = None,
    geometry: Optional[FieldGeometry] = None,
) -> NeuralField:
    """The untrained neural field of ``phase`` (``"blos"``: 1 output, ``"bqbu"``: 2).

    Args:
        config: encoding, network and (for the seed) training settings.
        phase: ``"blos"`` or ``"bqbu"``.
        backend: overrides the field's ``encoding.backend`` (e.g. to load a tcnn
            model on the torch path).
        device: where the field's parameters live (default CPU).
        geometry: input dimensions and coordinate box (default: (y, x) in
            [-1, 1]^2, a single frame).
    """
    geometry = geometry or FieldGeometry()
    enc = config.field_encoding(phase)  # the shared encoding with this field's overrides
    seed = _seed_for(config.training.seed, phase)
    encoding = HashEncoding(
        enc.version,
        n_input_dims=geometry.n_input_dims,
        bounding_box=geometry.bounding_box,
        n_levels=enc.n_levels,
        n_features_per_level=enc.n_features_per_level,
        log2_hashmap_size=enc.log2_hashmap_size,
        base_resolution=enc.base_resolution,
        max_resolution=enc.max_resolution,
        interpolation=enc.interpolation,
        plane_resolution=enc.plane_resolution,
        backend=backend or enc.backend,
        seed=seed,
    )
    net = NeuralField(
        encoding,
        N_OUTPUTS[phase],
        n_neurons=config.network.n_neurons,
        n_hidden_layers=config.network.n_hidden_layers,
        seed=seed,
    )
    return net.to(device) if device is not None else net


def model_bundle(
    config: SolverConfig,
    backend: str,
    scales: Mapping[str, float],
    fields: Mapping[str, NeuralField],
    geometry: Union[None, FieldGeometry, Mapping[str, FieldGeometry]] = None,
) -> Dict[str, Any]:
    """Both fields' state_dicts, on the CPU, with what rebuilds them.

    ``{"format", "config", "backend", "scales", "geometry", "geometries", "fields": {"blos", "bqbu"}}``;
    ``geometry`` is one for both fields or one per phase (their max_resolution
    may differ, and with it a series' time share); ``"geometries"`` holds each
    field's, ``"geometry"`` the B_los field's. See :func:`fields_from_bundle`.
    """
    per_phase = geometry if isinstance(geometry, Mapping) else {p: geometry or FieldGeometry() for p in PHASES}
    return {
        "format": STATE_FORMAT,
        "config": config.to_dict(),
        "backend": backend,
        "scales": dict(scales),
        "geometry": per_phase["blos"].to_dict(),
        "geometries": {p: per_phase[p].to_dict() for p in PHASES},
        "fields": {
            p: {k: v.detach().to("cpu") for k, v in fields[p].state_dict().items()}
            for p in PHASES
        },
    }


def fields_from_bundle(
    bundle: Dict[str, Any], backend: str = "torch", device: str = "cpu"
) -> Dict[str, NeuralField]:
    """Rebuild both trained fields from a model bundle (see :func:`model_bundle`).

    The grids store their parameters in tiny-cuda-nn's layout on both
    backends, so a bundle saved from a tcnn run loads on the torch path and
    vice versa. Returns ``{"blos": field, "bqbu": field}`` with all levels
    active. Output scales are in ``bundle["scales"]``.
    """
    config = SolverConfig.from_dict(bundle["config"])
    geometries = bundle.get("geometries") or {}  # bundles before per-field encodings: one geometry
    fields = {}
    for phase in PHASES:
        geometry = FieldGeometry.from_dict(geometries.get(phase, bundle.get("geometry")))
        net = build_field(config, phase, backend=backend, device=torch.device(device), geometry=geometry)
        net.load_state_dict(bundle["fields"][phase])
        if net.encoding.progressive:
            net.encoding.set_active_levels(float(net.encoding.n_levels))
        fields[phase] = net
    return fields

