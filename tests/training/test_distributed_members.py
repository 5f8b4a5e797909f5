"""Data-parallel bootstrap members (``output.sigmas`` under ``torchrun``): every rank trains its shard.

Two CPU ranks over gloo run ``hashwfa-train`` with ``output.sigmas`` on a small
synthetic series (made in memory) and on a small series read from FITS (a
lazy cube). The oracle is a plain single-process run of the same config: the
member's data are the same redraw (the same generator stream) and its loss is
the global mean, so the ``SIGMA_*`` maps must agree within the tolerance of
``test_distributed.py`` (relative 1e-3 of the map's largest value). That rank
1 trains the member is logged by the driver: the member's solver on rank 1
holds exactly its shard of the valid points (:func:`shard_rows`, computed here
from the integers) of rank 0's scratch file. Rank 0's decision to leave the
member out (a failed redraw, a divergence, a rank that cannot read the file)
must reach rank 1: no hang, exit 0, ``field.fits`` written without ``SIGMA_*``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
from astropy.io import fits

from hashwfa.cli.train import build_parser

from hashwfa.run.train import run
from hashwfa.training.distributed import shard_rows
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.synthetic.series import synthetic_series

SIGMA_NAMES = ("SIGMA_BLOS", "SIGMA_BQ", "SIGMA_BU", "SIGMA_BTRANS", "SIGMA_AZIMUTH")

# Every rank: hashwfa-train's main, with each member's solver logged to members-rank<RANK>.txt
# (its data's file, its shard's size), and the fault MEMBER_FAULT=<rank>:<kind> on that rank.
DRIVER = textwrap.dedent(
    """
    import json, os, sys
    from hashwfa.cli import train
    from hashwfa.errors import OutputWriteError
    from hashwfa.training import bootstrap as uncertainty
    from hashwfa.training.divergence import DivergenceError
    from hashwfa.wfa.uncertainty import local_risk as field_uncertainty

    rank = os.environ.get("RANK", "0")
    log = os.path.join(os.environ["LOG_DIR"], "members-rank%s.txt" % rank)
    fault_rank, _, fault = os.environ.get("MEMBER_FAULT", ":").partition(":")
    real_solver = uncertainty.member_solver

    def logged_solver(data, *args, **kwargs):
        name = os.path.basename(str(getattr(data.stokes, "filename", None) or ""))
        solver = real_solver(data, *args, **kwargs)
        with open(log, "a") as f:
            f.write(json.dumps({"file": name, "rows": solver.loss.n_valid, "n_valid": solver.n_valid,
                                "world": solver.dist.world_size}) + "\\n")
        if fault == "die" and fault_rank == rank:  # this rank dies as the member starts training
            def die(**kwargs):
                os._exit(3)
            solver.run = die
        if fault == "diverge":  # every rank: the loss is global, so a member diverges everywhere
            def diverged(**kwargs):
                raise DivergenceError("the loss is nan (test)")
            solver.run = diverged
        return solver

    uncertainty.member_solver = logged_solver
    if fault_rank == rank and fault == "redraw":
        def full_disk(*args, **kwargs):
            raise OutputWriteError("no scratch disk (test)")
        field_uncertainty.redraw_noise_on_disk = full_disk
    if fault_rank == rank and fault == "unreadable":
        def unreadable(*args, **kwargs):
            raise OSError("no such file (test)")
        uncertainty.Observation.with_stokes = unreadable  # how follow_members builds the member's data
    sys.exit(train.main(sys.argv[1:]))
    """
)

needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

TINY_SERIES = {
    "data": {"synthetic": {"nt": 3, "ny": 10, "nx": 9, "seed": 3, "noise": 5e-3}},
    "encoding": {"version": 1, "n_levels": 4, "max_resolution": 8, "log2_hashmap_size": 8},
    "network": {"n_neurons": 8},
    "training": {"epochs_per_phase": 4, "lr": 0.05, "device": "cpu", "seed": 0},
    "output": {"quicklook": False, "sigmas": True},
}


def _write_config(tmp_path: Path, config: Dict) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def _single(config: Path, out: Path) -> None:
    torch.set_num_threads(1)
    run(build_parser().parse_args([str(config), "--out", str(out), "--quiet"]))


def _torchrun(tmp_path: Path, argv: List[str], fault: str = ":") -> subprocess.CompletedProcess:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", LOG_DIR=str(tmp_path), MEMBER_FAULT=fault)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(driver),
           *argv, "--dist-timeout", "1"]  # a rank left waiting fails within a minute instead of hanging
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)


def _log(tmp_path: Path, rank: int) -> List[Dict]:
    path = tmp_path / f"members-rank{rank}.txt"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _scratch_files(out: Path) -> List[str]:
    return sorted(p.name for p in out.iterdir() if p.name.startswith(".member-stokes."))


def _assert_same_sigmas(one: Path, two: Path, shape: tuple) -> None:
    with fits.open(one / "field.fits") as a, fits.open(two / "field.fits") as b:
        assert b[0].header["WORLDSZ"] == 2
        for name in SIGMA_NAMES:
            x, y = np.asarray(a[name].data, float), np.asarray(b[name].data, float)
            assert x.shape == shape and np.isfinite(x).any(), name
            assert np.array_equal(np.isnan(x), np.isnan(y)), name
            assert np.nanmax(np.abs(x - y)) <= 1e-3 * np.nanmax(np.abs(x)), name
    ua = json.loads((one / "history.json").read_text())["uncertainty"]
    ub = json.loads((two / "history.json").read_text())["uncertainty"]
    assert ua["skipped"] is None and ub["skipped"] is None
    assert [m["world_size"] for m in ua["members"]] == [1] and [m["world_size"] for m in ub["members"]] == [2]
    assert ub["members"][0]["seed"] == ua["members"][0]["seed"]
    assert ub["members"][0]["final_loss"] == pytest.approx(ua["members"][0]["final_loss"], rel=1e-4)


def _assert_rank_1_trained_its_shard(tmp_path: Path, n_valid: int) -> None:
    (rank0,), (rank1,) = _log(tmp_path, 0), _log(tmp_path, 1)
    for entry in (rank0, rank1):  # both ranks trained the member on rank 0's scratch file
        assert entry["file"].startswith(".member-stokes.") and entry["file"] == rank0["file"]
        assert entry["world"] == 2 and entry["n_valid"] == n_valid
    for rank, entry in enumerate((rank0, rank1)):
        shard = shard_rows(n_valid, rank, 2)
        assert entry["rows"] == shard.stop - shard.start


@needs_gloo
def test_two_ranks_train_the_member_of_a_synthetic_series_like_one_process(tmp_path: Path) -> None:
    config = _write_config(tmp_path, TINY_SERIES)
    _single(config, tmp_path / "one")
    done = _torchrun(tmp_path, [str(config), "--out", str(tmp_path / "two"), "--quiet"])
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_sigmas(tmp_path / "one", tmp_path / "two", (3, 10, 9))
    _assert_rank_1_trained_its_shard(tmp_path, 3 * 10 * 9)
    assert _scratch_files(tmp_path / "two") == []


@needs_gloo
def test_two_ranks_train_the_member_of_a_fits_series_like_one_process(tmp_path: Path) -> None:
    series = synthetic_series(nt=3, ny=10, nx=9, seed=7, noise=5e-3, model="wfa")
    stokes = series.stokes.copy()
    stokes[1, 2, 3, 3, :] = np.nan  # an invalid pixel: the member's shards follow the valid ones
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        obs = Observation(stokes, series.wavelengths, times=series.times, active_indices=series.active_indices)
    cube, waves = obs.write_fits(tmp_path / "series.fits", tmp_path / "waves.fits")
    config = dict(TINY_SERIES, data={"path": str(cube), "wavelengths": str(waves),
                                     "active_indices": [int(i) for i in series.active_indices],
                                     "noise": [5e-3, 5e-3, 5e-3, 5e-3]},
                  training={**TINY_SERIES["training"], "batch_size": 100, "init_from": "pixelwise", "init_epochs": 2})
    path = _write_config(tmp_path, config)
    _single(path, tmp_path / "one")
    done = _torchrun(tmp_path, [str(path), "--out", str(tmp_path / "two"), "--quiet"])
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_sigmas(tmp_path / "one", tmp_path / "two", (3, 10, 9))
    _assert_rank_1_trained_its_shard(tmp_path, 3 * 10 * 9 - 1)
    assert _scratch_files(tmp_path / "two") == []


@needs_gloo
@pytest.mark.parametrize("fault, reason, rank1_trained", [
    ("0:redraw", "no scratch disk (test)", False),
    ("0:diverge", "the bootstrap member diverged", True),
    ("1:unreadable", "could not read the member's data", False),
])
def test_rank_0s_skip_reaches_every_rank_and_the_fit_is_written(tmp_path: Path, fault: str, reason: str,
                                                                rank1_trained: bool) -> None:
    config = _write_config(tmp_path, TINY_SERIES)
    out = tmp_path / "two"
    done = _torchrun(tmp_path, [str(config), "--out", str(out), "--quiet"], fault=fault)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "warning: no SIGMA_* maps" in done.stderr and reason in done.stderr
    with fits.open(out / "field.fits") as hdul:
        names = {hdu.name for hdu in hdul}
        assert hdul[0].header["WORLDSZ"] == 2
    assert "BLOS" in names and "WFA_SIGMA_BLOS" in names and not names & set(SIGMA_NAMES)
    history = json.loads((out / "history.json").read_text())
    assert reason in history["uncertainty"]["skipped"] and (out / "model.pt").exists()
    assert bool(_log(tmp_path, 1)) == rank1_trained
    if fault == "1:unreadable":  # rank 1 says why
        assert "rank 1: cannot read the bootstrap member's data" in done.stderr
    assert _scratch_files(out) == []


@needs_gloo
def test_a_rank_that_dies_in_the_member_ends_the_run_with_a_message_and_the_fit_resumable(
        tmp_path: Path, start_ranks_without_agent) -> None:
    # Launched as torchrun would, without its agent (which would end rank 0 itself).
    config = _write_config(tmp_path, TINY_SERIES)
    out = tmp_path / "two"
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", LOG_DIR=str(tmp_path), MEMBER_FAULT="1:die")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    argv = [str(config), "--out", str(out), "--quiet", "--dist-timeout", "1"]
    procs = start_ranks_without_agent(driver, argv, env)
    rank0_err = procs[0].communicate(timeout=120)[1]
    procs[1].communicate(timeout=60)
    assert procs[1].returncode == 3
    assert procs[0].returncode == 2, rank0_err[-3000:]
    assert "rank 0 of 2: lost the other ranks" in rank0_err and "--resume" in rank0_err
    assert not (out / "field.fits").exists() and _scratch_files(out) == []
    # The main fit's last checkpoint (both phases done) stays: --resume trains only the member again.
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["phase_index"] == 1 and state["epoch"] == TINY_SERIES["training"]["epochs_per_phase"]
    torch.set_num_threads(1)
    epochs: List[tuple] = []  # the main fit's epochs trained on resuming (the member's are not reported)
    run(build_parser().parse_args([str(config), "--out", str(out), "--quiet", "--resume"]),
        on_epoch_end=lambda phase, epoch: epochs.append((phase, epoch)))
    assert epochs == []
    with fits.open(out / "field.fits") as hdul:
        assert {hdu.name for hdu in hdul} >= set(SIGMA_NAMES)
