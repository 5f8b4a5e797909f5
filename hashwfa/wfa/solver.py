"""The two-phase neural-field WFA solver (DESIGN.md sections 4-6).

Two neural fields of the pixel coordinates are fitted through the weak-field
forward model (:class:`hashwfa.wfa.loss.WFALoss`):

- phase 1, ``"blos"``: a field with one output, scaled by
  ``training.blos_scale`` (gauss), fitted to Stokes V;
- phase 2, ``"bqbu"``: a field with two outputs, scaled by
  ``training.bqbu_scale`` (gauss^2), fitted to Stokes Q and U.

Only the model being trained runs forward in a phase. Each phase has its own
Adam optimiser and ``ReduceLROnPlateau`` scheduler (the seed protocol).

Typical use::

    from hashwfa.wfa.solver import SolverConfig, TwoPhaseSolver
    solver = TwoPhaseSolver(observation, SolverConfig())
    result = solver.run()
    result.blos          # (ny, nx) gauss

The typed settings (:class:`EncodingConfig`, :class:`NetworkConfig`,
:class:`TrainingConfig`) carry their defaults, documentation and allowed
ranges in the dataclass field metadata; :mod:`hashwfa.config` builds the
JSON config schema from them, so every default lives in one place.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from hashwfa.encodings import INTERPOLATIONS, HashEncoding, NeuralField, resolve_backend, static_coordinates
from hashwfa.encodings.progressive import progressive_schedule
from hashwfa.errors import HashwfaError
from hashwfa.wfa.loss import WFALoss
from hashwfa.wfa.physics import CORE_CUTOFF, DEFAULT_QU_FORM, QU_FORMS
from hashwfa.wfa.fields import FieldMaps

__all__ = [
    "setting",
    "EncodingConfig",
    "NetworkConfig",
    "TrainingConfig",
    "PhysicsConfig",
    "SolverConfig",
    "SolverResult",
    "TwoPhaseSolver",
    "PHASES",
    "resolve_device",
    "build_field",
    "fields_from_bundle",
]

#: The two training phases, in order, named as :class:`WFALoss` names them.
PHASES: Tuple[str, str] = ("blos", "bqbu")
_N_OUTPUTS = {"blos": 1, "bqbu": 2}

# Pixels per forward pass when the final field is evaluated on the full grid;
# bounds the memory of the evaluation independently of the image size.
EVAL_CHUNK = 1 << 16

# Added to the mean absolute gradient before dividing by it, so that an
# all-zero gradient stays zero instead of becoming NaN.
GRAD_NORM_EPS = 1e-12

# Bumped when the layout of checkpoints or model bundles changes.
STATE_FORMAT = 1


def setting(default: Any, doc: str, **checks: Any) -> Any:
    """A dataclass field carrying its documentation and allowed values.

    ``checks`` may hold ``min``/``max`` (inclusive), ``gt``/``lt``
    (exclusive), ``choices`` (a tuple of allowed values) and ``length`` (the
    required length of a list). :mod:`hashwfa.config` reads them to validate
    user configs; the dataclasses themselves do not re-check.
    """
    return field(default=default, metadata={"doc": doc, **checks})


@dataclass(frozen=True)
class EncodingConfig:
    """The grid encoding of both fields (DESIGN.md sections 3-4)."""

    version: int = setting(
        1,
        "Encoding variant, 0..6: 0 HashGrid, 1 DenseGrid (the seed's production "
        "choice), 2 HashGrid + shared smoother, 3 HashGrid + per-level smoothers, "
        "4 = 2 + progressive levels, 5 = 3 + progressive levels, 6 HashGrid + "
        "dense plane at max_resolution.",
        choices=(0, 1, 2, 3, 4, 5, 6),
    )
    n_levels: int = setting(16, "Number of grid levels L.", min=2, max=64)
    n_features_per_level: int = setting(
        2, "Features per level F (tiny-cuda-nn allows 1, 2, 4, 8).", choices=(1, 2, 4, 8)
    )
    log2_hashmap_size: int = setting(
        19, "log2 of the maximum number of entries per hashed level.", min=4, max=30
    )
    base_resolution: int = setting(1, "Grid resolution of the coarsest level (vertices per axis scale).", min=1)
    max_resolution: int = setting(
        32, "Grid resolution of the finest level (and of the V6 plane).", min=1
    )
    interpolation: str = setting(
        "Linear",
        "Interpolation inside a grid cell: tiny-cuda-nn's Linear, Smoothstep, Nearest, or the cubic "
        "CatmullRom, BSpline (4^D vertices; the PyTorch grid only, also on a GPU).",
        choices=INTERPOLATIONS,
    )
    backend: str = setting(
        "auto",
        "Grid implementation: 'tcnn' (tiny-cuda-nn, NVIDIA GPUs), 'torch' (exact "
        "pure-PyTorch twin, any device) or 'auto' (tcnn when importable and the "
        "device is a GPU, else torch).",
        choices=("auto", "tcnn", "torch"),
    )


@dataclass(frozen=True)
class NetworkConfig:
    """The MLP head on top of the encoding (seed: 64 neurons, 2 hidden layers, GELU)."""

    n_neurons: int = setting(64, "Width of the hidden layers.", min=1, max=4096)
    n_hidden_layers: int = setting(2, "Number of hidden layers.", min=1, max=16)


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation of both phases (DESIGN.md section 6)."""

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
        "Progressive versions (4, 5): fraction of the levels active at the start of each phase.",
        min=0.0,
        max=1.0,
    )
    progressive_ramp_fraction: float = setting(
        0.5,
        "Progressive versions (4, 5): fraction of each phase over which the active "
        "levels ramp linearly to all levels (0: all levels from the start).",
        min=0.0,
        max=1.0,
    )
    seed: int = setting(
        0, "Seed of the model initialisation and of the minibatch order.", min=0, max=2**63 - 1
    )
    device: str = setting(
        "auto", "'cpu', 'cuda' or 'auto' (cuda when available).", choices=("auto", "cpu", "cuda")
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


@dataclass(frozen=True)
class PhysicsConfig:
    """The weak-field forward model of Q and U (:mod:`hashwfa.wfa.physics`)."""

    qu_form: str = setting(
        DEFAULT_QU_FORM,
        "Q/U model: 'second_derivative' (the textbook WFA, -C^2 Gg B^2 d2I/dl2 / 4, right near the "
        "line core) or 'wing' (the seed's far-wing 0.75 C^2 Gg B^2 dI/dl / dl, whose sign is wrong "
        "inside the line's inflection points; kept to reproduce the seed).",
        choices=QU_FORMS,
    )
    core_cutoff: float = setting(
        CORE_CUTOFF, "Angstrom; with qu_form 'wing', Q/U ignore wavelengths with |dl| <= this.", min=0.0
    )


@dataclass(frozen=True)
class SolverConfig:
    """Everything the solver needs besides the observation."""

    encoding: EncodingConfig = field(default_factory=EncodingConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    physics: PhysicsConfig = field(default_factory=PhysicsConfig)

    def to_dict(self) -> Dict[str, Any]:
        """Plain-JSON form (nested dicts of numbers, strings, booleans, null)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "SolverConfig":
        """Inverse of :meth:`to_dict` (no validation; see :mod:`hashwfa.config`)."""
        return cls(
            encoding=EncodingConfig(**d["encoding"]),
            network=NetworkConfig(**d["network"]),
            training=TrainingConfig(**d["training"]),
            physics=PhysicsConfig(**d.get("physics", {})),
        )


@dataclass
class SolverResult:
    """What a finished solve returns.

    Attributes:
        maps: the neural field's :class:`~hashwfa.wfa.fields.FieldMaps`,
            ``(ny, nx)`` float64 over the whole field of view (masked pixels
            included: the neural field is defined everywhere): ``blos`` [G],
            ``bq``, ``bu`` [G^2], ``bt`` = (B_Q^2 + B_U^2)^(1/4) [G],
            ``azimuth`` = atan2(B_U, B_Q) / 2 in [0, pi) [rad]. The same
            maps are attributes of the result itself (``result.blos``...).
        history: ``{"blos": {"loss": [...], "lr": [...]}, "bqbu": {...}}``,
            one entry per epoch: the mean training loss of the epoch and the
            learning rate it was trained with.
        final_loss: loss of the seed protocol (phase ``"all"``: V, Q and U) of
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


def resolve_device(device: str) -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda"`` into a :class:`torch.device`.

    Raises:
        HashwfaError: ``"cuda"`` asked for where torch sees no GPU.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise HashwfaError(
            "training.device is 'cuda' but torch sees no CUDA device "
            f"(torch {torch.__version__}). Fix: use --device cpu (or auto), or "
            "install a CUDA build of torch on a machine with an NVIDIA GPU."
        )
    if device not in ("cpu", "cuda"):
        raise HashwfaError(f"training.device must be 'auto', 'cpu' or 'cuda', got {device!r}.")
    return torch.device(device)


def _seed_for(seed: int, phase: str) -> int:
    # Distinct, reproducible seeds for the two fields; kept in 63 bits.
    return (seed + PHASES.index(phase)) % (2**63)


def build_field(
    config: SolverConfig, phase: str, backend: Optional[str] = None, device: Optional[torch.device] = None
) -> NeuralField:
    """The untrained neural field of ``phase`` (``"blos"``: 1 output, ``"bqbu"``: 2).

    Args:
        config: encoding, network and (for the seed) training settings.
        phase: ``"blos"`` or ``"bqbu"``.
        backend: overrides ``config.encoding.backend`` (e.g. to load a tcnn
            model on the torch path).
        device: where the field's parameters live (default CPU).
    """
    enc = config.encoding
    seed = _seed_for(config.training.seed, phase)
    encoding = HashEncoding(
        enc.version,
        n_input_dims=2,
        n_levels=enc.n_levels,
        n_features_per_level=enc.n_features_per_level,
        log2_hashmap_size=enc.log2_hashmap_size,
        base_resolution=enc.base_resolution,
        max_resolution=enc.max_resolution,
        interpolation=enc.interpolation,
        backend=backend or enc.backend,
        seed=seed,
    )
    net = NeuralField(
        encoding,
        _N_OUTPUTS[phase],
        n_neurons=config.network.n_neurons,
        n_hidden_layers=config.network.n_hidden_layers,
        seed=seed,
    )
    return net.to(device) if device is not None else net


def fields_from_bundle(
    bundle: Dict[str, Any], backend: str = "torch", device: str = "cpu"
) -> Dict[str, NeuralField]:
    """Rebuild both trained fields from a model bundle (see :meth:`TwoPhaseSolver.model_bundle`).

    The grids store their parameters in tiny-cuda-nn's layout on both
    backends, so a bundle saved from a tcnn run loads on the torch path and
    vice versa. Returns ``{"blos": field, "bqbu": field}`` with all levels
    active. Output scales are in ``bundle["scales"]``.
    """
    config = SolverConfig.from_dict(bundle["config"])
    fields = {}
    for phase in PHASES:
        net = build_field(config, phase, backend=backend, device=torch.device(device))
        net.load_state_dict(bundle["fields"][phase])
        if net.encoding.progressive:
            net.encoding.set_active_levels(float(net.encoding.n_levels))
        fields[phase] = net
    return fields


class TwoPhaseSolver:
    """Fits B_los, then (B_Q, B_U), as neural fields through the WFA loss.

    Args:
        observation: a :class:`hashwfa.wfa.observation.Observation`.
        config: the solver settings.
        progress: show a tqdm bar per phase (loss and learning rate).

    The training state (models, optimisers, schedulers, minibatch RNG, phase,
    epoch, history) round-trips through :meth:`state_dict` /
    :meth:`load_state_dict`, so a run continues bit for bit on the CPU.

    Host-device synchronisation: the epoch losses stay on the device and are
    read back every ``log_every`` epochs, at checkpoints and at the end of a
    phase. ``ReduceLROnPlateau`` needs a Python float, so it is stepped at
    those read-backs, once per epoch in epoch order, with each epoch's loss.
    A learning-rate reduction therefore takes effect at the read-back, at
    most ``log_every - 1`` epochs later than torch's per-epoch stepping; with
    ``log_every = 1`` (the default on CPU) it is exactly per-epoch stepping.
    The read-back points depend only on the config, so a run is reproducible
    whatever callbacks are attached.
    """

    def __init__(self, observation: Any, config: SolverConfig, *, progress: bool = True) -> None:
        t0 = time.perf_counter()
        self.config = config
        self.observation = observation
        self.progress = progress
        self.device = resolve_device(config.training.device)
        train = config.training
        self.log_every = train.log_every or (1 if self.device.type == "cpu" else 25)

        physics = config.physics
        self.loss = WFALoss(
            observation, device=self.device, dtype=torch.float32, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form
        )
        self.n_pixels = int(self.loss.n_pixels)
        valid_index = self.loss.valid_index.to("cpu").numpy()
        # Created once and passed as the same tensor object every full-batch
        # step: the grid caches what depends only on the coordinates.
        self.coords = torch.from_numpy(
            np.ascontiguousarray(observation.coordinates()[valid_index], dtype=np.float32)
        ).to(self.device)
        self.full_batch = train.batch_size >= self.n_pixels

        backend = config.encoding.backend
        if self.device.type == "cpu":
            # tiny-cuda-nn runs on CUDA only; "auto" must not pick it for a
            # CPU run just because a GPU and tcnn happen to be present.
            if backend == "tcnn":
                resolve_backend("tcnn")  # without tiny-cuda-nn: its message, with the install hint
                raise HashwfaError(
                    "encoding.backend is 'tcnn' but training.device is 'cpu'; tiny-cuda-nn runs on "
                    "CUDA only. Fix: use --device cuda, or --backend torch (or auto) on the CPU."
                )
            backend = "torch"
        self.fields = {p: build_field(config, p, backend=backend, device=self.device) for p in PHASES}
        self.backend = self.fields["blos"].encoding.backend
        self.scales = {"blos": train.blos_scale, "bqbu": train.bqbu_scale}
        # The fused Adam kernel updates each parameter tensor in one pass; the
        # default per-tensor loop costs a dozen small ops per tensor per step,
        # which shows in a profile of the smoother versions (14 tensors).
        fused = {"fused": True} if self.device.type in ("cpu", "cuda") else {}
        self.optimizers = {
            p: torch.optim.Adam(self.fields[p].parameters(), lr=train.lr, **fused) for p in PHASES
        }
        self.schedulers = {
            p: torch.optim.lr_scheduler.ReduceLROnPlateau(
                self.optimizers[p], mode="min", factor=train.plateau_factor, patience=train.plateau_patience
            )
            for p in PHASES
        }
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(train.seed)

        # Where training stands: the next epoch of PHASES[phase_index];
        # phase_index == len(PHASES) once both phases are done.
        self.phase_index = 0
        self.epoch = 0
        self.history: Dict[str, Dict[str, List[float]]] = {p: {"loss": [], "lr": []} for p in PHASES}
        self.timings: Dict[str, float] = {"setup": 0.0, "blos": 0.0, "bqbu": 0.0, "evaluate": 0.0}
        self.timings["setup"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ state

    def state_dict(self) -> Dict[str, Any]:
        """The complete training state, for a checkpoint (tensors stay on their device)."""
        return {
            "format": STATE_FORMAT,
            "config": self.config.to_dict(),
            "phase_index": self.phase_index,
            "epoch": self.epoch,
            "history": {p: {k: list(v) for k, v in h.items()} for p, h in self.history.items()},
            "timings": dict(self.timings),
            "fields": {p: self.fields[p].state_dict() for p in PHASES},
            "optimizers": {p: self.optimizers[p].state_dict() for p in PHASES},
            "schedulers": {p: self.schedulers[p].state_dict() for p in PHASES},
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` output (e.g. a loaded checkpoint).

        Raises:
            HashwfaError: the state was saved with another solver config or format.
        """
        if state.get("format") != STATE_FORMAT:
            raise HashwfaError(
                f"checkpoint format {state.get('format')!r} is not {STATE_FORMAT}: it was written "
                "by another hashwfa version. Fix: start the run again with --overwrite."
            )
        mine = self.config.to_dict()
        theirs = state["config"]
        # The device may change between sessions; nothing else may.
        mine["training"].pop("device")
        theirs = {k: dict(v) for k, v in theirs.items()}
        theirs["training"].pop("device", None)
        if mine != theirs:
            diff = sorted(
                f"{s}.{k}"
                for s in mine
                for k in set(mine[s]) | set(theirs.get(s, {}))
                if mine[s].get(k) != theirs.get(s, {}).get(k)
            )
            raise HashwfaError(
                "the checkpoint was written with different settings ("
                + ", ".join(diff)
                + "). Fix: resume with the original config, or start again with --overwrite."
            )
        for p in PHASES:
            self.fields[p].load_state_dict(state["fields"][p])
            self.optimizers[p].load_state_dict(state["optimizers"][p])
            self.schedulers[p].load_state_dict(state["schedulers"][p])
        self.generator.set_state(state["generator"].to("cpu"))
        self.phase_index = int(state["phase_index"])
        self.epoch = int(state["epoch"])
        self.history = {p: {k: list(v) for k, v in h.items()} for p, h in state["history"].items()}
        self.timings.update({k: float(v) for k, v in state["timings"].items() if k != "setup"})

    def model_bundle(self) -> Dict[str, Any]:
        """Both fields' state_dicts, on the CPU, with what rebuilds them.

        ``{"format", "config", "backend", "scales", "fields": {"blos", "bqbu"}}``;
        see :func:`fields_from_bundle`.
        """
        return {
            "format": STATE_FORMAT,
            "config": self.config.to_dict(),
            "backend": self.backend,
            "scales": dict(self.scales),
            "fields": {
                p: {k: v.detach().to("cpu") for k, v in self.fields[p].state_dict().items()}
                for p in PHASES
            },
        }

    # --------------------------------------------------------------- training

    def run(
        self,
        *,
        on_checkpoint: Optional[Callable[[Dict[str, Any]], None]] = None,
        on_epoch_end: Optional[Callable[[str, int], None]] = None,
    ) -> SolverResult:
        """Train the remaining epochs of both phases, then evaluate.

        Args:
            on_checkpoint: called with :meth:`state_dict` every
                ``checkpoint_every`` epochs and at the end of each phase
                (after the losses are read back, so the state is complete).
                Like any state_dict it holds live tensors: save or copy it
                before returning.
            on_epoch_end: called as ``on_epoch_end(phase, epoch)`` after each
                epoch (and after its checkpoint, if any); may raise to stop.
        """
        while self.phase_index < len(PHASES):
            self._train_phase(PHASES[self.phase_index], on_checkpoint, on_epoch_end)
            self.phase_index += 1
            self.epoch = 0
        return self.evaluate()

    def _active_levels(self, epoch: int) -> float:
        enc = self.config.encoding
        train = self.config.training
        return float(
            progressive_schedule(
                epoch,
                train.epochs_per_phase,
                enc.n_levels,
                train.progressive_start_fraction,
                train.progressive_ramp_fraction,
            )
        )

    def _train_phase(
        self,
        phase: str,
        on_checkpoint: Optional[Callable[[Dict[str, Any]], None]],
        on_epoch_end: Optional[Callable[[str, int], None]],
    ) -> None:
        epochs = self.config.training.epochs_per_phase
        every_ckpt = self.config.training.checkpoint_every
        net = self.fields[phase]
        optimizer = self.optimizers[phase]
        progressive = net.encoding.progressive
        pending: List[Tuple[torch.Tensor, float]] = []  # (epoch loss on device, lr used)
        label = "phase 1/2 B_los" if phase == "blos" else "phase 2/2 B_Q,B_U"
        bar = tqdm(total=epochs, initial=self.epoch, desc=label, disable=not self.progress, leave=True)
        t0 = time.perf_counter()
        try:
            while self.epoch < epochs:
                epoch = self.epoch
                if progressive:
                    net.encoding.set_active_levels(self._active_levels(epoch))
                pending.append((self._train_epoch(phase), optimizer.param_groups[0]["lr"]))
                self.epoch = epoch + 1
                done = self.epoch
                checkpoint_now = done % every_ckpt == 0 or done == epochs
                if checkpoint_now or done % self.log_every == 0:
                    self._read_back(phase, pending, bar)
                    pending = []
                if checkpoint_now and on_checkpoint is not None:
                    # Writing checkpoints is not training time.
                    self._sync()
                    self.timings[phase] += time.perf_counter() - t0
                    on_checkpoint(self.state_dict())
                    t0 = time.perf_counter()
                if on_epoch_end is not None:
                    on_epoch_end(phase, epoch)
        finally:
            bar.close()
        self._sync()
        self.timings[phase] += time.perf_counter() - t0

    def _train_epoch(self, phase: str) -> torch.Tensor:
        """One epoch; returns its mean loss as a 0-d tensor on the device (no sync)."""
        if self.full_batch:
            with static_coordinates():  # self.coords is created once and never written to
                return self._step(phase, self.coords, None)
        perm = torch.randperm(self.n_pixels, generator=self.generator, device=self.device)
        total = torch.zeros((), device=self.device)
        for index in perm.split(self.config.training.batch_size):
            total = total + self._step(phase, self.coords[index], index) * index.numel()
        return total / self.n_pixels

    def _step(self, phase: str, coords: torch.Tensor, index: Optional[torch.Tensor]) -> torch.Tensor:
        net = self.fields[phase]
        optimizer = self.optimizers[phase]
        optimizer.zero_grad(set_to_none=True)
        out = net(coords) * self.scales[phase]
        if phase == "blos":
            loss = self.loss(blos=out[:, 0], phase="blos", index=index)
        else:
            loss = self.loss(bqbu=out, phase="bqbu", index=index)
        loss.backward()
        if self.config.training.grad_normalization:
            _normalise_gradients(net.parameters())
        optimizer.step()
        return loss.detach()

    def _read_back(self, phase: str, pending: List[Tuple[torch.Tensor, float]], bar: Any) -> None:
        """One host-device sync: record the pending epochs and step the scheduler per epoch."""
        if not pending:
            return
        losses = torch.stack([loss for loss, _ in pending]).tolist()
        scheduler = self.schedulers[phase]
        hist = self.history[phase]
        for loss, (_, lr) in zip(losses, pending):
            hist["loss"].append(float(loss))
            hist["lr"].append(float(lr))
            scheduler.step(loss)
        bar.update(len(losses))
        bar.set_postfix(loss=f"{losses[-1]:.3e}", lr=f"{self.optimizers[phase].param_groups[0]['lr']:.1e}")

    def _sync(self) -> None:
        # Timings are only honest once queued GPU work has finished.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # ------------------------------------------------------------- evaluation

    @torch.no_grad()
    def predict(self, coordinates: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
        """Scaled field outputs at ``coordinates`` ((N, 2) in [-1, 1], columns y, x).

        Default: every pixel centre of the observation, row-major. Returns
        ``{"blos": (N,) gauss, "bqbu": (N, 2) gauss^2}`` as float64 arrays.
        Progressive encodings are evaluated with the levels active at the end
        of a phase.
        """
        if coordinates is None:
            coordinates = self.observation.coordinates()
        coords = torch.from_numpy(np.ascontiguousarray(coordinates, dtype=np.float32)).to(self.device)
        out = {}
        for phase in PHASES:
            net = self.fields[phase]
            if net.encoding.progressive:
                net.encoding.set_active_levels(self._active_levels(self.config.training.epochs_per_phase))
            chunks = [net(c) * self.scales[phase] for c in coords.split(EVAL_CHUNK)]
            out[phase] = torch.cat(chunks).double().cpu().numpy()
        out["blos"] = out["blos"][:, 0]
        return out

    @torch.no_grad()
    def evaluate(self) -> SolverResult:
        """Maps of the current fields on the full grid and the seed protocol's final loss."""
        t0 = time.perf_counter()
        obs = self.observation
        pred = self.predict()
        final_loss = self.loss.map_loss(pred["blos"], pred["bqbu"][:, 0], pred["bqbu"][:, 1])
        shape = (obs.ny, obs.nx)
        maps = FieldMaps.from_bqbu(
            pred["blos"].reshape(shape), pred["bqbu"][:, 0].reshape(shape), pred["bqbu"][:, 1].reshape(shape)
        )
        self.timings["evaluate"] += time.perf_counter() - t0
        return SolverResult(
            maps=maps,
            history={p: {k: list(v) for k, v in h.items()} for p, h in self.history.items()},
            final_loss=final_loss,
            timings=dict(self.timings),
            device=str(self.device),
            backend=self.backend,
        )


def _normalise_gradients(parameters: Any) -> None:
    """Divide each parameter's gradient by its mean absolute value (+ a tiny eps).

    Works on the device with foreach kernels: no ``.item()``, no host sync.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    # L1 norm / numel = mean |g|, per tensor.
    denominators = torch._foreach_norm(grads, 1)
    torch._foreach_mul_(denominators, [1.0 / g.numel() for g in grads])
    torch._foreach_add_(denominators, GRAD_NORM_EPS)
    torch._foreach_div_(grads, denominators)
