"""JSON experiment configs: schema, defaults, validation, loading, ``--set`` overrides.

A config is a commented JSON object (``//`` and ``#`` comments, trailing
commas allowed, read with :mod:`commentjson`) with the sections

``line``      spectral line name (e.g. ``"5173"``), a plain string; null (the
              default): the cube's LINE header, else 5173
``data``      the observation: FITS files, or the built-in synthetic plage
``encoding``  grid encoding (:class:`hashwfa.training.settings.EncodingConfig`)
``network``   MLP head (:class:`hashwfa.training.settings.NetworkConfig`)
``training``  optimisation (:class:`hashwfa.training.settings.TrainingConfig`)
``physics``   the Q/U forward model (:class:`hashwfa.training.settings.PhysicsConfig`)
``output``    what is written besides the always-written files
``uncertainty`` how the field's sigma maps are estimated (:class:`hashwfa.training.uncertainty.UncertaintyConfig`)

Every key has a default (the seed protocol, docs/ARCHITECTURE.md section 6), so ``{}``
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
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import commentjson
from astropy.io import fits

from hashwfa.encodings.backend import tcnn_cubic_message
from hashwfa.encodings.grid_config import CUBIC_INTERPOLATIONS
from hashwfa.encodings.registry import REGISTRY
from hashwfa import schema
from hashwfa.errors import HashwfaError, closest_name
from hashwfa.schema import Problems, describe_value, parse_override, setting
from hashwfa.training.settings import (
    EncodingConfig, FieldEncodingConfig, NetworkConfig, PhysicsConfig, RegularizationConfig, SolverConfig,
    TrainingConfig,
)
from hashwfa.training.uncertainty import UncertaintyConfig
from hashwfa.wfa.fields import FieldMaps
from hashwfa.wfa.lines import LINES, get_line
from hashwfa.wfa.noise import StokesNoise, given_noise
from hashwfa.wfa.observation import Observation
from hashwfa.wfa.synthetic import MODELS as SYNTHETIC_MODELS
from hashwfa.wfa.synthetic import synthetic_plage
from hashwfa.wfa.synthetic_series import synthetic_series

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
    "LoadedData",
    "load_data",
]




@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the built-in synthetic plage (:func:`hashwfa.wfa.synthetic.synthetic_plage`), or with
    ``nt`` > 1 of a synthetic time series (:func:`hashwfa.wfa.synthetic_series.synthetic_series`)."""

    ny: int = setting(200, "Pixels along y.", min=2)
    nx: int = setting(178, "Pixels along x.", min=2)
    seed: int = setting(0, "Seed of the synthetic field and of its noise.", min=0, max=2**32 - 1)
    noise: float = setting(
        1e-3, "Standard deviation of the Gaussian noise added to the Stokes profiles (continuum units).", min=0.0
    )
    model: str = setting(
        "zeeman",
        "Forward model of the synthetic profiles: 'zeeman' (beyond the WFA, realistic) "
        "or 'wfa' (exactly the WFA).",
        choices=SYNTHETIC_MODELS,
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
    active_indices: Tuple[int, ...] = setting(
        (5, 6, 7), "Wavelength indices used in the fit (0-based).", min=0
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
        "Spectral line name (see hashwfa.wfa.lines.LINES), e.g. '5173', '8542', '6302'; null = the "
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


def apply_overrides(raw: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, str]:
    """Apply ``--set key.path=value`` items to the raw run config ``raw`` in place.

    See :func:`hashwfa.schema.apply_overrides`; returns ``{key path: item}``
    for error messages.
    """
    return schema.apply_overrides(RunConfig, raw, overrides)


# ------------------------------------------------------------------ validation


def _resolve_path(value: Optional[str], path: str, ctx: Problems, base_dir: Optional[Path]) -> Optional[str]:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    if not p.is_absolute():
        from_set = ctx.set_by(path) is not None
        p = (Path.cwd() if from_set or base_dir is None else base_dir) / p
    return str(p.resolve())


def _check_noise_shape(noise: Optional[Tuple[Any, ...]], ctx: Problems) -> None:
    """``data.noise``: 4 numbers or 4 equally long lists (the length is checked against the data in :func:`load_data`)."""
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
    if len(set(data.active_indices)) != len(data.active_indices):
        ctx.error(
            "data.active_indices",
            f"= {list(data.active_indices)} repeats an index",
            "list each wavelength index once",
        )
    _check_noise_shape(data.noise, ctx)
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


def _json_error_location(exc: BaseException, text: str) -> Tuple[Optional[int], Optional[int], str]:
    """(line, column, what) from a commentjson/lark/json error, walking its causes."""
    seen = exc
    while seen is not None:
        if isinstance(seen, json.JSONDecodeError):
            return seen.lineno, seen.colno, seen.msg
        line = getattr(seen, "line", None)
        column = getattr(seen, "column", None)
        if isinstance(line, int) and isinstance(column, int) and line > 0:
            token = getattr(seen, "token", None)
            pos = getattr(seen, "pos_in_stream", None)
            char = text[pos] if isinstance(pos, int) and 0 <= pos < len(text) else None
            if token is not None and getattr(token, "type", "") == "$END":
                what = "unexpected end of file (a bracket or brace not closed?)"
            elif token is not None:
                what = f"unexpected {str(token)!r}"
            elif char is not None:
                what = f"unexpected character {char!r}"
            else:
                what = "syntax error"
            return line, column, what
        seen = seen.__cause__ or seen.__context__
    return None, None, "syntax error"


def read_json_config(path: Union[str, Path]) -> Dict[str, Any]:
    """Parse a commented JSON config file into a dict.

    Raises:
        HashwfaError: missing/unreadable file, invalid JSON (with line and
            column), or a top level that is not an object.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise HashwfaError(
            f"config file '{path}' not found. Fix: check the path; the repository ships "
            "configs/v0.json ... configs/v6.json."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise HashwfaError(f"cannot read config file '{path}': {exc}. Fix: pass a UTF-8 JSON file.") from None
    if not text.strip():
        raise HashwfaError(f"config file '{path}' is empty. Fix: write a JSON object, at least {{}}.")
    try:
        raw = commentjson.loads(text)
    except Exception as exc:  # commentjson raises lark errors and bare ValueErrors
        line, column, what = _json_error_location(exc, text)
        where = f"{path}, line {line}, column {column}" if line else str(path)
        snippet = ""
        if line:
            source_line = text.splitlines()[line - 1] if line <= len(text.splitlines()) else ""
            snippet = f"\n    {source_line}\n    {' ' * max(column - 1, 0)}^"
        raise HashwfaError(
            f"{where}: invalid JSON: {what}.{snippet}\nFix: correct the JSON there (strings in "
            "double quotes, commas between items, comments with //)."
        ) from None
    if not isinstance(raw, dict):
        raise HashwfaError(
            f"{path}: the config must be a JSON object {{...}}, got {describe_value(raw)}. "
            "Fix: wrap the settings in braces."
        )
    return raw



def load_config(path: Union[str, Path], overrides: Sequence[str] = ()) -> RunConfig:
    """Read, override and validate a config file.

    Args:
        path: the commented JSON config.
        overrides: ``"key.path=value"`` items (the CLI's ``--set``), applied in order.

    Returns:
        The validated :class:`RunConfig` with every default filled in.
    """
    raw = read_json_config(path)
    origins = apply_overrides(raw, overrides)
    return validate_config(raw, str(path), origins=origins, base_dir=Path(path).resolve().parent)



# ------------------------------------------------------------------------ data


@dataclass
class LoadedData:
    """The observation a config describes, with the truth when it is known.

    Attributes:
        observation: the :class:`hashwfa.wfa.observation.Observation`.
        truth: for synthetic data, maps ``.blos .bq .bu .bt .azimuth``
            ``(ny, nx)``, or ``(nt, ny, nx)`` for a series (gauss, gauss^2,
            radians); None for real data.
        description: one line saying where the data came from.
        noise: the Stokes noise ``data.noise`` gives (checked against the
            data's wavelengths), or None: estimate it from the data.
    """

    observation: Observation
    truth: Optional[FieldMaps]
    description: str
    noise: Optional[StokesNoise] = None


def _has_line_keyword(path: str) -> bool:
    """Whether the FITS file's primary header has a LINE keyword."""
    return "LINE" in fits.getheader(path)


def load_data(config: RunConfig, valid: Optional[Any] = None) -> LoadedData:
    """Build the observation of ``config.data`` (FITS files, an SST cube, or the synthetic plage or series).

    A FITS or SST cube is mapped from its file, not read (a lazy
    :class:`~hashwfa.wfa.observation.Observation`). ``valid``: the valid
    pixels as rank 0 of a data-parallel fit found them (the cube is then not
    scanned here); ignored for synthetic data.
    """
    data = config.data
    if data.path is not None and data.wavelengths is None:
        try:
            obs = Observation.from_sst(data.path, line=config.line, active_indices=data.active_indices,
                                       weights=data.weights, valid=valid, derivative=config.physics.derivative,
                                       derivative_qu=config.physics.derivative_qu)
        except HashwfaError as exc:
            raise HashwfaError(f"{exc} (data.wavelengths is null, so data.path was read as an SST pipeline "
                               "cube; for any other FITS cube give data.wavelengths)") from None
        truth = None
        frames = f", {obs.nt} scans" if obs.is_series else ""
        description = f"SST cube {data.path}{frames}"
    elif data.path is not None:
        obs = Observation.from_fits(
            data.path,
            data.wavelengths,
            line=config.line,
            active_indices=data.active_indices,
            weights=data.weights,
            valid=valid,
            derivative=config.physics.derivative,
            derivative_qu=config.physics.derivative_qu,
        )
        truth = None
        description = f"FITS {data.path} (wavelengths {data.wavelengths}), line {obs.line.name}"
        if config.line is None:  # say where the line came from: it changes B by the Lande factor
            description += " (from the cube's LINE header)" if _has_line_keyword(data.path) else " (the default; no LINE header)"
    else:
        s = data.synthetic or SyntheticConfig()
        if s.nt > 1:
            series = synthetic_series(
                nt=s.nt, ny=s.ny, nx=s.nx, seed=s.seed, noise=s.noise, model=s.model, line=config.line or DEFAULT_LINE,
                active_indices=data.active_indices, flow=tuple(s.flow), azimuth_rate=s.azimuth_rate,
                cadence=s.cadence, derivative=config.physics.derivative,
                derivative_qu=config.physics.derivative_qu,
            )
            description = (f"synthetic series {s.nt}x{s.ny}x{s.nx} (flow {tuple(s.flow)} px/frame, "
                           f"every {s.cadence:g} s), model {s.model!r}, noise {s.noise:g}, seed {s.seed}")
            return LoadedData(observation=series.observation(weights=data.weights), truth=series.truth,
                              description=description)
        plage = synthetic_plage(
            ny=s.ny,
            nx=s.nx,
            seed=s.seed,
            noise=s.noise,
            model=s.model,
            line=config.line or DEFAULT_LINE,
            active_indices=data.active_indices,
            weights=data.weights,
            derivative=config.physics.derivative,
            derivative_qu=config.physics.derivative_qu,
        )
        obs = plage.observation
        truth = plage.truth
        description = f"synthetic plage {s.ny}x{s.nx}, model {s.model!r}, noise {s.noise:g}, seed {s.seed}"
    noise = None if data.noise is None else given_noise(schema.to_plain(data.noise), obs.nw, "config key 'data.noise'")
    return LoadedData(observation=obs, truth=truth, description=description, noise=noise)

