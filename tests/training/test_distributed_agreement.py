"""Data-parallel ranks refuse to train when one has another config or other data than rank 0.

Two CPU ranks (gloo), started as torchrun would but without its agent, so
that both ranks' messages and exit statuses are seen; rank 1 gets its own
extra arguments.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hashwfa.wfa.synthetic.series import synthetic_series

CONFIG = {
    "encoding": {"version": 1, "n_levels": 4, "max_resolution": 8, "log2_hashmap_size": 8},
    "network": {"n_neurons": 8},
    "training": {"epochs_per_phase": 2, "device": "cpu", "seed": 0},
    "output": {"quicklook": False},
}

# Every rank runs hashwfa-train's main; rank 1 appends the JSON list RANK1_ARGS to its arguments.
DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from hashwfa.cli import train
    argv = sys.argv[1:]
    if os.environ["RANK"] == "1":
        argv += json.loads(os.environ.get("RANK1_ARGS", "[]"))
    sys.exit(train.main(argv))
    """
)

needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)


def _two_ranks(tmp_path: Path, start, config: dict, rank1_args: list):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", RANK1_ARGS=json.dumps(rank1_args))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    procs = start(driver, [str(path), "--out", str(tmp_path / "out"), "--quiet", "--dist-timeout", "1"], env)
    errs = [p.communicate(timeout=120)[1] for p in procs]
    return [p.returncode for p in procs], errs


def _error_lines(err: str) -> list:
    return [line for line in err.splitlines() if "error:" in line]


@needs_gloo
def test_a_rank_with_another_learning_rate_refuses_and_rank_0_stops_cleanly(tmp_path, start_ranks_without_agent):
    config = dict(CONFIG, data={"synthetic": {"ny": 8, "nx": 6}})
    codes, (err0, err1) = _two_ranks(tmp_path, start_ranks_without_agent, config, ["--set", "training.lr=0.5"])
    assert codes == [2, 2], (err0[-2000:], err1[-2000:])
    assert len(_error_lines(err1)) == 1 and "rank 1: its config differs from rank 0's at training.lr" in err1
    assert "0.5" in err1 and "Fix:" in err1
    assert _error_lines(err0) == ["hashwfa-train: error: rank 1 refused rank 0's config or data (see its message); "
                                  "nothing was written"]
    assert "lost the other ranks" not in err0 + err1 and "Traceback" not in err0 + err1
    assert not (tmp_path / "out" / "field.fits").exists()


@needs_gloo
def test_a_rank_with_another_cube_of_the_same_shape_refuses(tmp_path, start_ranks_without_agent):
    paths = {}
    for name, seed in (("a", 1), ("b", 2)):
        paths[name] = synthetic_series(nt=2, ny=8, nx=6, seed=seed).write_fits(tmp_path / name)
    data = {"path": str(paths["a"]["stokes"]), "wavelengths": str(paths["a"]["wavelengths"])}
    codes, (err0, err1) = _two_ranks(tmp_path, start_ranks_without_agent, dict(CONFIG, data=data),
                                     ["--set", f"data.path={paths['b']['stokes']}"])
    assert codes == [2, 2], (err0[-2000:], err1[-2000:])
    assert len(_error_lines(err1)) == 1 and "rank 1: the data differ from rank 0's: the values" in err1
    assert "rank 1 refused" in err0 and "lost the other ranks" not in err0 + err1


@needs_gloo
def test_ranks_with_the_same_config_and_data_train(tmp_path, start_ranks_without_agent):
    config = dict(CONFIG, data={"synthetic": {"ny": 8, "nx": 6}})
    codes, (err0, err1) = _two_ranks(tmp_path, start_ranks_without_agent, config, [])
    assert codes == [0, 0], (err0[-2000:], err1[-2000:])
    assert (tmp_path / "out" / "field.fits").is_file()
