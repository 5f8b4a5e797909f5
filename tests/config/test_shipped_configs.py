"""The configs ship inside the package: found by name from a checkout and from a non-editable install."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hashwfa.config.run_config import load_config
from hashwfa.config.shipped import config_path, shipped_config, shipped_config_names
from hashwfa.errors import HashwfaError

REPO = Path(__file__).resolve().parents[2]


def test_the_shipped_configs_are_the_repository_configs():
    names = shipped_config_names()
    assert names == sorted(p.stem for p in (REPO / "configs").glob("*.json"))
    for name in names:  # one source: the same bytes
        assert shipped_config(name).read_bytes() == (REPO / "configs" / f"{name}.json").read_bytes()


def test_a_name_finds_the_shipped_config_and_a_path_stays_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config_path("recommended") == shipped_config("recommended")
    assert config_path("v1.json") == shipped_config("v1")
    assert load_config(config_path("recommended")).output.sigmas is True
    assert config_path("configs/missing.json") == Path("configs/missing.json")  # the reader says it is missing
    (tmp_path / "recommended").write_text("{}")
    assert config_path("recommended") == Path("recommended")  # a file in the way wins
    with pytest.raises(HashwfaError, match="did you mean 'recommended_series'.*'v0'"):
        config_path("recommended_serie")


@pytest.mark.slow
def test_a_non_editable_install_finds_recommended(tmp_path):
    """``pip install --target`` of a copy of the checkout (no download: no deps, no build isolation)."""
    src = tmp_path / "src"
    shutil.copytree(REPO, src, symlinks=True,
                    ignore=shutil.ignore_patterns(".git", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache"))
    target = tmp_path / "site"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, env=env, cwd=tmp_path, timeout=300)
    shipped = target / "hashwfa" / "configs"
    assert shipped.is_dir() and not shipped.is_symlink()  # the files themselves, not the link
    code = ("import hashwfa, pathlib; from hashwfa.config.shipped import shipped_config; "
            "p = shipped_config('recommended'); print(pathlib.Path(hashwfa.__file__).parent); print(p)")
    out = subprocess.run([sys.executable, "-c", code], env={**env, "PYTHONPATH": str(target)}, cwd=tmp_path,
                         capture_output=True, text=True, check=True, timeout=120).stdout.split()
    assert out[0] == str(target / "hashwfa")
    assert Path(out[1]).read_bytes() == (REPO / "configs" / "recommended.json").read_bytes()
