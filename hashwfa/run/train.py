"""One run of ``hashwfa-train``: a config in, the fit, its baselines and sigma maps, the files out.

:func:`run` takes what the command line asked (:class:`RunRequest`; an
``argparse.Namespace`` with the same attributes will do) and does the job:

1. read and check the config, join the other ranks under ``torchrun``;
2. check the output directory against ``--resume`` / ``--overwrite``, load
   the data (rank 0 scans it; the others get the valid pixels), build the
   solver; only then lock the directory (and, for ``--overwrite``, delete
   the earlier checkpoint: its results are replaced only by the new ones);
3. fit (checkpoints on the way; a checkpoint is resumed from);
4. the classic baselines and the noise, each once
   (:class:`~hashwfa.wfa.baselines.products.Baselines`, shared with the
   solver's smoothness weights and warm start), the sigma maps
   (:func:`~hashwfa.training.bootstrap.run_uncertainty`), the errors against
   a known truth;
5. write ``field.fits``, ``history.json``, ``model.pt`` and ``quicklook.png``
   (:mod:`hashwfa.run.outputs`, :mod:`hashwfa.run.quicklook`) and remove the
   checkpoint.

Launched by ``torchrun``, every rank fits its shard of the valid points
(:mod:`hashwfa.training.distributed`); rank 0 alone checks and locks the
output directory, reads the checkpoint (and sends it to the others), writes
checkpoints and results; the other ranks are quiet and end after the
evaluation (the last collective), or with ``output.sigmas`` after the
bootstrap members, which they train with rank 0 on their shards
(:func:`hashwfa.training.bootstrap.follow_members`), while torchrun waits for rank 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Union

import numpy as np

from hashwfa import __version__
from hashwfa.config.run_config import RunConfig, config_to_dict, load_config
from hashwfa.config.shipped import config_path
from hashwfa.errors import HashwfaError
from hashwfa.host.allocator import return_freed_memory
from hashwfa.host.atomic import make_directory, remove_stale_temporaries
from hashwfa.host.lock import DirectoryLock
from hashwfa.run import outputs
from hashwfa.run.data import LoadedData
from hashwfa.run.map_header import map_header
from hashwfa.run.ranks import load_data_ranked
from hashwfa.run.run_log import PROG, RunLog, log_data, log_phases, package_warnings, say, warn
from hashwfa.run.output_directory import check_output_directory, clear_previous_results, remove_unwritten_results
from hashwfa.run.quicklook import write_quicklook
from hashwfa.training import IndependentFrames, TwoPhaseSolver
from hashwfa.training.bootstrap import FitStart, follow_members, run_uncertainty
from hashwfa.training.device import resolve_device
from hashwfa.training.distributed import DEFAULT_TIMEOUT_MINUTES, SINGLE_PROCESS, DistributedContext, init_distributed
from hashwfa.training.untrained import describe_settings, untrained_message
from hashwfa.wfa.baselines.products import Baselines
from hashwfa.wfa.baselines.regularized import RegularizedResult
from hashwfa.wfa.observation.fingerprint import fingerprint_difference
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.maps import FieldMaps, map_errors
from hashwfa.wfa.physics.validity import doppler_width, weak_field_ratio

__all__ = ["PROG", "RunRequest", "TrainRun", "run", "fit_loaded", "output_directory_of"]

#: The checkpoint's entry with the fingerprint of its data (``Observation.fingerprint``).
CHECKPOINT_DATA_KEY = "data"


@dataclass
class RunRequest:
    """What a run is asked to do (the command line's options).

    Attributes:
        config: the commented JSON config file.
        overrides: ``"key.path=value"`` items applied after it, in order.
        out: the output directory; None: ``runs/<config stem>``.
        device, backend: override ``training.device`` / ``encoding.backend`` when set.
        resume: continue the interrupted run in ``out``.
        overwrite: replace the results in a non-empty ``out``.
        quiet: no progress bars or progress messages (warnings are still printed).
        dist_timeout: under ``torchrun``, minutes a rank waits for the others.
        prog: the name the messages start with.
    """

    config: Optional[str]
    overrides: List[str] = field(default_factory=list)
    out: Optional[str] = None
    device: Optional[str] = None
    backend: Optional[str] = None
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    dist_timeout: float = DEFAULT_TIMEOUT_MINUTES
    prog: str = PROG


@dataclass
class TrainRun:
    """What :func:`run` did: the output directory, the solver result, errors vs truth, and
    (rank 0) the results in memory."""

    out_dir: Path
    result: Any
    metrics: Dict[str, float]
    rank: int = 0
    products: Optional[outputs.RunProducts] = None


def output_directory_of(request: Any) -> Path:
    """The output directory ``request`` names: ``--out``, else ``runs/<config stem>``."""
    return Path(request.out) if request.out else Path("runs") / Path(request.config).stem


def run(request: Any, *, on_epoch_end: Optional[Callable[[str, int], None]] = None) -> TrainRun:
    """Do what ``request`` asks (see the module docstring); raises :class:`HashwfaError` on user errors.

    Args:
        request: a :class:`RunRequest`, or any object with its attributes (an
            ``argparse.Namespace`` of ``hashwfa-train``'s parser).
        on_epoch_end: ``(phase, epoch)`` callback passed to the solver (tests
            use it to interrupt a run).
    """
    if request.config is None:
        raise HashwfaError(f"no CONFIG given. Fix: {PROG} configs/v1.json (or {PROG} --keys to list the keys).")
    request = _Request(request, log=RunLog())
    with package_warnings(request):
        return _run(request, on_epoch_end)


def _run(request: Any, on_epoch_end: Optional[Callable[[str, int], None]]) -> TrainRun:
    """:func:`run` with its log and warnings set up."""
    overrides: List[str] = list(request.overrides)
    if request.device:
        overrides.append(f"training.device={request.device}")
    if request.backend:
        overrides.append(f"encoding.backend={request.backend}")
    notes: List[str] = []
    path = config_path(request.config)
    cfg = load_config(path, overrides, notes)
    request.log.write(f"hashwfa {__version__}: config {path}" + "".join(f" --set {o}" for o in overrides))
    out_dir = output_directory_of(request)

    # Under torchrun: join the other ranks; only rank 0 touches out_dir (and speaks).
    timeout = getattr(request, "dist_timeout", DEFAULT_TIMEOUT_MINUTES)
    dist = init_distributed(resolve_device(cfg.solver.training.device), timeout)
    if dist.is_primary:
        for note in notes:
            say(request, note)
    try:
        return _run_ranked(request, cfg, out_dir, on_epoch_end, dist)
    finally:
        dist.close()


def _run_ranked(request: Any, cfg: RunConfig, out_dir: Path,
                on_epoch_end: Optional[Callable[[str, int], None]], dist: DistributedContext) -> TrainRun:
    """The part of :func:`run` after joining the other ranks (if any)."""
    if not dist.is_primary:
        request = _Request(request, quiet=True, log=RunLog(enabled=False))
    # Everything that can fail is checked before anything in out_dir changes:
    # the flags against its contents, the data, the device, the backend and
    # the model. Only then is the directory locked (and, for --overwrite, the old checkpoint deleted).
    config_dict = config_to_dict(cfg)
    if dist.is_primary:
        check_output_directory(out_dir, request.resume, request.overwrite, config_dict)
    data = load_data_ranked(cfg, dist, config_dict)
    return fit_loaded(request, cfg, data, out_dir, on_epoch_end=on_epoch_end, dist=dist)


def fit_loaded(request: Any, cfg: RunConfig, data: LoadedData, out_dir: Path, *,
               on_epoch_end: Optional[Callable[[str, int], None]] = None,
               dist: DistributedContext = SINGLE_PROCESS) -> TrainRun:
    """The job on data already loaded: fit, baselines, sigma maps, errors, the files in ``out_dir``.

    What both ``hashwfa-train`` (:func:`run`, after reading the config and the
    data) and :func:`hashwfa.run.api.fit` call.

    Args:
        request: the run's options (:class:`RunRequest`'s ``resume``,
            ``overwrite``, ``quiet``; its ``config`` and ``overrides`` are not read).
        cfg: the validated config; ``cfg.data`` is not read again (``data`` is the data).
        data: the observation, its truth and given noise.
        out_dir: the output directory (checked against ``request.resume`` /
            ``request.overwrite``, locked while the job runs).
        on_epoch_end: ``(phase, epoch)`` callback passed to the solver.
        dist: the ranks of a data-parallel run (:func:`run` joins them).
    """
    if getattr(request, "log", None) is None:
        request = _Request(request, log=RunLog(enabled=dist.is_primary))
    config_dict = config_to_dict(cfg)
    obs = data.observation
    frame = cfg.output.frame
    if frame is not None and obs.is_series and frame >= obs.nt:
        raise HashwfaError(f"output.frame = {frame} but the series has frames 0..{obs.nt - 1}. "
                           f"Fix: --set output.frame=N with N < {obs.nt} (or null for the middle one).")
    physics = cfg.physics
    baselines = Baselines(obs, core_cutoff=physics.core_cutoff, qu_form=physics.qu_form, given_noise=data.noise)
    if obs.is_series and cfg.training.frames == "independent":
        if dist.enabled:
            raise HashwfaError("training.frames = 'independent' runs in one process. Fix: run it without "
                               "torchrun, or fit the series jointly (training.frames = 'joint').")
        solver: Any = IndependentFrames(obs, cfg.solver, progress=not request.quiet)
    else:
        solver = TwoPhaseSolver(obs, cfg.solver, progress=not request.quiet, dist=dist, baselines=baselines)

    lock = DirectoryLock(make_directory(out_dir)).acquire() if dist.is_primary else None
    try:
        return _run_locked(request, cfg, config_dict, out_dir, data, baselines, solver, on_epoch_end, dist)
    finally:
        if lock is not None:
            lock.release()


class _Request:
    """``request`` with some attributes replaced: ``quiet`` (the other ranks of a data-parallel
    run say nothing), ``log`` (the run's :class:`RunLog`)."""

    def __init__(self, request: Any, **replaced: Any) -> None:
        self._request = request
        self.__dict__.update(replaced)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def _weak_field_map(obs: Observation, maps: FieldMaps, valid: np.ndarray) -> np.ndarray:
    """WEAKFLD (:mod:`hashwfa.wfa.physics.validity`): the Zeeman splitting of the field's |B| over the
    line's width from I, per pixel, like the maps; NaN where the data are not valid or give no width."""
    frames = [obs.stokes[t] for t in range(obs.nt)] if obs.is_series else [obs.stokes]
    width = np.stack([doppler_width(np.asarray(f[..., 0, :]), obs.wavelengths) for f in frames])
    ratio = weak_field_ratio(maps.blos, maps.bt, width.reshape(maps.blos.shape), obs.line)
    return np.where(np.asarray(valid, bool).reshape(ratio.shape), ratio, np.nan)


def _run_locked(
    request: Any,
    cfg: RunConfig,
    config_dict: Dict[str, Any],
    out_dir: Path,
    data: LoadedData,
    baselines: Baselines,
    solver: Union[TwoPhaseSolver, IndependentFrames],
    on_epoch_end: Optional[Callable[[str, int], None]],
    dist: DistributedContext = SINGLE_PROCESS,
) -> TrainRun:
    """The part of :func:`run` done while holding ``out_dir`` (rank 0 holds it; the others follow)."""
    checkpoint = None
    # The checkpoint records its data: a cube changed between an interrupt and --resume is refused.
    data_fingerprint = data.observation.fingerprint() if dist.is_primary else None
    if dist.is_primary:
        # Checked again: another run may have written here since the first check.
        checkpoint_path = check_output_directory(out_dir, request.resume, request.overwrite, config_dict)
        for stale in remove_stale_temporaries(out_dir):
            say(request, f"removed '{stale}', left by an interrupted write")
        checkpoint = outputs.load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
        if request.resume and checkpoint is None:
            say(request, f"no checkpoint in {out_dir}; starting from the beginning")
        if checkpoint is not None:  # a damaged checkpoint is refused before anything is written
            differ = fingerprint_difference(data_fingerprint, checkpoint.get(CHECKPOINT_DATA_KEY)
                                            if isinstance(checkpoint, dict) else None)
            if differ is not None:
                raise HashwfaError(
                    f"cannot resume from '{checkpoint_path}': the data differ from those it was written from "
                    f"({differ}; {data.description}). Fix: restore the data the run started with, or start "
                    "again with --overwrite.")
            try:
                solver.load_state_dict(checkpoint)
            except HashwfaError as exc:
                raise HashwfaError(f"cannot resume from '{checkpoint_path}': {exc}") from None
        if request.overwrite:
            clear_previous_results(out_dir)
        request.log.start(out_dir / outputs.RUN_LOG)
        log_data(request.log, data)
        ranks = f" on {dist.world_size} ranks ({dist.backend})" if dist.enabled else ""
        say(request, f"V{cfg.encoding.version} on {data.description}{ranks}; results go to {out_dir}")
        unit = f" {data.observation.unit}" if data.observation.unit else ""
        say(request, f"intensity scale {data.observation.intensity_scale:.6g}{unit} (the power of two nearest the "
             "median continuum intensity): the fit reads the Stokes cube divided by it; maps are in gauss")
        obs = data.observation
        say(request, f"active wavelengths ({len(obs.active_indices)} of {obs.nw}, data.active_indices): "
             f"{outputs.active_wavelengths_text(obs)} A from the line centre")
        outputs.write_json(out_dir / outputs.CONFIG_JSON, config_dict)
    # The checkpoint holds the global state only: any number of ranks resumes from it.
    checkpoint = dist.broadcast_object(checkpoint)

    if checkpoint is not None:
        if not dist.is_primary:  # rank 0 loaded (and so checked) it above
            solver.load_state_dict(checkpoint)
        say(request, f"resuming at phase {solver.phase_index + 1}, epoch {solver.epoch}")
    result = solver.run(
        on_checkpoint=(lambda state: outputs.save_torch(out_dir / outputs.CHECKPOINT_PT,
                                                        {**state, CHECKPOINT_DATA_KEY: data_fingerprint}))
        if dist.is_primary else None,
        on_epoch_end=on_epoch_end,
    )
    if not dist.is_primary:
        # ---- data-parallel bootstrap members (output.sigmas): this rank trains its shard of each
        # member rank 0 announces (hashwfa.training.bootstrap, "Data parallel"), then leaves.
        if cfg.output.sigmas:
            solver.release_training_data()
            follow_members(data.observation, cfg.solver, dist, say=lambda message: warn(request, message),
                           start=_fit_start(solver), settings=cfg.uncertainty)
        # Rank 0 writes the results; torchrun waits for it. No barrier here: a
        # long write (large maps, pixel-wise WFA) must not time out the others,
        # whose failure would make torchrun end rank 0 in the middle of it.
        return TrainRun(out_dir=out_dir, result=result, metrics={}, rank=dist.rank)

    log_phases(request.log, result)
    # The maps are made: the loss tensors (5 x A float32 per point) are not needed for the outputs.
    solver.release_training_data()
    return_freed_memory()
    return _finish(request, cfg, config_dict, out_dir, data, baselines, solver, result, dist)


def _fit_start(solver: Union[TwoPhaseSolver, IndependentFrames]) -> Optional[FitStart]:
    """The fit a bootstrap member may start from (one joint fit only)."""
    return FitStart.of(solver) if isinstance(solver, TwoPhaseSolver) else None


def _finish(request: Any, cfg: RunConfig, config_dict: Dict[str, Any], out_dir: Path, data: LoadedData,
            baselines: Baselines, solver: Union[TwoPhaseSolver, IndependentFrames], result: Any,
            dist: DistributedContext) -> TrainRun:
    """Rank 0 after the fit: baselines, sigma maps, errors, the files."""
    obs = data.observation
    pixelwise = baselines.pixelwise
    valid = obs.valid.reshape(obs.map_shape)
    # A field that never moved from its start gives maps all the same: an error, not a result.
    untrained = untrained_message(result.history, result.maps.blos, pixelwise.blos, valid, obs.weights,
                                  warm_start=cfg.training.init_from != "none",
                                  settings=describe_settings(cfg.training))
    if untrained is not None:
        raise HashwfaError(untrained)
    uncertainty = run_uncertainty(obs, result.maps, cfg.solver, baselines=baselines,
                                  field_sigmas_too=cfg.output.sigmas, settings=cfg.uncertainty,
                                  progress=not request.quiet, say=lambda message: say(request, message),
                                  scratch_dir=out_dir,  # locked: a killed run's scratch cube is removed as stale
                                  dist=dist,  # the members train on every rank
                                  start=_fit_start(solver))
    if uncertainty.skipped:  # asked for and missing: said even with --quiet
        warn(request, uncertainty.skipped)
    # No data, no map: outside the data's footprint (invalid pixels connected to the image
    # border, e.g. the corners of a derotated field) the field's maps and sigmas are NaN, like
    # the WFA's; invalid pixels enclosed by data stay filled by the field (Observation.footprint).
    outside = ~obs.footprint()
    result.maps = result.maps.blanked(outside)
    if uncertainty.sigmas is not None:
        uncertainty.sigmas = uncertainty.sigmas.blanked(outside)
    # The two classic baselines every run reports next to the field. The regularised
    # one chooses its weights from the noise (the same as the sigma maps'), which some
    # data cannot give (an image under 3 x 3 pixels, no data.noise): then the run's
    # other results are still written, without it.
    try:
        reg: Optional[RegularizedResult] = baselines.regularized
    except HashwfaError as exc:
        reg = None
        warn(request, f"no regularised WFA for these data ({exc})")
    if uncertainty.noise is not None:
        n = uncertainty.noise
        request.log.write("noise (rms over wavelengths) I, Q, U, V = "
                          + ", ".join(f"{v:.3g}" for v in n.per_stokes) + f" ({n.method}){': ' + n.detail if n.detail else ''}")
    metrics: Dict[str, float] = {}
    if data.truth is not None:
        metrics = {
            **map_errors(result.maps, data.truth, valid),
            **{f"wfa_{k}": v for k, v in map_errors(pixelwise, data.truth, valid).items()},
        }
        if reg is not None:
            metrics.update({f"reg_{k}": v for k, v in map_errors(reg.maps, data.truth, valid).items()})
    # The smoothness weights (independent frames: each frame has its own; not recorded).
    penalties = getattr(solver, "penalty_weights", {})
    # The maps' Level-2 header: WCS, dates, observer, line, and a series' time axis.
    level2 = map_header(obs.map_cards, obs.map_shape, wavelength=obs.line.center, times=obs.times)
    products = outputs.RunProducts(
        maps=result.maps,
        wfa=pixelwise,
        regularized=reg,
        sigmas=uncertainty.sigmas,
        wfa_sigmas=uncertainty.wfa_sigmas,
        noise=uncertainty.noise,
        valid=valid,
        truth=data.truth,
        weak_field=_weak_field_map(obs, result.maps, valid),
        times=obs.times,
        map_cards=level2.cards,
        notes=[*obs.notes, *level2.notes],
        tables=level2.tables,
        provenance=outputs.fit_cards(cfg, result, obs, data.description, dist.world_size, penalties),
        config=config_dict,
        history=outputs.history_record(result, metrics, reg, data.description, obs.intensity_scale,
                                       uncertainty.history(), penalties, dist.world_size),
        model=solver.model_bundle(),
    )
    products.write_field_fits(out_dir / outputs.FIELD_FITS)
    outputs.write_json(out_dir / outputs.HISTORY_JSON, products.history)
    outputs.save_torch(out_dir / outputs.MODEL_PT, products.model)
    if cfg.output.quicklook:
        write_quicklook(
            out_dir / outputs.QUICKLOOK_PNG,
            result.maps,
            pixelwise,
            result.history,
            truth=data.truth,
            sigmas=uncertainty.sigmas,
            wfa_sigmas=uncertainty.wfa_sigmas,
            regularized=None if reg is None else reg.maps,
            title=f"hashwfa V{cfg.encoding.version} ({result.backend}, {result.device}) on "
            f"{data.label or data.description}; final loss {result.final_loss:.4g}",
            dpi=cfg.output.dpi,
            times=obs.times,
            header={key: value for key, value, _ in level2.cards},
            frame=cfg.output.frame,
        )
    # The run is complete: the checkpoint is no longer needed (model.pt holds the fields),
    # nor an earlier run's file this one did not replace (a quicklook.png, for --overwrite).
    written = [outputs.FIELD_FITS, outputs.HISTORY_JSON, outputs.CONFIG_JSON, outputs.MODEL_PT, outputs.RUN_LOG]
    remove_unwritten_results(out_dir, written + ([outputs.QUICKLOOK_PNG] if cfg.output.quicklook else []))
    if metrics:
        request.log.write("errors vs truth: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
    request.log.write(f"done: results in {out_dir}")
    return TrainRun(out_dir=out_dir, result=result, metrics=metrics, products=products)
