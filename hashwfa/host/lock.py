"""An exclusive lock on a run's output directory.

Two ``hashwfa-train`` processes writing into one ``--out`` would mix their
files (the config of one, the maps of the other). :class:`DirectoryLock`
lets exactly one process own a directory at a time. It is an advisory
``flock`` on the file ``.hashwfa.lock`` inside the directory, so the kernel
releases it when its process dies, however it dies (a stale lock from a
killed run never blocks the next one); the file records the owner's process
id and host for the message the next process shows. The lock file is
opened without following a symbolic link and must be a regular file: a
link, directory or FIFO planted under its name is refused, never written
through.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import time
from pathlib import Path
from types import TracebackType
from typing import Optional, Type, Union

from hashwfa.errors import HashwfaError
from hashwfa.host.atomic import make_directory, write_fix

try:  # POSIX; where there is no flock the lock degrades to "no lock" (documented below)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["DirectoryLock", "LOCK_NAME", "DirectoryBusyError"]

LOCK_NAME = ".hashwfa.lock"


class DirectoryBusyError(HashwfaError):
    """Another live process holds the output directory."""


class DirectoryLock:
    """Hold ``directory`` exclusively for this process (a context manager).

    ``acquire`` creates the directory if needed and raises
    :class:`DirectoryBusyError` naming the holder when another live process
    holds it. On platforms without ``fcntl.flock`` (Windows) it does
    nothing: concurrent runs there are the user's responsibility.
    """

    def __init__(self, directory: Union[str, Path]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fd: Optional[int] = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> "DirectoryLock":
        if self._fd is not None or fcntl is None:
            return self
        make_directory(self.directory)
        while True:
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise
                raise DirectoryBusyError(
                    f"output directory '{self.directory}' is in use by another hashwfa run "
                    f"({self._describe_holder()}). Fix: wait for it to finish, or choose another --out."
                ) from None
            # The previous holder may have removed the file between our open and
            # our flock; then we hold a lock on a deleted file. Check and retry.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def _open(self) -> int:
        """Open (create) the lock file: a regular file, never through a link; one-line errors."""
        # O_NONBLOCK: opening a FIFO planted there must not wait for a writer.
        flags = (os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
                 | getattr(os, "O_CLOEXEC", 0))
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            kind = _kind_of(self.path)
            if kind is not None:
                raise HashwfaError(self._not_a_file(kind)) from None
            raise HashwfaError(f"cannot create the lock file '{self.path}': {exc.strerror or exc}. "
                               f"{write_fix(exc)}") from None
        kind = _kind_of_mode(os.fstat(fd).st_mode)
        if kind is not None:
            os.close(fd)
            raise HashwfaError(self._not_a_file(kind))
        return fd

    def _not_a_file(self, kind: str) -> str:
        return (f"the lock file '{self.path}' is {kind}, not a regular file; hashwfa does not write through it. "
                f"Fix: remove '{self.path}' (or choose another output directory).")

    def release(self) -> None:
        """Give the lock up and remove the lock file (a no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # Unlink while still holding the lock, so a waiter that opened the
            # old file notices (see acquire) instead of sharing it.
            try:
                os.unlink(self.path)
            except OSError:
                pass
        finally:
            os.close(fd)

    def _describe_holder(self) -> str:
        try:
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
            try:
                regular = _kind_of_mode(os.fstat(fd).st_mode) is None
                text = os.read(fd, 4096).decode(errors="replace").strip() if regular else ""
            finally:
                os.close(fd)
        except OSError:
            text = ""
        return text or "holder unknown"

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()


def _kind_of_mode(mode: int) -> Optional[str]:
    """What a file of this ``st_mode`` is, in words, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    for test, words in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                        (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                        (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return words
    return "not a regular file"


def _kind_of(path: Path) -> Optional[str]:
    """:func:`_kind_of_mode` of ``path`` itself (a link is not followed); None when absent or regular."""
    try:
        return _kind_of_mode(os.lstat(path).st_mode)
    except OSError:
        return None
