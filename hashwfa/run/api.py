"""The Python API: one call from a Stokes cube (or its file) to magnetic-field maps with units.

::

    import hashwfa
    res = hashwfa.fit(stokes, wavelengths, line="6173")           # the recommended config
    res.blos, res.bt, res.azimuth                                 # astropy Quantities: G, G, deg
    res = hashwfa.fit_file("cube_im.fits", line="8542", training__epochs_per_phase=50)
    res.to_fits("field.fits")

Both run the job of ``hashwfa-train`` (:func:`hashwfa.run.train.fit_loaded`)
with the same checks: a config by name (shipped with the package,
:mod:`hashwfa.config.shipped`) or file, overrides as keywords
(``training__epochs_per_phase=50``: ``__`` separates the key path) or a dict
(``{"training.epochs_per_phase": 50}``), validated like ``--set``; the line
must be named (no default line: B scales with the line's Lande factor);
wavelengths without a unit are Angstrom, and steps too fine for Angstrom are
refused (nm given as Angstrom would make B 10x too small).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import numpy as np
from astropy import units as u
from astropy.io import fits

from hashwfa.config.run_config import RunConfig, apply_overrides, load_config, validate_config
from hashwfa.config.shipped import config_path
from hashwfa.errors import HashwfaError
from hashwfa.run.data import LoadedData, load_array, load_data
from hashwfa.run.output_directory import present_files
from hashwfa.run.outputs import RunProducts
from hashwfa.run.train import RunRequest, fit_loaded
from hashwfa.wfa.observation.stokes_fits import angstrom_sampling_problem
from hashwfa.wfa.physics.lines import LINES, get_line

__all__ = ["Maps", "FitResult", "fit", "fit_file"]

PathLike = Union[str, Path]
#: The unit of each map, by attribute name.
UNITS = {"blos": u.G, "bq": u.G ** 2, "bu": u.G ** 2, "bt": u.G, "azimuth": u.deg}


@dataclass(frozen=True)
class Maps:
    """One set of magnetic-field maps, ``(ny, nx)`` or ``(nt, ny, nx)`` astropy Quantities.

    Attributes:
        blos: line-of-sight field [G].
        bq, bu: B_Q = B_t^2 cos 2phi, B_U = B_t^2 sin 2phi [G^2].
        bt: transverse field [G].
        azimuth: azimuth phi [deg] in [0, 180), from +x (columns) towards +y
            (rows); for sigma maps its one-sigma uncertainty.

    NaN marks pixels without a solution.
    """

    blos: u.Quantity
    bq: u.Quantity
    bu: u.Quantity
    bt: u.Quantity
    azimuth: u.Quantity

    @classmethod
    def of(cls, maps: Any) -> "Maps":
        """From :class:`~hashwfa.wfa.physics.maps.FieldMaps` or ``FieldSigmas`` (azimuth in radians), copied into memory."""
        values = {name: np.array(getattr(maps, name), dtype=np.float64) for name in UNITS}
        values["azimuth"] = np.degrees(values["azimuth"])
        return cls(**{name: u.Quantity(values[name], UNITS[name], copy=False) for name in UNITS})


@dataclass
class FitResult:
    """What :func:`fit` and :func:`fit_file` return: the maps with units, and the files on demand.

    Attributes:
        field: the neural field's maps (also as ``.blos``, ``.bq``, ``.bu``,
            ``.bt``, ``.azimuth``).
        pixelwise: the pixel-wise WFA's maps.
        regularized: the spatially regularised WFA's maps, or None when the
            data cannot give it (e.g. an image under 3 x 3 pixels).
        sigma: one-sigma maps of the neural field (with ``output.sigmas``, on
            in the recommended config), or None.
        pixelwise_sigma: one-sigma maps of the pixel-wise WFA, or None.
        truth: the true maps of synthetic data, or None.
        valid: bool like the maps, the pixels used in the fit.
        times: ``(nt,)`` frame times of a series [s], or None.
        wcs: the maps' spatial WCS (FITS axes 1 = x, 2 = y) when the data
            carry one, else None.
        final_loss: the final loss (V, Q, U).
        metrics: errors against the truth when known (``blos_rmse`` [G],
            ``bt_rmse`` [G], ``azimuth_mae`` [deg], ``wfa_`` and ``reg_`` the
            baselines'), else empty.
        config: the resolved config of the fit.
        out_dir: the output directory the run wrote, or None (``out=None``).
    """

    field: Maps
    pixelwise: Maps
    regularized: Optional[Maps]
    sigma: Optional[Maps]
    pixelwise_sigma: Optional[Maps]
    truth: Optional[Maps]
    valid: np.ndarray
    times: Optional[u.Quantity]
    wcs: Any
    final_loss: float
    metrics: Dict[str, float]
    config: RunConfig
    out_dir: Optional[Path]
    _products: RunProducts = dataclasses.field(repr=False)

    @property
    def blos(self) -> u.Quantity:
        """The neural field's B_los [G]."""
        return self.field.blos

    @property
    def bq(self) -> u.Quantity:
        """The neural field's B_Q [G^2]."""
        return self.field.bq

    @property
    def bu(self) -> u.Quantity:
        """The neural field's B_U [G^2]."""
        return self.field.bu

    @property
    def bt(self) -> u.Quantity:
        """The neural field's B_t [G]."""
        return self.field.bt

    @property
    def azimuth(self) -> u.Quantity:
        """The neural field's azimuth [deg]."""
        return self.field.azimuth

    def to_fits(self, path: PathLike, overwrite: bool = False) -> Path:
        """Write the maps as ``field.fits`` does (:func:`hashwfa.run.outputs.write_field_fits`) to ``path``.

        Raises:
            HashwfaError: ``path`` exists and ``overwrite`` is False.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            raise HashwfaError(f"'{path}' exists. Fix: to_fits(path, overwrite=True), or another path.")
        self._products.write_field_fits(path)
        return path

    def write(self, out: PathLike, overwrite: bool = False) -> Path:
        """Write ``field.fits``, ``history.json``, ``config.json`` and ``model.pt`` into the folder ``out``.

        Raises:
            HashwfaError: ``out`` holds files and ``overwrite`` is False.
        """
        out = Path(out)
        if present_files(out) and not overwrite:
            raise HashwfaError(f"output directory '{out}' is not empty. Fix: write(out, overwrite=True), "
                               "or another folder.")
        self._products.write(out)
        return out

    @classmethod
    def _of(cls, products: RunProducts, final_loss: float, metrics: Dict[str, float], config: RunConfig,
            out_dir: Optional[Path]) -> "FitResult":
        return cls(
            field=Maps.of(products.maps),
            pixelwise=Maps.of(products.wfa),
            regularized=None if products.regularized is None else Maps.of(products.regularized.maps),
            sigma=None if products.sigmas is None else Maps.of(products.sigmas),
            pixelwise_sigma=None if products.wfa_sigmas is None else Maps.of(products.wfa_sigmas),
            truth=None if products.truth is None else Maps.of(products.truth),
            valid=np.array(products.valid, dtype=bool),
            times=None if products.times is None else u.Quantity(np.array(products.times), u.s),
            wcs=_wcs(products.map_cards),
            final_loss=float(final_loss),
            metrics=dict(metrics),
            config=config,
            out_dir=out_dir,
            _products=products,
        )


def _wcs(cards: Any) -> Any:
    """The spatial WCS the data's map cards describe, or None."""
    header = fits.Header([tuple(card) for card in cards])
    if "CTYPE1" not in header:
        return None
    from astropy.wcs import WCS, FITSFixedWarning  # only when there is one to build

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header, naxis=2)


def _plain(value: Any) -> Any:
    """A JSON-able form of a numpy value (arrays and scalars)."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not a config value")


def _override_items(overrides: Optional[Mapping[str, Any]], keys: Mapping[str, Any]) -> List[str]:
    """``key.path=<JSON>`` items from a dict of key paths and from ``section__key`` keywords."""
    merged: Dict[str, Any] = {}
    if overrides is not None:
        if not isinstance(overrides, Mapping):
            raise HashwfaError(f"overrides = {overrides!r} is not a dict. Fix: give "
                               "{'training.epochs_per_phase': 50}, or keywords training__epochs_per_phase=50.")
        merged.update({str(k): v for k, v in overrides.items()})
    merged.update({k.replace("__", "."): v for k, v in keys.items()})
    items = []
    for key, value in merged.items():
        try:
            items.append(f"{key}={json.dumps(value, default=_plain)}")
        except (TypeError, ValueError) as exc:
            raise HashwfaError(f"{key} = {value!r}: {exc}. Fix: give numbers, strings, booleans, None or lists.") from None
    return items


def _config(config: Union[PathLike, Mapping[str, Any]], line: Optional[str], items: List[str]) -> RunConfig:
    """The validated config: a shipped name, a file or a raw dict, then the overrides, then ``line``."""
    if line is not None:
        if not isinstance(line, str):
            raise HashwfaError(f"line = {line!r}: give the line's name, one of " + ", ".join(repr(k) for k in LINES))
        items = items + [f"line={json.dumps(line)}"]
    if isinstance(config, Mapping):
        raw = copy.deepcopy(dict(config))
        origins = apply_overrides(raw, items)
        return validate_config(raw, "<config dict>", origins=origins)
    return load_config(config_path(config), items)


def _no_line(what: str) -> HashwfaError:
    return HashwfaError(f"{what}: no line given. Fix: name the observed line, e.g. line='6173', one of "
                        + ", ".join(repr(k) for k in LINES) + " (B scales with the line's Lande factor)")


def _angstrom(wavelengths: Any, line: str) -> np.ndarray:
    """The wavelengths in Angstrom: a Quantity converted, plain numbers checked to be Angstrom."""
    if isinstance(wavelengths, u.Quantity):
        try:
            return np.asarray(wavelengths.to_value(u.AA), dtype=np.float64)
        except u.UnitConversionError:
            raise HashwfaError(f"wavelengths are in {wavelengths.unit}, not a length. "
                               "Fix: give them in Angstrom, nm or mA.") from None
    wl = np.asarray(wavelengths, dtype=np.float64)
    problem = angstrom_sampling_problem(wl.reshape(-1), get_line(line)) if wl.ndim == 1 else None
    if problem is not None:
        raise HashwfaError(
            f"wavelengths: plain numbers are read as Angstrom, but then {problem}. Fix: give Angstrom "
            "(nm x 10), or a Quantity with its unit, e.g. wavelengths * astropy.units.nm"
        )
    return wl


def _run(cfg: RunConfig, data: LoadedData, out: Optional[PathLike], overwrite: bool, quiet: bool) -> FitResult:
    """The job on ``data``, in ``out`` or in a temporary folder removed afterwards."""
    if out is not None:
        request = RunRequest(config=None, out=str(out), overwrite=overwrite, quiet=quiet, prog="hashwfa.fit")
        done = fit_loaded(request, cfg, data, Path(out))
        return FitResult._of(done.products, done.result.final_loss, done.metrics, cfg, Path(out))
    # Nothing to keep on disk: no quicklook; checkpoints and scratch go to a temporary folder.
    cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, quicklook=False))
    with tempfile.TemporaryDirectory(prefix="hashwfa-fit-") as tmp:
        request = RunRequest(config=None, quiet=quiet, prog="hashwfa.fit")
        done = fit_loaded(request, cfg, data, Path(tmp) / "run")
        return FitResult._of(done.products, done.result.final_loss, done.metrics, cfg, None)


def fit(
    stokes: Any,
    wavelengths: Any,
    line: Optional[str] = None,
    config: Union[PathLike, Mapping[str, Any]] = "recommended",
    overrides: Optional[Mapping[str, Any]] = None,
    *,
    mask: Optional[np.ndarray] = None,
    times: Optional[Any] = None,
    out: Optional[PathLike] = None,
    overwrite: bool = False,
    quiet: bool = False,
    **keys: Any,
) -> FitResult:
    """Fit the neural-field WFA maps to a Stokes cube in memory.

    Args:
        stokes: ``(ny, nx, 4, nw)`` (I, Q, U, V along axis 2) or a series
            ``(nt, ny, nx, 4, nw)``, any intensity unit.
        wavelengths: ``(nw,)`` relative to the line centre: plain numbers are
            Angstrom; an astropy Quantity in any length unit. Absolute
            wavelengths are converted with a warning.
        line: the observed line's name, e.g. ``"6173"`` (required, here or
            as the config's ``line``).
        config: a shipped config's name (``"recommended"``, ``"v1"``, ...), a
            config file, or a config dict.
        overrides: ``{"key.path": value}`` applied after the config.
        mask: ``(ny, nx)`` or ``(nt, ny, nx)`` bool, True = fit the pixel.
        times: ``(nt,)`` frame times of a series [s].
        out: a folder to write the run's files into (``field.fits``,
            ``history.json``, ``config.json``, ``model.pt``, ``quicklook.png``),
            or None: keep the results in memory only.
        overwrite: replace the results in a non-empty ``out``.
        quiet: no progress bars or messages.
        **keys: more overrides, ``section__key=value`` (e.g. ``training__epochs_per_phase=50``).

    Raises:
        HashwfaError: a missing or unknown line, an unknown key or bad value
            (named by its key path), wavelengths that look like nm, a cube of
            the wrong shape, ...
    """
    cfg = _config(config, line, _override_items(overrides, keys))
    if cfg.line is None:
        raise _no_line("hashwfa.fit")
    if cfg.data.path is not None:
        raise HashwfaError(f"the config names a data file (data.path = {cfg.data.path!r}), but hashwfa.fit fits the "
                           "array given. Fix: hashwfa.fit_file(path, ...) for the file, or a config without data.path.")
    # The data are the array: the config's synthetic section does not apply (nor is it recorded).
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, synthetic=None))
    data = load_array(cfg, stokes, _angstrom(wavelengths, cfg.line), mask=mask, times=times,
                      source="array given to hashwfa.fit")
    return _run(cfg, data, out, overwrite, quiet)


def fit_file(
    path: PathLike,
    wavelengths: Optional[PathLike] = None,
    line: Optional[str] = None,
    config: Union[PathLike, Mapping[str, Any]] = "recommended",
    overrides: Optional[Mapping[str, Any]] = None,
    *,
    out: Optional[PathLike] = None,
    overwrite: bool = False,
    quiet: bool = False,
    **keys: Any,
) -> FitResult:
    """Fit the neural-field WFA maps to a cube on disk, read as ``hashwfa-train`` reads ``data.path``.

    Args:
        path: a Stokes FITS cube (with ``wavelengths``) or a reduced SST
            pipeline cube (``*_im.fits``, wavelengths and times inside).
        wavelengths: the FITS file of the cube's wavelengths (its BUNIT says
            the unit), or None for an SST cube.
        line: the observed line's name; None: the cube's LINE header keyword
            (FITS) or the line the SST cube's wavelengths lie around; a FITS
            cube without LINE needs it.
        config, overrides, out, overwrite, quiet, **keys: as for :func:`fit`.

    Raises:
        HashwfaError: as for :func:`fit`, and what the readers check.
    """
    items = _override_items(overrides, keys)
    items += [f"data.path={json.dumps(str(Path(path).expanduser().resolve()))}",
              "data.wavelengths=" + json.dumps(None if wavelengths is None
                                               else str(Path(wavelengths).expanduser().resolve()))]
    cfg = _config(config, line, items)
    if cfg.line is None and cfg.data.wavelengths is not None:
        try:
            named = "LINE" in fits.getheader(cfg.data.path)
        except (OSError, ValueError):
            named = True  # the reader reports the unreadable file
        if not named:
            raise _no_line(f"{cfg.data.path} has no LINE header keyword")
    data = load_data(cfg)
    return _run(cfg, data, out, overwrite, quiet)
