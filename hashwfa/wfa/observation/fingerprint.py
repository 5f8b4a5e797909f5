"""A cheap identity of a cube's data, so a run can tell that its data are still those it started with
(``--resume``) and that every rank of a data-parallel run reads the same."""

from __future__ import annotations

import hashlib
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np

from hashwfa.wfa.observation.fits_files import forget_pages

__all__ = ["FINGERPRINT_PARTS", "data_fingerprint", "fingerprint_difference", "file_state"]


def file_state(path: str) -> Optional[Tuple[int, int]]:
    """``(size in bytes, modification time in ns)`` of ``path``, None when it is gone."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


#: What each entry of :func:`data_fingerprint` says, for messages.
FINGERPRINT_PARTS = {"shape": "the cube's shape", "header": "the headers (wavelengths, line, times, WCS, mask)",
                     "sample": "the values"}


def fingerprint_difference(ours: Any, theirs: Any) -> Optional[str]:
    """None when two :func:`data_fingerprint` are equal, else which part differs (``"the values"``)."""
    if not isinstance(theirs, dict):
        return "no fingerprint of the data was recorded"
    for key, what in FINGERPRINT_PARTS.items():
        if ours.get(key) != theirs.get(key):
            return what + (f" ({theirs.get(key)} vs {ours.get(key)})" if key == "shape" else "")
    return None


def data_fingerprint(stokes: np.ndarray, wavelengths: np.ndarray, mask: np.ndarray, times: Optional[np.ndarray],
                     header_items: Sequence[Any], lazy: bool) -> Dict[str, str]:
    """A cheap identity of the data: equal for the same cube, different for another one, read in a few frames' time.

    Args:
        stokes: the cube, ``(ny, nx, 4, nw)`` or ``(nt, ny, nx, 4, nw)`` (mapped or in memory).
        wavelengths, mask, times: what the files gave besides the values.
        header_items: further header facts (the line, the unit, the map cards), compared by ``repr``.
        lazy: the cube is mapped from a file (its pages are let go after each frame).

    Returns:
        ``{"shape", "header", "sample"}``: the cube's shape (not its dtype:
        the same values mapped or read into float64 are the same data); a
        SHA-256 of what the headers gave; a SHA-256 of a sample of the values:
        full rows ``(nx, 4, nw)`` at 8 fixed rows of up to 8 fixed frames (the
        first, the last and evenly spaced between), read as float64. Two cubes
        of the same shape that differ only outside the sample share a
        fingerprint; a cube rewritten with other data (another scan, a changed
        sign) almost surely does not.
    """
    series = stokes.ndim == 5
    nt = stokes.shape[0] if series else 1
    ny, nx = stokes.shape[-4], stokes.shape[-3]
    header = hashlib.sha256()
    for part in (wavelengths, mask, np.zeros(0) if times is None else times):
        header.update(np.ascontiguousarray(part).tobytes())
    header.update(repr(tuple(header_items)).encode())
    sample = hashlib.sha256()
    frames = np.unique(np.linspace(0, nt - 1, min(nt, 8)).round().astype(int))
    rows = np.unique(np.linspace(0, ny - 1, min(ny, 8)).round().astype(int))
    ys, xs = np.repeat(rows, nx), np.tile(np.arange(nx), rows.size)  # those rows' pixels
    for t in frames:
        view = stokes[t] if series else stokes
        sample.update(np.ascontiguousarray(view[ys, xs], dtype=np.float64).tobytes())
        if lazy:
            forget_pages(view)
    return {"shape": str(tuple(stokes.shape)), "header": header.hexdigest()[:16],
            "sample": sample.hexdigest()[:16]}
