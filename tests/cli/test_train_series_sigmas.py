"""``hashwfa-train`` on a time series with ``output.sigmas``: an interrupted run resumes to the same
SIGMA_* maps as an uninterrupted one (the member trains again with the same seed and noise redraw)."""

import json

import numpy as np
import pytest
from astropy.io import fits

from hashwfa.cli.train import build_parser, main

from hashwfa.run.train import run

CONFIG = {
    "line": "5173",
    "data": {"synthetic": {"nt": 3, "ny": 12, "nx": 10, "model": "wfa"}},
    "encoding": {"version": 1, "n_levels": 6, "max_resolution": 16, "log2_hashmap_size": 10},
    "network": {"n_neurons": 16},
    "training": {"epochs_per_phase": 8, "lr": 0.05, "device": "cpu", "seed": 3, "checkpoint_every": 3},
    "output": {"quicklook": False, "sigmas": True},
}

pytestmark = pytest.mark.usefixtures("one_thread")


def test_interrupted_series_run_resumes_to_the_same_sigma_maps(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(CONFIG))
    reference = tmp_path / "ref"
    assert main([str(config), "--out", str(reference), "--quiet"]) == 0
    out = tmp_path / "resumed"
    args = build_parser().parse_args([str(config), "--out", str(out), "--quiet"])

    def stop(phase, epoch):
        if phase == "bqbu" and epoch == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(args, on_epoch_end=stop)
    assert main([str(config), "--out", str(out), "--quiet", "--resume"]) == 0
    with fits.open(reference / "field.fits") as ref, fits.open(out / "field.fits") as res:
        for name in ("SIGMA_BLOS", "SIGMA_BQ", "SIGMA_BU", "SIGMA_BTRANS", "SIGMA_AZIMUTH"):
            assert res[name].data.shape == (3, 12, 10), name
            np.testing.assert_array_equal(res[name].data, ref[name].data, err_msg=name)
    history = json.loads((out / "history.json").read_text())["uncertainty"]
    assert [m["seed"] for m in history["members"]] == [1003]
