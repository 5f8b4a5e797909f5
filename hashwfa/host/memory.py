"""Host memory: how much is available, and refusing a job that clearly cannot fit.

Used before large allocations (a synthetic cube, the training arrays) so
that a size typo is one message with the numbers instead of a
``MemoryError`` traceback, or the machine swapping. The estimates passed in
are lower bounds of what certainly coexists, so a refusal is never a false
alarm; a job that passes may still need more.
"""

from __future__ import annotations

import os
from typing import Optional

from hashwfa.errors import HashwfaError

__all__ = ["available_memory", "check_fits_in_memory", "format_bytes"]


def available_memory() -> Optional[int]:
    """Bytes of host memory available to new allocations, or None when unknown.

    ``psutil`` when installed; else ``MemAvailable`` of ``/proc/meminfo``
    (Linux: free memory plus reclaimable caches); else free pages from
    :func:`os.sysconf`.
    """
    try:
        import psutil  # optional: not a dependency

        return int(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``n`` bytes as a short human figure, e.g. ``"22.2 GB"`` (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000.0
    return f"{n:.3g} TB"  # pragma: no cover


def check_fits_in_memory(needed: int, what: str, fix: str, available: Optional[int] = None) -> None:
    """Raise :class:`HashwfaError` when ``needed`` bytes exceed the available memory.

    Args:
        needed: a lower bound of the bytes the job allocates at once.
        what: the job, for the message (e.g. "the synthetic plage 100000 x 178").
        fix: what the user can change.
        available: bytes available (default :func:`available_memory`); when
            unknown nothing is refused.
    """
    if available is None:
        available = available_memory()
    if available is not None and needed > available:
        raise HashwfaError(
            f"{what} needs at least {format_bytes(needed)} of memory, but only {format_bytes(available)} "
            f"is available. Fix: {fix}"
        )
