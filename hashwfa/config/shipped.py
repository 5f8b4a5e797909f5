"""The configs shipped inside the package, by name.

The repository's ``configs/`` folder is their one source: ``hashwfa/configs``
is a link to it, and ``setup.cfg`` installs its ``*.json`` as package data,
so an installed hashwfa (editable or not) finds ``"recommended"`` without a
checkout.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import List, Union

from hashwfa.errors import HashwfaError, closest_name

__all__ = ["shipped_config_names", "shipped_config", "config_path"]


def _folder() -> Path:
    # A package installed as files (pip, editable or not) is a real folder; that is all we support.
    return Path(str(resources.files("hashwfa").joinpath("configs")))


def shipped_config_names() -> List[str]:
    """The names of the shipped configs (file stems), e.g. ``["recommended", ..., "v0", ...]``."""
    folder = _folder()
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


def shipped_config(name: str) -> Path:
    """The file of the shipped config ``name`` (``"recommended"`` or ``"recommended.json"``).

    Raises:
        HashwfaError: no shipped config has that name (the message lists them).
    """
    stem = name[:-5] if name.endswith(".json") else name
    names = shipped_config_names()
    if stem not in names:
        guess = closest_name(stem, names)
        raise HashwfaError(
            f"config {name!r} is neither a file nor a shipped config. Fix: "
            + (f"did you mean {guess!r}? " if guess else "")
            + "give a config file path, or one of " + ", ".join(repr(n) for n in names)
        )
    return _folder() / f"{stem}.json"


def config_path(config: Union[str, Path]) -> Path:
    """The config file ``config`` names: an existing file, else a shipped config by name.

    A path with a folder in it (``configs/v1.json``) is taken as a file path
    even when it does not exist (the reader then says so); a bare name that
    is not a file is looked up among the shipped configs.
    """
    path = Path(config)
    if path.exists() or len(path.parts) > 1:
        return path
    return shipped_config(str(config))
