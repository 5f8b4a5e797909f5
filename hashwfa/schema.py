"""Typed settings trees: declared as dataclasses, listed, flattened, validated, overridden.

A *setting* is a dataclass field made with :func:`setting`; its metadata holds
``doc`` and the checks (``min``/``max`` inclusive, ``gt``/``lt`` exclusive,
``choices``). A *tree* is a dataclass whose fields are settings or further
such dataclasses (sections, possibly ``Optional``). Everything here works on
any tree: :func:`key_paths` and :func:`describe_keys` list it, :func:`build`
validates a parsed JSON object against it (collecting every problem in
:class:`Problems`, each with the key path and the fix), :func:`to_plain`
and :func:`flatten` turn it into plain JSON, :func:`apply_overrides` applies
``--set key.path=value`` items. :mod:`hashwfa.config.run_config` is the tree of a run.
Leaf types: ``bool``, ``int``, ``float``, ``str``, ``Tuple[X, ...]`` or
``Tuple[X, X]`` of those, each possibly ``Optional``; the elements of a
``Tuple[E, ...]`` may themselves be lists (``E = Tuple[X, ...]``) or either
(``E = Union[X, Tuple[X, ...]]``, e.g. ``data.noise``: numbers or lists).
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import field
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from hashwfa.errors import HashwfaError, closest_name

__all__ = [
    "setting",
    "key_paths",
    "describe_keys",
    "to_plain",
    "flatten",
    "differing_keys",
    "Problems",
    "build",
    "describe_value",
    "parse_override",
    "apply_overrides",
]


def setting(default: Any, doc: str, **checks: Any) -> Any:
    """A dataclass field carrying its documentation and allowed values.

    ``checks`` may hold ``min``/``max`` (inclusive), ``gt``/``lt``
    (exclusive), ``choices`` (a tuple of allowed values) and ``length`` (the
    required length of a list). :mod:`hashwfa.config.run_config` reads them to validate
    user configs; the dataclasses themselves do not re-check.
    """
    return field(default=default, metadata={"doc": doc, **checks})


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """``{"training": {"lr": 0.005}}`` -> ``{"training.lr": 0.005}`` (leaves in order)."""
    out: Dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def differing_keys(a: Mapping[str, Any], b: Mapping[str, Any], ignored: Sequence[str] = ()) -> List[str]:
    """The sorted leaf key paths whose values differ between two nested dicts.

    A key present in only one of them differs. Key paths equal to, or
    starting with, an entry of ``ignored`` that ends in ``"."`` are skipped
    (``("training.device", "output.")``).
    """
    fa, fb = flatten(a), flatten(b)
    ignored = tuple(ignored)
    return sorted(
        k for k in set(fa) | set(fb) if fa.get(k, _ABSENT) != fb.get(k, _ABSENT) and not _ignored(k, ignored)
    )


_ABSENT = object()


def _ignored(key: str, ignored: Tuple[str, ...]) -> bool:
    return any(key == i or (i.endswith(".") and key.startswith(i)) for i in ignored)


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


def key_paths(cls: type, prefix: str = "") -> List[str]:
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


def describe_keys(cls: type, prefix: str = "") -> str:
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
            f"  {path} = {json.dumps(to_plain(_default(f)))}"
            + (f"  [{allowed}]" if allowed else "")
            + f"\n      {doc}"
        )
    return "\n".join(lines)


def to_plain(value: Any) -> Any:
    """Plain-JSON form of a settings tree (nested dicts; tuples as lists)."""
    if dataclasses.is_dataclass(value):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (tuple, list)):
        return [to_plain(v) for v in value]
    return value



# ------------------------------------------------------------------ validation


class Problems:
    """The problems found while validating a tree, so the user sees all of them at once.

    Args:
        root: the tree's dataclass (for "did you mean" hints across sections).
        source: the file name used in messages.
        origins: key path -> the ``--set`` item that set it.
    """

    def __init__(self, root: type, source: str, origins: Optional[Mapping[str, str]] = None):
        self.root = root
        self.source = source
        self.origins = origins or {}
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
        """The file, and the ``--set`` item when one set ``path``, for a message."""
        origin = self.set_by(path)
        return self.source if origin is None else f"{self.source} (--set {origin})"

    def error(self, path: str, problem: str, fix: str) -> None:
        """Record ``<where>: key '<path>' <problem>. Fix: <fix>``."""
        self.errors.append(f"{self.where(path)}: key '{path}' {problem}. Fix: {fix}")

    def raise_if_any(self) -> None:
        """Raise :class:`HashwfaError` listing every problem, one per line, if there is any."""
        if self.errors:
            raise HashwfaError("\n".join(self.errors))


_TYPE_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def describe_value(value: Any) -> str:
    """``value`` as JSON (shortened) with its kind, for messages: ``"3" (a string)``."""
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


def _element_name(tp: Any) -> str:
    """The plural name of a list's elements: ``numbers``, ``lists of numbers``, ``numbers or lists of numbers``."""
    if typing.get_origin(tp) is Union:
        return " or ".join(_element_name(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return "lists of " + _element_name(typing.get_args(tp)[0])
    return _TYPE_NAMES.get(tp, str(tp)).replace("an integer", "integers").replace("a number", "numbers")


def _type_name(tp: Any) -> str:
    optional, inner = _optional_inner(tp)
    if typing.get_origin(inner) is tuple:
        args = typing.get_args(inner)
        elem = _element_name(args[0])
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


def _check_element(tp: Any, value: Any) -> Tuple[bool, Any]:
    """(ok, converted) for one element of a list: a scalar, a non-empty nested list
    (``Tuple[X, ...]``, converted to a tuple) or a ``Union`` of those (the first that fits)."""
    if typing.get_origin(tp) is Union:
        for option in typing.get_args(tp):
            ok, converted = _check_element(option, value)
            if ok:
                return True, converted
        return False, value
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, list) or not value:
            return False, value
        items = [_check_element(typing.get_args(tp)[0], v) for v in value]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    return _check_scalar(tp, value)


def _leaves(items: Any) -> List[Any]:
    """The scalars of a possibly nested tuple, in order."""
    if isinstance(items, tuple):
        return [leaf for item in items for leaf in _leaves(item)]
    return [items]


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


def _convert(tp: Any, value: Any, path: str, f: dataclasses.Field, ctx: Problems) -> Any:
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
            converted = [_check_element(args[0], v) for v in value]
            if all(ok for ok, _ in converted):
                items = tuple(v for _, v in converted)
                bad = [v for v in _leaves(items) if not _in_range(meta, v)]
                if not bad:
                    return items
                ctx.error(
                    path,
                    f"has {describe_value(bad[0])}, out of range",
                    f"every element must be {_allowed_text(meta)} (default {json.dumps(to_plain(_default(f)))})",
                )
                return _default(f)
    else:
        ok, converted = _check_scalar(inner, value)
        if ok:
            if _in_range(meta, converted):
                return converted
            ctx.error(
                path,
                f"= {describe_value(value)} is out of range",
                ("use " if "choices" in meta else "set it to a value ")
                + f"{_allowed_text(meta)} (default {json.dumps(_default(f))})",
            )
            return _default(f)
    ctx.error(
        path,
        f"must be {_type_name(tp)}, got {describe_value(value)}",
        f"set it to {_type_name(tp)}"
        + (f" ({_allowed_text(meta)})" if _allowed_text(meta) else "")
        + f", e.g. the default {json.dumps(to_plain(_default(f)))}",
    )
    return _default(f)


def build(cls: type, raw: Any, problems: Problems) -> Any:
    """An instance of the tree ``cls`` from the parsed JSON object ``raw``, every default filled in.

    Problems are recorded in ``problems`` (the value concerned keeps its
    default), not raised: call :meth:`Problems.raise_if_any` after any
    further checks.
    """
    return _build(cls, raw, "", problems)


def _build(cls: type, raw: Any, path: str, ctx: Problems) -> Any:
    """An instance of the dataclass ``cls`` from the JSON object ``raw``."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(raw, dict):
        what = f"key '{path}'" if path else "the config"
        ctx.errors.append(
            f"{ctx.where(path)}: {what} must be a JSON object {{...}} with the keys "
            f"{', '.join(fields)}, got {describe_value(raw)}. Fix: write it as an object, "
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


def _unknown_key(prefix: str, key: str, siblings: List[str], ctx: Problems) -> None:
    path = prefix + key
    guess = closest_name(key, siblings)
    if guess is not None:
        guess = prefix + guess
    else:
        # Perhaps the key belongs in another section: compare leaf names,
        # then whole paths.
        leaves = key_paths(ctx.root)
        by_leaf = {p.rsplit(".", 1)[-1]: p for p in leaves}
        leaf = closest_name(key, list(by_leaf))
        guess = by_leaf[leaf] if leaf else closest_name(path, leaves)
    hint = f" Did you mean '{guess}'?" if guess else ""
    section = f"in '{prefix[:-1]}'" if prefix else "at the top level"
    ctx.errors.append(
        f"{ctx.where(path)}: unknown key '{path}'.{hint} Fix: rename or remove it; "
        f"the keys {section} are {', '.join(siblings)}"
    )



# ----------------------------------------------------------------- --set items


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


def _leaf_type(root: type, path: str) -> Any:
    """The schema type of a leaf key path, or None if the path is not a leaf."""
    cls: Any = root
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


def apply_overrides(root: type, raw: Dict[str, Any], overrides: Sequence[str]) -> Dict[str, str]:
    """Apply ``--set key.path=value`` items to ``raw`` in place.

    A value that parses as JSON of another type is kept as the typed string
    for keys whose schema type is a string (``--set line=5173`` means the
    line ``"5173"``). Returns ``{key path: item}`` for error messages.
    """
    origins = {}
    for item in overrides:
        key, value = parse_override(item)
        if _leaf_type(root, key) is str and not isinstance(value, str) and value is not None:
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
                    f"--set {item}: '{prefix}' is {describe_value(child)}, not an object, so "
                    f"'{key}' cannot be set. Fix: check the key path (see hashwfa-train --keys)."
                )
            node = child
        node[parts[-1]] = value
        origins[key] = item
    return origins

