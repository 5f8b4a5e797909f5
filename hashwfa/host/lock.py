"""An exclusive lock on a run's output directory.

Two ``hashwfa-train`` processes writing into one ``--out`` would mix their
files (the config of one, the maps of the other). :class:`DirectoryLock`
lets exactly one process own a directory at a time. It is an advisory
``flock`` on the file ``.hashwfa.lock`` inside the directory, so the kernel
releases it when its process dies, however it dies (a stale lock from a
killed run never blocks the next one); the file records the owner's process
id and host for the message the next process shows.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Optional, Type, Union

from hashwfa.errors import HashwfaError

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
        self.directory.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
            text = self.path.read_text().strip()
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
