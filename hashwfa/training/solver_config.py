"""The typed settings of a training run: encoding, network, optimisation, physics.

Each dataclass carries its defaults, documentation and allowed ranges in the
field metadata (:func:`hashwfa.schema.setting`); :mod:`hashwfa.config.run_config` builds
the JSON config schema from them, so every default lives in one place.
:class:`SolverConfig` gathers the four sections the solver needs.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

from hashwfa.encodings.backend import BACKENDS
from hashwfa.encodings.grid_config import FEATURES_PER_LEVEL, INTERPOLATIONS
from hashwfa.encodings.registry import PROGRESSIVE_VERSIONS, VERSION_NUMBERS, versions_text
from hashwfa.schema import setting
from hashwfa.training.device import DEVICES
from hashwfa.wfa.physics.weak_field import CORE_CUTOFF, DEFAULT_QU_FORM, DERIVATIVES, QU_FORMS

__all__ = [
    "EncodingConfig", "FieldEncodingConfig", "NetworkConfig", "TrainingConfig", "PhysicsConfig",
    "FieldRegularization", "RegularizationConfig", "SolverConfig", "INITS", "REGULARIZATION_WEIGHTS",
]

#: Where each field starts (:mod:`hashwfa.training.warm_start`).
INITS = ("none", "pixelwise", "regularized")

_PROGRESSIVE = ", ".join(str(v) for v in PROGRESSIVE_VERSIONS)


@dataclass(frozen=True)
class EncodingConfig:
    """The grid encoding of both fields (docs/ARCHITECTURE.md sections 3-4)."""

    version: int = setting(
        1,
        f"Encoding version (V1 is the reference report's production choice): {versions_text()}.",
        choices=VERSION_NUMBERS,
    )
    n_levels: int = setting(16, "Number of grid levels L.", min=2, max=64)
    n_features_per_level: int = setting(
        2, "Features per level F (tiny-cuda-nn's kernels).", choices=FEATURES_PER_LEVEL
    )
    log2_hashmap_size: int = setting(
        19, "log2 of the maximum number of entries per hashed level.", min=4, max=30
    )
    base_resolution: int = setting(1, "Grid resolution of the coarsest level (vertices per axis scale).", min=1)
    max_resolution: int = setting(
        32, "Grid resolution of the finest level (and of the V6 plane unless plane_resolution is set).", min=1
    )
    plane_resolution: Optional[int] = setting(
        None,
        "V6 only: vertices per axis of the dense plane; null = max_resolution (the reference report's budget). "
        "Setting it for a version without a plane is a config error.",
        min=2,
    )
    interpolation: str = setting(
        "Linear",
        "Interpolation inside a grid cell: tcnn's 'Nearest', 'Linear', 'Smoothstep', or the "
        "cubic 'CatmullRom' (through the vertex values) and 'BSpline' (C2, smoother); the cubic "
        "ones run on the torch grid (tiny-cuda-nn has no such mode).",
        choices=INTERPOLATIONS
    )
    backend: str = setting(
        "auto",
        "Grid implementation: 'tcnn' (tiny-cuda-nn, NVIDIA GPUs), 'torch' (exact "
        "pure-PyTorch twin, any device) or 'auto' (tcnn when importable and the "
        "device is a GPU, else torch).",
        choices=BACKENDS,
    )


def _override_fields() -> list:
    """The keys of :class:`EncodingConfig`, each optional with default None (= the shared value)."""
    hints = typing.get_type_hints(EncodingConfig)
    out = []
    for f in dataclasses.fields(EncodingConfig):
        checks = {k: v for k, v in f.metadata.items() if k != "doc"}
        doc = f"This field's encoding.{f.name}; null = the shared encoding.{f.name}."
        out.append((f.name, Optional[hints[f.name]], setting(None, doc, **checks)))
    return out


#: One field's encoding overrides, key by key (sections ``encoding_blos`` and ``encoding_bqbu``).
FieldEncodingConfig = dataclasses.make_dataclass(
    "FieldEncodingConfig", _override_fields(), frozen=True, namespace={"__module__": __name__}
)
FieldEncodingConfig.__doc__ = (
    "The encoding of one field where it differs from the shared ``encoding`` section: every key "
    "null (the default) takes the shared value."
)


#: How the regularisation weights are read: factors of the data's own scale, or absolute.
REGULARIZATION_WEIGHTS = ("discrepancy", "given")


@dataclass(frozen=True)
class FieldRegularization:
    """Smoothness terms added to one field's loss (:mod:`hashwfa.training.penalty`); 0 = off."""

    squared_gradient: float = setting(
        0.0,
        "Weight of the squared-gradient term of the field's map (hashwfa.training.smoothness); with "
        "regularization.weights 'discrepancy' a factor of alpha * d (see there), with 'given' absolute.",
        min=0.0,
    )
    total_variation: float = setting(
        0.0,
        "Weight of the total-variation term of the field's map; with 'discrepancy' a factor of "
        "alpha * d * sigma_B, with 'given' absolute.",
        min=0.0,
    )
    tv_eps: float = setting(
        0.1,
        "Rounding of the total variation at a flat map: with 'discrepancy' in units of sigma_B (the "
        "pixel-wise WFA's noise on the quantity), with 'given' in the map's unit (G or G^2).",
        gt=0.0,
    )

    @property
    def active(self) -> bool:
        return self.squared_gradient > 0.0 or self.total_variation > 0.0


@dataclass(frozen=True)
class RegularizationConfig:
    """Explicit smoothness of the fields on the pixel grid, in the loss (full batch only)."""

    weights: str = setting(
        "discrepancy",
        "'discrepancy': the weights are factors f, the actual weight f * alpha * d (times sigma_B for "
        "the total variation), alpha the regularised WFA's discrepancy-principle weight of the quantity, "
        "d the median over pixels of mean_a c_a^2 (c_a the WFA coefficients), sigma_B = sigma / "
        "sqrt(median sum_a c_a^2); 'given': the weights are absolute.",
        choices=REGULARIZATION_WEIGHTS,
    )
    blos: FieldRegularization = field(
        default_factory=FieldRegularization, metadata={"doc": "Of the B_los field [G]."}
    )
    bqbu: FieldRegularization = field(
        default_factory=FieldRegularization, metadata={"doc": "Of the (B_Q, B_U) field [G^2], as a vector."}
    )

    @property
    def active(self) -> bool:
        return self.blos.active or self.bqbu.active


@dataclass(frozen=True)
class NetworkConfig:
    """The MLP head on top of the encoding (seed: 64 neurons, 2 hidden layers, GELU)."""

    n_neurons: int = setting(64, "Width of the hidden layers.", min=1, max=4096)
    n_hidden_layers: int = setting(2, "Number of hidden layers.", min=1, max=16)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation of both phases (docs/ARCHITECTURE.md section 6)."""

    epochs_per_phase: int = setting(
        200, "Epochs of phase 1 (B_los on V) and, again, of phase 2 (B_Q, B_U on Q and U).", min=1
    )
    lr: float = setting(5e-3, "Adam learning rate at the start of each phase.", gt=0.0)
    batch_size: int = setting(
        200000,
        "Pixels per optimiser step; when it is at least the number of valid pixels "
        "every step uses the whole field (one step per epoch).",
        min=1,
    )
    plateau_patience: int = setting(
        50, "ReduceLROnPlateau patience in epochs (the epoch loss must improve within it).", min=0
    )
    plateau_factor: float = setting(
        0.1, "Factor applied to the learning rate on a plateau.", gt=0.0, lt=1.0
    )
    grad_normalization: bool = setting(
        True, "Divide each parameter's gradient by its mean absolute value before each step."
    )
    blos_scale: float = setting(1.0, "Output scale of the B_los field, gauss per unit.", gt=0.0)
    bqbu_scale: float = setting(
        1000.0, "Output scale of the (B_Q, B_U) field, gauss^2 per unit.", gt=0.0
    )
    progressive_start_fraction: float = setting(
        0.25,
        f"Progressive versions ({_PROGRESSIVE}): fraction of the levels active at the start of each phase.",
        min=0.0,
        max=1.0,
    )
    progressive_ramp_fraction: float = setting(
        0.5,
        f"Progressive versions ({_PROGRESSIVE}): fraction of each phase over which the active "
        "levels ramp linearly to all levels (0: all levels from the start).",
        min=0.0,
        max=1.0,
    )
    seed: int = setting(
        0, "Seed of the model initialisation and of the minibatch order.", min=0, max=2**63 - 1
    )
    init_from: str = setting(
        "none",
        "Start of each field: 'none' (the random initialisation, the reference protocol), 'pixelwise' or "
        "'regularized': first fit the field to that WFA baseline's map for training.init_epochs steps "
        "(mean squared error, Adam at training.lr), then train on the WFA loss.",
        choices=INITS,
    )
    init_epochs: int = setting(
        100, "Passes of the warm-start fit to the baseline map in each phase (init_from other than 'none').", min=1
    )
    device: str = setting(
        "auto", "'cpu', 'cuda' or 'auto' (cuda when available).", choices=DEVICES
    )
    log_every: Optional[int] = setting(
        None,
        "Read the losses back from the device every this many epochs (and step the "
        "plateau scheduler then); null = 1 on CPU, 25 on CUDA.",
        min=1,
    )
    checkpoint_every: int = setting(
        50, "Save a resumable checkpoint every this many epochs (and at the end of each phase).", min=1
    )
    frames: str = setting(
        "joint",
        "Time series: 'joint' fits one field over (t, y, x) to all frames; 'independent' fits a "
        "(y, x) field to each frame on its own (for comparison). No effect on a single frame.",
        choices=("joint", "independent"),
    )
    frames_per_cell: float = setting(
        8.0,
        "Time series, joint fit: a cell of the finest grid level spans this many frames; sets the "
        "time axis's share of the grid box (hashwfa.training.geometry). Default measured on synthetic "
        "series (BENCHMARKS.md).",
        gt=0.0,
    )


@dataclass(frozen=True)
class PhysicsConfig:
    """The weak-field forward model of Q and U, and the derivatives of I (:mod:`hashwfa.wfa.physics.weak_field`)."""

    qu_form: str = setting(
        DEFAULT_QU_FORM,
        "Q/U model: 'second_derivative' (the textbook WFA, -C^2 Gg B^2 d2I/dl2 / 4, right near the "
        "line core) or 'wing' (the reference report's far-wing 0.75 C^2 Gg B^2 dI/dl / dl, whose sign is wrong "
        "inside the line's inflection points; kept to reproduce the seed).",
        choices=QU_FORMS,
    )
    core_cutoff: float = setting(
        CORE_CUTOFF, "Angstrom; with qu_form 'wing', Q/U ignore wavelengths with |dl| <= this.", min=0.0
    )
    derivative: str = setting(
        "spline",
        "dI/dlambda and d2I/dlambda2 at the active wavelengths, for every method (pixel-wise and "
        "regularised WFA, the field's loss, the sigmas): 'spline' (the default: the not-a-knot cubic "
        "spline through I at all observed wavelengths; less biased on a grid coarse against the line "
        "width, and every wavelength of I must be finite) or 'three_point' (the parabola through each "
        "active wavelength and its neighbours; the reference protocol's).",
        choices=DERIVATIVES,
    )
    derivative_qu: Optional[str] = setting(
        "three_point",
        "d2I/dlambda2 alone (the Q/U model), where it should differ from physics.derivative: "
        "'three_point' (the default) or 'spline'; null = physics.derivative. The spline's second "
        "derivative at the wavelengths is no more accurate than the three-point one (both second order; "
        "BENCHMARKS.md, 'Derivatives of I and the WFA's model error').",
        choices=DERIVATIVES,
    )


@dataclass(frozen=True)
class SolverConfig:
    """Everything the solver needs besides the observation."""

    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)
    encoding_blos: Any = field(default_factory=FieldEncodingConfig)
    encoding_bqbu: Any = field(default_factory=FieldEncodingConfig)
    regularization: RegularizationConfig = field(default_factory=RegularizationConfig)

    def field_encoding(self, phase: str) -> EncodingConfig:
        """The encoding of the field of ``phase``: the shared one with that field's overrides."""
        over = self.encoding_blos if phase == "blos" else self.encoding_bqbu
        changes = {k: v for k, v in dataclasses.asdict(over).items() if v is not None}
        return dataclasses.replace(self.encoding, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON form (nested dicts of numbers, strings, booleans, null)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SolverConfig":
        """Inverse of :meth:`to_dict` (no validation; see :mod:`hashwfa.config.run_config`)."""
        return cls(
            encoding=EncodingConfig(**d["encoding"]),
            network=NetworkConfig(**d["network"]),
            training=TrainingConfig(**d["training"]),
            physics=PhysicsConfig(**d.get("physics", {})),
            encoding_blos=FieldEncodingConfig(**d.get("encoding_blos", {})),
            encoding_bqbu=FieldEncodingConfig(**d.get("encoding_bqbu", {})),
            regularization=_regularization_from_dict(d.get("regularization", {})),
        )


def _regularization_from_dict(d: Dict[str, Any]) -> RegularizationConfig:
    return RegularizationConfig(
        weights=d.get("weights", "discrepancy"),
        blos=FieldRegularization(**d.get("blos", {})),
        bqbu=FieldRegularization(**d.get("bqbu", {})),
    )

