"""JSON experiment configs: schema, defaults, validation, loading, ``--set`` overrides.

A config is a commented JSON object (``//`` and ``#`` comments, trailing
commas allowed, read with :mod:`commentjson`) with the sections

``line``      spectral line name (e.g. ``"5173"``), a plain string; null (the
              default): the cube's LINE header, else 5173
``data``      the observation: FITS files, or the built-in synthetic plage
``encoding``  grid encoding (:class:`hashwfa.training.solver_config.EncodingConfig`)
``network``   MLP head (:class:`hashwfa.training.solver_config.NetworkConfig`)
``training``  optimisation (:class:`hashwfa.training.solver_config.TrainingConfig`)
``physics``   the Q/U forward model (:class:`hashwfa.training.solver_config.PhysicsConfig`)
``output``    what is written besides the always-written files
``uncertainty`` how the field's sigma maps are estimated (:class:`hashwfa.training.bootstrap.UncertaintyConfig`)

Every key has a default (the reference protocol, docs/ARCHITECTURE.md section 6), so ``{}``
is a valid config: V1 on the synthetic plage. The defaults, documentation and
allowed values live in the dataclass field metadata (see
:func:`hashwfa.schema.setting`); :func:`describe_keys` lists them.

Relative paths (``data.path``, ``data.wavelengths``) written in a config file
are relative to that file's directory; given with ``--set`` they are relative
to the current directory. The resolved config holds absolute paths.

Everything a user can get wrong raises :class:`hashwfa.HashwfaError` naming
the file, the key path and the fix.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union


from hashwfa.encodings.backend import tcnn_cubic_message
from hashwfa.encodings.grid_config import CUBIC_INTERPOLATIONS
from hashwfa.encodings.registry import REGISTRY
from hashwfa import schema
from hashwfa.errors import HashwfaError, closest_name
from hashwfa.config.json_file import read_json_config
from hashwfa.schema import Problems, describe_value, parse_override, setting
from hashwfa.training.solver_config import (
    EncodingConfig, FieldEncodingConfig, NetworkConfig, PhysicsConfig, RegularizationConfig, SolverConfig,
    TrainingConfig,
)
from hashwfa.training.bootstrap import UncertaintyConfig
from hashwfa.wfa.physics.lines import LINES, get_line
from hashwfa.wfa.synthetic.plage import CRISP_WAVELENGTHS, MODELS as SYNTHETIC_MODELS

#: The line of a run whose config and data name none.
DEFAULT_LINE = "5173"

__all__ = [
    "SyntheticConfig",
    "DataConfig",
    "OutputConfig",
    "RunConfig",
    "load_config",
    "validate_config",
    "read_json_config",
    "apply_overrides",
    "parse_override",
    "config_to_dict",
    "describe_keys",
    "key_paths",
]




@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the built-in synthetic plage (:func:`hashwfa.wfa.synthetic.plage.synthetic_plage`), or with
    ``nt`` > 1 of a synthetic time series (:func:`hashwfa.wfa.synthetic.series.synthetic_series`)."""

    ny: int = setting(200, "Pixels along y.", min=2)
    nx: int = setting(178, "Pixels along x.", min=2)
    seed: int = setting(0, "Seed of the synthetic field and of its noise.", min=0, max=2**32 - 1)
    noise: float = setting(
        1e-3, "Standard deviation of the Gaussian noise added to the Stokes profiles (continuum units).", min=0.0
    )
    model: str = setting(
        "zeeman",
        "Forward model of the synthetic profiles: 'zeeman' (beyond the WFA, realistic), "
        "'wfa' (exactly the WFA) or 'milne_eddington' (Milne-Eddington profiles of a photospheric line "
        "through a filtergraph, data.synthetic.instrument_fwhm; use it with a line such as Fe I 6173).",
        choices=SYNTHETIC_MODELS,
    )
    instrument_fwhm: float = setting(
        65.0, "Model 'milne_eddington': FWHM of the Gaussian instrument transmission profile, mA (0 = none).",
        min=0.0,
    )
    wavelengths: Optional[Tuple[float, ...]] = setting(
        None,
        "The synthetic wavelength grid: strictly increasing offsets from the line centre, angstrom "
        "(e.g. 15 CRISP-like Fe I 6173 points within +-0.25 A); null = the CRISP Mg I b2 grid "
        "(13 points, -0.24 ... +0.24 A in 0.04 A steps).",
    )
    nt: int = setting(
        1,
        "Frames: 1 = the synthetic plage; more = a time series of it (advected by data.synthetic.flow, "
        "azimuths turning, fresh noise in every frame).",
        min=1,
    )
    flow: Tuple[float, float] = setting((0.25, 0.5), "Series: drift (vy, vx) of the field, pixels per frame.")
    azimuth_rate: float = setting(2.0, "Series: rms rotation rate of the azimuths, degrees per frame.", min=0.0)
    cadence: float = setting(20.0, "Series: time between frames, seconds.", gt=0.0)


@dataclass(frozen=True)
class DataConfig:
    """The observation: two FITS files, or (default) the synthetic plage."""

    path: Optional[str] = setting(
        None,
        "Stokes FITS file, array (ny, nx, 4, nw) in the order I, Q, U, V, or a time series "
        "(nt, ny, nx, 4, nw) (frame times from its TIMES table), or a reduced CRISP/CHROMIS cube of the "
        "SST pipeline (*_im.fits: wavelengths and times from its WCS-TAB table; leave data.wavelengths "
        "null); null = synthetic plage. Relative to the config file's directory.",
    )
    wavelengths: Optional[str] = setting(
        None,
        "FITS file of the nw wavelengths in angstrom relative to the line centre (with data.path); "
        "null with data.path = an SST pipeline cube.",
    )
    active_indices: Optional[Tuple[int, ...]] = setting(
        None,
        "Wavelength indices used in the fit (0-based); null = every observed wavelength (the run "
        "reports them in angstrom and in the ACTIVEWL header card).",
        min=0,
    )
    weights: Tuple[float, float, float, float] = setting(
        (1.0, 1.0, 1.0, 1.0), "Loss weight of Stokes I, Q, U, V.", min=0.0
    )
    synthetic: Optional[SyntheticConfig] = setting(
        None,
        "Synthetic plage parameters; used (with defaults) whenever data.path is null. "
        "Exclusive with data.path.",
    )
    noise: Optional[Tuple[Union[float, Tuple[float, ...]], ...]] = setting(
        None,
        "Noise sigma of the Stokes parameters for the sigma maps, in the cube's intensity unit: "
        "4 numbers (I, Q, U, V) or 4 lists of nw numbers (per Stokes parameter and wavelength); "
        "null = estimated from the data (docs/UNCERTAINTIES.md).",
        min=0.0,
    )


@dataclass(frozen=True)
class OutputConfig:
    """Optional outputs (field.fits, history.json, config.json and model.pt are always written)."""

    quicklook: bool = setting(True, "Write quicklook.png (maps, WFA maps, loss curves, errors vs truth).")
    dpi: int = setting(100, "Resolution of quicklook.png, dots per inch.", min=30, max=600)
    sigmas: bool = setting(
        False,
        "Write the neural field's sigma maps SIGMA_* (trains uncertainty.members extra fields, "
        "each as long as the fit). The pixel-wise WFA's WFA_SIGMA_* are always written.",
    )
    frame: Optional[int] = setting(
        None, "Time series: the frame quicklook.png shows (0-based); null = the middle one.", min=0
    )


def _section(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc})


@dataclass(frozen=True)
class RunConfig:
    """A whole, validated experiment config (what ``config.json`` holds)."""

    line: Optional[str] = setting(
        None,
        "Spectral line name (see hashwfa.wfa.physics.lines.LINES), e.g. '5173', '8542', '6302'; null = the "
        "cube's LINE header keyword (FITS data; an explicit line must agree with it), else '5173'.",
    )
    data: DataConfig = _section(DataConfig, "The observation.")
    encoding: EncodingConfig = _section(EncodingConfig, "The grid encoding.")
    encoding_blos: FieldEncodingConfig = _section(FieldEncodingConfig, "The B_los field's encoding, key by key where it differs.")
    encoding_bqbu: FieldEncodingConfig = _section(FieldEncodingConfig, "The (B_Q, B_U) field's encoding, likewise.")
    network: NetworkConfig = _section(NetworkConfig, "The MLP head.")
    training: TrainingConfig = _section(TrainingConfig, "The optimisation.")
    physics: PhysicsConfig = _section(PhysicsConfig, "The weak-field model of Q and U.")
    regularization: RegularizationConfig = _section(RegularizationConfig, "Smoothness terms in the loss, per field.")
    output: OutputConfig = _section(OutputConfig, "Optional outputs.")
    uncertainty: UncertaintyConfig = _section(UncertaintyConfig, "The field's sigma maps (with output.sigmas).")

    @property
    def solver(self) -> SolverConfig:
        """The part of the config the solver uses."""
        return SolverConfig(encoding=self.encoding, network=self.network, training=self.training, physics=self.physics,
                            encoding_blos=self.encoding_blos, encoding_bqbu=self.encoding_bqbu,
                            regularization=self.regularization)


# ------------------------------------------------------ the schema of a run


def key_paths(cls: type = RunConfig, prefix: str = "") -> List[str]:
    """Every leaf key path of the run config, e.g. ``"training.lr"``, in schema order."""
    return schema.key_paths(cls, prefix)


def describe_keys(cls: type = RunConfig, prefix: str = "") -> str:
    """Every config key with its default, allowed values and meaning, as text."""
    return schema.describe_keys(cls, prefix)


def config_to_dict(config: RunConfig) -> Dict[str, Any]:
    """Plain-JSON form of a :class:`RunConfig` (tuples as lists); loads back unchanged."""
    return schema.to_plain(config)


def apply_overrides(raw: Dict[str, Any], overrides: Sequence[str],
                    notes: Optional[List[str]] = None) -> Dict[str, str]:
    """Apply ``--set key.path=value`` items to the raw run config ``raw`` in place.

    See :func:`hashwfa.schema.apply_overrides`; returns ``{key path: item}``
    for error messages. A ``data.path`` set here replaces the config's
    synthetic data: its ``data.synthetic`` section is dropped (unless an
    override sets that too), and a sentence saying so is appended to ``notes``.
    """
    origins = schema.apply_overrides(RunConfig, raw, overrides)
    data = raw.get("data")
    set_synthetic = any(key == "data.synthetic" or key.startswith("data.synthetic.") for key in origins)
    if ("data.path" in origins and isinstance(data, dict) and data.get("path") is not None
            and data.get("synthetic") is not None and not set_synthetic):
        del data["synthetic"]
        if notes is not None:
            notes.append(f"{origins['data.path']} replaces the config's synthetic data (its data.synthetic "
                         "section is not used)")
    return origins


# ------------------------------------------------------------------ validation


def _resolve_path(value: Optional[str], path: str, ctx: Problems, base_dir: Optional[Path]) -> Optional[str]:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    if not p.is_absolute():
        from_set = ctx.set_by(path) is not None
        p = (Path.cwd() if from_set or base_dir is None else base_dir) / p
    return str(p.resolve())


def _check_noise_shape(noise: Optional[Tuple[Any, ...]], weights: Tuple[float, ...], ctx: Problems) -> None:
    """``data.noise``: 4 numbers or 4 equally long lists (the length is checked against the data in
    :func:`load_data`), with no zero sigma for a fitted Stokes parameter (Q, U, V of weight > 0)."""
    if noise is None:
        return
    rows = [isinstance(v, tuple) for v in noise]
    if len(noise) != 4 or (any(rows) and not (all(rows) and len({len(v) for v in noise}) == 1)):
        ctx.error(
            "data.noise",
            f"= {describe_value(schema.to_plain(noise))} is neither 4 numbers nor 4 lists of the same length",
            "give one sigma per Stokes parameter, [sI, sQ, sU, sV], or one list of nw sigmas per "
            "Stokes parameter, [[...], [...], [...], [...]], or null to estimate the noise from the data",
        )
        return
    # A zero sigma of a fitted Stokes parameter divides its residuals by zero (an infinite weight).
    for k, name in enumerate("IQUV"):
        if k == 0 or weights[k] <= 0:
            continue
        values = noise[k] if isinstance(noise[k], tuple) else (noise[k],)
        if any(float(v) == 0.0 for v in values):
            ctx.error(
                "data.noise",
                f"= {describe_value(schema.to_plain(noise))} gives Stokes {name} a sigma of 0",
                f"give the measured sigma of Stokes {name} (> 0, intensity units), or null to estimate the noise "
                "from the data",
            )
            return


def _check_synthetic_grid(data: DataConfig, ctx: Problems) -> None:
    """``data.synthetic.wavelengths``: a strictly increasing axis of >= 3 offsets [A] from the line centre;
    ``data.active_indices`` inside the synthetic grid (a FITS cube's length is checked when it is read)."""
    if data.path is not None:
        return
    synthetic = data.synthetic or SyntheticConfig()
    wl = synthetic.wavelengths
    grid = list(CRISP_WAVELENGTHS)
    if wl is not None:
        nw = len(wl)
        if len(wl) < 3:
            ctx.error(
                "data.synthetic.wavelengths",
                f"= {describe_value(list(wl))} has {len(wl)} wavelength(s)",
                "give at least 3 offsets from the line centre in angstrom (the derivatives of I need 3), "
                "or null for the CRISP Mg I b2 grid",
            )
            return
        steps = [b - a for a, b in zip(wl[:-1], wl[1:])]
        if not all(math.isfinite(x) for x in wl) or any(d <= 0 for d in steps):
            ctx.error(
                "data.synthetic.wavelengths",
                f"= {describe_value(list(wl))} is not strictly increasing",
                "list finite offsets from the line centre in angstrom in increasing order, each once",
            )
            return
        if any(abs(x) >= 100 for x in wl):
            ctx.error(
                "data.synthetic.wavelengths",
                f"= {describe_value(list(wl))} reaches {max(abs(x) for x in wl):g} A from the line centre",
                "give offsets from the line centre in angstrom (|offset| < 100 A), not absolute wavelengths",
            )
            return
        grid = list(wl)
    nw = len(grid)
    bad = [i for i in (data.active_indices or ()) if i >= nw]
    if bad:
        centre = min(range(nw), key=lambda i: abs(grid[i]))
        around = sorted({min(max(centre + k, 0), nw - 1) for k in (-1, 0, 1)})
        ctx.error(
            "data.active_indices",
            f"= {list(data.active_indices)} lists {bad}, outside the {nw} synthetic wavelengths",
            f"use 0-based indices in 0..{nw - 1}, e.g. {around} (the three around the line centre), "
            "or null for every wavelength",
        )


def _cross_checks(cfg: RunConfig, ctx: Problems, base_dir: Optional[Path]) -> RunConfig:
    """Checks that involve more than one key, and path resolution."""
    try:
        if cfg.line is not None:
            get_line(cfg.line)
    except HashwfaError:
        guess = closest_name(cfg.line, list(LINES))
        ctx.error(
            "line",
            f"= {describe_value(cfg.line)} is not a known line",
            (f"did you mean {guess!r}? " if guess else "")
            + "use one of "
            + ", ".join(repr(k) for k in LINES)
            + " (or an alias such as 'MgI_5173')",
        )
    for section, phase in (("encoding", None), ("encoding_blos", "blos"), ("encoding_bqbu", "bqbu")):
        enc = cfg.encoding if phase is None else cfg.solver.field_encoding(phase)
        # Report a problem once, at the section that set the offending key.
        own = section == "encoding" or getattr(getattr(cfg, section), "backend") is not None \
            or getattr(getattr(cfg, section), "interpolation") is not None
        if own and enc.backend == "tcnn" and enc.interpolation in CUBIC_INTERPOLATIONS:
            problem = f"= \"tcnn\" cannot run interpolation {enc.interpolation!r}"
            ctx.error(f"{section}.backend", problem, tcnn_cubic_message(enc.interpolation))
        own = section == "encoding" or getattr(getattr(cfg, section), "max_resolution") is not None \
            or getattr(getattr(cfg, section), "base_resolution") is not None
        if own and enc.max_resolution < enc.base_resolution:
            ctx.error(
                f"{section}.max_resolution",
                f"= {enc.max_resolution} is below base_resolution = {enc.base_resolution}",
                "make max_resolution >= base_resolution",
            )
        if enc.plane_resolution is not None and not REGISTRY[enc.version].plane:
            set_here = section == "encoding" or getattr(cfg, section).plane_resolution is not None \
                or getattr(cfg, section).version is not None
            if set_here:
                ctx.error(
                    f"{section}.plane_resolution",
                    f"= {enc.plane_resolution} is set, but version {enc.version} has no dense plane",
                    "plane_resolution is V6's only: leave it null, or set it in encoding_blos / encoding_bqbu "
                    "for the field that runs V6",
                )
    plage = cfg.data.synthetic or SyntheticConfig()  # known image size (FITS data: the solver checks)
    if cfg.regularization.active and cfg.data.path is None and cfg.training.batch_size < plage.ny * plage.nx:
        ctx.error(
            "training.batch_size",
            f"= {cfg.training.batch_size} makes minibatches, but the regularization terms need the whole map",
            "the smoothness terms compare neighbouring pixels of the full map at every step: set "
            "training.batch_size >= the number of pixels, or turn the regularization weights to 0",
        )
    data = cfg.data
    if data.path is not None and data.synthetic is not None:
        ctx.error(
            "data.synthetic",
            "is set together with data.path",
            "use either data.path + data.wavelengths (FITS) or data.synthetic, not both "
            "(on the command line: --set data.synthetic=null)",
        )
    if data.path is None and data.wavelengths is not None:
        ctx.error(
            "data.path",
            "is missing: data.wavelengths is set but no Stokes cube",
            "add 'data.path' (a FITS file path), or remove data.wavelengths to use the synthetic plage",
        )
    if data.active_indices is not None and len(set(data.active_indices)) != len(data.active_indices):
        ctx.error(
            "data.active_indices",
            f"= {list(data.active_indices)} repeats an index",
            "list each wavelength index once",
        )
    _check_noise_shape(data.noise, data.weights, ctx)
    _check_synthetic_grid(data, ctx)
    synthetic = data.synthetic
    if data.path is None and synthetic is None:
        synthetic = SyntheticConfig()
    data = dataclasses.replace(
        data,
        path=_resolve_path(data.path, "data.path", ctx, base_dir),
        wavelengths=_resolve_path(data.wavelengths, "data.wavelengths", ctx, base_dir),
        synthetic=synthetic,
    )
    return dataclasses.replace(cfg, data=data)


def validate_config(
    raw: Any,
    source: str = "<config>",
    *,
    origins: Optional[Mapping[str, str]] = None,
    base_dir: Optional[Union[str, Path]] = None,
) -> RunConfig:
    """Validate a parsed config object and fill in every default.

    Args:
        raw: the parsed JSON (a dict).
        source: the file name used in error messages.
        origins: key path -> the ``--set`` argument that set it (for messages
            and for path resolution).
        base_dir: directory that relative data paths are relative to.

    Raises:
        HashwfaError: listing every problem found, each with file, key path and fix.
    """
    problems = Problems(RunConfig, source, origins)
    cfg = schema.build(RunConfig, raw, problems)
    if not problems.errors:
        cfg = _cross_checks(cfg, problems, Path(base_dir) if base_dir is not None else None)
    problems.raise_if_any()
    return cfg


# --------------------------------------------------------------------- loading


def load_config(path: Union[str, Path], overrides: Sequence[str] = (),
                notes: Optional[List[str]] = None) -> RunConfig:
    """Read, override and validate a config file.

    Args:
        path: the commented JSON config.
        overrides: ``"key.path=value"`` items (the CLI's ``--set``), applied in order.
        notes: a list the notes of :func:`apply_overrides` are appended to.

    Returns:
        The validated :class:`RunConfig` with every default filled in.
    """
    raw = read_json_config(path)
    origins = apply_overrides(raw, overrides, notes)
    return validate_config(raw, str(path), origins=origins, base_dir=Path(path).resolve().parent)
