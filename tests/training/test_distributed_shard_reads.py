"""Data parallel on a series read from FITS: each rank reads only its shard of the cube.

Two CPU ranks over gloo (``torchrun``) fit a small series written to FITS;
the oracle is a plain single-process run of the same config (maps, losses)
and, for the reads, the shard computed here from the integers
(:func:`shard_rows`) and the valid pixels of the cube read whole. Every
rank's cube is wrapped (in the driver) in a memmap subclass that logs which
pixels each indexing reads; rank 1 must read exactly its shard's pixels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.io import fits

from hashwfa.cli.train import build_parser

from hashwfa.run.train import run
from hashwfa.training.distributed import shard_rows
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.synthetic.series import synthetic_series

NT, NY, NX = 4, 12, 10

# Each rank: hashwfa-train's main with the cube's memmap logging the pixels it reads
# (flat indices over (t, y, x)) to reads-rank<RANK>.txt, one line per read.
DRIVER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    import hashwfa.wfa.observation.stokes_fits as io_module
    from hashwfa.cli import train

    log = os.path.join(os.environ["READ_LOG_DIR"], "reads-rank%s.txt" % os.environ.get("RANK", "0"))

    def note(pixels):
        with open(log, "a") as f:
            f.write(json.dumps(sorted(int(p) for p in np.unique(pixels))) + "\\n")

    class Recorded(np.memmap):
        def __getitem__(self, key):
            out = super().__getitem__(key)
            frame = getattr(self, "frame_index", None)
            if self.ndim == 5:
                if isinstance(key, (int, np.integer)):
                    out.frame_index = int(key)
                else:  # anything but one frame reads the whole series
                    note(np.arange(int(np.prod(self.shape[:3]))))
            elif self.ndim == 4 and frame is not None:
                ny, nx = self.shape[:2]
                grid = np.arange(ny * nx).reshape(ny, nx) + frame * ny * nx
                k = key if isinstance(key, tuple) else (key,)
                if len(k) >= 2 and all(isinstance(a, np.ndarray) for a in k[:2]):
                    note(grid[k[0], k[1]])
                else:  # a slice of the frame: count it whole
                    note(grid)
            return out

    real_map_image = io_module.map_image

    def recorded(path, what):
        data, header, mask, why = real_map_image(path, what)
        return (data.view(Recorded) if isinstance(data, np.memmap) else data), header, mask, why

    io_module.map_image = recorded
    sys.exit(train.main(sys.argv[1:]))
    """
)

needs_gloo = pytest.mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="torch.distributed with the gloo backend is not available in this torch build",
)


def _reads(path: Path) -> set:
    return {p for line in path.read_text().splitlines() for p in json.loads(line)}


@needs_gloo
def test_two_ranks_on_a_fits_series_match_one_process_and_rank_1_reads_only_its_shard(tmp_path: Path) -> None:
    series = synthetic_series(nt=NT, ny=NY, nx=NX, seed=7, noise=5e-3)
    stokes = series.stokes.copy()
    stokes[1, 2, 3, 3, :] = np.nan  # an invalid pixel: the shards follow the valid ones
    obs = Observation(stokes, series.wavelengths, times=series.times, active_indices=series.active_indices)
    cube, waves = obs.write_fits(tmp_path / "series.fits", tmp_path / "waves.fits")
    config = {
        "data": {"path": str(cube), "wavelengths": str(waves), "active_indices": list(series.active_indices)},
        "encoding": {"version": 1, "n_levels": 6, "max_resolution": 16, "log2_hashmap_size": 10},
        "network": {"n_neurons": 16},
        "training": {"epochs_per_phase": 4, "lr": 0.05, "device": "cpu", "seed": 0, "batch_size": 200,
                     "init_from": "pixelwise", "init_epochs": 3},
        "output": {"quicklook": False},
    }
    config_path = tmp_path / "series.json"
    config_path.write_text(json.dumps(config))

    torch.set_num_threads(1)
    run(build_parser().parse_args([str(config_path), "--out", str(tmp_path / "one"), "--quiet"]))
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", READ_LOG_DIR=str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(driver), str(config_path), "--out", str(tmp_path / "two"), "--quiet"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]

    with fits.open(tmp_path / "one" / "field.fits") as a, fits.open(tmp_path / "two" / "field.fits") as b:
        for name in ("BLOS", "BQ", "BU"):
            x, y = np.asarray(a[name].data, float), np.asarray(b[name].data, float)
            assert x.shape == (NT, NY, NX)
            assert np.nanmax(np.abs(x - y)) <= 1e-3 * np.nanmax(np.abs(x)), name
    ha = json.loads((tmp_path / "one" / "history.json").read_text())
    hb = json.loads((tmp_path / "two" / "history.json").read_text())
    assert hb["world_size"] == 2 and hb["final_loss"] == pytest.approx(ha["final_loss"], rel=1e-4)
    for phase in ("blos", "bqbu"):
        np.testing.assert_allclose(hb["phases"][phase]["loss"], ha["phases"][phase]["loss"], rtol=1e-4)
        assert hb["phases"][phase]["init_loss"] == pytest.approx(ha["phases"][phase]["init_loss"], rel=1e-5)

    # Oracle of the reads: the valid pixels of the cube read whole, cut by the integers.
    with fits.open(cube) as hdul:
        whole = np.asarray(hdul[0].data, dtype=np.float64)
    valid = np.flatnonzero(Observation(whole, series.wavelengths, active_indices=series.active_indices).valid)
    shard = set(valid[shard_rows(valid.size, 1, 2)].tolist())
    # Besides its shard, rank 1 reads the sample of the data's fingerprint (compared with rank 0's):
    # at most 8 of the 12 rows of a frame.
    reads = _reads(tmp_path / "reads-rank1.txt")
    assert shard <= reads
    extra_rows = {}
    for p in reads - shard:
        t, y = divmod(p // NX, NY)
        extra_rows.setdefault(t, set()).add(y)
    assert all(len(rows) <= 8 for rows in extra_rows.values()), extra_rows
    assert _reads(tmp_path / "reads-rank0.txt") == set(range(NT * NY * NX))  # rank 0 scans it all
