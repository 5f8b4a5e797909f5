"""Wavelengths as the package wants them: Angstrom relative to the line centre, whatever a file gave."""

from __future__ import annotations

import warnings
from typing import Tuple

import numpy as np

from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.lines import SpectralLine

__all__ = ["MAX_OFFSET", "relative_wavelengths"]

#: Largest |lambda - lambda0| [A] we accept as an offset from the line centre;
#: wavelengths within this distance of the centre are taken as absolute.
MAX_OFFSET = 100.0


def relative_wavelengths(
    wavelengths: np.ndarray, line: SpectralLine, source: str
) -> Tuple[np.ndarray, str]:
    """Wavelengths in Angstrom relative to the line centre, whatever was given.

    Offsets (all ``|w| < 100`` A) are returned as they are. Values within 100 A
    of the line centre are taken as absolute Angstrom, values within 10 nm of
    it as absolute nm; both are converted with a warning that says so.

    Args:
        wavelengths: ``(nw,)`` finite values.
        line: the observed line (its centre decides what "absolute" means).
        source: name of the data, for messages.

    Returns:
        ``(relative, reference)`` with ``reference`` ``"line centre"`` or a
        phrase describing the conversion done.

    Raises:
        HashwfaError: when the values fit none of these readings.
    """
    wl = np.asarray(wavelengths, dtype=np.float64)
    if np.all(np.abs(wl) < MAX_OFFSET):
        return wl, "line centre"
    c = line.center
    span = f"{wl.min():.6g} .. {wl.max():.6g}"
    if np.all(np.abs(wl - c) < MAX_OFFSET):
        rel, how = wl - c, "absolute Angstrom"
    elif np.all(np.abs(10.0 * wl - c) < MAX_OFFSET):
        rel, how = 10.0 * wl - c, "absolute nm"
    else:
        raise HashwfaError(
            f"{source}: wavelengths span {span}, which is neither offsets from the line centre in "
            f"Angstrom (|offset| < {MAX_OFFSET:g}) nor absolute wavelengths around line {line.name} "
            f"({c} A); give Angstrom relative to the line centre (mA: divide by 1000), or choose "
            "the right line"
        )
    warnings.warn(
        f"{source}: wavelengths ({span}) look like {how}; assumed {how} and converted them to "
        f"Angstrom relative to the centre of line {line.name} ({c} A)",
        stacklevel=3,
    )
    return rel, f"converted from {how}"
