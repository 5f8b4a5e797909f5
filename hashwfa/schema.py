"""Typed settings: dataclass fields that carry their documentation and allowed values.

A setting is a dataclass field made with :func:`setting`; its metadata holds
``doc`` and the checks (``min``/``max`` inclusive, ``gt``/``lt`` exclusive,
``choices``). :mod:`hashwfa.config` reads the metadata to build, document and
validate the JSON config, so every default lives in one place: the dataclass.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any, Dict, List, Mapping, Sequence, Tuple

__all__ = ["setting", "flatten", "differing_keys"]


def setting(default: Any, doc: str, **checks: Any) -> Any:
    """A dataclass field carrying its documentation and allowed values.

    ``checks`` may hold ``min``/``max`` (inclusive), ``gt``/``lt``
    (exclusive), ``choices`` (a tuple of allowed values) and ``length`` (the
    required length of a list). :mod:`hashwfa.config` reads them to validate
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
