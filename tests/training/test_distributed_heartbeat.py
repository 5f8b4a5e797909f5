"""Waiting for rank 0's serial work by its heartbeat (hashwfa.training.distributed, module docstring).

Rank 0 alone scans the data before its first message and prepares each
bootstrap member (pixel-wise WFA, noise, redraw) before announcing it; the
other ranks wait without the collective timeout as long as rank 0's
heartbeat advances, and stop with ``RankFailure`` when it stops (or rank 0's
store is gone). The oracle of the slow run is a plain single-process run of
the same config (the delays change nothing in the data); the failures are
checked by the message of the waiting rank, which must name rank 0's
heartbeat or the lost store, not a collective's timeout.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import pytest
import torch
from astropy.io import fits

from hashwfa.cli.train import build_parser

from hashwfa.run.train import run
from hashwfa.training.distributed import DistributedContext, RankFailure, _Heartbeat

needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)

#: The collective timeout of the runs below, in minutes (6 s); rank 0's delays are longer.
SHORT_TIMEOUT = "0.1"
DELAY_S = 8.0

# Every rank: hashwfa-train's main; on rank 0, RANK0_WORK=<kind> makes its serial work
# slow (the scan, the warm start's baseline, the member's redraw and the whole grid's prediction each DELAY_S longer), long (a 60 s scan), silent
# (a 60 s scan while the heartbeat does not beat) or deadly (rank 0 dies during the scan).
DRIVER = textwrap.dedent(
    """
    import os, sys, time
    from hashwfa.cli import train
    from hashwfa.run import ranks as job
    from hashwfa.training import distributed, solver
    from hashwfa.wfa.uncertainty import local_risk as field_uncertainty

    delay, work = float(os.environ["DELAY_S"]), os.environ.get("RANK0_WORK", "")
    if os.environ["RANK"] == "0" and work:
        real_load, real_redraw = job.load_data, field_uncertainty.redraw_noise_on_disk
        real_baseline = solver.baseline_maps

        def load_data(*args, **kwargs):
            data = real_load(*args, **kwargs)
            if work == "die":
                time.sleep(1.0)
                os._exit(3)
            if work == "long":  # tells the test that rank 0 is in its serial work
                open(os.path.join(os.environ["LOG_DIR"], "rank0-scanning"), "w").close()
            time.sleep(delay if work == "slow" else 60.0)  # "silent", "long": longer than any test
            return data

        def redraw(*args, **kwargs):
            time.sleep(delay)
            return real_redraw(*args, **kwargs)

        def baseline_maps(*args, **kwargs):
            time.sleep(delay)
            return real_baseline(*args, **kwargs)

        real_predict = solver.TwoPhaseSolver.predict

        def predict(self, coordinates=None):
            if coordinates is None:  # the maps over the whole grid, after the final loss's sum
                time.sleep(delay)
            return real_predict(self, coordinates)

        job.load_data = load_data
        solver.baseline_maps = baseline_maps
        if work == "slow":
            solver.TwoPhaseSolver.predict = predict
        field_uncertainty.redraw_noise_on_disk = redraw
        if work == "silent":
            distributed._Heartbeat.beat = lambda self: None
    sys.exit(train.main(sys.argv[1:]))
    """
)

TINY_SERIES = {
    "data": {"synthetic": {"nt": 2, "ny": 10, "nx": 9, "seed": 3, "noise": 5e-3}},
    "encoding": {"version": 1, "n_levels": 4, "max_resolution": 8, "log2_hashmap_size": 8},
    "network": {"n_neurons": 8},
    "training": {"epochs_per_phase": 4, "lr": 0.05, "device": "cpu", "seed": 0, "init_from": "pixelwise",
                 "init_epochs": 2},
    "output": {"quicklook": False, "sigmas": True},
}


def _env(tmp_path: Path, work: str, **extra: str) -> Dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", DELAY_S=str(DELAY_S), RANK0_WORK=work,
               LOG_DIR=str(tmp_path), **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    return env


def _setup(tmp_path: Path) -> List[str]:
    """The driver and the config; returns the argv after the driver."""
    (tmp_path / "driver.py").write_text(DRIVER)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TINY_SERIES))
    return [str(config), "--out", str(tmp_path / "two"), "--quiet", "--dist-timeout", SHORT_TIMEOUT]


def _torchrun(tmp_path: Path, work: str) -> subprocess.CompletedProcess:
    argv = _setup(tmp_path)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(tmp_path / "driver.py"), *argv]
    return subprocess.run(cmd, env=_env(tmp_path, work), capture_output=True, text=True, timeout=150)


# ------------------------------------------------------------ in one process


def _waiting_rank(store: torch.distributed.Store, timeout_s: float) -> DistributedContext:
    """Rank 1 of 2 in a one-process gloo group (the broadcast after the wait returns this rank's own box)."""
    return DistributedContext(rank=1, world_size=2, backend="gloo", timeout_s=timeout_s,
                              store=torch.distributed.PrefixStore("hashwfa", store))


@needs_gloo
def test_a_rank_waits_past_the_timeout_while_rank_0_beats_and_stops_when_it_does_not() -> None:
    store = torch.distributed.HashStore()
    torch.distributed.init_process_group("gloo", store=torch.distributed.PrefixStore("pg", store), rank=0,
                                         world_size=1)
    try:
        # Rank 0 beats every 0.1 s and marks its message ready after 2.5 s: 2.5 timeouts.
        rank0_store = torch.distributed.PrefixStore("hashwfa", store)
        heartbeat = _Heartbeat(rank0_store, 0.1)
        ready = threading.Timer(2.5, lambda: rank0_store.set("ready/0", "1"))
        ready.start()
        waiting = _waiting_rank(store, timeout_s=1.0)
        start = time.monotonic()
        waiting.broadcast_after_primary_work(None, "rank 0's test work")
        assert time.monotonic() - start >= 2.4  # it waited for the mark, not for a timeout
        heartbeat.stop()
        # The next message is never marked ready and nothing beats: the wait ends with RankFailure.
        time.sleep(0.3)  # the heartbeat thread has stopped
        with pytest.raises(RankFailure, match=r"rank 1 of 2: lost the other ranks during rank 0's test work "
                                              r"\(rank 0's heartbeat has not advanced"):
            waiting.broadcast_after_primary_work(None, "rank 0's test work")
    finally:
        torch.distributed.destroy_process_group()


def test_one_process_sends_nothing() -> None:
    # No process group, no store: the object comes straight back.
    obj = {"a": np.arange(3)}
    assert DistributedContext().broadcast_after_primary_work(obj, "nothing") is obj


# ------------------------------------------------------------ 2 CPU ranks


@needs_gloo
def test_rank_0s_serial_work_longer_than_the_timeout_completes_like_one_process(tmp_path: Path) -> None:
    # Rank 0's scan, its warm start's baseline, its member's redraw and its predictions of the
    # whole grid each take 8 s, the collective timeout is 6 s.
    done = _torchrun(tmp_path, "slow")
    assert done.returncode == 0, done.stderr[-3000:]
    config = tmp_path / "config.json"
    torch.set_num_threads(1)
    run(build_parser().parse_args([str(config), "--out", str(tmp_path / "one"), "--quiet"]))
    with fits.open(tmp_path / "one" / "field.fits") as a, fits.open(tmp_path / "two" / "field.fits") as b:
        assert b[0].header["WORLDSZ"] == 2
        for name in ("BLOS", "BQ", "BU", "SIGMA_BLOS", "SIGMA_BQ", "SIGMA_BU"):
            x, y = np.asarray(a[name].data, float), np.asarray(b[name].data, float)
            assert np.array_equal(np.isnan(x), np.isnan(y)) and np.isfinite(x).any(), name
            assert np.nanmax(np.abs(x - y)) <= 1e-3 * np.nanmax(np.abs(x)), name
    ua = json.loads((tmp_path / "one" / "history.json").read_text())
    ub = json.loads((tmp_path / "two" / "history.json").read_text())
    assert ub["uncertainty"]["skipped"] is None and len(ub["uncertainty"]["members"]) == 1
    assert ub["final_loss"] == pytest.approx(ua["final_loss"], rel=1e-4)
    for phase in ("blos", "bqbu"):  # the warm start's fit, rank 0's, reached rank 1
        assert ub["phases"][phase]["init_loss"] == pytest.approx(ua["phases"][phase]["init_loss"], rel=1e-5)


@needs_gloo
def test_a_silent_rank_0_stops_the_others_within_the_timeout(tmp_path: Path) -> None:
    # Rank 0 scans for 60 s without a heartbeat (as if frozen): rank 1 gives up after the
    # 6 s timeout and torchrun ends rank 0 (the subprocess's own timeout bounds the test).
    done = _torchrun(tmp_path, "silent")
    assert done.returncode != 0
    assert ("rank 1 of 2: lost the other ranks during rank 0's reading and scan of the data "
            "(rank 0's heartbeat has not advanced for") in done.stderr, done.stderr[-3000:]
    assert not (tmp_path / "two" / "field.fits").exists()


def _without_agent(tmp_path: Path, work: str, start_ranks: Callable[..., List[subprocess.Popen]]
                   ) -> List[subprocess.Popen]:
    """The two ranks, launched as torchrun would but without its agent: rank 0 hosts the store."""
    argv = _setup(tmp_path)
    return start_ranks(tmp_path / "driver.py", argv, _env(tmp_path, work))


@needs_gloo
@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP (POSIX) to freeze a process")
def test_a_frozen_rank_0_hosting_the_store_stops_the_others_within_the_timeout(tmp_path: Path,
                                                                              start_ranks_without_agent) -> None:
    # Rank 0 is frozen (SIGSTOP) during its scan: its heartbeat thread and the store it hosts
    # stop answering; rank 1 must not block in a store call but stop after the 6 s timeout.
    procs = _without_agent(tmp_path, "long", start_ranks_without_agent)
    try:
        deadline = time.monotonic() + 90
        while not (tmp_path / "rank0-scanning").exists():
            assert procs[0].poll() is None and time.monotonic() < deadline, procs[0].communicate()[1][-3000:]
            time.sleep(0.1)
        os.kill(procs[0].pid, signal.SIGSTOP)
        rank1_err = procs[1].communicate(timeout=60)[1]
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()
    assert procs[1].returncode == 2, rank1_err[-3000:]
    assert ("rank 1 of 2: lost the other ranks during rank 0's reading and scan of the data "
            "(rank 0's heartbeat has not advanced for") in rank1_err


@needs_gloo
def test_rank_0_dying_during_its_scan_stops_the_others_with_a_message(tmp_path: Path,
                                                                     start_ranks_without_agent) -> None:
    # Without torchrun's agent (which would end rank 1 itself): rank 0 hosts the store, so
    # rank 1 sees it go at once.
    procs = _without_agent(tmp_path, "die", start_ranks_without_agent)
    procs[0].communicate(timeout=60)
    rank1_err = procs[1].communicate(timeout=60)[1]
    assert procs[0].returncode == 3
    assert procs[1].returncode == 2, rank1_err[-3000:]
    assert "rank 1 of 2: lost the other ranks during rank 0's reading and scan of the data" in rank1_err
    assert "--resume" in rank1_err and not (tmp_path / "two" / "field.fits").exists()
