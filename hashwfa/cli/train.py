"""``hashwfa-train``: one JSON config in, magnetic-field maps out.

::

    hashwfa-train CONFIG [--set key.path=value ...] [--out DIR]
                  [--device auto|cpu|cuda] [--backend auto|tcnn|torch]
                  [--resume] [--overwrite] [--quiet]
    hashwfa-train --keys        # every config key, its default and meaning

Writes ``field.fits``, ``history.json``, ``config.json``, ``model.pt`` and
``quicklook.png`` into ``--out`` (default ``runs/<config stem>``); see
:mod:`hashwfa.results`. Exit status 0 on success, 2 on a usage/config/data
error (the message, no traceback), 130 when interrupted (continue with
``--resume``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from hashwfa import results
from hashwfa.config import config_to_dict, describe_keys, load_config, load_data, validate_config
from hashwfa.cli.allocator import keep_freed_memory
from hashwfa.atomic import make_directory, remove_stale_temporaries
from hashwfa.errors import HashwfaError, OutputWriteError
from hashwfa.lock import LOCK_NAME, DirectoryLock
from hashwfa.encodings.backend import BACKENDS
from hashwfa.quicklook import write_quicklook
from hashwfa.schema import differing_keys, flatten
from hashwfa.training import IndependentFrames, TwoPhaseSolver
from hashwfa.training.checkpoint import RESUMABLE_CHANGES
from hashwfa.training.device import DEVICES
from hashwfa.wfa.pixelwise import pixel_wfa

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
    return p


@dataclass
class TrainRun:
    """What :func:`run` did: the output directory, the solver result, errors vs truth."""

    out_dir: Path
    result: Any
    metrics: Dict[str, float]


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

    # Everything that can fail is checked before anything in out_dir changes:
    # the flags against its contents, the data, the device, the backend and
    # the model. Only then is the directory locked and (for --overwrite) cleared.
    _check_out_dir(args, out_dir, config_dict)
    data = load_data(cfg)
    obs = data.observation
    frame = cfg.output.frame
    if frame is not None and obs.is_series and frame >= obs.nt:
        raise HashwfaError(f"output.frame = {frame} but the series has frames 0..{obs.nt - 1}. "
                           f"Fix: --set output.frame=N with N < {obs.nt} (or null for the middle one).")
    if obs.is_series and cfg.training.frames == "independent":
        solver: Any = IndependentFrames(obs, cfg.solver, progress=not args.quiet)
    else:
        solver = TwoPhaseSolver(obs, cfg.solver, progress=not args.quiet)

    lock = DirectoryLock(make_directory(out_dir)).acquire()
    try:
        return _run_locked(args, cfg, config_dict, out_dir, data, solver, on_epoch_end)
    finally:
        lock.release()


def _run_locked(
    args: argparse.Namespace,
    cfg: Any,
    config_dict: Dict[str, Any],
    out_dir: Path,
    data: Any,
    solver: Union[TwoPhaseSolver, IndependentFrames],
    on_epoch_end: Optional[Callable[[str, int], None]],
) -> TrainRun:
    """The part of :func:`run` done while holding ``out_dir``."""
    obs = data.observation
    # Checked again: another run may have written here since the first check.
    checkpoint_path = _check_out_dir(args, out_dir, config_dict)
    for stale in remove_stale_temporaries(out_dir):
        _say(args, f"{PROG}: removed '{stale}', left by an interrupted write")
    checkpoint = results.load_checkpoint(checkpoint_path) if checkpoint_path is not None else None
    if args.resume and checkpoint is None:
        _say(args, f"{PROG}: no checkpoint in {out_dir}; starting from the beginning")
    if args.overwrite:
        _clear_previous_results(out_dir)
    _say(args, f"{PROG}: V{cfg.encoding.version} on {data.description}; results go to {out_dir}")
    results.write_json(out_dir / results.CONFIG_JSON, config_dict)

    if checkpoint is not None:
        solver.load_state_dict(checkpoint)
        _say(args, f"{PROG}: resuming at phase {solver.phase_index + 1}, epoch {solver.epoch}")
    result = solver.run(
        on_checkpoint=lambda state: results.save_torch(out_dir / results.CHECKPOINT_PT, state),
        on_epoch_end=on_epoch_end,
    )

    wfa = pixel_wfa(obs, core_cutoff=cfg.physics.core_cutoff, qu_form=cfg.physics.qu_form)
    valid = obs.valid.reshape(obs.map_shape)
    metrics: Dict[str, float] = {}
    if data.truth is not None:
        metrics = {
            **results.error_metrics(result.maps, data.truth, valid),
            **{f"wfa_{k}": v for k, v in results.error_metrics(wfa, data.truth, valid).items()},
        }
    enc = cfg.encoding
    provenance = {
        "ENCVER": (enc.version, "hashwfa encoding version V0..V6"),
        "BACKEND": (result.backend, "grid backend used"),
        "DEVICE": (result.device, "torch device used"),
        "SEED": (cfg.training.seed, "training.seed"),
        "FINLOSS": (result.final_loss, "final loss, V+Q+U, seed protocol"),
        "LINE": (cfg.line, "spectral line"),
        "DATASRC": data.description,  # may be long: no comment
        "NLEVELS": (enc.n_levels, "encoding.n_levels"),
        "MAXRES": (enc.max_resolution, "encoding.max_resolution"),
        "EPOCHS": (cfg.training.epochs_per_phase, "training.epochs_per_phase"),
    }
    results.write_field_fits(
        out_dir / results.FIELD_FITS,
        result.maps,
        wfa,
        provenance=provenance,
        config=config_dict,
        valid=valid,
        truth=data.truth,
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
            "device": result.device,
            "backend": result.backend,
            "data": data.description,
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
        print(
            f"B_los rms error vs truth: field {m['blos_rmse']:.3g} G, pixel-wise WFA {m['wfa_blos_rmse']:.3g} G"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
