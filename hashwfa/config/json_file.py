"""Reading a commented JSON config file (``//`` comments allowed) into a plain dict, with the line
and column of a syntax error and the fix."""

from __future__ import annotations

import json
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
