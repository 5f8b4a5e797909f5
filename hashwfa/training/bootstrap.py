"""The sigma maps of a training run: the noise, the pixel-wise WFA's sigmas, the field's sigmas.

After the main fit, :func:`run_uncertainty` resolves the Stokes noise
(``data.noise`` or the estimate, :mod:`hashwfa.wfa.observation.noise`), propagates it
through the pixel-wise WFA (:func:`hashwfa.wfa.uncertainty.pixelwise.pixel_wfa_sigmas`,
always: array work only) and, when asked (``output.sigmas``), estimates the
field's sigmas by its local risk (:func:`hashwfa.wfa.uncertainty.local_risk.field_sigmas`).
That needs ``uncertainty.members`` extra trainings, the *bootstrap members*:
the same solver config with training seed ``training.seed + 1000 k``
(:func:`member_seed`; not ``seed + 1``: the run's (B_Q, B_U) field is
initialised with ``seed + 1``, see :mod:`hashwfa.training.model`) on the
data plus a fresh draw of the noise. The redraws use a numpy generator seeded with ``training.seed``,
so a run's sigma maps are reproducible.

For a time series a member is a fit of the whole redrawn series, the same
kind as the run's (``training.frames``: one joint (t, y, x) field, or one
field per frame with :class:`~hashwfa.training.independent_frames.IndependentFrames`),
and the risk windows also extend ``uncertainty.window_frames`` frames along
time (docs/UNCERTAINTIES.md, "Time series").

Data parallel (``torchrun``): the members train on every rank, like the
main fit, each rank on its shard of the member's data (:func:`run_uncertainty`
with ``dist`` on rank 0, :func:`follow_members` on the others). Rank 0
writes each member's redrawn cube to a scratch file in ``scratch_dir`` (the
run's locked output directory; also for data made in memory) and sends,
before each member, one message: the file's path, the member's seed and its
valid-pixel mask (packed bits); the other ranks map that file and read only
their shard of it, frame by frame, as for the data of the main fit. The
file must therefore be visible to every rank under the same path: always on
one node; with several nodes, ``--out`` must be on a file system every node
mounts (else every rank says so, the step ends with ``skipped`` and the
fit's results are written without ``SIGMA_*``). Rank 0's decision to train
a member or to end the step (noise not estimable, scratch disk full, a
failed redraw or setup) is that message, so the other ranks never wait in a
collective rank 0 does not enter; a diverging member diverges on every rank
at the same epoch (the loss is global) and ends the step everywhere. A rank
that dies during a member ends the run with :class:`RankFailure` (the main
fit's last checkpoint stays, and ``--resume`` trains only the members again).

Members keep no checkpoint: they train after the main fit, and a run
interrupted while they train is resumed (``--resume``) from the main fit's
last checkpoint, after which the members are trained again from scratch,
with the same seeds and redraws, so the maps are the same as those of an
uninterrupted run (bit for bit on the CPU).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from hashwfa.errors import HashwfaError
from hashwfa.schema import setting
from hashwfa.training.solver_config import SolverConfig
from hashwfa.training.divergence import DivergenceError
from hashwfa.training.distributed import SINGLE_PROCESS, DistributedContext, RankFailure
from hashwfa.training.independent_frames import IndependentFrames
from hashwfa.training.solver import TwoPhaseSolver
from hashwfa.wfa.uncertainty.local_risk import (DEFAULT_MEMBERS, DEFAULT_SMOOTHING_FRAMES, DEFAULT_SMOOTHING_PX,
                                           DEFAULT_SMOOTHING_QU_PX, field_sigmas)
from hashwfa.wfa.physics.maps import FieldMaps, FieldSigmas
from hashwfa.wfa.baselines.products import Baselines
from hashwfa.wfa.observation.noise import StokesNoise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.uncertainty.pixelwise import pixel_wfa_sigmas

__all__ = ["FitStart", "UncertaintyConfig", "member_config", "RunUncertainty", "member_seed", "member_solver",
           "run_uncertainty", "follow_members", "MEMBER_SEED_STRIDE"]

#: A member started from the fit trains this fraction of ``training.epochs_per_phase`` per phase
#: (one frame; a joint series: DEFAULT_MEMBER_EPOCHS_SERIES). Measured: BENCHMARKS.md,
#: "Where the main job's time goes" (0.1 gives the scratch member's coverage on one frame; on a
#: series the 2-sigma coverage of B_t and the azimuth fell to 0.900 / 0.922 with 0.1, and 0.25
#: gives the scratch member's).
DEFAULT_MEMBER_EPOCHS = 0.1
DEFAULT_MEMBER_EPOCHS_SERIES = 0.25

#: Member k trains with seed ``training.seed + MEMBER_SEED_STRIDE * k``.
MEMBER_SEED_STRIDE = 1000
_MAX_SEED = 2**63


@dataclass(frozen=True)
class FitStart:
    """What a bootstrap member started from the fit takes from it (``uncertainty.member_start = "fit"``).

    Attributes:
        fields: the fitted fields' weights, phase (``"blos"``, ``"bqbu"``) -> ``state_dict``.
        penalty_weights: the fit's smoothness weights per phase (``TwoPhaseSolver.penalty_weights``):
            the member differentiates the same estimator, so it keeps them rather than choosing
            its own from its noisier data.
    """

    fields: Dict[str, Dict[str, Any]]
    penalty_weights: Dict[str, Any]

    @classmethod
    def of(cls, solver: TwoPhaseSolver) -> "FitStart":
        """The start a finished :class:`TwoPhaseSolver` gives its members."""
        return cls(fields={p: f.state_dict() for p, f in solver.fields.items()},
                   penalty_weights=dict(solver.penalty_weights))


@dataclass(frozen=True)
class UncertaintyConfig:
    """How the neural field's sigma maps are estimated (used when ``output.sigmas`` is true)."""

    members: int = setting(
        DEFAULT_MEMBERS,
        "Bootstrap members: extra trainings of the same config (seed training.seed + 1000 k) on the "
        "data plus a fresh noise draw; each costs one training. The calibration was measured "
        "with 1 (BENCHMARKS.md section 6).",
        min=1,
        max=64,
    )
    window_blos_px: float = setting(
        DEFAULT_SMOOTHING_PX,
        "Gaussian sigma [px] of the window over which the B_los risk is averaged (0: per pixel, very noisy).",
        min=0.0,
    )
    window_bqbu_px: float = setting(
        DEFAULT_SMOOTHING_QU_PX,
        "The same for B_Q, B_U (and so B_t, azimuth); wider, as their pixel-wise noise is large against the risk.",
        min=0.0,
    )
    member_start: str = setting(
        "fit",
        "Where a bootstrap member starts: 'fit' (the run's fitted weights and smoothness weights, then "
        "training.epochs_per_phase times uncertainty.member_epochs epochs per phase on its data, with a "
        "fresh Adam at training.lr; a fit of one joint field) or 'scratch' (the whole fit again from its "
        "own initialisation; always for training.frames = 'independent').",
        choices=("fit", "scratch"),
    )
    member_epochs: float = setting(
        DEFAULT_MEMBER_EPOCHS,
        "With member_start 'fit', one frame: the member's epochs per phase as a fraction of "
        "training.epochs_per_phase (at least 1 epoch). The default keeps the coverage of "
        "docs/UNCERTAINTIES.md (BENCHMARKS.md, 'Where the main job's time goes').",
        min=0.0,
        max=1.0,
    )
    member_epochs_series: float = setting(
        DEFAULT_MEMBER_EPOCHS_SERIES,
        "The same for a time series fitted as one joint field (its member needs more epochs to "
        "respond to the noise as the whole fit does).",
        min=0.0,
        max=1.0,
    )
    window_frames: float = setting(
        DEFAULT_SMOOTHING_FRAMES,
        "Time series: Gaussian sigma [frames, counted by index whatever the frame times] of the risk "
        "windows along time (0: each frame's risk from that frame alone).",
        min=0.0,
    )


def member_solver(data: Observation, config: SolverConfig, progress: bool,
                  dist: DistributedContext = SINGLE_PROCESS,
                  start: Optional[FitStart] = None,
                  settings: Optional["UncertaintyConfig"] = None) -> Union[TwoPhaseSolver, IndependentFrames]:
    """The solver of a bootstrap member, of the main fit's kind.

    Args:
        data: the member's data (the observation plus a noise redraw).
        config: the run's solver config with the member's seed.
        progress: show the progress bars.
        dist: this process's place in a data-parallel run (the member trains on this rank's shard).
        start: the run's fit (:class:`FitStart`); with ``settings.member_start
            = "fit"`` the member starts from its weights, keeps its smoothness
            weights and trains ``settings.member_epochs`` of
            ``training.epochs_per_phase`` (:func:`member_config`). None: from scratch.
        settings: the sigma maps' settings (None: the defaults).

    Returns:
        :class:`IndependentFrames` (one field per frame) for a series with
        ``training.frames = "independent"``, else :class:`TwoPhaseSolver`
        (one frame, or one joint (t, y, x) field of a series).
    """
    if data.is_series and config.training.frames == "independent":
        return IndependentFrames(data, config, progress=progress)
    if not _starts_from_fit(config, start, settings):
        return TwoPhaseSolver(data, config, progress=progress, dist=dist)
    solver = TwoPhaseSolver(data, member_config(config, settings, data.is_series), progress=progress, dist=dist,
                            penalty_weights=start.penalty_weights)
    solver.start_from_fields(start.fields)
    return solver


def _starts_from_fit(config: SolverConfig, start: Optional[FitStart],
                     settings: Optional["UncertaintyConfig"]) -> bool:
    settings = settings if settings is not None else UncertaintyConfig()
    return start is not None and settings.member_start == "fit" and config.training.frames != "independent"


def member_config(config: SolverConfig, settings: Optional["UncertaintyConfig"] = None,
                  series: bool = False) -> SolverConfig:
    """The solver config of a member started from the fit: ``member_epochs`` of the epochs, no warm start.

    ``training.epochs_per_phase`` times ``uncertainty.member_epochs`` (``member_epochs_series``
    for a ``series``), rounded,
    at least 1; ``training.init_from = "none"`` (the member starts from the
    fitted weights, not from a baseline map). Everything else is the run's.
    """
    settings = settings if settings is not None else UncertaintyConfig()
    fraction = settings.member_epochs_series if series else settings.member_epochs
    epochs = max(1, int(round(config.training.epochs_per_phase * fraction)))
    return dataclasses.replace(config, training=dataclasses.replace(config.training, epochs_per_phase=epochs,
                                                                    init_from="none"))


def member_seed(seed: int, k: int) -> int:
    """The training seed of bootstrap member ``k`` (1, 2, ...) of a run with ``training.seed = seed``."""
    return (seed + MEMBER_SEED_STRIDE * k) % _MAX_SEED


@dataclass
class RunUncertainty:
    """What :func:`run_uncertainty` found.

    Attributes:
        noise: the Stokes noise every sigma assumes, or None when it could not
            be estimated (too few pixels) and no sigma maps were asked for.
        wfa_sigmas: the pixel-wise WFA's sigmas, ``(ny, nx)`` or ``(nt, ny, nx)`` (``WFA_SIGMA_*``), or None
            with ``noise``.
        sigmas: the field's sigmas (``SIGMA_*``), of the same shape, or None when not asked for.
        members: per bootstrap member: ``seed``, ``final_loss``, ``timings_s``.
        seconds: wall-clock seconds of the whole step (members included).
        skipped: why sigma maps that were asked for are missing (the noise could
            not be estimated, a member diverged), or None. The fit's own maps
            are never lost to this step.
    """

    noise: Optional[StokesNoise]
    wfa_sigmas: Optional[FieldSigmas]
    sigmas: Optional[FieldSigmas] = None
    members: List[Dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    skipped: Optional[str] = None

    def history(self) -> Dict[str, Any]:
        """Plain-JSON summary for ``history.json``: the noise, the members, the time."""
        return {
            "noise": None if self.noise is None else self.noise.as_dict(),
            "field_sigmas": self.sigmas is not None,
            "members": self.members,
            "seconds": self.seconds,
            "skipped": self.skipped,
        }


def run_uncertainty(
    observation: Observation,
    field_maps: FieldMaps,
    solver_config: SolverConfig,
    *,
    baselines: Optional[Baselines] = None,
    field_sigmas_too: bool = False,
    settings: UncertaintyConfig = UncertaintyConfig(),
    progress: bool = True,
    say: Callable[[str], None] = lambda message: None,
    scratch_dir: Optional[Union[str, Path]] = None,
    dist: DistributedContext = SINGLE_PROCESS,
    start: Optional[FitStart] = None,
) -> RunUncertainty:
    """The sigma maps of a finished fit (module docstring).

    Args:
        observation: the data the field was fitted to.
        field_maps: the fitted field's maps.
        solver_config: the config it was fitted with (members reuse it, with their own seeds).
        baselines: the run's noise and pixel-wise WFA of ``observation``
            (:class:`~hashwfa.wfa.baselines.products.Baselines`, which holds the
            given ``data.noise`` or estimates it); None makes them here.
        field_sigmas_too: also estimate the field's sigmas (trains the members).
        settings: members and windows.
        progress: show the members' progress bars.
        say: prints a progress message (e.g. to stderr; a no-op when quiet).
        scratch_dir: where the members' redrawn cubes of a lazy (memory-mapped) observation are
            written, one at a time, and removed after each member
            (:func:`hashwfa.wfa.uncertainty.local_risk.redraw_noise_on_disk`; hashwfa-train: the
            run's locked output directory); None: in memory.
        dist: rank 0's place in a data-parallel run: the members train on every rank (module
            docstring; the other ranks call :func:`follow_members`); needs ``scratch_dir``.
        start: the fit the members start from with ``settings.member_start = "fit"``
            (:class:`FitStart`, of a :class:`TwoPhaseSolver`); None: from scratch.

    Sigma maps that cannot be made (the noise cannot be estimated from too
    few pixels; a bootstrap member diverges; its data do not fit in memory
    or on the scratch disk; its setup fails) are left out with the reason in
    :attr:`RunUncertainty.skipped`: this step runs after the fit, and the
    fit's maps must still be written.

    Raises:
        RankFailure: data parallel, another rank died or did not answer during a member.
    """
    channel = _MemberChannel(dist if field_sigmas_too else SINGLE_PROCESS)
    if baselines is None:
        baselines = Baselines(observation, core_cutoff=solver_config.physics.core_cutoff,
                              qu_form=solver_config.physics.qu_form)
    found = _run_uncertainty(observation, field_maps, solver_config, baselines, field_sigmas_too, settings, progress,
                             say, scratch_dir, channel, start)
    channel.end()  # not after a RankFailure: no rank is left to hear it
    return found


def _run_uncertainty(
    observation: Observation,
    field_maps: FieldMaps,
    solver_config: SolverConfig,
    baselines: Baselines,
    field_sigmas_too: bool,
    settings: UncertaintyConfig,
    progress: bool,
    say: Callable[[str], None],
    scratch_dir: Optional[Union[str, Path]],
    channel: "_MemberChannel",
    start: Optional[FitStart] = None,
) -> RunUncertainty:
    """:func:`run_uncertainty`, with the data-parallel members' messages going through ``channel``."""
    dist = channel.dist
    t0 = time.perf_counter()
    physics = solver_config.physics
    try:
        noise = baselines.noise
    except HashwfaError as exc:
        maps = "SIGMA_* and WFA_SIGMA_*" if field_sigmas_too else "WFA_SIGMA_*"
        return RunUncertainty(noise=None, wfa_sigmas=None, seconds=time.perf_counter() - t0,
                              skipped=f"no {maps} maps: {exc} Fix: give data.noise.")
    seed = solver_config.training.seed
    members: List[Dict[str, Any]] = []

    def fit(data: Observation, k: int) -> FieldMaps:
        config = dataclasses.replace(
            solver_config, training=dataclasses.replace(solver_config.training, seed=member_seed(seed, k))
        )
        origin = ("from the fit, " if _starts_from_fit(config, start, settings) else "")
        say(f"sigma maps: training bootstrap member {k}/{settings.members} ({origin}seed {config.training.seed}) "
            "on the data plus a fresh noise draw")
        if dist.enabled:
            channel.start_member(data, config.training.seed)
            result = member_solver(data, config, progress, dist, start, settings).run()
            if k == settings.members:  # the last one: the other ranks may leave now
                channel.end()
        else:
            result = member_solver(data, config, progress, start=start, settings=settings).run()
        members.append({"seed": config.training.seed, "final_loss": result.final_loss, "timings_s": result.timings,
                        "world_size": dist.world_size,
                        "start": "fit" if _starts_from_fit(config, start, settings) else "scratch",
                        "epochs_blos": len(result.history.get("blos", {}).get("loss", []))})
        return result.maps

    sigmas, wfa_sigmas, skipped = None, None, None
    if field_sigmas_too:
        try:
            found = field_sigmas(
                observation, field_maps, fit, noise, members=settings.members, seed=seed,
                smoothing_px=settings.window_blos_px, smoothing_qu_px=settings.window_bqbu_px,
                qu_form=physics.qu_form, core_cutoff=physics.core_cutoff,
                smoothing_frames=settings.window_frames, scratch_dir=scratch_dir, always_on_disk=dist.enabled,
                pixelwise=baselines.pixelwise,
            )
            sigmas, wfa_sigmas = found.sigmas, found.wfa_sigmas
        except RankFailure:  # a rank died: the run ends (the checkpoint keeps the fit), not only the sigma maps
            channel.ended = True
            raise
        except DivergenceError as exc:
            skipped = f"no SIGMA_* maps: the bootstrap member diverged ({exc})"
        # The fit is done and its maps must still be written: what the members' data or setup
        # cannot get (memory, scratch disk, a refused config) costs the SIGMA_* maps only.
        except MemoryError as exc:
            skipped = (f"no SIGMA_* maps: the bootstrap member's data or training ran out of memory ({exc or 'MemoryError'}). "
                       "Fix: more memory, a smaller cube, or output.sigmas = false")
        except HashwfaError as exc:  # OutputWriteError (scratch disk) included
            skipped = f"no SIGMA_* maps: the bootstrap member could not be made ({exc})"
        except OSError as exc:
            skipped = f"no SIGMA_* maps: the bootstrap member's scratch data could not be written ({exc})"
    if wfa_sigmas is None:
        wfa_sigmas = pixel_wfa_sigmas(observation, noise, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form)
    return RunUncertainty(noise=noise, wfa_sigmas=wfa_sigmas, sigmas=sigmas, members=members,
                          seconds=time.perf_counter() - t0, skipped=skipped)


# ---- data-parallel members: rank 0's messages and the other ranks' side --------------------------------

_MEMBER, _END = "member", "end"
#: Rank 0's serial work before each member's message (the others wait by its heartbeat, not the timeout).
MEMBER_WORK = "rank 0's preparation of a bootstrap member (pixel-wise WFA, noise, redraw)"


class _MemberChannel:
    """Rank 0's messages to the other ranks during the sigma step (module docstring, "Data parallel").

    One :meth:`~DistributedContext.broadcast_after_primary_work` per message (no timeout while
    rank 0 prepares the member and lives): ``("member", {path, seed, valid, size})`` before each
    member, ``("end", None)`` once when the step ends; then an agreement (a sum over the
    ranks) that every rank could map the member's data. With one process nothing is sent.
    """

    def __init__(self, dist: DistributedContext) -> None:
        self.dist = dist
        self.ended = not dist.enabled

    def start_member(self, data: Observation, seed: int) -> None:
        """Send the member's data (a scratch file) and seed; raises when a rank cannot map the file."""
        cube = data.stokes
        if not isinstance(cube, np.memmap) or cube.filename is None:
            raise HashwfaError("a data-parallel bootstrap member needs its data in a scratch file "
                               "(run_uncertainty's scratch_dir)")
        valid = np.asarray(data.valid, dtype=bool)
        self.dist.broadcast_after_primary_work((_MEMBER, {"path": str(cube.filename), "seed": int(seed),
                                                          "valid": np.packbits(valid), "size": int(valid.size)}),
                                               MEMBER_WORK)
        missing = self.dist.sum(0.0)
        if missing > 0:
            raise HashwfaError(
                f"{int(missing)} of the other ranks could not read the member's data '{cube.filename}'. "
                "Fix: with several nodes, give --out on a file system every node mounts")

    def end(self) -> None:
        """Tell the other ranks that no member follows (once)."""
        if not self.ended:
            self.ended = True
            self.dist.broadcast_after_primary_work((_END, None), MEMBER_WORK)


def follow_members(observation: Observation, solver_config: SolverConfig, dist: DistributedContext,
                   say: Callable[[str], None] = lambda message: None,
                   start: Optional[FitStart] = None,
                   settings: Optional[UncertaintyConfig] = None) -> int:
    """The sigma step on a rank other than 0: train each bootstrap member rank 0 announces, on this rank's shard.

    Called by every rank but 0 after the main fit when ``output.sigmas`` is on,
    while rank 0 runs :func:`run_uncertainty` with ``dist``. Each member's
    data is rank 0's scratch file, mapped read-only (float64, the shape of
    ``observation``'s cube) with rank 0's valid mask, and read only for this
    rank's shard; the mapping is let go after the member. A rank that cannot
    map the file says so (``say``) and the member is left out on every rank;
    a member that diverges diverges on every rank, and rank 0 ends the step.

    Args:
        observation: this rank's observation of the main fit (its cube may be released: only
            its shape and metadata are used).
        solver_config: the run's solver config (each member's seed comes from rank 0).
        dist: this rank (not 0).
        say: prints a warning (this rank's reason for leaving a member out).
        start, settings: as for :func:`run_uncertainty` (this rank's fit, the same weights as
            rank 0's after a data-parallel fit).

    Returns:
        The number of members this rank trained to the end.

    Raises:
        RankFailure: rank 0 or another rank died or did not answer.
    """
    trained = 0
    while True:
        # Rank 0's work between members may outlast the timeout: waited for by its heartbeat.
        kind, message = dist.broadcast_after_primary_work(None, MEMBER_WORK)
        if kind == _END:
            return trained
        data: Optional[Observation] = None
        try:
            cube = np.memmap(message["path"], dtype=np.float64, mode="r", shape=observation.stokes.shape)
            valid = np.unpackbits(message["valid"], count=message["size"]).astype(bool)
            data = observation.with_stokes(cube, source=f"{observation.source} + noise redraw",
                                           valid=valid.reshape(observation.map_shape))
        except (OSError, ValueError, HashwfaError) as exc:
            say(f"rank {dist.rank}: cannot read the bootstrap member's data '{message['path']}' ({exc}); "
                "the sigma maps are left out")
        if dist.sum(0.0 if data is not None else 1.0) > 0:
            continue  # rank 0 leaves the member out and ends the step
        config = dataclasses.replace(
            solver_config, training=dataclasses.replace(solver_config.training, seed=message["seed"]))
        try:
            member_solver(data, config, False, dist, start, settings).run()
            trained += 1
        except DivergenceError:
            pass  # the same epoch on every rank (the loss is global): rank 0 ends the step
        finally:
            data.release_spectra()  # lets the mapping of the scratch file go
