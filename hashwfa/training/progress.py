"""Progress of a phase: tqdm bars on a terminal, a plain timestamped line every few epochs otherwise.

A bar redraws itself with carriage returns; written to a file or a pipe
(a batch job's log) every redraw stays, tens of kB per run. Off a terminal
a line is printed every :data:`PLAIN_EVERY` epochs and at the end of the
phase instead: the reference protocol (2 x 200 epochs) writes 18 lines.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

from tqdm import tqdm

__all__ = ["PLAIN_EVERY", "PlainProgress", "phase_progress"]

#: Epochs between two plain progress lines (off a terminal).
PLAIN_EVERY = 25


class PlainProgress:
    """tqdm's ``update`` / ``set_postfix`` / ``close`` as a plain line every ``every`` epochs on ``stream``.

    A line: ``2025-01-31 12:00:00 phase 1/2 B_los: epoch 25/200, loss=1.234e-03, lr=5.0e-03``.
    """

    def __init__(self, total: int, initial: int, desc: str, every: int = PLAIN_EVERY,
                 stream: Optional[Any] = None) -> None:
        self.total, self.n, self.desc, self.every = total, initial, desc, every
        self.stream = stream
        self._postfix = ""
        self._printed = initial

    def update(self, n: int) -> None:
        """Count ``n`` more epochs (the line is printed by :meth:`set_postfix`, which follows)."""
        self.n += n

    def set_postfix(self, **values: Any) -> None:
        """The latest values; prints a line when an ``every`` boundary was passed or the phase is done."""
        self._postfix = ", ".join(f"{k}={v}" for k, v in values.items())
        if self.n // self.every > self._printed // self.every or (self.n >= self.total > self._printed):
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            print(f"{stamp} {self.desc}: epoch {self.n}/{self.total}, {self._postfix}",
                  file=self.stream or sys.stderr, flush=True)
            self._printed = self.n

    def close(self) -> None:
        """Nothing to tidy (every line is complete)."""


def phase_progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar when stderr is a terminal, else :class:`PlainProgress`; disabled: a silent bar."""
    if enabled and not _stderr_is_terminal():
        return PlainProgress(total, initial, desc)
    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, leave=True)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed stream
        return False
