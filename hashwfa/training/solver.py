"""The two-phase neural-field WFA solver: the training loop and the evaluation.

Two neural fields of the pixel coordinates (:mod:`hashwfa.training.model`)
are fitted through the weak-field forward model
(:class:`hashwfa.training.loss.WFALoss`):

- phase 1, ``"blos"``: a field with one output, scaled by
  ``training.blos_scale`` (gauss), fitted to Stokes V;
- phase 2, ``"bqbu"``: a field with two outputs, scaled by
  ``training.bqbu_scale`` (gauss^2), fitted to Stokes Q and U.

Only the model being trained runs forward in a phase. Each phase has its own
Adam optimiser and ``ReduceLROnPlateau`` scheduler (the reference protocol).

Typical use::

    from hashwfa.training import SolverConfig, TwoPhaseSolver
    solver = TwoPhaseSolver(observation, SolverConfig())
    result = solver.run()
    result.blos          # (ny, nx) gauss; (nt, ny, nx) for a series
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from hashwfa.encodings import static_coordinates
from hashwfa.encodings.progressive import progressive_schedule
from hashwfa.errors import HashwfaError
from hashwfa.training.checkpoint import DAMAGED_FIX, STATE_FORMAT, check_resumable, check_state_layout
from hashwfa.training.divergence import DivergenceError, divergence_message, first_nonfinite, parameters_finite
from hashwfa.training.footprint import check_training_memory
from hashwfa.training.geometry import field_geometry
from hashwfa.training.gradients import normalise_gradients
from hashwfa.training.device import grid_backend_for, resolve_device
from hashwfa.training.distributed import SINGLE_PROCESS, DistributedContext
from hashwfa.training.model import build_field, model_bundle
from hashwfa.training.penalty import MapPenalty, PenaltyWeights, check_full_batch
from hashwfa.training.penalty import penalty_weights as choose_penalty_weights
from hashwfa.training.progress import phase_progress
from hashwfa.training.result import SolverResult
from hashwfa.training.solver_config import SolverConfig
from hashwfa.training.warm_start import baseline_maps, fit_to_map, phase_target
from hashwfa.wfa.physics.maps import FieldMaps
from hashwfa.training.loss import PHASES, WFALoss
from hashwfa.wfa.baselines.products import Baselines
from hashwfa.wfa.observation.noise import StokesNoise
from hashwfa.wfa.observation.observation import Observation

__all__ = ["TwoPhaseSolver", "EVAL_CHUNK"]

# Pixels per forward pass when the final field is evaluated on the full grid;
# bounds the memory of the evaluation independently of the image size.
EVAL_CHUNK = 1 << 16


class TwoPhaseSolver:
    """Fits B_los, then (B_Q, B_U), as neural fields through the WFA loss.

    Args:
        observation: the :class:`~hashwfa.wfa.observation.observation.Observation` to fit.
        config: the solver settings.
        progress: show the progress of each phase (loss and learning rate): a tqdm bar on a
            terminal, a plain line every few epochs otherwise (:mod:`hashwfa.training.progress`).
        dist: this process's place in a data-parallel fit
            (:mod:`hashwfa.training.distributed`); default: a single process.
            With several ranks the loss holds only this rank's shard of the
            valid points, and losses, gradients and decisions are global.
        noise: the Stokes noise the regularisation weights assume (the run's
            ``data.noise``); None estimates it from the data. Ignored when
            ``baselines`` is given (it carries its own).
        baselines: the run's :class:`~hashwfa.wfa.baselines.products.Baselines`
            of ``observation``, shared with whatever else of the run needs the
            noise or a baseline (the smoothness weights and the warm start read
            it here); None makes one for this solver alone.
        penalty_weights: the smoothness weights per phase, when already
            chosen (a bootstrap member started from the fit keeps the fit's,
            :mod:`hashwfa.training.bootstrap`); None: chosen here from
            ``config.regularization`` and the baselines.

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

    def __init__(
        self, observation: Observation, config: SolverConfig, *, progress: bool = True,
        dist: DistributedContext = SINGLE_PROCESS, noise: Optional[StokesNoise] = None,
        baselines: Optional[Baselines] = None, penalty_weights: Optional[Dict[str, PenaltyWeights]] = None,
    ) -> None:
        t0 = time.perf_counter()
        self.config = config
        self.observation = observation
        self.progress = progress
        self.device = resolve_device(config.training.device)
        shard_size = dist.shard(int(observation.n_valid)).stop - dist.shard(int(observation.n_valid)).start
        check_training_memory(observation, self.device, shard_size)  # one message, not a MemoryError midway
        train = config.training
        self.log_every = train.log_every or (1 if self.device.type == "cpu" else 25)

        physics = config.physics
        # Data parallel: n_valid is the global count; the loss and coords hold this rank's shard.
        self.dist = dist
        self.n_valid = int(observation.n_valid)
        self.shard = dist.shard(self.n_valid)
        self.loss = WFALoss(
            observation, device=self.device, dtype=torch.float32, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form,
            rows=self.shard if dist.enabled else None,
        )
        valid_index = self.loss.valid_index.to("cpu").numpy()
        # Created once and passed as the same tensor object every full-batch
        # step: the grid caches what depends only on the coordinates.
        self.coords = torch.from_numpy(
            np.ascontiguousarray(observation.coordinates(valid_index), dtype=np.float32)
        ).to(self.device)
        self.full_batch = train.batch_size >= self.n_valid
        self.valid_index = valid_index
        # training.init_from: the baseline map both phases start from, made when first needed.
        self._baseline: Optional[FieldMaps] = None
        # Set by start_from_fields: both phases start from given weights, every level active.
        self._from_fields = False

        # A series is fitted as one field over (t, y, x) (training.frames "joint"; the
        # "independent" per-frame fits are hashwfa.training.independent_frames). Each field's own
        # max_resolution (encoding_blos / encoding_bqbu) sets its time share.
        self.geometries = {
            p: field_geometry(observation.map_shape, train.frames_per_cell, config.field_encoding(p).max_resolution)
            for p in PHASES
        }
        self.geometry = self.geometries["blos"]
        self.fields = {
            p: build_field(config, p, backend=grid_backend_for(self.device, config.field_encoding(p).backend),
                           device=self.device, geometry=self.geometries[p])
            for p in PHASES
        }
        self.backend = self.fields["blos"].encoding.backend
        dist.broadcast_parameters(self.fields.values())
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
        # regularization: smoothness terms of each field's map, weights fixed here (hashwfa.training.penalty).
        check_full_batch(config, self.full_batch, dist.enabled)
        self.baselines = baselines if baselines is not None else Baselines(
            observation, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form, given_noise=noise)
        self.penalty_weights = (dict(penalty_weights) if penalty_weights is not None
                                else choose_penalty_weights(self.loss, config, self.baselines))
        self.penalties = {p: MapPenalty(w, self.loss.valid_index, self.loss.shape)
                          for p, w in self.penalty_weights.items()}
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(train.seed)
        if dist.enabled and not dist.is_primary:
            # Rank 0 keeps the cube (warm start's baseline, pixel-wise WFA, outputs); the others
            # hold their shard in self.loss from here on and let the cube go.
            observation.release_spectra()

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
            HashwfaError: the state was saved with another solver config or
                format, or is damaged (a missing entry, a wrong type or
                shape, an impossible phase or epoch, non-finite weights).
        """
        check_resumable(state, self.config.to_dict())
        check_state_layout(state, self.config.training.epochs_per_phase)
        try:  # shapes, optimiser groups and the generator are checked by loading them
            for p in PHASES:
                self.fields[p].load_state_dict(state["fields"][p])
                self.optimizers[p].load_state_dict(state["optimizers"][p])
                self.schedulers[p].load_state_dict(state["schedulers"][p])
            self.generator.set_state(state["generator"].to("cpu"))
            timings = {k: float(v) for k, v in state["timings"].items() if k != "setup"}
        except (KeyError, ValueError, TypeError, RuntimeError, AttributeError, IndexError) as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise HashwfaError(f"the checkpoint does not fit this model ({first_line}). {DAMAGED_FIX}") from None
        self.phase_index = int(state["phase_index"])
        self.epoch = int(state["epoch"])
        self.history = {p: {k: list(v) for k, v in h.items()} for p, h in state["history"].items()}
        self.timings.update(timings)

    def model_bundle(self) -> Dict[str, Any]:
        """Both fields' state_dicts, on the CPU, with what rebuilds them.

        ``{"format", "config", "backend", "scales", "geometry", "geometries", "fields": {"blos", "bqbu"}}``;
        see :func:`hashwfa.training.model.fields_from_bundle`.
        """
        return model_bundle(self.config, self.backend, self.scales, self.fields, self.geometries)

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

    def start_from_fields(self, states: Dict[str, Dict[str, torch.Tensor]]) -> None:
        """Start both phases from given weights instead of the initialisation and ``training.init_from``.

        For a bootstrap member warm-started from the run's fitted fields
        (:mod:`hashwfa.training.bootstrap`): ``states`` maps each phase
        (``"blos"``, ``"bqbu"``) to a ``state_dict`` of a field of this
        config. The weights are copied; every level is active from the first
        epoch (a progressive encoding does not ramp again over fitted levels).
        Call before :meth:`run`.
        """
        for p in PHASES:
            self.fields[p].load_state_dict(states[p])
        self.dist.broadcast_parameters(self.fields.values())
        self._from_fields = True

    def _active_levels(self, epoch: int, phase: str) -> float:
        enc = self.config.field_encoding(phase)
        if self._from_fields:
            return float(enc.n_levels)
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
        bar = phase_progress(epochs, self.epoch, label, self.progress)
        t0 = time.perf_counter()
        if self.epoch == 0 and self.config.training.init_from != "none" and not self._from_fields:
            self._warm_start(phase)  # part of the phase's time
        try:
            while self.epoch < epochs:
                epoch = self.epoch
                if progressive:
                    net.encoding.set_active_levels(self._active_levels(epoch, phase))
                pending.append((self._train_epoch(phase), optimizer.param_groups[0]["lr"]))
                self.epoch = epoch + 1
                done = self.epoch
                checkpoint_now = done % every_ckpt == 0 or done == epochs
                if checkpoint_now or done % self.log_every == 0:
                    self._read_back(phase, pending, bar)
                    pending = []
                if checkpoint_now:
                    self._check_parameters(phase)  # before any checkpoint: never save NaN weights
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

    def _warm_start(self, phase: str) -> None:
        """Fit the phase's field to the baseline map (:mod:`hashwfa.training.warm_start`)."""
        train = self.config.training
        net = self.fields[phase]
        if net.encoding.progressive:
            net.encoding.set_active_levels(self._active_levels(0, phase))
        loss = None
        if self.dist.is_primary:
            # Data parallel: rank 0 alone makes the baseline (it holds the spectra) and fits the
            # whole map; the others take its parameters and its loss.
            if self._baseline is None:
                self._baseline = baseline_maps(self.baselines, train.init_from)
            if self.dist.enabled:
                index = self.observation.valid_index
                coords = torch.from_numpy(np.ascontiguousarray(
                    self.observation.coordinates(index), dtype=np.float32)).to(self.device)
            else:
                index, coords = self.valid_index, self.coords
            target = phase_target(self._baseline, phase, index) / self.scales[phase]
            target_t = torch.from_numpy(np.ascontiguousarray(target, dtype=np.float32)).to(self.device)
            loss = fit_to_map(net, coords, target_t, train.init_epochs, train.lr, train.batch_size)
        # The others wait for rank 0's baseline and fit by its heartbeat (no timeout while it lives); then
        # the parameters follow at once.
        loss = self.dist.broadcast_after_primary_work(loss, "rank 0's warm start (baseline map and its fit)")
        self.dist.broadcast_parameters([net])
        # A one-element list, so that the history (and checkpoints) keep it like the per-epoch lists.
        self.history[phase]["init_loss"] = [loss]

    def _train_epoch(self, phase: str) -> torch.Tensor:
        """One epoch; returns its mean loss as a 0-d tensor on the device (no sync)."""
        if self.full_batch:
            # self.coords is built once and never written to: the grids may
            # reuse their lookup of these points from step to step.
            with static_coordinates():
                return self._step(phase, self.coords, None)
        # The permutation is over the global point indices (the same on every
        # rank, whatever the number of ranks); each rank keeps its rows of a batch.
        perm = torch.randperm(self.n_valid, generator=self.generator, device=self.device)
        total = torch.zeros((), device=self.device)
        for index in perm.split(self.config.training.batch_size):
            rows = self.dist.local_rows(index, self.shard) if self.dist.enabled else index
            total = total + self._step(phase, self.coords[rows], rows, index.numel()) * index.numel()
        return total / self.n_valid

    def _step(
        self, phase: str, coords: torch.Tensor, index: Optional[torch.Tensor], batch_points: Optional[int] = None
    ) -> torch.Tensor:
        """One optimiser step on this rank's ``coords`` of a batch of ``batch_points`` points (default: all)."""
        net = self.fields[phase]
        optimizer = self.optimizers[phase]
        optimizer.zero_grad(set_to_none=True)
        loss = torch.zeros((), device=self.device)
        if coords.shape[0] > 0:  # with several ranks, a rank may own no point of a minibatch
            out = net(coords) * self.scales[phase]
            if phase == "blos":
                loss = self.loss(blos=out[:, 0], phase="blos", index=index)
            else:
                loss = self.loss(bqbu=out, phase="bqbu", index=index)
            if phase in self.penalties:  # full batch only: out covers every valid pixel
                loss = loss + self.penalties[phase](out)
            if self.dist.enabled:  # this rank's share of the global mean
                loss = loss * (coords.shape[0] / (batch_points or self.n_valid))
            loss.backward()
        loss = self.dist.all_reduce_gradients(net.parameters(), loss)
        if self.config.training.grad_normalization:
            normalise_gradients(net.parameters())
        optimizer.step()
        return loss.detach()

    def _read_back(self, phase: str, pending: List[Tuple[torch.Tensor, float]], bar: Any) -> None:
        """One host-device sync: record the pending epochs and step the scheduler per epoch."""
        if not pending:
            return
        losses = torch.stack([loss for loss, _ in pending]).tolist()
        bad = first_nonfinite(losses)
        if bad is not None:
            epoch = self.epoch - len(pending) + bad + 1  # 1-based
            raise DivergenceError(divergence_message(
                f"the loss is {losses[bad]}", self._phase_label(phase), epoch,
                self.config.training.epochs_per_phase, pending[bad][1]))
        scheduler = self.schedulers[phase]
        hist = self.history[phase]
        for loss, (_, lr) in zip(losses, pending):
            hist["loss"].append(float(loss))
            hist["lr"].append(float(lr))
            scheduler.step(loss)
        bar.update(len(losses))
        bar.set_postfix(loss=f"{losses[-1]:.3e}", lr=f"{self.optimizers[phase].param_groups[0]['lr']:.1e}")

    @staticmethod
    def _phase_label(phase: str) -> str:
        return f"phase {PHASES.index(phase) + 1}/{len(PHASES)} ({phase})"

    def _check_parameters(self, phase: str) -> None:
        if not parameters_finite(self.fields[phase].parameters()):
            raise DivergenceError(divergence_message(
                "the parameters are no longer finite", self._phase_label(phase), self.epoch,
                self.config.training.epochs_per_phase, self.optimizers[phase].param_groups[0]["lr"]))

    def _sync(self) -> None:
        # Timings are only honest once queued GPU work has finished.
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def release_training_data(self) -> None:
        """Let the loss tensors and the training coordinates go, once :meth:`run` has made the maps.

        For what follows a finished fit (the baselines and outputs of
        ``hashwfa-train``), which needs the memory. The fields, their state and
        the history remain (:meth:`model_bundle`, :meth:`state_dict`,
        :meth:`predict` still work); training or :meth:`evaluate` again do not.
        """
        self.loss = None  # type: ignore[assignment]
        self.coords = None  # type: ignore[assignment]
        self.penalties = {}

    # ------------------------------------------------------------- evaluation

    @torch.no_grad()
    def predict(self, coordinates: Optional[Any] = None) -> Dict[str, np.ndarray]:
        """Scaled field outputs at ``coordinates`` ((N, D) in [-1, 1], columns y, x or, for a series, t, y, x;
        a numpy array or a float32 tensor).

        Default: every pixel centre of the observation, row-major, made chunk by chunk. Returns
        ``{"blos": (N,) gauss, "bqbu": (N, 2) gauss^2}`` as float64 arrays.
        Progressive encodings are evaluated with the levels active at the end
        of a phase.
        """
        n = self.observation.n_pixels if coordinates is None else coordinates.shape[0]
        out = {"blos": np.empty(n), "bqbu": np.empty((n, 2))}
        for phase in PHASES:
            net = self.fields[phase]
            if net.encoding.progressive:
                net.encoding.set_active_levels(self._active_levels(self.config.training.epochs_per_phase, phase))
        for start in range(0, n, EVAL_CHUNK):
            # Coordinates made chunk by chunk: the pixel grid of a series is never held whole.
            chunk = (self.observation.coordinates(np.arange(start, min(start + EVAL_CHUNK, n)))
                     if coordinates is None else coordinates[start:start + EVAL_CHUNK])
            coords = (chunk.to(self.device) if isinstance(chunk, torch.Tensor)
                      else torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32)).to(self.device))
            for phase in PHASES:
                values = (self.fields[phase](coords) * self.scales[phase]).double().cpu().numpy()
                out[phase][start:start + values.shape[0]] = values if phase == "bqbu" else values[:, 0]
        return out

    @torch.no_grad()
    def evaluate(self) -> SolverResult:
        """Maps of the current fields on the full grid and the reference protocol's final loss.

        Data parallel: every rank adds its shard's part of the final loss (one
        sum over the ranks), then rank 0 alone predicts the whole grid, so no
        rank waits in a collective while it does; the other ranks' results
        have no maps (None).
        """
        t0 = time.perf_counter()
        obs = self.observation
        if self.dist.enabled:
            shard = self.predict(self.coords)  # this rank's training points' coordinates
            with torch.no_grad():
                as_tensor = lambda a: torch.as_tensor(a, dtype=self.loss.coef_v.dtype, device=self.device)  # noqa: E731
                final_loss = float(self.loss(blos=as_tensor(shard["blos"]), bqbu=as_tensor(shard["bqbu"]), phase="all"))
            del shard
            # The mean over this rank's shard -> the global mean.
            final_loss = self.dist.sum(final_loss * self.loss.n_valid / self.n_valid)
            pred = self.predict() if self.dist.is_primary else None
        else:
            pred = self.predict()
            final_loss = self.loss.map_loss(pred["blos"], pred["bqbu"][:, 0], pred["bqbu"][:, 1])
        if not np.isfinite(final_loss):  # finite weights whose output overflows float32
            raise DivergenceError(divergence_message(
                f"the final loss is {final_loss}", "the evaluation after both phases", self.config.training.epochs_per_phase,
                self.config.training.epochs_per_phase, self.optimizers[PHASES[-1]].param_groups[0]["lr"]))
        shape = obs.map_shape
        maps = None if not self.dist.is_primary else FieldMaps.from_bqbu(
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

