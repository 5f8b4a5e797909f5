"""``hashwfa-train``: one JSON config in, magnetic-field maps out.

::

    hashwfa-train CONFIG [--set key.path=value ...] [--out DIR]
                  [--device auto|cpu|cuda] [--backend auto|tcnn|torch]
                  [--resume] [--overwrite] [--quiet] [--dist-timeout MINUTES]
    hashwfa-train --keys        # every config key, its default and meaning
    torchrun --nproc_per_node=N -m hashwfa.cli.train CONFIG ...   # data parallel

Writes ``field.fits``, ``history.json``, ``config.json``, ``model.pt`` and
``quicklook.png`` into ``--out`` (default ``runs/<config stem>``); see
:mod:`hashwfa.results`. Exit status 0 on success, 2 on a usage/config/data
error (the message, no traceback), 130 when interrupted (continue with
``--resume``).

Launched by ``torchrun``, every rank fits its shard of the valid points
(:mod:`hashwfa.training.distributed`); rank 0 alone checks and locks the
output directory, reads the checkpoint (and sends it to the others), writes
checkpoints and results; the other ranks are quiet and end after the
evaluation (the last collective), or with ``output.sigmas`` after the
bootstrap members, which they train with rank 0 on their shards
(:func:`hashwfa.training.uncertainty.follow_members`), while torchrun waits for rank 0.
"""

from __future__ import annotations

import argparse
import os
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from hashwfa import results
from hashwfa.config import config_to_dict, describe_keys, load_config, load_data, validate_config
from hashwfa.cli.allocator import keep_freed_memory, return_freed_memory
from hashwfa.atomic import make_directory, remove_stale_temporaries
from hashwfa.errors import HashwfaError, OutputWriteError
from hashwfa.lock import LOCK_NAME, DirectoryLock
from hashwfa.encodings.backend import BACKENDS
from hashwfa.encodings.registry import REGISTRY
from hashwfa.quicklook import write_quicklook
from hashwfa.schema import differing_keys, flatten
from hashwfa.training import IndependentFrames, TwoPhaseSolver
from hashwfa.training.checkpoint import RESUMABLE_CHANGES
from hashwfa.training.device import DEVICES, resolve_device
from hashwfa.training.distributed import DEFAULT_TIMEOUT_MINUTES, SINGLE_PROCESS, DistributedContext, init_distributed
from hashwfa.training.uncertainty import follow_members, run_uncertainty
from hashwfa.wfa.pixelwise import pixel_wfa
from hashwfa.wfa.regularized import RegularizedResult, regularized_wfa

__all__ = ["main", "run", "build_parser", "TrainRun"]

PROG = "hashwfa-train"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``hashwfa-train``."""
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Fit neural-field weak-field-approximation maps (B_los, B_t, azimuth) "
        "to a spectropolarimetric observation, as a JSON config describes.",
        epilog="Example: hashwfa-train configs/v1.json --set training.epochs_per_phase=50",
    )
    p.add_argument("config", nargs="?", help="commented JSON config, e.g. configs/v1.json")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config key (value parsed as JSON, else a string); repeatable",
    )
    p.add_argument("--out", help="output directory (default runs/<config stem>)")
    p.add_argument("--device", choices=DEVICES, help="overrides training.device")
    p.add_argument("--backend", choices=BACKENDS, help="overrides encoding.backend")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in the output directory")
    p.add_argument("--overwrite", action="store_true", help="replace the results in a non-empty output directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars or progress messages")
    p.add_argument("--keys", action="store_true", help="list every config key with default and meaning, then exit")
    p.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT_MINUTES, metavar="MINUTES",
                   help="under torchrun: how long a rank waits for the others in a collective, or for rank 0's "
                   "heartbeat to advance while rank 0 works alone (scan, member preparation), before it stops "
                   f"(default {DEFAULT_TIMEOUT_MINUTES:g})")
    return p


@dataclass
class TrainRun:
    """What :func:`run` did: the output directory, the solver result, errors vs truth."""

    out_dir: Path
    result: Any
    metrics: Dict[str, float]
    rank: int = 0


def _say(args: argparse.Namespace, message: str) -> None:
    if not args.quiet:
        print(message, file=sys.stderr)


def _present_files(out_dir: Path) -> List[str]:
    """The names in ``out_dir`` that a user would call its contents (not our lock file)."""
    if not out_dir.is_dir():
        return []
    return sorted(p.name for p in out_dir.iterdir() if p.name != LOCK_NAME)


def _check_out_dir(args: argparse.Namespace, out_dir: Path, config_dict: Dict[str, Any]) -> Optional[Path]:
    """Check the output directory without changing it.

    Returns the checkpoint to resume from, if any. Raises :class:`HashwfaError`
    when the directory cannot be used as the flags ask. Called once before
    the (slow) data loading, for a quick answer, and again under the lock.
    """
    if args.resume and args.overwrite:
        raise HashwfaError("--resume and --overwrite contradict each other. Fix: pass only one.")
    for parent in (out_dir, *out_dir.parents):
        if parent.exists():
            if not parent.is_dir():
                raise HashwfaError(f"output path '{out_dir}': '{parent}' is a file, not a directory. Fix: choose another --out.")
            break
    present = _present_files(out_dir)
    if not present or args.overwrite:
        return None
    if not args.resume:
        listed = ", ".join(present[:6]) + (" ..." if len(present) > 6 else "")
        raise HashwfaError(
            f"output directory '{out_dir}' is not empty ({listed}). Fix: pass --resume to continue "
            "an interrupted run there, --overwrite to replace its results, or --out DIR for a new one."
        )
    saved_config = out_dir / results.CONFIG_JSON
    if saved_config.exists():
        _check_same_config(saved_config, config_dict)
    checkpoint = out_dir / results.CHECKPOINT_PT
    if checkpoint.exists():
        return checkpoint
    if (out_dir / results.FIELD_FITS).exists():
        raise HashwfaError(
            f"the run in '{out_dir}' is complete (field.fits written, no checkpoint left): nothing to "
            "resume. Fix: use --overwrite to run it again, or --out DIR for a new run."
        )
    return None


def _clear_previous_results(out_dir: Path) -> None:
    """Delete the files an earlier run wrote (never anything else in the directory)."""
    for name in results.OUTPUT_FILES:
        try:
            (out_dir / name).unlink(missing_ok=True)
        except OSError as exc:
            raise OutputWriteError(f"cannot remove '{out_dir / name}' for --overwrite: {exc.strerror or exc}") from exc


def _check_same_config(saved_path: Path, config_dict: Dict[str, Any]) -> None:
    try:
        saved = config_to_dict(validate_config(results.read_json(saved_path), str(saved_path)))
    except (HashwfaError, ValueError) as exc:
        raise HashwfaError(
            f"cannot resume: '{saved_path}' is not a valid config ({exc}). Fix: use --overwrite."
        ) from None

    diff = differing_keys(saved, config_dict, RESUMABLE_CHANGES)
    if diff:
        a, b = flatten(saved), flatten(config_dict)
        details = "; ".join(f"{k}: {a.get(k)!r} then, {b.get(k)!r} now" for k in diff[:5])
        raise HashwfaError(
            f"cannot resume: the config differs from the one the run in '{saved_path.parent}' "
            f"started with ({details}). Fix: resume with the same config and --set options, "
            "or use --overwrite / a new --out."
        )


def run(
    args: argparse.Namespace, *, on_epoch_end: Optional[Callable[[str, int], None]] = None
) -> TrainRun:
    """Do what the parsed command line asks; raises :class:`HashwfaError` on user errors.

    ``on_epoch_end(phase, epoch)`` is passed to the solver (tests use it to
    interrupt a run).
    """
    if args.config is None:
        raise HashwfaError(f"no CONFIG given. Fix: {PROG} configs/v1.json (or {PROG} --keys to list the keys).")
    overrides: List[str] = list(args.overrides)
    if args.device:
        overrides.append(f"training.device={args.device}")
    if args.backend:
        overrides.append(f"encoding.backend={args.backend}")
    cfg = load_config(args.config, overrides)
    config_dict = config_to_dict(cfg)
    out_dir = Path(args.out) if args.out else Path("runs") / Path(args.config).stem

    # Under torchrun: join the other ranks; only rank 0 touches out_dir (and speaks).
    timeout = getattr(args, "dist_timeout", DEFAULT_TIMEOUT_MINUTES)
    dist = init_distributed(resolve_device(cfg.solver.training.device), timeout)
    try:
        return _run_ranked(args, cfg, config_dict, out_dir, on_epoch_end, dist)
    finally:
        dist.close()


def _run_ranked(
    args: argparse.Namespace,
    cfg: Any,
    config_dict: Dict[str, Any],
    out_dir: Path,
    on_epoch_end: Optional[Callable[[str, int], None]],
    dist: DistributedContext,
) -> TrainRun:
    """The part of :func:`run` after joining the other ranks (if any)."""
    if not dist.is_primary:
        args = argparse.Namespace(**{**vars(args), "quiet": True})
    # Everything that can fail is checked before anything in out_dir changes:
    # the flags against its contents, the data, the device, the backend and
    # the model. Only then is the directory locked and (for --overwrite) cleared.
    if dist.is_primary:
        _check_out_dir(args, out_dir, config_dict)
    data = _load_data_ranked(cfg, dist)
    obs = data.observation
    frame = cfg.output.frame
    if frame is not None and obs.is_series and frame >= obs.nt:
        raise HashwfaError(f"output.frame = {frame} but the series has frames 0..{obs.nt - 1}. "
                           f"Fix: --set output.frame=N with N < {obs.nt} (or null for the middle one).")
    if obs.is_series and cfg.training.frames == "independent":
        if dist.enabled:
            raise HashwfaError("training.frames = 'independent' runs in one process. Fix: run it without "
                               "torchrun, or fit the series jointly (training.frames = 'joint').")
        solver: Any = IndependentFrames(obs, cfg.solver, progress=not args.quiet)
    else:
        solver = TwoPhaseSolver(obs, cfg.solver, progress=not args.quiet, dist=dist, noise=data.noise)

    lock = DirectoryLock(make_directory(out_dir)).acquire() if dist.is_primary else None
    try:
        return _run_locked(args, cfg, config_dict, out_dir, data, solver, on_epoch_end, dist)
    finally:
        if lock is not None:
            lock.release()


#: Rank 0's serial work before the first message of a data-parallel run.
SCAN_WORK = "rank 0's reading and scan of the data"


def _load_data_ranked(cfg: Any, dist: DistributedContext) -> Any:
    """The run's data; under torchrun, rank 0 scans the cube and the others read only their shard.

    Rank 0 builds the observation (for a cube on disk: maps the file and
    scans it frame by frame for the valid pixels) and sends the valid-pixel
    mask (packed bits) to the other ranks, which map the same file without
    scanning it: from then on they read only the frames and pixels of their
    shard (:class:`~hashwfa.wfa.loss.WFALoss` with ``rows``). Rank 0's error
    (bad data) reaches the others as one message instead of a timeout. The
    others wait for the scan as long as rank 0 lives, whatever its length
    (:meth:`~hashwfa.training.distributed.DistributedContext.broadcast_after_primary_work`).
    """
    if not dist.enabled:
        return load_data(cfg)
    data, sent = None, None
    if dist.is_primary:
        try:
            data = load_data(cfg)
            sent = ("valid", np.packbits(data.observation.valid), int(data.observation.valid.size))
        except HashwfaError as exc:
            sent = ("error", str(exc), 0)
            dist.broadcast_after_primary_work(sent, SCAN_WORK)
            raise
    # The others wait for rank 0's scan without the collective timeout (rank 0's heartbeat).
    kind, payload, size = dist.broadcast_after_primary_work(sent, SCAN_WORK)
    if dist.is_primary:
        return data
    if kind == "error":
        raise HashwfaError(f"rank 0 could not load the data: {payload}")
    return load_data(cfg, valid=np.unpackbits(payload, count=size).astype(bool))


def _run_locked(
    args: argparse.Namespace,
    cfg: Any,
    config_dict: Dict[str, Any],
    out_dir: Path,
    data: Any,
    solver: Union[TwoPhaseSolver, IndependentFrames],
    on_epoch_end: Optional[Callable[[str, int], None]],
    dist: DistributedContext = SINGLE_PROCESS,
) -> TrainRun:
    """The part of :func:`run` done while holding ``out_dir`` (rank 0 holds it; the others follow)."""
    obs = data.observation
    checkpoint = None
    if dist.is_primary:
        # Checked again: another run may have written here since the first check.
        checkpoint_path = _check_out_dir(args, out_dir, config_dict)
        for stale in remove_stale_temporaries(out_dir):
            _say(args, f"{PROG}: removed '{stale}', left by an interrupted write")
        checkpoint = results.load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
        if args.resume and checkpoint is None:
            _say(args, f"{PROG}: no checkpoint in {out_dir}; starting from the beginning")
        if checkpoint is not None:  # a damaged checkpoint is refused before anything is written
            try:
                solver.load_state_dict(checkpoint)
            except HashwfaError as exc:
                raise HashwfaError(f"cannot resume from '{checkpoint_path}': {exc}") from None
        if args.overwrite:
            _clear_previous_results(out_dir)
        ranks = f" on {dist.world_size} ranks ({dist.backend})" if dist.enabled else ""
        _say(args, f"{PROG}: V{cfg.encoding.version} on {data.description}{ranks}; results go to {out_dir}")
        results.write_json(out_dir / results.CONFIG_JSON, config_dict)
    # The checkpoint holds the global state only: any number of ranks resumes from it.
    checkpoint = dist.broadcast_object(checkpoint)

    if checkpoint is not None:
        if not dist.is_primary:  # rank 0 loaded (and so checked) it above
            solver.load_state_dict(checkpoint)
        _say(args, f"{PROG}: resuming at phase {solver.phase_index + 1}, epoch {solver.epoch}")
    result = solver.run(
        on_checkpoint=(lambda state: results.save_torch(out_dir / results.CHECKPOINT_PT, state))
        if dist.is_primary else None,
        on_epoch_end=on_epoch_end,
    )
    if not dist.is_primary:
        # ---- data-parallel bootstrap members (output.sigmas): this rank trains its shard of each
        # member rank 0 announces (hashwfa.training.uncertainty, "Data parallel"), then leaves.
        if cfg.output.sigmas:
            solver.release_training_data()
            follow_members(obs, cfg.solver, dist, say=lambda message: print(f"{PROG}: warning: {message}",
                                                                             file=sys.stderr))
        # ---- end of the data-parallel members
        # Rank 0 writes the results; torchrun waits for it. No barrier here: a
        # long write (large maps, pixel-wise WFA) must not time out the others,
        # whose failure would make torchrun end rank 0 in the middle of it.
        return TrainRun(out_dir=out_dir, result=result, metrics={}, rank=dist.rank)

    # The maps are made: the loss tensors (5 x A float32 per point) are not needed for the outputs.
    solver.release_training_data()
    return_freed_memory()
    wfa = pixel_wfa(obs, core_cutoff=cfg.physics.core_cutoff, qu_form=cfg.physics.qu_form)
    uncertainty = run_uncertainty(obs, result.maps, cfg.solver, noise=data.noise, field_sigmas_too=cfg.output.sigmas,
                                  settings=cfg.uncertainty, progress=not args.quiet,
                                  say=lambda message: _say(args, f"{PROG}: {message}"),
                                  scratch_dir=out_dir,  # locked: a killed run's scratch cube is removed as stale
                                  dist=dist,  # the members train on every rank
                                  pixelwise=wfa)  # made above: one pass over a lazy cube less
    if uncertainty.skipped:  # asked for and missing: said even with --quiet
        print(f"{PROG}: warning: {uncertainty.skipped}", file=sys.stderr)
    # The two classic baselines every run reports next to the field. The regularised
    # one chooses its weights from the noise (the same as the sigma maps'), which some
    # data cannot give (an image under 3 x 3 pixels, no data.noise): then the run's
    # other results are still written, without it.
    try:
        reg: Optional[RegularizedResult] = regularized_wfa(
            obs, noise=uncertainty.noise, core_cutoff=cfg.physics.core_cutoff, qu_form=cfg.physics.qu_form)
    except HashwfaError as exc:
        reg = None
        print(f"{PROG}: warning: no regularised WFA for these data ({exc})", file=sys.stderr)
    valid = obs.valid.reshape(obs.map_shape)
    metrics: Dict[str, float] = {}
    if data.truth is not None:
        metrics = {
            **results.error_metrics(result.maps, data.truth, valid),
            **{f"wfa_{k}": v for k, v in results.error_metrics(wfa, data.truth, valid).items()},
        }
        if reg is not None:
            metrics.update({f"reg_{k}": v for k, v in results.error_metrics(reg.maps, data.truth, valid).items()})
    enc = cfg.encoding
    # The smoothness weights (independent frames: each frame has its own; not recorded).
    penalties = getattr(solver, "penalty_weights", {})
    provenance = {
        "ENCVER": (enc.version, "hashwfa encoding version V0..V6"),
        "BACKEND": (result.backend, "grid backend used"),
        "DEVICE": (result.device, "torch device used"),
        "SEED": (cfg.training.seed, "training.seed"),
        "FINLOSS": (result.final_loss, "final loss, V+Q+U, seed protocol"),
        "LINE": (obs.line.name, "spectral line"),
        "DERIV": (obs.derivative, "dI/dlambda (V): physics.derivative"),
        "DERIVQU": (obs.derivative_qu, "d2I/dlambda2 (Q, U): physics.derivative_qu"),
        "DATASRC": data.description,  # may be long: no comment
        "NLEVELS": (enc.n_levels, "encoding.n_levels"),
        "MAXRES": (enc.max_resolution, "encoding.max_resolution"),
        "EPOCHS": (cfg.training.epochs_per_phase, "training.epochs_per_phase"),
        "WORLDSZ": (dist.world_size, "processes (torch.distributed ranks) of the fit"),
        **{f"MAXRES{k}": (cfg.solver.field_encoding(p).max_resolution, f"max_resolution of the {p} field")
           for p, k in (("blos", "V"), ("bqbu", "QU"))},
        **{f"PLNRES{k}": (e.plane_resolution or e.max_resolution, f"V6 plane_resolution of the {p} field")
           for p, k in (("blos", "V"), ("bqbu", "QU"))
           for e in (cfg.solver.field_encoding(p),) if REGISTRY[e.version].plane},
        **{f"PEN{k}{c}": (getattr(penalties[p], a), f"regularization {p}: {a}")
           for p, k in (("blos", "V"), ("bqbu", "QU")) if p in penalties
           for c, a in (("G2", "squared_gradient"), ("TV", "total_variation"), ("EPS", "tv_eps"))},
    }
    results.write_field_fits(
        out_dir / results.FIELD_FITS,
        result.maps,
        wfa,
        provenance=provenance,
        config=config_dict,
        valid=valid,
        truth=data.truth,
        sigmas=uncertainty.sigmas,
        wfa_sigmas=uncertainty.wfa_sigmas,
        noise=uncertainty.noise,
        regularized=reg,
        times=obs.times,
        map_cards=obs.map_cards,
        notes=obs.notes,
    )
    results.write_json(
        out_dir / results.HISTORY_JSON,
        {
            "final_loss": result.final_loss,
            "phases": result.history,
            "timings_s": result.timings,
            "errors_vs_truth": metrics or None,
            "regularized_wfa": None if reg is None else {
                "alpha_v": reg.alpha_v, "alpha_qu": reg.alpha_qu, "rule_v": reg.rule_v, "rule_qu": reg.rule_qu,
                "noise_v": reg.noise_v, "noise_qu": reg.noise_qu, "noise_estimated": reg.noise_estimated,
                "method": reg.method},
            "device": result.device,
            "backend": result.backend,
            "data": data.description,
            "uncertainty": uncertainty.history(),
            "regularization": {p: w.as_dict() for p, w in penalties.items()},
            "world_size": dist.world_size,
        },
    )
    results.save_torch(out_dir / results.MODEL_PT, solver.model_bundle())
    if cfg.output.quicklook:
        write_quicklook(
            out_dir / results.QUICKLOOK_PNG,
            result.maps,
            wfa,
            result.history,
            truth=data.truth,
            sigmas=uncertainty.sigmas,
            wfa_sigmas=uncertainty.wfa_sigmas,
            regularized=None if reg is None else reg.maps,
            title=f"hashwfa V{enc.version} ({result.backend}, {result.device}) on {data.description}; "
            f"final loss {result.final_loss:.4g}",
            dpi=cfg.output.dpi,
            times=obs.times,
            frame=cfg.output.frame,
        )
    # The run is complete: the checkpoint is no longer needed (model.pt holds the fields).
    (out_dir / results.CHECKPOINT_PT).unlink(missing_ok=True)
    return TrainRun(out_dir=out_dir, result=result, metrics=metrics)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``hashwfa-train``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    keep_freed_memory()
    if args.keys:
        print(describe_keys())
        return 0
    try:
        done = run(args)
    except HashwfaError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # Reading the config or data, or writing results: one line, not a traceback.
        where = f" '{exc.filename}'" if getattr(exc, "filename", None) else ""
        print(f"{PROG}: error:{where} {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted; continue with the same command and --resume", file=sys.stderr)
        return 130
    if done.rank != 0:  # rank 0 reports
        # This rank's part is done and saved by rank 0's collectives; leave at
        # once, skipping the interpreter's teardown of the still-connected gloo
        # group, which can abort the process while rank 0 writes.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    res = done.result
    t = res.timings
    print(f"results: {done.out_dir}/ (field.fits, history.json, config.json, model.pt"
          + (", quicklook.png)" if (done.out_dir / "quicklook.png").exists() else ")"))
    print(
        f"final loss (V, Q, U): {res.final_loss:.6g}; time {t['blos']:.1f} s (B_los) + "
        f"{t['bqbu']:.1f} s (B_Q, B_U) on {res.device} ({res.backend})"
    )
    if done.metrics:
        m = done.metrics

        def errors(prefix: str) -> str:
            return (f"{m[prefix + 'blos_rmse']:.3g} G / {m[prefix + 'bt_rmse']:.3g} G / "
                    f"{math.degrees(m[prefix + 'azimuth_mae']):.3g} deg")

        baselines = f"pixel-wise WFA {errors('wfa_')}"
        if "reg_blos_rmse" in m:
            baselines += f"; regularised WFA {errors('reg_')}"
        print(f"errors vs truth (B_los rms / B_t rms / azimuth mean abs): field {errors('')}; {baselines}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
