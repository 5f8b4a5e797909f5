"""Atomic file writes: a result file is either complete or absent.

Everything hashwfa writes (FITS maps, JSON histories, model checkpoints,
PNG quick-looks) goes through :func:`atomic_path`, so an interrupted run
never leaves a half-written file that looks like a result.

What is promised, and how:

- A process killed at any moment (a signal, a full disk, an exception)
  leaves at the final name either the old file or the complete new one: the
  new one is written under a temporary name in the same directory and
  renamed onto the final name (:func:`os.replace`, atomic on POSIX).
- After a power loss or an operating-system crash the same holds for every
  file whose :func:`atomic_path` block had returned, where the file system
  honours ``fsync``: the file's data are flushed (``fsync``) before the
  rename, and the directory (the rename itself) after it. Where a file
  system or OS cannot ``fsync`` a directory (Windows; some network file
  systems) the rename may be lost: then the old file is found, never a
  partial one.
- Nothing is written through a symbolic link: the temporary is created
  with ``O_CREAT | O_EXCL | O_NOFOLLOW`` (a planted link or file at its name
  is an error, not a target), and the rename replaces a link at the final
  name by the file, never the file the link points to.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Iterator, List, Union

from hashwfa.errors import OutputWriteError

__all__ = ["atomic_path", "temporary_path", "remove_stale_temporaries", "make_directory", "write_fix", "fsync_directory"]

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


def write_fix(exc: OSError) -> str:
    """The fix sentence ("Fix: ...") for an OS error met while writing into a directory."""
    code = getattr(exc, "errno", None)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return "Fix: free disk space there (or choose another output directory)."
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "Fix: make the directory writable by you (or choose another output directory)."
    if code in (errno.ELOOP, errno.EEXIST, errno.EISDIR, errno.ENOTDIR):
        return "Fix: move that entry out of the way (or choose another output directory)."
    return "Fix: check the disk and the directory (or choose another output directory)."


def make_directory(path: Union[str, Path]) -> Path:
    """Create ``path`` and its parents; an OS failure becomes one :class:`OutputWriteError`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if path.is_symlink() and not path.exists():
            raise OutputWriteError(
                f"cannot create the directory '{path}': it is a symbolic link to '{os.readlink(path)}', "
                "which does not exist. Fix: create that directory, or remove the link.") from exc
        raise OutputWriteError(f"cannot create the directory '{path}': {exc.strerror or exc}. "
                               f"{write_fix(exc)}") from exc
    return path


def fsync_directory(directory: Union[str, Path]) -> None:
    """Flush ``directory``'s entries (a rename into it) to the disk, where the OS can.

    Opening a directory or ``fsync`` on it is not possible everywhere
    (Windows; some file systems answer EINVAL): then this does nothing.
    """
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        fd = os.open(directory, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF, errno.EACCES):
            raise
    finally:
        os.close(fd)


def _create_exclusively(path: Path) -> None:
    """Create the empty regular file ``path``; a link or anything else already there is an error."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    os.close(os.open(path, flags, 0o666))  # 0o666 & ~umask: the usual permissions


def _fsync_regular_file(path: Path) -> None:
    """``fsync`` the regular file ``path`` (not through a link); raise OSError if it is anything else."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EEXIST, "the temporary is no longer a regular file", str(path))
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The temporary is created here, empty, with ``O_CREAT | O_EXCL |
    O_NOFOLLOW`` (so the writer overwrites a regular file of ours, never a
    planted link); the writer truncates and fills it. On success its data
    are ``fsync``-ed, it is renamed onto ``path`` (:func:`os.replace`: an
    atomic rename in the same directory, which replaces a link at ``path``
    itself, not its target) and the directory is ``fsync``-ed. On an
    exception it is removed and ``path`` is untouched. See the module
    docstring for what survives a power loss.

    Raises:
        OutputWriteError: an OS error while creating, writing or renaming,
            naming ``path`` and the fix.
    """
    path = Path(path)
    make_directory(path.parent)
    tmp = temporary_path(path.parent, path.name)
    try:
        _create_exclusively(tmp)
    except OSError as exc:
        raise OutputWriteError(f"cannot write '{path}': cannot create its temporary '{tmp.name}' "
                               f"({exc.strerror or exc}). {write_fix(exc)}") from exc
    try:
        yield tmp
        _fsync_regular_file(tmp)
        os.replace(tmp, path)
        fsync_directory(path.parent)
    except BaseException as exc:
        # Any OSError here (read-only file system, gone directory) must not
        # hide the error that brought us here.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputWriteError):
            raise OutputWriteError(f"cannot write '{path}': {exc.strerror or exc}. {write_fix(exc)}") from exc
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
