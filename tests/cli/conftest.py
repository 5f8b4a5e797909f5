"""Fixtures of the command-line tests: the smallest config a whole hashwfa-train run finishes with."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict

import pytest

_TINY: Dict[str, Any] = {
    "data": {"synthetic": {"ny": 12, "nx": 10, "seed": 1}},
    "encoding": {"version": 1, "n_levels": 4, "max_resolution": 8},
    "network": {"n_neurons": 16},
    "training": {"epochs_per_phase": 2, "device": "cpu", "seed": 0},
    "output": {"quicklook": False},
}


@pytest.fixture
def tiny_settings() -> Dict[str, Any]:
    """The tiny config as a dict (a fresh copy: a test may change it)."""
    return copy.deepcopy(_TINY)


@pytest.fixture
def tiny_config(tmp_path, tiny_settings) -> Path:
    """The tiny config written to ``tmp_path/tiny.json``."""
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_settings))
    return path
