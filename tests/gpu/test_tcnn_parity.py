"""tiny-cuda-nn against the torch grid on a CUDA device: every case of scripts/tcnn_parity.py as a test.

The oracle is ``TorchGrid`` (itself checked against a plainly written grid in
tests/encodings/test_grid.py) on the same parameters; the tolerances are the
rounding that scripts/tcnn_parity.py derives (docs/GPU.md, "Parity"). Runs
where CUDA and tiny-cuda-nn are; elsewhere every test is skipped with the
reason. The cases' CPU side (the comparison, and tolerances that pass a
candidate with tcnn's documented rounding and fail one that interpolates
differently) is tested in tests/scripts/test_gpu_check.py.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
#: Random points per case (plus the borders 0 and 1), as ``gpu_check.py parity`` uses.
N_POINTS = 1 << 16


def _load_checks():
    spec = importlib.util.spec_from_file_location("tcnn_parity", REPO / "scripts" / "tcnn_parity.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


checks = _load_checks()
CASES = checks.parity_cases(quick=False)


@pytest.fixture(scope="module")
def tcnn_on_cuda() -> None:
    """Skip without tiny-cuda-nn or without a CUDA device; a build that is installed but broken fails."""
    if importlib.util.find_spec("tinycudann") is None:
        pytest.skip("tiny-cuda-nn not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    import tinycudann  # noqa: F401  (an import error here is a broken install, not a skip)


@pytest.mark.parametrize("function, args", [case[1:] for case in CASES], ids=[case[0].replace(" ", "-") for case in CASES])
def test_tcnn_matches_the_torch_grid(tcnn_on_cuda, function, args):
    results = function(*args, "tcnn", "cuda", N_POINTS, 0)
    failed = [r for r in results if not r["passed"]]
    assert results and not failed, failed
