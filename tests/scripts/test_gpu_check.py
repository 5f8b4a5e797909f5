"""The CPU-side parts of the one-call GPU check (scripts/gpu_check.sh, scripts/gpu_check.py)."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gpu_check.sh"
WHEELHOUSE = REPO / "third_party" / "wheels"
STAGES = ["install", "tcnn", "parity", "bench", "encoding", "pytest"]


def _load_driver():
    spec = importlib.util.spec_from_file_location("gpu_check_driver", REPO / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


driver = _load_driver()


def run_script(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        ["bash", str(SCRIPT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


# --- arguments -------------------------------------------------------------------------------


def test_help_lists_the_options():
    result = run_script("--help")
    assert result.returncode == 0
    for option in ("--out", "--wheelhouse", "--tcnn-src", "--build-hook", "--skip", "--budget", "--device"):
        assert option in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--out", "x", "--frobnicate"], "unknown argument: --frobnicate"),
        ([], "--out DIR is required"),
        (["--out"], "--out needs a value"),
        (["--out", "x", "--budget", "ten"], "--budget must be a whole number"),
        (["--out", "x", "--device", "gpu"], "--device must be cuda or cpu"),
        (["--out", "x", "--smooth-versions", "1,7"], "--smooth-versions must be versions 0-6"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(args, message, tmp_path):
    args = [str(tmp_path / a) if a == "x" else a for a in args]
    result = run_script(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert not any(tmp_path.iterdir())  # nothing ran


# --- stages without CUDA -----------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available: the GPU stages would run")
def test_without_cuda_every_gpu_stage_is_skipped_and_the_environment_is_written(tmp_path):
    out = tmp_path / "out"
    result = run_script("--out", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    report = (out / "report.txt").read_text()
    assert "stage 0 env: ok" in report
    for number, name in enumerate(STAGES, start=1):
        assert f"stage {number} {name}: skipped: no CUDA" in report
    env = (out / "env.txt").read_text()
    assert f"torch {torch.__version__}" in env
    assert "## nvidia-smi" in env and "## pip list" in env
    # the environment alone: no GPU stage wrote anything
    assert sorted(p.name for p in out.iterdir()) == ["env.txt", "report.txt"]


def test_cpu_smoke_run_of_the_parity_stage(tmp_path):
    out = tmp_path / "out"
    result = run_script("--out", str(out), "--device", "cpu", "--quick", "--skip", "install,2,bench,encoding,6")
    assert result.returncode == 0, result.stdout + result.stderr
    report = (out / "report.txt").read_text()
    assert "stage 1 install: skipped: --skip" in report and "stage 2 tcnn: skipped: --skip" in report
    assert re.search(r"stage 3 parity: ok \(\d+ s\)", report)
    parity = json.loads((out / "parity.json").read_text())
    assert parity["complete"] and parity["passed"] and parity["candidate"] == "torch64"
    names = {c["name"] for c in parity["checks"]}
    for otype in ("HashGrid", "DenseGrid"):
        for dims in (2, 3):
            for interpolation in ("Linear", "Smoothstep"):
                for what in ("values", "table gradient", "coordinate gradient"):
                    assert f"{otype} {dims}-D {interpolation}: {what}" in names
    for version in range(7):
        assert f"V{version} (max resolution 32): output, trained torch64 -> torch" in names
    assert len(list(out.iterdir())) <= 8


def test_a_spent_budget_stops_the_stages_and_fails(tmp_path):
    out = tmp_path / "out"
    result = run_script("--out", str(out), "--device", "cpu", "--budget", "0", "--skip", "install,tcnn")
    assert result.returncode == 1
    report = (out / "report.txt").read_text()
    assert "stage 3 parity: not run: the 0 s budget is spent" in report
    assert "some stage failed" in report


# --- the wheelhouse ------------------------------------------------------------------------------


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.mark.skipif(not WHEELHOUSE.is_dir(), reason=f"no wheelhouse at {WHEELHOUSE} (prepared locally, not committed)")
def test_the_wheelhouse_covers_the_declared_requirements():
    parser = configparser.ConfigParser()
    parser.read(REPO / "setup.cfg")
    declared = parser.get("options", "install_requires").split() + parser.get("options.extras_require", "test").split()
    names = {_normalise(re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]) for r in declared if r[0].isalpha()}
    wheel_names = {_normalise(p.name.split("-")[0]) for p in WHEELHOUSE.glob("*.whl")}
    missing = sorted(n for n in names if n not in wheel_names and n not in driver.PREINSTALLED_PACKAGES)
    assert not missing, f"no wheel and not preinstalled: {missing}"
    assert {"astropy", "commentjson"} <= wheel_names  # the two a CUDA PyTorch image lacks
    # and transitively, with versions and tags, for CPython 3.12
    assert driver.check_wheelhouse(WHEELHOUSE, REPO / "setup.cfg", (3, 12)) == []


def _fake_wheel(folder: Path, filename: str, name: str, version: str, requires: list[str]) -> None:
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"] + [f"Requires-Dist: {r}" for r in requires]
    with zipfile.ZipFile(folder / filename, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", "\n".join(meta) + "\n\nbody\n")


def test_wheelhouse_check_finds_what_is_missing_misfit_or_doubled(tmp_path):
    setup_cfg = tmp_path / "setup.cfg"
    setup_cfg.write_text("[options]\ninstall_requires =\n    torch>=2\n    alpha>=1.0\n    beta\n    gamma>=2\n")
    _fake_wheel(tmp_path, "alpha-1.5-py3-none-any.whl", "alpha", "1.5", ["delta>=1", "epsilon; python_version < '3.8'", "zeta; extra == 'x'"])
    _fake_wheel(tmp_path, "beta-1.0-cp312-cp312-win_amd64.whl", "beta", "1.0", [])
    _fake_wheel(tmp_path, "gamma-1.0-py3-none-any.whl", "gamma", "1.0", [])
    _fake_wheel(tmp_path, "delta-1.0-cp311-abi3-manylinux_2_17_x86_64.whl", "delta", "1.0", [])
    _fake_wheel(tmp_path, "delta-1.1-cp311-abi3-manylinux_2_17_x86_64.whl", "delta", "1.1", [])
    problems = driver.check_wheelhouse(tmp_path, setup_cfg, (3, 12))
    text = "\n".join(problems)
    assert "beta-1.0-cp312-cp312-win_amd64.whl: does not install" in text
    assert "no wheel for 'beta'" in text
    assert "gamma 1.0 in the wheelhouse does not satisfy 'gamma>=2'" in text
    assert "delta: 2 wheels" in text
    assert "torch" not in text and "alpha" not in text  # preinstalled; present and fitting
    assert "epsilon" not in text and "zeta" not in text  # markers false for 3.12 / no extra
    assert len(problems) == 4


@pytest.mark.parametrize(
    "filename, fits",
    [
        ("astropy-8.0.2-cp311-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl", True),
        ("x-1-cp312-cp312-manylinux_2_28_x86_64.whl", True),
        ("x-1-cp313-cp313-manylinux_2_28_x86_64.whl", False),
        ("x-1-cp313-abi3-manylinux_2_28_x86_64.whl", False),
        ("x-1-cp312-cp312-manylinux_2_28_aarch64.whl", False),
        ("x-1-py2.py3-none-any.whl", True),
        ("x-1-cp312-cp312-macosx_11_0_arm64.whl", False),
    ],
)
def test_wheel_tags_for_python_312_on_linux_x86_64(filename, fits):
    assert driver.wheel_fits(filename, (3, 12)) is fits


# --- the comparison --------------------------------------------------------------------------------


def test_compare_within_flags_differences_over_the_tolerance():
    reference = torch.zeros(4, 2)
    candidate = reference.clone()
    candidate[1, 0] = 0.5
    assert driver.compare_within("a", candidate, reference, 0.6)["passed"]
    failed = driver.compare_within("a", candidate, reference, 0.4)
    assert not failed["passed"] and failed["n_over"] == 1 and failed["max_abs_diff"] == 0.5
    # per-element tolerance, and an excluded row
    tolerance = torch.full((4, 2), 0.1)
    exclude = torch.tensor([[False], [True], [False], [False]])
    assert driver.compare_within("a", candidate, reference, tolerance, exclude=exclude)["passed"]
    candidate[2, 1] = float("nan")
    assert not driver.compare_within("a", candidate, reference, tolerance, exclude=exclude)["passed"]
    assert not driver.compare_within("a", torch.zeros(3), torch.zeros(4), 1.0)["passed"]


def test_grid_parity_fails_for_a_candidate_that_interpolates_differently(monkeypatch):
    # Same layout, other numbers (Smoothstep where the reference is Linear):
    # the values and both gradients must fail, the tolerances being rounding-sized.
    from hashwfa.encodings import make_grid as real_make_grid

    def make_grid(dims, config, backend="auto", seed=0, dtype=None):
        if dtype is torch.float64:  # the torch64 candidate
            config = {**config, "interpolation": "Smoothstep"}
        return real_make_grid(dims, config, backend=backend, seed=seed, dtype=dtype)

    monkeypatch.setattr("hashwfa.encodings.make_grid", make_grid)
    results = driver.grid_case("DenseGrid", 2, "Linear", "torch64", "cpu", 512, 0)
    assert [r["name"] for r in results if not r["passed"]] == [
        "DenseGrid 2-D Linear: values",
        "DenseGrid 2-D Linear: table gradient",
        "DenseGrid 2-D Linear: coordinate gradient",
    ]


def _candidate_with_scales_moved(monkeypatch, ulps: int) -> None:
    """The torch64 candidate's level scales moved up by ``ulps`` float32 ulps."""
    import dataclasses

    import numpy as np

    from hashwfa.encodings import make_grid as real_make_grid

    def make_grid(dims, config, backend="auto", seed=0, dtype=None):
        grid = real_make_grid(dims, config, backend=backend, seed=seed, dtype=dtype)
        if dtype is torch.float64:
            scales = grid.layout.scales.astype(np.float32)
            for _ in range(ulps):
                scales = np.nextafter(scales, np.float32(np.inf))
            grid.layout = dataclasses.replace(grid.layout, scales=scales)
        return grid

    monkeypatch.setattr("hashwfa.encodings.make_grid", make_grid)


@pytest.mark.parametrize("interpolation", ["Linear", "Smoothstep"])
@pytest.mark.parametrize("dims", [2, 3])
def test_grid_parity_passes_a_candidate_whose_scales_are_two_ulps_off(monkeypatch, interpolation, dims):
    # What the torch twin documents for tcnn on the GPU: level scales within an
    # ulp or two of the host's (fast-math exp2f). Such a candidate must pass.
    _candidate_with_scales_moved(monkeypatch, 2)
    results = driver.grid_case("HashGrid", dims, interpolation, "torch64", "cpu", 2048, 3)
    assert len(results) == 3
    assert all(r["passed"] for r in results), results


def test_grid_parity_fails_a_candidate_whose_scales_are_sixteen_ulps_off(monkeypatch):
    _candidate_with_scales_moved(monkeypatch, 16)
    results = driver.grid_case("HashGrid", 2, "Linear", "torch64", "cpu", 2048, 3)
    assert not results[0]["passed"] and results[0]["name"] == "HashGrid 2-D Linear: values"
