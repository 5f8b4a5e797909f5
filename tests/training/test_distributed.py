"""Data-parallel fits (hashwfa.training.distributed): sharding, and 2 CPU ranks over gloo against one process.

The oracle of the multi-process tests is a plain single-process run of the
same config: the distributed loss is the global mean, so the maps, the loss
history and the final loss must agree within float tolerance (the order of
the additions differs). Processes are launched as a user would, with
``torchrun`` (``python -m torch.distributed.run``), or, where a rank must die
before torchrun's agent ends the others, with the environment torchrun sets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import pytest
import torch
from astropy.io import fits

from hashwfa.cli.train import build_parser

from hashwfa.run.train import run
from hashwfa.errors import HashwfaError
from hashwfa.training.distributed import DistributedContext, launched_by_torchrun, shard_rows
from hashwfa.training.loss import WFALoss
from hashwfa.wfa.synthetic.series import synthetic_series

TINY_CONFIG = {
    "data": {"synthetic": {"ny": 24, "nx": 20, "seed": 3, "noise": 5e-3}},
    "encoding": {"version": 1, "n_levels": 6, "max_resolution": 16, "log2_hashmap_size": 10},
    "network": {"n_neurons": 16},
    "training": {"epochs_per_phase": 8, "lr": 0.05, "device": "cpu", "seed": 0, "checkpoint_every": 3},
    "output": {"quicklook": False},
}

# Run by every rank: hashwfa-train's main, with each atomic write logged to
# writes-rank<RANK>.txt, and (DIE_AT="rank:phase:epoch") one rank dying hard.
DRIVER = textwrap.dedent(
    """
    import contextlib, os, sys
    import hashwfa.run.outputs as results
    from hashwfa.cli import train

    rank = os.environ.get("RANK", "0")
    log = os.path.join(os.environ["WRITE_LOG_DIR"], "writes-rank%s.txt" % rank)
    real_atomic_path = results.atomic_path

    @contextlib.contextmanager
    def logged(path):
        with open(log, "a") as f:
            f.write(os.path.basename(str(path)) + "\\n")
        with real_atomic_path(path) as tmp:
            yield tmp

    results.atomic_path = logged
    die_at = os.environ.get("DIE_AT")
    if die_at is None:
        sys.exit(train.main(sys.argv[1:]))

    def on_epoch_end(phase, epoch):
        if die_at == "%s:%s:%d" % (rank, phase, epoch):
            os._exit(3)

    from hashwfa.errors import HashwfaError
    from hashwfa.run.train import run
    try:
        run(train.build_parser().parse_args(sys.argv[1:]), on_epoch_end=on_epoch_end)
    except HashwfaError as exc:
        print("hashwfa-train: error: %s" % exc, file=sys.stderr)
        sys.exit(2)
    """
)

needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)


# --------------------------------------------------------------- sharding


@pytest.mark.parametrize("n", [1, 2, 7, 480, 1001])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_shards_tile_the_valid_points(n: int, world: int) -> None:
    if n < world:
        with pytest.raises(HashwfaError, match="cannot be shared"):
            shard_rows(n, 0, world)
        return
    shards = [shard_rows(n, r, world) for r in range(world)]
    rows = [list(range(n))[s] for s in shards]
    assert sorted(i for r in rows for i in r) == list(range(n))  # union = all, disjoint
    sizes = [len(r) for r in rows]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    assert shards == [shard_rows(n, r, world) for r in range(world)]  # deterministic


def test_local_rows_keep_a_batch_order_within_the_shard() -> None:
    index = torch.tensor([9, 2, 5, 0, 7, 4, 3], dtype=torch.int64)
    shard = slice(3, 8)
    expected = [i - 3 for i in index.tolist() if 3 <= i < 8]
    assert DistributedContext.local_rows(index, shard).tolist() == expected == [2, 4, 1, 0]


def test_shard_losses_weighted_by_size_sum_to_the_global_loss(small_observation) -> None:
    # Oracle: the mean over all points is the size-weighted mean of the shard means.
    obs = small_observation
    full = WFALoss(obs)
    n = full.n_valid
    gen = torch.Generator().manual_seed(0)
    blos = torch.randn(n, generator=gen, dtype=torch.float64).float() * 300
    bqbu = torch.randn(n, 2, generator=gen, dtype=torch.float64).float() * 1e5
    indices, total = [], {"blos": 0.0, "bqbu": 0.0}
    for rows in (slice(0, 50), slice(50, 400), slice(400, n)):  # uneven: the weights matter
        part = WFALoss(obs, rows=rows)
        assert part.n_valid == rows.stop - rows.start and part.target_v.shape[0] == part.n_valid
        indices.append(part.valid_index)
        total["blos"] += float(part(blos=blos[rows], phase="blos")) * part.n_valid / n
        total["bqbu"] += float(part(bqbu=bqbu[rows], phase="bqbu")) * part.n_valid / n
    assert torch.equal(torch.cat(indices), full.valid_index)
    assert total["blos"] == pytest.approx(float(full(blos=blos, phase="blos")), rel=1e-5)
    assert total["bqbu"] == pytest.approx(float(full(bqbu=bqbu, phase="bqbu")), rel=1e-5)


def test_a_shard_copies_only_its_rows_of_the_spectra() -> None:
    # Oracle: plain indexing of the cube at the shard's valid pixels; and numpy's own
    # allocation count (tracemalloc), which halves when a rank builds half the points.
    import tracemalloc

    series = synthetic_series(nt=4, ny=12, nx=10, seed=2, noise=1e-3).observation()
    n = series.n_valid
    act = list(series.active_indices)
    flat = series.stokes.reshape(-1, 4, series.nw)
    rows = shard_rows(n, 1, 2)
    part = series.wfa_inputs(rows)
    index = np.flatnonzero(series.valid)[rows]
    assert np.array_equal(part.index, index)
    for k, name in enumerate("quv", start=1):
        assert np.array_equal(getattr(part, name), flat[index][:, k, act])
    full = series.wfa_inputs()
    assert np.array_equal(part.dI_dlambda, full.dI_dlambda[rows])
    assert np.array_equal(part.d2I_dlambda2, full.d2I_dlambda2[rows])

    def peak(rows_: Optional[slice]) -> int:
        tracemalloc.start()
        series.wfa_inputs(rows_)
        top = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return top

    # The float64 results are rows-sized (the spectra are read one frame at a time): leaving
    # out n - len(rows) rows saves at least their five (P, A) float64 arrays.
    saved = (n - (rows.stop - rows.start)) * 5 * len(act) * 8
    assert peak(None) - peak(rows) >= 0.9 * saved


class _QuietRank1(DistributedContext):
    """Rank 1 of 2 without a process group: the parameter broadcast (a collective) is skipped."""

    def broadcast_parameters(self, modules) -> None:  # type: ignore[no-untyped-def]
        pass


def test_a_rank_other_than_0_keeps_its_shard_and_lets_the_cube_go(small_solver_config) -> None:
    # Oracle: the shard's size from the integers (floor/ceil of n / 2), the pixel-wise WFA
    # of an untouched copy of the series, and the cube's own byte count.
    from hashwfa.training.solver import TwoPhaseSolver
    from hashwfa.wfa.baselines.pixelwise import pixel_wfa

    series = synthetic_series(nt=4, ny=12, nx=10, seed=2, noise=1e-3)
    obs, reference = series.observation(), series.observation()
    n, shape, index = obs.n_valid, obs.map_shape, obs.valid_index
    assert obs.stokes.nbytes == obs.n_pixels * 4 * obs.nw * 8
    solver = TwoPhaseSolver(obs, small_solver_config(init_from="pixelwise"), progress=False,
                            dist=_QuietRank1(rank=1, world_size=2, backend="gloo"))
    assert solver.loss.n_valid == n - n // 2 and solver.loss.target_v.shape[0] == n - n // 2
    assert not obs.holds_spectra and reference.holds_spectra
    assert obs.stokes.base is not None and obs.stokes.base.nbytes == 8  # one NaN, broadcast
    assert obs.map_shape == shape and np.array_equal(obs.valid_index, index) and obs.n_valid == n
    with pytest.raises(HashwfaError, match="released"):
        obs.wfa_inputs()
    assert solver._baseline is None  # rank 0 alone makes the warm start's baseline and fits it
    assert pixel_wfa(reference).blos.shape == shape
    assert solver.predict()["blos"].shape == (obs.n_pixels,)


@needs_gloo
def test_gradient_all_reduce_keeps_the_layout_and_missing_gradients() -> None:
    # A one-process gloo group: the sum over ranks is the rank's own values, so
    # what comes back must be exactly what went in, tensor by tensor.
    torch.distributed.init_process_group("gloo", store=torch.distributed.HashStore(), rank=0, world_size=1)
    try:
        ctx = DistributedContext(rank=0, world_size=2, backend="gloo")  # "enabled": the collectives run
        a = torch.nn.Parameter(torch.zeros(3, 2))
        b = torch.nn.Parameter(torch.zeros(5))
        unused = torch.nn.Parameter(torch.zeros(4))
        frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
        a.grad = torch.arange(6.0).view(3, 2)
        b.grad = torch.tensor([-1.0, 2.0, -3.0, 4.0, -5.0])
        loss = ctx.all_reduce_gradients([a, unused, b, frozen], torch.tensor(0.25))
        assert float(loss) == 0.25
        assert torch.equal(a.grad, torch.arange(6.0).view(3, 2))
        assert torch.equal(b.grad, torch.tensor([-1.0, 2.0, -3.0, 4.0, -5.0]))
        assert unused.grad is None and frozen.grad is None  # no rank had one: stays None, as in one process
    finally:
        torch.distributed.destroy_process_group()


def test_a_timeout_that_is_not_positive_is_refused(tmp_path: Path) -> None:
    args = build_parser().parse_args([str(_config(tmp_path)), "--out", str(tmp_path / "o"), "--dist-timeout", "0"])
    with pytest.raises(HashwfaError, match="--dist-timeout must be a positive"):
        run(args)
    assert not (tmp_path / "o").exists()


def test_world_size_one_is_not_distributed() -> None:
    assert not launched_by_torchrun({})
    assert not launched_by_torchrun({"WORLD_SIZE": "1", "RANK": "0"})
    assert launched_by_torchrun({"WORLD_SIZE": "2"})


# ------------------------------------------------------------ 2 CPU ranks


def _config(tmp_path: Path, **training) -> Path:
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["training"].update(training)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    return path


def _env(tmp_path: Path, **extra: str) -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", WRITE_LOG_DIR=str(tmp_path), **extra)
    # The ranks import this checkout's hashwfa, as the test process does.
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    return env


def _torchrun(tmp_path: Path, argv: List[str], nproc: int = 2) -> subprocess.CompletedProcess:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           str(driver), *argv]
    return subprocess.run(cmd, env=_env(tmp_path), capture_output=True, text=True, timeout=120)


def _single(config: Path, out: Path, stop_at: Optional[str] = None, extra: Optional[List[str]] = None) -> None:
    """One in-process hashwfa-train run; ``stop_at="phase:epoch"`` interrupts it after that epoch."""
    args = build_parser().parse_args([str(config), "--out", str(out), "--quiet", *(extra or [])])

    def stop(phase: str, epoch: int) -> None:
        if stop_at == f"{phase}:{epoch}":
            raise KeyboardInterrupt

    torch.set_num_threads(1)
    try:
        run(args, on_epoch_end=stop)
    except KeyboardInterrupt:
        assert stop_at is not None


def _assert_same_fit(reference: Path, other: Path) -> None:
    with fits.open(reference / "field.fits") as a, fits.open(other / "field.fits") as b:
        for name in ("BLOS", "BQ", "BU"):
            x, y = np.asarray(a[name].data, float), np.asarray(b[name].data, float)
            assert np.max(np.abs(x - y)) <= 1e-3 * np.max(np.abs(x)), name
        assert b[0].header["WORLDSZ"] == 2 and a[0].header["WORLDSZ"] == 1
    ha = json.loads((reference / "history.json").read_text())
    hb = json.loads((other / "history.json").read_text())
    assert hb["world_size"] == 2
    for phase, hist in ha["phases"].items():
        assert len(hist["loss"]) == len(hb["phases"][phase]["loss"]) == TINY_CONFIG["training"]["epochs_per_phase"]
        np.testing.assert_allclose(hb["phases"][phase]["loss"], hist["loss"], rtol=1e-4)
        assert hb["phases"][phase]["lr"] == hist["lr"]
    assert hb["final_loss"] == pytest.approx(ha["final_loss"], rel=1e-4)


@needs_gloo
def test_two_ranks_match_one_process_and_only_rank_0_writes(tmp_path: Path) -> None:
    config = _config(tmp_path)
    _single(config, tmp_path / "one")
    done = _torchrun(tmp_path, [str(config), "--out", str(tmp_path / "two"), "--quiet"])
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_fit(tmp_path / "one", tmp_path / "two")
    assert not (tmp_path / "writes-rank1.txt").exists(), "rank 1 wrote files"
    written = (tmp_path / "writes-rank0.txt").read_text().split()
    # 8 epochs per phase, a checkpoint every 3 and at each phase end: 3 per phase.
    assert sorted(set(written)) == ["checkpoint.pt", "config.json", "field.fits", "history.json", "model.pt"]
    assert written.count("checkpoint.pt") == 6 and written.count("field.fits") == 1
    assert not (tmp_path / "two" / "checkpoint.pt").exists()
    assert done.stdout.count("results:") == 1  # one report, by rank 0


@needs_gloo
def test_resume_with_another_number_of_ranks_continues_the_minibatch_trajectory(tmp_path: Path) -> None:
    # Minibatches of 100 of the 480 points: the permutation is global, so
    # 2 ranks resuming a 1-process checkpoint draw the same batches.
    config = _config(tmp_path, batch_size=100)
    _single(config, tmp_path / "one")
    _single(config, tmp_path / "two", stop_at="blos:4")  # checkpoint after blos epoch 3
    assert (tmp_path / "two" / "checkpoint.pt").exists() and not (tmp_path / "two" / "field.fits").exists()
    done = _torchrun(tmp_path, [str(config), "--out", str(tmp_path / "two"), "--resume"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming at phase 1, epoch 3" in done.stderr
    _assert_same_fit(tmp_path / "one", tmp_path / "two")


@needs_gloo
def test_a_rank_that_dies_stops_the_others_with_a_message_and_no_result(tmp_path: Path,
                                                                        start_ranks_without_agent) -> None:
    # Launched as torchrun would, without its agent (which would end rank 0 itself).
    config = _config(tmp_path)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    argv = [str(config), "--out", str(tmp_path / "out"), "--quiet", "--dist-timeout", "1"]
    procs = start_ranks_without_agent(driver, argv, _env(tmp_path, DIE_AT="1:blos:4"))
    rank0_err = procs[0].communicate(timeout=120)[1]
    procs[1].communicate(timeout=60)
    assert procs[1].returncode == 3
    assert procs[0].returncode == 2, rank0_err[-3000:]
    assert "rank 0 of 2: lost the other ranks" in rank0_err and "--resume" in rank0_err
    assert not (tmp_path / "out" / "field.fits").exists()
    # The last checkpoint (after blos epoch 3) is whole and resumable.
    state = torch.load(tmp_path / "out" / "checkpoint.pt", weights_only=True)
    assert state["phase_index"] == 0 and state["epoch"] == 3


@needs_gloo
def test_two_ranks_with_a_warm_start_match_one_process(tmp_path: Path) -> None:
    """training.init_from: every rank fits the whole baseline map and starts from rank 0's fit."""
    config = _config(tmp_path, init_from="regularized", init_epochs=10)
    _single(config, tmp_path / "one")
    done = _torchrun(tmp_path, [str(config), "--out", str(tmp_path / "two"), "--quiet"])
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_same_fit(tmp_path / "one", tmp_path / "two")
    ha = json.loads((tmp_path / "one" / "history.json").read_text())
    hb = json.loads((tmp_path / "two" / "history.json").read_text())
    for phase in ("blos", "bqbu"):
        assert hb["phases"][phase]["init_loss"] == pytest.approx(ha["phases"][phase]["init_loss"], rel=1e-5)
