"""JSON experiment configs: schema, defaults, validation, loading, ``--set`` overrides.

A config is a commented JSON object (``//`` and ``#`` comments, trailing
commas allowed, read with :mod:`commentjson`) with the sections

``line``      spectral line name (e.g. ``"5173"``), a plain string
``data``      the observation: FITS files, or the built-in synthetic plage
``encoding``  grid encoding (:class:`hashwfa.training.settings.EncodingConfig`)
``network``   MLP head (:class:`hashwfa.training.settings.NetworkConfig`)
``training``  optimisation (:class:`hashwfa.training.settings.TrainingConfig`)
``physics``   the Q/U forward model (:class:`hashwfa.training.settings.PhysicsConfig`)
``output``    what is written besides the always-written files

Every key has a default (the seed protocol, DESIGN.md section 6), so ``{}``
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
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import commentjson

from hashwfa.errors import HashwfaError, closest_name
from hashwfa.schema import flatten, setting
from hashwfa.training.settings import EncodingConfig, NetworkConfig, PhysicsConfig, SolverConfig, TrainingConfig

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
    "flatten_config",
    "describe_keys",
    "key_paths",
    "LoadedData",
    "load_data",
]


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the built-in synthetic plage (:func:`hashwfa.wfa.synthetic.synthetic_plage`)."""

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
        choices=("zeeman", "wfa"),
    )


@dataclass(frozen=True)
class DataConfig:
    """The observation: two FITS files, or (default) the synthetic plage."""

    path: Optional[str] = setting(
        None,
        "Stokes FITS file, array (ny, nx, 4, nw) in the order I, Q, U, V; null = synthetic "
        "plage. Relative to the config file's directory.",
    )
    wavelengths: Optional[str] = setting(
        None, "FITS file of the nw wavelengths in angstrom relative to the line centre (with data.path)."
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


@dataclass(frozen=True)
class OutputConfig:
    """Optional outputs (field.fits, history.json, config.json and model.pt are always written)."""

    quicklook: bool = setting(True, "Write quicklook.png (maps, WFA maps, loss curves, errors vs truth).")
    dpi: int = setting(100, "Resolution of quicklook.png, dots per inch.", min=30, max=600)


def _section(cls: type, doc: str) -> Any:
    return field(default_factory=cls, metadata={"doc": doc})


@dataclass(frozen=True)
class RunConfig:
    """A whole, validated experiment config (what ``config.json`` holds)."""

    line: str = setting("5173", "Spectral line name (see hashwfa.wfa.lines.LINES), e.g. '5173', '8542', '6302'.")
    data: DataConfig = _section(DataConfig, "The observation.")
    encoding: EncodingConfig = _section(EncodingConfig, "The grid encoding.")
    network: NetworkConfig = _section(NetworkConfig, "The MLP head.")
    training: TrainingConfig = _section(TrainingConfig, "The optimisation.")
    physics: PhysicsConfig = _section(PhysicsConfig, "The weak-field model of Q and U.")
    output: OutputConfig = _section(OutputConfig, "Optional outputs.")

    @property
    def solver(self) -> SolverConfig:
        """The part of the config the solver uses."""
        return SolverConfig(encoding=self.encoding, network=self.network, training=self.training, physics=self.physics)


# ----------------------------------------------------------------- schema walk


def _hints(cls: type) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def _optional_inner(tp: Any) -> Tuple[bool, Any]:
    """(True, X) for Optional[X], else (False, tp)."""
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def key_paths(cls: type = RunConfig, prefix: str = "") -> List[str]:
    """Every leaf key path of the schema, e.g. ``"training.lr"``, in schema order."""
    out = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        _, inner = _optional_inner(hints[f.name])
        if dataclasses.is_dataclass(inner):
            out.extend(key_paths(inner, path + "."))
        else:
            out.append(path)
    return out


def describe_keys(cls: type = RunConfig, prefix: str = "") -> str:
    """Every config key with its default, allowed values and meaning, as text."""
    lines = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        _, inner = _optional_inner(hints[f.name])
        doc = f.metadata.get("doc", "")
        if dataclasses.is_dataclass(inner):
            lines.append(f"{path}: {doc}")
            lines.append(describe_keys(inner, path + "."))
            continue
        allowed = _allowed_text(f.metadata)
        lines.append(
            f"  {path} = {json.dumps(_jsonable(_default(f)))}"
            + (f"  [{allowed}]" if allowed else "")
            + f"\n      {doc}"
        )
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    return value


def config_to_dict(config: Any) -> Dict[str, Any]:
    """Plain-JSON form of a :class:`RunConfig` (tuples as lists); loads back unchanged."""
    return _jsonable(config)


#: ``{"training": {"lr": 0.005}}`` -> ``{"training.lr": 0.005}`` (leaves in order).
flatten_config = flatten


# ------------------------------------------------------------------ validation


class _Context:
    """Collects errors while walking the schema, so the user sees all of them at once."""

    def __init__(self, source: str, origins: Mapping[str, str]):
        self.source = source
        self.origins = origins
        self.errors: List[str] = []

    def set_by(self, path: str) -> Optional[str]:
        """The ``--set`` item that set ``path`` or a section above it, if any."""
        parts = path.split(".")
        for i in range(len(parts), 0, -1):
            origin = self.origins.get(".".join(parts[:i]))
            if origin is not None:
                return origin
        return None

    def where(self, path: str) -> str:
        origin = self.set_by(path)
        return self.source if origin is None else f"{self.source} (--set {origin})"

    def error(self, path: str, problem: str, fix: str) -> None:
        self.errors.append(f"{self.where(path)}: key '{path}' {problem}. Fix: {fix}")


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _describe_value(value: Any) -> str:
    kind = {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({kind})"


def _allowed_text(meta: Mapping[str, Any]) -> str:
    parts = []
    if "choices" in meta:
        parts.append("one of " + ", ".join(json.dumps(c) for c in meta["choices"]))
    if "min" in meta:
        parts.append(f">= {meta['min']}")
    if "gt" in meta:
        parts.append(f"> {meta['gt']}")
    if "max" in meta:
        parts.append(f"<= {meta['max']}")
    if "lt" in meta:
        parts.append(f"< {meta['lt']}")
    return ", ".join(parts)


def _type_name(tp: Any) -> str:
    optional, inner = _optional_inner(tp)
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        elem = _TYPE_NAMES.get(args[0], str(args[0]))
        elem = elem.replace("an integer", "integers").replace("a number", "numbers")
        name = f"a list of {elem}" if args[-1] is Ellipsis else f"a list of {len(args)} {elem}"
    elif dataclasses.is_dataclass(inner):
        name = "an object {...}"
    else:
        name = _TYPE_NAMES.get(inner, str(inner))
    return f"null or {name}" if optional else name


def _check_scalar(tp: type, value: Any) -> Tuple[bool, Any]:
    """(ok, converted) for one scalar of type ``tp``."""
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, int):
            return True, value
        # 2e5 is a float in JSON; accept integral floats for integer keys.
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return True, int(value)
        return False, value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return math.isfinite(value), float(value)
    if tp is str:
        return isinstance(value, str), value
    raise TypeError(f"unsupported schema type {tp!r}")  # a bug in the schema, not a user error


def _in_range(meta: Mapping[str, Any], value: Any) -> bool:
    if "choices" in meta and value not in meta["choices"]:
        return False
    if "min" in meta and value < meta["min"]:
        return False
    if "max" in meta and value > meta["max"]:
        return False
    if "gt" in meta and not value > meta["gt"]:
        return False
    if "lt" in meta and not value < meta["lt"]:
        return False
    return True


def _convert(tp: Any, value: Any, path: str, f: dataclasses.Field, ctx: _Context) -> Any:
    """Validate and convert one value; on error record it and return the default."""
    meta = f.metadata
    optional, inner = _optional_inner(tp)
    if value is None:
        if optional:
            return None
    elif dataclasses.is_dataclass(inner):
        return _build(inner, value, path, ctx)
    elif typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        fixed = args[-1] is not Ellipsis
        if isinstance(value, list) and value and (not fixed or len(value) == len(args)):
            converted = [_check_scalar(args[0], v) for v in value]
            if all(ok for ok, _ in converted):
                items = tuple(v for _, v in converted)
                bad = [v for v in items if not _in_range(meta, v)]
                if not bad:
                    return items
                ctx.error(
                    path,
                    f"has {_describe_value(bad[0])}, out of range",
                    f"every element must be {_allowed_text(meta)} (default {json.dumps(_jsonable(_default(f)))})",
                )
                return _default(f)
    else:
        ok, converted = _check_scalar(inner, value)
        if ok:
            if _in_range(meta, converted):
                return converted
            ctx.error(
                path,
                f"= {_describe_value(value)} is out of range",
                ("use " if "choices" in meta else "set it to a value ")
                + f"{_allowed_text(meta)} (default {json.dumps(_default(f))})",
            )
            return _default(f)
    ctx.error(
        path,
        f"must be {_type_name(tp)}, got {_describe_value(value)}",
        f"set it to {_type_name(tp)}"
        + (f" ({_allowed_text(meta)})" if _allowed_text(meta) else "")
        + f", e.g. the default {json.dumps(_jsonable(_default(f)))}",
    )
    return _default(f)


def _build(cls: type, raw: Any, path: str, ctx: _Context) -> Any:
    """An instance of the dataclass ``cls`` from the JSON object ``raw``."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(raw, dict):
        what = f"key '{path}'" if path else "the config"
        ctx.errors.append(
            f"{ctx.where(path)}: {what} must be a JSON object {{...}} with the keys "
            f"{', '.join(fields)}, got {_describe_value(raw)}. Fix: write it as an object, "
            f"e.g. {{\"{next(iter(fields))}\": ...}}"
        )
        return cls()
    prefix = path + "." if path else ""
    for key in raw:
        if key not in fields:
            _unknown_key(prefix, key, list(fields), ctx)
    hints = _hints(cls)
    kwargs = {}
    for name, f in fields.items():
        if name in raw:
            kwargs[name] = _convert(hints[name], raw[name], prefix + name, f, ctx)
        else:
            kwargs[name] = _default(f)
    return cls(**kwargs)


def _unknown_key(prefix: str, key: str, siblings: List[str], ctx: _Context) -> None:
    path = prefix + key
    guess = closest_name(key, siblings)
    if guess is not None:
        guess = prefix + guess
    else:
        # Perhaps the key belongs in another section: compare leaf names,
        # then whole paths.
        leaves = key_paths()
        by_leaf = {p.rsplit(".", 1)[-1]: p for p in leaves}
        leaf = closest_name(key, list(by_leaf))
        guess = by_leaf[leaf] if leaf else closest_name(path, leaves)
    hint = f" Did you mean '{guess}'?" if guess else ""
    section = f"in '{prefix[:-1]}'" if prefix else "at the top level"
    ctx.errors.append(
        f"{ctx.where(path)}: unknown key '{path}'.{hint} Fix: rename or remove it; "
        f"the keys {section} are {', '.join(siblings)}"
    )


def _resolve_path(value: Optional[str], path: str, ctx: _Context, base_dir: Optional[Path]) -> Optional[str]:
    if value is None:
        return None
    p = Path(os.path.expanduser(value))
    if not p.is_absolute():
        from_set = ctx.set_by(path) is not None
        p = (Path.cwd() if from_set or base_dir is None else base_dir) / p
    return str(p.resolve())


def _cross_checks(cfg: RunConfig, ctx: _Context, base_dir: Optional[Path]) -> RunConfig:
    """Checks that involve more than one key, and path resolution."""
    from hashwfa.wfa.lines import LINES, get_line

    try:
        get_line(cfg.line)
    except HashwfaError:
        guess = closest_name(cfg.line, list(LINES))
        ctx.error(
            "line",
            f"= {_describe_value(cfg.line)} is not a known line",
            (f"did you mean {guess!r}? " if guess else "")
            + "use one of "
            + ", ".join(repr(k) for k in LINES)
            + " (or an alias such as 'MgI_5173')",
        )
    enc = cfg.encoding
    if enc.max_resolution < enc.base_resolution:
        ctx.error(
            "encoding.max_resolution",
            f"= {enc.max_resolution} is below encoding.base_resolution = {enc.base_resolution}",
            "make max_resolution >= base_resolution",
        )
    data = cfg.data
    if data.path is not None and data.synthetic is not None:
        ctx.error(
            "data.synthetic",
            "is set together with data.path",
            "use either data.path + data.wavelengths (FITS) or data.synthetic, not both "
            "(on the command line: --set data.synthetic=null)",
        )
    if (data.path is None) != (data.wavelengths is None):
        missing = "data.wavelengths" if data.wavelengths is None else "data.path"
        ctx.error(
            missing,
            "is missing: FITS data needs both data.path (Stokes) and data.wavelengths",
            f"add '{missing}' (a FITS file path), or remove the other to use the synthetic plage",
        )
    if len(set(data.active_indices)) != len(data.active_indices):
        ctx.error(
            "data.active_indices",
            f"= {list(data.active_indices)} repeats an index",
            "list each wavelength index once",
        )
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
    ctx = _Context(source, origins or {})
    cfg = _build(RunConfig, raw, "", ctx)
    if not ctx.errors:
        cfg = _cross_checks(cfg, ctx, Path(base_dir) if base_dir is not None else None)
    if ctx.errors:
        raise HashwfaError("\n".join(ctx.errors))
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
            f"{path}: the config must be a JSON object {{...}}, got {_describe_value(raw)}. "
            "Fix: wrap the settings in braces."
        )
    return raw


def parse_override(item: str) -> Tuple[str, Any]:
    """``"key.path=value"`` -> ``("key.path", value)``; the value is parsed as
    JSON (``3``, ``0.5``, ``true``, ``null``, ``[5, 6]``, ``"x"``) and taken
    as a plain string when it is not valid JSON (``line=5173`` gives 5173, an
    integer, which validation rejects for a string key: quote it, or rely on
    :func:`apply_overrides` which keeps strings for string keys).
    """
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise HashwfaError(
            f"--set {item!r}: expected KEY.PATH=VALUE, e.g. --set training.lr=0.001."
        )
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    return key, value


def _leaf_type(path: str) -> Any:
    """The schema type of a leaf key path, or None if the path is not a leaf."""
    cls: Any = RunConfig
    parts = path.split(".")
    for i, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if part not in fields:
            return None
        _, inner = _optional_inner(_hints(cls)[part])
        if i == len(parts) - 1:
            return inner
        if not dataclasses.is_dataclass(inner):
            return None
        cls = inner
    return None


def apply_overrides(raw: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, str]:
    """Apply ``--set key.path=value`` items to ``raw`` in place.

    A value that parses as JSON of another type is kept as the typed string
    for keys whose schema type is a string (``--set line=5173`` means the
    line ``"5173"``). Returns ``{key path: item}`` for error messages.
    """
    origins = {}
    for item in overrides:
        key, value = parse_override(item)
        if _leaf_type(key) is str and not isinstance(value, str) and value is not None:
            value = item.partition("=")[2].strip()
        node = raw
        parts = key.split(".")
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                prefix = ".".join(parts[: depth + 1])
                raise HashwfaError(
                    f"--set {item}: '{prefix}' is {_describe_value(child)}, not an object, so "
                    f"'{key}' cannot be set. Fix: check the key path (see hashwfa-train --keys)."
                )
            node = child
        node[parts[-1]] = value
        origins[key] = item
    return origins


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
            ``(ny, nx)`` (gauss, gauss^2, radians); None for real data.
        description: one line saying where the data came from.
    """

    observation: Any
    truth: Optional[Any]
    description: str


def load_data(config: RunConfig) -> LoadedData:
    """Build the observation of ``config.data`` (FITS files or the synthetic plage)."""
    from hashwfa.wfa.observation import Observation
    from hashwfa.wfa.synthetic import synthetic_plage

    data = config.data
    if data.path is not None:
        obs = Observation.from_fits(
            data.path,
            data.wavelengths,
            line=config.line,
            active_indices=data.active_indices,
            weights=data.weights,
        )
        truth = None
        description = f"FITS {data.path} (wavelengths {data.wavelengths})"
    else:
        s = data.synthetic or SyntheticConfig()
        plage = synthetic_plage(
            ny=s.ny,
            nx=s.nx,
            seed=s.seed,
            noise=s.noise,
            model=s.model,
            line=config.line,
            active_indices=data.active_indices,
            weights=data.weights,
        )
        obs = plage.observation
        truth = plage.truth
        description = f"synthetic plage {s.ny}x{s.nx}, model {s.model!r}, noise {s.noise:g}, seed {s.seed}"
    return LoadedData(observation=obs, truth=truth, description=description)
