"""Small FITS helpers shared by observations and synthetic data: reading one
image with errors a user can act on, provenance cards, and atomic writes."""

from __future__ import annotations

import datetime
import os
import warnings
from pathlib import Path
from typing import Iterable, Optional, Tuple, Union

import numpy as np
from astropy.io import fits

from hashwfa import __version__
from hashwfa.atomic import atomic_path
from hashwfa.errors import HashwfaError

PathLike = Union[str, "os.PathLike[str]"]


def provenance_cards() -> Iterable[Tuple[str, object, str]]:
    """Header cards saying who wrote a file and when: ORIGIN, HWVERS, DATE (UTC)."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return (
        ("ORIGIN", "hashwfa", "software that wrote this file"),
        ("HWVERS", __version__, "hashwfa package version"),
        ("DATE", now, "file creation date (UTC)"),
    )


def read_image(path: PathLike, what: str) -> Tuple[np.ndarray, fits.Header, Optional[np.ndarray]]:
    """Read the first image with data from a FITS file.

    Args:
        path: the FITS file.
        what: what the file should hold, for error messages (e.g. "Stokes cube").

    Returns:
        ``(data, header, mask)``: the image (primary HDU, or the first image
        extension when the primary is empty) as a native-endian numpy array,
        its header, and the ``MASK`` image extension if the file has one.

    Raises:
        HashwfaError: when the file is missing, is not FITS, or holds no image.
    """
    path = Path(path)
    if not path.is_file():
        raise HashwfaError(f"{path}: {what} file not found; check the path")
    try:
        with fits.open(path, memmap=False) as hdul:
            data = header = None
            mask = None
            for hdu in hdul:
                if data is None and isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.data is not None:
                    data, header = np.array(hdu.data), hdu.header.copy()
                elif isinstance(hdu, fits.ImageHDU) and hdu.name == "MASK" and hdu.data is not None:
                    mask = np.array(hdu.data)
    except (OSError, ValueError, TypeError) as exc:
        raise HashwfaError(f"{path}: cannot read as FITS ({exc}); the {what} must be a FITS image") from None
    if data is None:
        raise HashwfaError(f"{path}: no image data found; the {what} must be stored as the primary image")
    # FITS is big-endian; torch and fast numpy paths want native byte order.
    return data.astype(data.dtype.newbyteorder("="), copy=False), header, mask


def write_atomic(hdul: fits.HDUList, path: PathLike, overwrite: bool = False) -> Path:
    """Write ``hdul`` to ``path`` through a temporary file and a rename.

    An interrupted write never leaves a half-written file at ``path``.

    Raises:
        HashwfaError: when ``path`` exists and ``overwrite`` is False, or its
            directory does not exist.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise HashwfaError(f"{path}: file exists; pass overwrite=True or choose another path")
    if not path.parent.is_dir():
        raise HashwfaError(f"{path}: directory {path.parent} does not exist; create it first")
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # astropy warns about long HIERARCH-less keywords' comments being truncated.
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        hdul.writeto(tmp, output_verify="silentfix")
    return path
