"""Magnetic-field maps: the result of an inversion or the truth of a synthetic cube."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
from astropy.io import fits

from hashwfa.errors import HashwfaError
from hashwfa.wfa.physics.weak_field import azimuth_difference, bqbu_to_bt_azimuth

def empty_image(shape: Tuple[int, ...], dtype: Union[str, np.dtype]) -> np.ndarray:
    """A read-only array of zeros of ``shape`` in big-endian ``dtype`` that takes no memory.

    A broadcast view of one zero: astropy writes it as an image extension
    whose header (BITPIX, NAXISn) is the one the real data would get, without
    a byte-swapped copy (FITS is big-endian), so that a writer can fill the
    data into the file afterwards, frame by frame.
    """
    return np.broadcast_to(np.zeros((), dtype=np.dtype(dtype).newbyteorder(">")), tuple(shape))


def _image_data(array: np.ndarray, empty: bool) -> np.ndarray:
    """The float32 data of a map's extension: a copy, or (``empty``) :func:`empty_image` of its shape."""
    return empty_image(np.shape(array), np.float32) if empty else np.asarray(array).astype(np.float32)


#: FITS extension name and BUNIT of every map, in the order they are written.
MAP_UNITS: Tuple[Tuple[str, str, str], ...] = (
    ("blos", "BLOS", "G"),
    ("bq", "BQ", "G2"),
    ("bu", "BU", "G2"),
    ("bt", "BTRANS", "G"),
    ("azimuth", "AZIMUTH", "rad"),
)


def _blanked(maps: Any, outside: np.ndarray) -> Any:
    """``maps`` (a :class:`FieldMaps` or :class:`FieldSigmas`) with NaN where ``outside``."""
    outside = np.asarray(outside, dtype=bool)
    if not outside.any():
        return maps
    return dataclasses.replace(maps, **{name: np.where(outside, np.nan, values)
                                        for name, values in maps.as_dict().items()})


@dataclass
class FieldMaps:
    """Magnetic-field maps of shape ``(ny, nx)``, float64.

    Attributes:
        blos: line-of-sight field B_los [G].
        bq: B_Q = B_t^2 cos 2phi [G^2].
        bu: B_U = B_t^2 sin 2phi [G^2].
        bt: transverse field B_t [G].
        azimuth: azimuth phi [rad] in [0, pi), measured from the +x axis
            (image columns) towards +y (rows); Q > 0 is polarisation along x.

    NaN marks pixels without a solution (invalid data).
    """

    blos: np.ndarray
    bq: np.ndarray
    bu: np.ndarray
    bt: np.ndarray
    azimuth: np.ndarray

    @classmethod
    def from_bqbu(cls, blos: np.ndarray, bq: np.ndarray, bu: np.ndarray) -> "FieldMaps":
        """Build the maps from B_los [G] and (B_Q, B_U) [G^2]; B_t and azimuth are derived."""
        blos = np.asarray(blos, dtype=np.float64)
        bq = np.asarray(bq, dtype=np.float64)
        bu = np.asarray(bu, dtype=np.float64)
        bt, azimuth = bqbu_to_bt_azimuth(bq, bu)
        return cls(blos=blos, bq=bq, bu=bu, bt=bt, azimuth=azimuth)

    @property
    def shape(self) -> Tuple[int, ...]:
        """``(ny, nx)``."""
        return self.blos.shape

    def blanked(self, outside: np.ndarray) -> "FieldMaps":
        """These maps with NaN where ``outside`` (bool, the maps' shape) is True; ``self`` when it is nowhere."""
        return _blanked(self, outside)

    def as_dict(self) -> Dict[str, np.ndarray]:
        """The maps by attribute name (``blos``, ``bq``, ``bu``, ``bt``, ``azimuth``)."""
        return {name: getattr(self, name) for name, _, _ in MAP_UNITS}

    def to_hdus(self, prefix: str = "", *, empty: bool = False) -> List[fits.ImageHDU]:
        """One float32 image extension per map, named ``prefix + BLOS, BQ, BU,
        BTRANS, AZIMUTH`` with BUNIT ``G``, ``G2``, ``G2``, ``G``, ``rad``.

        ``empty``: each extension's data is a zero view of the map's shape
        (:func:`empty_image`, no memory), for a writer that fills the data in
        afterwards, frame by frame (:func:`hashwfa.run.outputs.write_field_fits`).
        """
        hdus = []
        for attr, ext, unit in MAP_UNITS:
            hdr = fits.Header()
            hdr["BUNIT"] = (unit, {"G": "gauss", "G2": "gauss^2", "rad": "radians, 0..pi from +x to +y"}[unit])
            hdus.append(fits.ImageHDU(_image_data(getattr(self, attr), empty), header=hdr, name=prefix + ext))
        return hdus

    @classmethod
    def from_fits(cls, path: Union[str, Path], prefix: str = "") -> "FieldMaps":
        """Read maps written by :meth:`to_hdus` (extensions ``prefix + BLOS`` ...) as float64.

        Raises:
            HashwfaError: when the file is missing or lacks an extension.
        """
        path = Path(path)
        if not path.is_file():
            raise HashwfaError(f"{path}: field-map file not found; check the path")
        maps = {}
        with fits.open(path, memmap=False) as hdul:
            names = [h.name for h in hdul]
            for attr, ext, _ in MAP_UNITS:
                if prefix + ext not in names:
                    raise HashwfaError(
                        f"{path}: no image extension {prefix + ext!r} (has {names}); expected "
                        f"{', '.join(prefix + e for _, e, _ in MAP_UNITS)}"
                    )
                maps[attr] = np.array(hdul[prefix + ext].data, dtype=np.float64)
        return cls(**maps)


#: FITS extension name (after a prefix such as ``WFA_``) and BUNIT of every sigma map, in the order written.
SIGMA_UNITS: Tuple[Tuple[str, str, str], ...] = tuple((attr, "SIGMA_" + ext, unit) for attr, ext, unit in MAP_UNITS)


#: Standard deviation [rad] of an azimuth uniformly distributed over pi (pi / sqrt(12)): the sigma of
#: "no information", the largest an azimuth sigma map holds.
AZIMUTH_SIGMA_CAP = math.pi / math.sqrt(12.0)


@dataclass
class FieldSigmas:
    """One-sigma uncertainties of :class:`FieldMaps`, shape ``(ny, nx)`` or ``(nt, ny, nx)``, float64.

    Attributes:
        blos: sigma of B_los [G].
        bq, bu: sigma of B_Q, B_U [G^2].
        bt: sigma of B_t [G].
        azimuth: sigma of the azimuth [rad] (modulo pi; the 180-degree
            ambiguity is not an error here).

    NaN marks pixels without a solution, inf pixels without information.
    """

    blos: np.ndarray
    bq: np.ndarray
    bu: np.ndarray
    bt: np.ndarray
    azimuth: np.ndarray

    def as_dict(self) -> Dict[str, np.ndarray]:
        """The maps by attribute name (``blos``, ``bq``, ``bu``, ``bt``, ``azimuth``)."""
        return {name: getattr(self, name) for name, _, _ in SIGMA_UNITS}

    def blanked(self, outside: np.ndarray) -> "FieldSigmas":
        """These sigmas with NaN where ``outside`` (bool, the maps' shape) is True; ``self`` when it is nowhere."""
        return _blanked(self, outside)

    def to_hdus(self, prefix: str = "", *, empty: bool = False) -> List[fits.ImageHDU]:
        """One float32 image extension per map, named ``prefix + SIGMA_BLOS, SIGMA_BQ,
        SIGMA_BU, SIGMA_BTRANS, SIGMA_AZIMUTH`` with BUNIT ``G``, ``G2``, ``G2``, ``G``, ``rad``;
        ``empty`` as in :meth:`FieldMaps.to_hdus`."""
        hdus = []
        for attr, ext, unit in SIGMA_UNITS:
            hdr = fits.Header()
            hdr["BUNIT"] = (unit, "one-sigma uncertainty, " + {"G": "gauss", "G2": "gauss^2", "rad": "radians"}[unit])
            hdus.append(fits.ImageHDU(_image_data(getattr(self, attr), empty), header=hdr, name=prefix + ext))
        return hdus


def map_errors(maps: FieldMaps, truth: FieldMaps, valid: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Errors of ``maps`` against ``truth`` over the valid pixels, as the package reports them everywhere.

    Returns:
        ``{"blos_rmse": G, "bt_rmse": G, "azimuth_mae": deg, "azimuth_rmse": deg}``: root mean
        squares of the B_los and B_t differences; the azimuth difference modulo pi (at most 90 deg)
        as a mean absolute value and as a root mean square. NaN pixels (no data) are left out.
    """
    valid = np.ones(maps.shape, bool) if valid is None else np.asarray(valid, bool)

    def rms(d: np.ndarray) -> float:
        return float(np.sqrt(np.nanmean(np.asarray(d)[valid] ** 2)))

    dphi = np.degrees(azimuth_difference(maps.azimuth, truth.azimuth))
    return {
        "blos_rmse": rms(maps.blos - truth.blos),
        "bt_rmse": rms(maps.bt - truth.bt),
        "azimuth_mae": float(np.nanmean(np.abs(dphi)[valid])),
        "azimuth_rmse": rms(dphi),
    }
