"""The exception types for errors a user can cause or fix (config, data, backend, disk), and their hints."""

import difflib
import math
from typing import Any, Optional, Sequence

__all__ = ["HashwfaError", "OutputWriteError", "closest_name", "did_you_mean", "non_negative"]


class HashwfaError(ValueError):
    """A problem the user can fix: a bad config key, a malformed FITS file, a
    missing backend. The message names the file, key or array and the fix.

    It subclasses :class:`ValueError` so generic handlers keep working.
    """


class OutputWriteError(HashwfaError, OSError):
    """A result file could not be written (full disk, read-only or missing
    directory, a file where a directory should be). The message names the
    path; whatever was written before stays valid (writes are atomic).
    """


def closest_name(name: str, candidates: Sequence[str]) -> Optional[str]:
    """The candidate most like ``name`` (for "did you mean" hints), or None when none is close."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(name: str, candidates: Sequence[str]) -> str:
    """``" Did you mean 'x'?"`` with the closest candidate, or ``""``: a message's tail."""
    guess = closest_name(name, candidates)
    return f" Did you mean {guess!r}?" if guess is not None else ""


def non_negative(value: Any) -> Optional[float]:
    """``float(value)`` when that is a finite number >= 0, else None (the caller raises its own message)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None
