"""glibc allocator settings for the command-line tools' long training loops.

A training step allocates and frees the same few 5-10 MB tensors (encodings,
activations, lookups) hundreds of times. With glibc's defaults, memory freed
at the top of the heap is handed back to the kernel (trimmed) and faulted in
again on the next step, so a long run spends much of its time in the kernel
and its steps slow down run after run (the profile is in BENCHMARKS.md).
Keeping freed memory in the process removes that. This is a process-wide choice, so only the
command-line entry points make it; importing :mod:`hashwfa` changes nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any, Optional

# mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Largest value glibc accepts for the mmap threshold on 64-bit (HEAP_MAX_SIZE / 2):
# blocks below it come from the heap, which can then be reused step after step.
_MMAP_THRESHOLD = 32 * 1024 * 1024
_TRIM_THRESHOLD = 1024 * 1024 * 1024


def _libc_function(symbol: str) -> Optional[Any]:
    """The C library's function ``symbol`` on Linux, or None (another system, or a libc without it)."""
    if not sys.platform.startswith("linux"):
        return None
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return getattr(ctypes.CDLL(name), symbol)
    except (OSError, AttributeError):  # musl and others have no mallopt / malloc_trim
        return None


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse; True if it accepted (Linux/glibc only)."""
    mallopt = _libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))


def return_freed_memory() -> bool:
    """Hand the memory freed so far back to the kernel (glibc ``malloc_trim``); True if it did.

    For the end of training, before the outputs: :func:`keep_freed_memory`
    keeps up to 1 GB of freed heap for the training steps' reuse, and a
    data-parallel rank's steps (whose batches vary in size) leave it
    fragmented; without this, the outputs' memory comes on top of it.
    """
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return bool(trim(0))
