"""The output directory of a run: what may be done with it (a new run, ``--resume``,
``--overwrite``) given what it holds, checked before anything in it changes."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hashwfa.config.run_config import config_to_dict, validate_config
from hashwfa.errors import HashwfaError, OutputWriteError
from hashwfa.host.atomic import write_fix
from hashwfa.host.lock import LOCK_NAME
from hashwfa.run import outputs
from hashwfa.schema import differing_keys, flatten
from hashwfa.training.checkpoint import RESUMABLE_CHANGES

__all__ = ["check_output_directory", "clear_previous_results", "remove_unwritten_results", "present_files"]


def present_files(out_dir: Path) -> List[str]:
    """The names in ``out_dir`` that a user would call its contents (not our lock file)."""
    if not out_dir.is_dir():
        return []
    return sorted(p.name for p in out_dir.iterdir() if p.name != LOCK_NAME)


def check_output_directory(out_dir: Path, resume: bool, overwrite: bool,
                           config_dict: Dict[str, Any]) -> Optional[Path]:
    """Check the output directory without changing it.

    Returns the checkpoint to resume from, if any. Raises :class:`HashwfaError`
    when the directory cannot be used as the flags ask. Called once before
    the (slow) data loading, for a quick answer, and again under the lock.
    """
    if resume and overwrite:
        raise HashwfaError("--resume and --overwrite contradict each other. Fix: pass only one.")
    for parent in (out_dir, *out_dir.parents):
        if parent.is_symlink() and not parent.exists():
            raise HashwfaError(f"output path '{out_dir}': '{parent}' is a symbolic link to a missing "
                               "directory. Fix: create its target, remove the link, or choose another --out.")
        if parent.exists():
            if not parent.is_dir():
                raise HashwfaError(f"output path '{out_dir}': '{parent}' is a file, not a directory. Fix: choose another --out.")
            break
    present = present_files(out_dir)
    if not present or overwrite:
        return None
    if not resume:
        listed = ", ".join(present[:6]) + (" ..." if len(present) > 6 else "")
        raise HashwfaError(
            f"output directory '{out_dir}' is not empty ({listed}). Fix: pass --resume to continue "
            "an interrupted run there, --overwrite to replace its results, or --out DIR for a new one."
        )
    saved_config = out_dir / outputs.CONFIG_JSON
    if saved_config.exists():
        _check_same_config(saved_config, config_dict)
    checkpoint = out_dir / outputs.CHECKPOINT_PT
    if checkpoint.exists():
        return checkpoint
    if (out_dir / outputs.FIELD_FITS).exists():
        raise HashwfaError(
            f"the run in '{out_dir}' is complete (field.fits written, no checkpoint left): nothing to "
            "resume. Fix: use --overwrite to run it again, or --out DIR for a new run."
        )
    return None


def clear_previous_results(out_dir: Path) -> None:
    """For ``--overwrite``, before the fit: delete the earlier run's checkpoint, and nothing else.

    The new run must not resume from it. The earlier run's results stay
    until the new run's atomic writes replace them, so a run that fails (a
    full disk, a signal) leaves them in place; :func:`remove_unwritten_results`
    deletes, at the end, those the new run does not write.
    """
    _remove(out_dir / outputs.CHECKPOINT_PT, "for --overwrite")


def remove_unwritten_results(out_dir: Path, written: Sequence[str]) -> None:
    """After a finished run: delete the result files of an earlier run (``--overwrite``) that this
    run did not write (``written``: names in ``out_dir``), so that none is taken for this run's."""
    for name in outputs.OUTPUT_FILES:
        if name not in written:
            _remove(out_dir / name, "(left by an earlier run)")


def _remove(path: Path, why: str) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot remove '{path}' {why}: {exc.strerror or exc}. {write_fix(exc)}") from exc


def _check_same_config(saved_path: Path, config_dict: Dict[str, Any]) -> None:
    try:
        saved = config_to_dict(validate_config(outputs.read_json(saved_path), str(saved_path)))
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
