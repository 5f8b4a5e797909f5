"""Atomic file writes: a result file is either complete or absent.

Everything hashwfa writes (FITS maps, JSON histories, model checkpoints,
PNG quick-looks) goes through :func:`atomic_path`, so an interrupted run
never leaves a half-written file that looks like a result.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from pathlib import Path
from typing import Iterator, List, Union

from hashwfa.errors import OutputWriteError

__all__ = ["atomic_path", "temporary_path", "remove_stale_temporaries", "make_directory"]

# ".<name>.<pid>.<8 hex>.tmp": the temporaries atomic_path (and temporary_path's callers) create.
_TEMPORARY = re.compile(r"^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$")


def temporary_path(directory: Union[str, Path], name: str) -> Path:
    """A fresh path ``directory/.<name>.<pid>.<8 hex>.tmp`` for a temporary file of this process.

    The caller creates and removes the file; one a killed process leaves
    behind is removed by the next holder of ``directory``
    (:func:`remove_stale_temporaries`). Used by :func:`atomic_path` and for
    scratch files (a bootstrap member's redrawn cube).
    """
    return Path(directory) / f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"


def make_directory(path: Union[str, Path]) -> Path:
    """Create ``path`` and its parents; an OS failure becomes one :class:`OutputWriteError`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputWriteError(f"cannot create the directory '{path}': {exc.strerror or exc}") from exc
    return path


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The temporary file lives in the same directory, so :func:`os.replace` is
    an atomic rename; on an exception it is removed and ``path`` is untouched.
    """
    path = Path(path)
    make_directory(path.parent)
    # A fresh name that the writer creates itself, so the file gets the
    # usual permissions (mkstemp would make it private to the owner).
    tmp = temporary_path(path.parent, path.name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as exc:
        # Any OSError here (read-only file system, gone directory) must not
        # hide the error that brought us here.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputWriteError):
            raise OutputWriteError(f"cannot write '{path}': {exc.strerror or exc}") from exc
        raise


def remove_stale_temporaries(directory: Union[str, Path]) -> List[Path]:
    """Remove the temporaries that other processes' :func:`atomic_path` left in ``directory``.

    A process killed while writing (SIGKILL, power loss) cannot clean up.
    Call this only while holding the directory (see :mod:`hashwfa.host.lock`):
    then no other live writer exists and every temporary not of this process
    is stale. Returns the removed paths.
    """
    removed = []
    directory = Path(directory)
    if not directory.is_dir():
        return removed
    for entry in directory.iterdir():
        match = _TEMPORARY.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry)
    return removed
