"""Writing (and reading back) a run's files, atomically.

An output directory holds:

``field.fits``      the maps: primary HDU with the provenance header (and the
                    resolved config as HISTORY cards), image extensions
                    BLOS, BTRANS, AZIMUTH, BQ, BU (the neural field),
                    WFA_BLOS, WFA_BTRANS, WFA_AZIMUTH, WFA_BQ, WFA_BU (the
                    pixel-wise WFA), VALID (1 = pixel used in the fit) and,
                    for synthetic data, TRUE_BLOS ... TRUE_BU; each (ny, nx)
                    with BUNIT
``history.json``    loss and learning rate per epoch and phase, final loss,
                    timings, errors against the truth when known
``config.json``     the resolved config (plain JSON; a valid config file)
``model.pt``        both fields' state_dicts + what rebuilds them
                    (:func:`load_model`)
``quicklook.png``   see :mod:`hashwfa.quicklook`
``checkpoint.pt``   only while a run is unfinished: what ``--resume`` reads

Every file is written to a temporary file in the same directory and moved
into place with :func:`os.replace`, so an interrupt never leaves a
half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Optional, Union

import numpy as np
import torch
from astropy.io import fits
from astropy.time import Time

import hashwfa
from hashwfa.errors import HashwfaError

__all__ = [
    "FIELD_FITS",
    "HISTORY_JSON",
    "CONFIG_JSON",
    "MODEL_PT",
    "QUICKLOOK_PNG",
    "CHECKPOINT_PT",
    "OUTPUT_FILES",
    "atomic_path",
    "write_json",
    "read_json",
    "save_torch",
    "load_checkpoint",
    "load_model",
    "write_field_fits",
    "MAP_UNITS",
    "error_metrics",
]

FIELD_FITS = "field.fits"
HISTORY_JSON = "history.json"
CONFIG_JSON = "config.json"
MODEL_PT = "model.pt"
QUICKLOOK_PNG = "quicklook.png"
CHECKPOINT_PT = "checkpoint.pt"
#: The files a run writes (the checkpoint only exists while it is unfinished).
OUTPUT_FILES = (FIELD_FITS, HISTORY_JSON, CONFIG_JSON, MODEL_PT, QUICKLOOK_PNG, CHECKPOINT_PT)

#: Map name -> (extension suffix, BUNIT, description). Order = order in field.fits.
MAP_UNITS = {
    "blos": ("BLOS", "G", "line-of-sight magnetic field"),
    "bt": ("BTRANS", "G", "transverse magnetic field (B_Q^2 + B_U^2)^(1/4)"),
    "azimuth": ("AZIMUTH", "rad", "azimuth atan2(B_U, B_Q)/2 in [0, pi)"),
    "bq": ("BQ", "G2", "B_t^2 cos(2 azimuth)"),
    "bu": ("BU", "G2", "B_t^2 sin(2 azimuth)"),
}


@contextlib.contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it onto ``path``.

    The temporary file lives in the same directory, so :func:`os.replace` is
    an atomic rename; on an exception it is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh name that the writer creates itself, so the file gets the
    # usual permissions (mkstemp would make it private to the owner).
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Union[str, Path], obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def read_json(path: Union[str, Path]) -> Any:
    """Read a JSON file written by :func:`write_json`."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_torch(path: Union[str, Path], obj: Any) -> None:
    """:func:`torch.save` ``obj`` atomically (model bundles, checkpoints)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Union[str, Path]) -> Dict[str, Any]:
    """Load a checkpoint onto the CPU (the solver moves it to its device).

    Raises:
        HashwfaError: the file is not a readable checkpoint.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HashwfaError(
            f"cannot read the checkpoint '{path}' ({type(exc).__name__}: {exc}). "
            "Fix: start the run again with --overwrite."
        ) from None


def load_model(path: Union[str, Path], backend: str = "torch", device: str = "cpu") -> Dict[str, Any]:
    """Rebuild the trained fields from ``model.pt``, on either backend.

    Returns:
        ``{"blos": NeuralField, "bqbu": NeuralField, "scales": {...}, "config": {...}}``;
        ``fields["blos"](x) * scales["blos"]`` is B_los in gauss at
        coordinates ``x`` (N, 2) in [-1, 1] (columns y, x).
    """
    from hashwfa.wfa.solver import fields_from_bundle

    bundle = torch.load(path, map_location="cpu", weights_only=True)
    fields = fields_from_bundle(bundle, backend=backend, device=device)
    return {**fields, "scales": dict(bundle["scales"]), "config": bundle["config"]}


def error_metrics(
    maps: Mapping[str, np.ndarray], truth: Any, valid: Optional[np.ndarray] = None
) -> Dict[str, float]:
    """RMS errors against the truth over the valid pixels.

    Returns ``{"blos_rmse": G, "bt_rmse": G, "azimuth_rmse": rad}``; the
    azimuth difference is wrapped into [-pi/2, pi/2) (it is defined modulo pi).
    """
    valid = np.ones(np.shape(maps["blos"]), bool) if valid is None else valid

    def rmse(d: np.ndarray) -> float:
        return float(np.sqrt(np.nanmean(d[valid] ** 2)))

    dphi = np.mod(np.asarray(maps["azimuth"]) - np.asarray(truth.azimuth) + np.pi / 2, np.pi) - np.pi / 2
    return {
        "blos_rmse": rmse(np.asarray(maps["blos"]) - np.asarray(truth.blos)),
        "bt_rmse": rmse(np.asarray(maps["bt"]) - np.asarray(truth.bt)),
        "azimuth_rmse": rmse(dphi),
    }


def _image(name: str, data: np.ndarray, unit: str, description: str) -> fits.ImageHDU:
    hdu = fits.ImageHDU(np.asarray(data, dtype=np.float32), name=name)
    hdu.header["BUNIT"] = (unit, "unit of the map")
    hdu.header["BTYPE"] = (description[:68], "")
    return hdu


def _maps_of(source: Any) -> Dict[str, np.ndarray]:
    return {key: np.asarray(getattr(source, key)) for key in MAP_UNITS}


def write_field_fits(
    path: Union[str, Path],
    result: Any,
    wfa: Any,
    *,
    provenance: Mapping[str, Any],
    config: Mapping[str, Any],
    valid: Optional[np.ndarray] = None,
    truth: Any = None,
) -> None:
    """Write ``field.fits`` atomically.

    Args:
        result: the solver's maps (``.blos .bt .azimuth .bq .bu``, (ny, nx)).
        wfa: the pixel-wise WFA maps (same attributes).
        provenance: header keywords -> value, e.g. ``{"ENCVER": 1, ...}``
            (keys of at most 8 characters; value or (value, comment)).
        config: the resolved config (plain JSON), written as HISTORY cards
            ``key.path = value``, one per key.
        valid: (ny, nx) bool, pixels used in the fit (written as VALID).
        truth: the true maps (synthetic data) or None.
    """
    primary = fits.PrimaryHDU()
    header = primary.header
    header["ORIGIN"] = ("hashwfa", "neural-field weak-field approximation")
    header["HWFAVER"] = (hashwfa.__version__, "hashwfa package version")
    header["DATE"] = (Time.now().isot, "UTC time the file was written")
    for key, value in provenance.items():
        header[key] = value
    header.add_comment("Maps: BLOS, BTRANS, AZIMUTH, BQ, BU = neural field;")
    header.add_comment("WFA_* = pixel-wise weak-field approximation; TRUE_* = truth (synthetic).")
    header.add_history("Resolved config (also in config.json), one key per card:")
    for key, value in _flatten(config):
        header.add_history(f"{key} = {json.dumps(value)}")

    hdus = [primary]
    for prefix, source in (("", result), ("WFA_", wfa), ("TRUE_", truth)):
        if source is None:
            continue
        maps = _maps_of(source)
        for key, (name, unit, description) in MAP_UNITS.items():
            label = {"": "neural field", "WFA_": "pixel-wise WFA", "TRUE_": "true"}[prefix]
            hdus.append(_image(prefix + name, maps[key], unit, f"{label}: {description}"))
    if valid is not None:
        hdu = fits.ImageHDU(np.asarray(valid, dtype=np.uint8), name="VALID")
        hdu.header["BTYPE"] = ("1 = pixel used in the fit (mask & finite)", "")
        hdus.append(hdu)
    with atomic_path(path) as tmp:
        fits.HDUList(hdus).writeto(tmp, overwrite=True)


def _flatten(obj: Mapping[str, Any], prefix: str = "") -> Iterator[tuple]:
    for key, value in obj.items():
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value
