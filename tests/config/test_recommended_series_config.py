"""configs/recommended_series.json: configs/recommended.json for a time series, and nothing else changed."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hashwfa.cli.train import main
from hashwfa.config.run_config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_series_config_is_the_recommended_one_with_quarter_bqbu_factors_and_a_series_batch():
    series = load_config(CONFIGS / "recommended_series.json")
    single = load_config(CONFIGS / "recommended.json")
    # Same encodings, network, physics, output as the single-frame recommendation, except the
    # B_los grid's finest level: the series keeps 64 (measured on series), the single frame has 128.
    for key in ("encoding", "encoding_bqbu", "network", "physics", "output", "line"):
        assert getattr(series, key) == getattr(single, key), key
    assert series.encoding_blos == dataclasses.replace(single.encoding_blos, max_resolution=64)
    assert series.data.active_indices is None and series.physics.derivative == "spline"
    # The smoothness factors: B_los's as in recommended.json (1), the (B_Q, B_U) ones (0.5, 0.1) divided by 4.
    reg = series.regularization
    assert reg.weights == single.regularization.weights == "discrepancy"
    assert reg.blos == single.regularization.blos and (reg.blos.squared_gradient, reg.blos.total_variation) == (1.0, 0.0)
    assert (reg.bqbu.squared_gradient, reg.bqbu.total_variation) == (0.125, 0.025)
    assert reg.bqbu.tv_eps == single.regularization.bqbu.tv_eps
    # The data: the synthetic series of 8 frames at the reference size; the batch covers all its points.
    syn = series.data.synthetic
    assert (syn.nt, syn.ny, syn.nx) == (8, 200, 178)
    assert dataclasses.replace(syn, nt=1) == single.data.synthetic
    assert series.training.batch_size >= syn.nt * syn.ny * syn.nx
    assert (series.training.frames, series.training.frames_per_cell) == ("joint", 8.0)
    assert dataclasses.replace(series.training, batch_size=single.training.batch_size) == single.training
    assert "//" in (CONFIGS / "recommended_series.json").read_text()


@pytest.mark.usefixtures("one_thread")
def test_series_config_goes_through_hashwfa_train(tmp_path):
    # A small series through the CLI with every other key of the file: (nt, ny, nx) maps, no refusal.
    out = tmp_path / "out"
    argv = [str(CONFIGS / "recommended_series.json"), "--out", str(out), "--quiet", "--device", "cpu"]
    for item in ("data.synthetic.nt=3", "data.synthetic.ny=12", "data.synthetic.nx=10",
                 "training.epochs_per_phase=2", "output.quicklook=false", "output.sigmas=false"):
        argv += ["--set", item]
    assert main(argv) == 0
    with fits.open(out / "field.fits") as hdul:
        for name in ("BLOS", "BTRANS", "AZIMUTH", "REG_BLOS", "WFA_BLOS"):
            assert hdul[name].data.shape == (3, 12, 10), name
        assert np.all(np.isfinite(hdul["BTRANS"].data))
