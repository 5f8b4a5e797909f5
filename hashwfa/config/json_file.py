"""Reading a commented JSON config file (``//`` comments allowed) into a plain dict, with the line
and column of a syntax error and the fix."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import commentjson

from hashwfa.errors import HashwfaError
from hashwfa.schema import describe_value

__all__ = ["read_json_config"]


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


class _DuplicateKey(Exception):
    """A JSON object holds a key twice (json keeps the last silently)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: Any) -> Dict[str, Any]:
    """``object_pairs_hook`` of :func:`json.loads`: the object as a dict; raises on a repeated key."""
    out: Dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _second_line_of(key: str, text: str) -> Optional[int]:
    """The line (1-based) of the second ``"key":`` in ``text``, or None (commentjson drops the positions)."""
    found = [m.start() for m in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
    return text.count("\n", 0, found[1]) + 1 if len(found) > 1 else None


def read_json_config(path: Union[str, Path]) -> Dict[str, Any]:
    """Parse a commented JSON config file into a dict.

    Raises:
        HashwfaError: missing/unreadable file, invalid JSON (with line and
            column), a key repeated in one object (with its line), or a top
            level that is not an object.
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
        raw = commentjson.loads(text, object_pairs_hook=_refuse_duplicates)
    except _DuplicateKey as exc:
        line = _second_line_of(exc.key, text)
        where = f"{path}, line {line}" if line else str(path)
        raise HashwfaError(
            f"{where}: key {exc.key!r} appears twice in one object (JSON would keep the last silently). "
            "Fix: keep one of them."
        ) from None
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
