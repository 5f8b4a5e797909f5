"""Small FITS helpers shared by observations and synthetic data: reading one
image with errors a user can act on (or mapping it from the file without
reading it, :func:`map_image`), provenance cards, and atomic writes."""

from __future__ import annotations

import datetime
import mmap
import os
import stat
import warnings
from pathlib import Path
from typing import Iterable, Optional, Tuple, Union

import numpy as np
from astropy.io import fits

from hashwfa import __version__
from hashwfa.host.atomic import atomic_path
from hashwfa.errors import HashwfaError

PathLike = Union[str, "os.PathLike[str]"]

#: Cards of an input that describe the observation (where from, what, through which
#: filter) and are carried as they are into the maps made from it: the observer's
#: place on Earth (OBSGEO-X/Y/Z [m], ITRS) or in heliographic Stonyhurst
#: coordinates, the solar radius and wavelength keywords SunPy reads, the target.
OBSERVER_KEYS = ("OBSGEO-X", "OBSGEO-Y", "OBSGEO-Z", "HGLN_OBS", "HGLT_OBS", "DSUN_OBS", "RSUN_REF",
                 "RSUN_ARC", "WAVELNTH", "WAVEUNIT", "OBJECT", "FILTER1", "WCSNAME", "TIMESYS")


def check_regular_file(path: Path, what: str) -> None:
    """Raise :class:`HashwfaError` naming ``path`` when it is missing or not a regular file.

    A device (``/dev/zero``), a FIFO or a directory is refused without being
    opened: reading one would never end or block.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise HashwfaError(f"{path}: {what} file not found; check the path") from None
    except OSError as exc:
        raise HashwfaError(f"{path}: cannot read the {what} file ({exc.strerror or exc}); check the path "
                           "and its permissions") from None
    if not stat.S_ISREG(mode):
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else (
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket or other special file")
        raise HashwfaError(f"{path}: the {what} file is not a regular file ({kind}); give the path of a FITS file")


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
    check_regular_file(path, what)
    try:
        with fits.open(path, memmap=False) as hdul:
            data = header = None
            mask = None
            for i, hdu in enumerate(hdul):
                if data is None and isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.header.get("NAXIS", 0):
                    check_header_cards(hdu.header, path)
                    if path.suffix.lower() not in COMPRESSED_SUFFIXES:  # sizes of the decompressed file
                        check_complete(path, hdul, i)
                if data is None and isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU)) and hdu.data is not None:
                    data, header = np.array(hdu.data), hdu.header.copy()
                elif isinstance(hdu, fits.ImageHDU) and hdu.name == "MASK" and hdu.data is not None:
                    mask = np.array(hdu.data)
    except HashwfaError:
        raise
    except (OSError, ValueError, TypeError) as exc:
        raise HashwfaError(f"{path}: cannot read as FITS ({exc}); the {what} must be a FITS image") from None
    if data is None:
        raise HashwfaError(f"{path}: no image data found; the {what} must be stored as the primary image")
    # FITS is big-endian; torch and fast numpy paths want native byte order.
    return data.astype(data.dtype.newbyteorder("="), copy=False), header, mask


def check_header_cards(header: fits.Header, path: PathLike) -> None:
    """Raise unless every card of ``header`` can be parsed (astropy parses a card's value when it is read).

    Raises:
        HashwfaError: naming the first unparsable card (e.g. ``CRVAL3 = NaN``) and the fix.
    """
    for card in header.cards:
        try:
            card.value
        except (fits.VerifyError, ValueError) as exc:
            raise HashwfaError(
                f"{path}: header card {card.keyword} cannot be parsed (astropy: {exc}). Fix: correct "
                "or delete that card (e.g. with astropy: fits.open(path, mode='update'), then hdul.verify('fix'))"
            ) from None


def check_complete(path: PathLike, hdul: fits.HDUList, hdu_index: int = 0) -> None:
    """Raise when the file ends before the data of HDU ``hdu_index`` (a truncated, half-copied file).

    Reading or mapping such a file fails later with a bus error or an
    unclear message; the sizes come from the header (BITPIX, NAXISn, GCOUNT, PCOUNT).

    Raises:
        HashwfaError: the file is shorter than its header says, naming both sizes and the fix.
    """
    hdu = hdul[hdu_index]
    start = hdul.fileinfo(hdu_index)["datLoc"]
    header = hdu.header
    naxis = int(header.get("NAXIS", 0))
    count = int(np.prod([int(header.get(f"NAXIS{k}", 0)) for k in range(1, naxis + 1)])) if naxis else 0
    nbytes = abs(int(header.get("BITPIX", 8))) // 8 * int(header.get("GCOUNT", 1)) * (count + int(header.get("PCOUNT", 0)))
    size = os.path.getsize(path)
    if start + nbytes > size:
        raise HashwfaError(
            f"{path}: the file has {size} bytes but its header says the data end at byte {start + nbytes}: "
            "it is truncated (a copy or download that did not finish?); is the file complete? "
            "Fix: copy the complete file again"
        )


#: FITS BITPIX -> the dtype of the data on disk (big-endian) of the images :func:`map_image` maps as they are.
MAPPABLE_BITPIX = {-32: ">f4", -64: ">f8"}

#: Extensions of files that astropy decompresses as it reads (they cannot be mapped).
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".zip", ".z", ".xz")


def map_image(path: PathLike, what: str) -> Tuple[np.ndarray, fits.Header, Optional[np.ndarray], Optional[str]]:
    """The first image of a FITS file as a read-only memory map of the file, in its dtype on disk.

    Nothing of the image is read here: pages of the file are read when the
    array is indexed, so a cube larger than memory can be used frame by
    frame. Only a float image (BITPIX -32 or -64) stored as it is can be
    mapped; an integer image, one scaled by BSCALE/BZERO, or a compressed
    file (``.gz``, ...) is read whole instead, as :func:`read_image` does,
    and the note says so.

    Args:
        path: the FITS file.
        what: what the file should hold, for messages (e.g. "Stokes cube").

    Returns:
        ``(data, header, mask, note)``: the image (a big-endian
        :class:`numpy.memmap`, or a native-endian array read whole), its
        header, the ``MASK`` image extension if the file has one (read), and
        None or one sentence saying why the image was read rather than mapped.

    Raises:
        HashwfaError: as :func:`read_image`.
    """
    path = Path(path)
    check_regular_file(path, what)
    why = None
    if path.suffix.lower() in COMPRESSED_SUFFIXES:
        why = f"the file is compressed ({path.suffix})"
    else:
        try:
            with fits.open(path, memmap=False) as hdul:  # headers only: no data is read here
                found = None
                mask = None
                for i, hdu in enumerate(hdul):
                    naxes = [int(hdu.header.get(f"NAXIS{k}", 0)) for k in range(1, int(hdu.header.get("NAXIS", 0)) + 1)]
                    image = type(hdu) in (fits.PrimaryHDU, fits.ImageHDU) and naxes and min(naxes) > 0
                    if found is None and image:
                        check_header_cards(hdu.header, path)
                        check_complete(path, hdul, i)
                        found = (i, hdu.header.copy(), naxes, hdul.fileinfo(i)["datLoc"])
                    elif image and hdu.name == "MASK":
                        mask = np.array(hdu.data)
        except HashwfaError:
            raise
        except (OSError, ValueError, TypeError) as exc:
            raise HashwfaError(f"{path}: cannot read as FITS ({exc}); the {what} must be a FITS image") from None
        if found is None:
            why = "its first image is not a plain primary or image HDU"
        else:
            _, header, naxes, offset = found
            bitpix = int(header["BITPIX"])
            if float(header.get("BSCALE", 1.0)) != 1.0 or float(header.get("BZERO", 0.0)) != 0.0:
                why = "its data are scaled (BSCALE/BZERO)"
            elif bitpix not in MAPPABLE_BITPIX:
                why = f"its data are integers (BITPIX = {bitpix})"
            else:
                data = np.memmap(path, dtype=MAPPABLE_BITPIX[bitpix], mode="r", offset=offset,
                                 shape=tuple(reversed(naxes)))
                return data, header, None if mask is None else mask, None
    data, header, mask = read_image(path, what)
    return data, header, mask, f"{path.name}: read whole into memory, not mapped lazily: {why}"


def forget_pages(array: np.ndarray) -> None:
    """Let the pages of a memory-mapped file that ``array`` (a view of a :class:`numpy.memmap`) spans go.

    They stay in the system's file cache; the process no longer counts them
    in its resident memory and reads them again if they are used again. A
    no-op for an array in memory (or where the system has no ``madvise``).
    """
    handle = getattr(array, "_mmap", None)
    if handle is None or handle.closed or not hasattr(mmap, "MADV_DONTNEED") or array.size == 0:
        return
    map_start = np.frombuffer(handle, dtype=np.uint8).__array_interface__["data"][0]
    start = array.__array_interface__["data"][0]
    extent = np.array(array.shape) - 1
    strides = np.array(array.strides)
    first = start + int(np.sum(extent * np.minimum(strides, 0)))
    last = start + int(np.sum(extent * np.maximum(strides, 0))) + array.itemsize
    lo = max(0, (first - map_start) // mmap.PAGESIZE * mmap.PAGESIZE)
    hi = min(len(handle), last - map_start)
    if hi > lo:
        handle.madvise(mmap.MADV_DONTNEED, lo, hi - lo)


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
        hdul.writeto(tmp, output_verify="silentfix", overwrite=True)  # atomic_path created it, empty
    return path
