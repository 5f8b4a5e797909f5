"""scripts/bench_series.py: the recommended configuration on a series, and the regularised WFA's row."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

from hashwfa.config.run_config import load_config
from hashwfa.wfa.baselines.regularized import regularized_wfa
from hashwfa.wfa.synthetic.series import synthetic_series


def _load(repo_root):
    spec = importlib.util.spec_from_file_location("bench_series_script", repo_root / "scripts" / "bench_series.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scaled_resolutions_halve_each_fields_finest_level(repo_root):
    bench = _load(repo_root)
    cfg = load_config(repo_root / "configs" / "recommended.json").solver
    # The file's numbers: 32 shared (B_Q, B_U), 128 for B_los.
    assert cfg.field_encoding("blos").max_resolution == 128 and cfg.field_encoding("bqbu").max_resolution == 32
    half = bench.scaled_resolutions(cfg, 0.5)
    assert half.field_encoding("blos").max_resolution == 64
    assert half.field_encoding("bqbu").max_resolution == 16
    # Everything else is left as it was.
    assert half.field_encoding("blos").interpolation == "CatmullRom" and half.field_encoding("blos").n_levels == 11
    assert half.regularization == cfg.regularization and half.training == cfg.training
    v6 = load_config(repo_root / "configs" / "v1.json", ["encoding.version=6", "encoding.plane_resolution=40"]).solver
    assert bench.scaled_resolutions(v6, 0.5).encoding.plane_resolution == 20


def test_recommended_configuration_on_a_series(repo_root, tmp_path, one_thread):
    bench = _load(repo_root)
    out = tmp_path / "rows.json"
    args = ["--config", str(repo_root / "configs" / "recommended.json"), "--nt", "2", "--ny", "10", "--nx", "12",
            "--seed", "3", "--scale-resolution", "0.25", "--frames-per-cell", "4", "--threads", "1",
            "--set", "training.epochs_per_phase=2", "--json", str(out)]
    got = bench.main(args)
    assert json.loads(out.read_text())["rows"].keys() == got["rows"].keys()
    rows = got["rows"]
    assert list(rows) == ["pixel-wise WFA", "regularised WFA", "independent fields", "joint, 4 frames/cell"]

    # The REG row: the regularised WFA of the same series (noise estimated), errors written out here.
    series = synthetic_series(nt=2, ny=10, nx=12, seed=3, noise=1e-3, flow=(0.25, 0.5), azimuth_rate=2.0)
    obs = series.observation()
    reg = regularized_wfa(obs)
    truth = series.truth
    assert rows["regularised WFA"]["blos_rmse"] == pytest.approx(np.sqrt(np.mean((reg.maps.blos - truth.blos) ** 2)))
    assert rows["regularised WFA"]["bt_rmse"] == pytest.approx(np.sqrt(np.mean((reg.maps.bt - truth.bt) ** 2)))
    dphi = np.mod(reg.maps.azimuth - truth.azimuth + np.pi / 2, np.pi) - np.pi / 2
    assert rows["regularised WFA"]["azimuth_mae_deg"] == pytest.approx(math.degrees(np.mean(np.abs(dphi))))

    # The joint fit's smoothness weights come from that regularised WFA of the whole series ...
    joint = rows["joint, 4 frames/cell"]["penalty"]
    assert set(joint) == {"blos", "bqbu"}
    assert joint["blos"]["alpha"] == pytest.approx(reg.alpha_v)
    assert joint["bqbu"]["alpha"] == pytest.approx(reg.alpha_qu)
    # ... and the independent fields' from each frame's own.
    for t, frame in enumerate(rows["independent fields"]["penalty"]):
        own = regularized_wfa(series.frame_observation(t))
        assert frame["blos"]["alpha"] == pytest.approx(own.alpha_v)
        assert frame["bqbu"]["alpha"] == pytest.approx(own.alpha_qu)
    # The recommended factors times alpha * d: squared gradient 1 (B_los) and 0.5 (B_Q, B_U).
    assert joint["blos"]["squared_gradient"] == pytest.approx(1.0 * joint["blos"]["alpha"] * joint["blos"]["d"])
    assert joint["bqbu"]["squared_gradient"] == pytest.approx(0.5 * joint["bqbu"]["alpha"] * joint["bqbu"]["d"])
    # The resolutions were scaled: 128 * 0.25 and 32 * 0.25.
    assert got["encodings"]["blos"]["max_resolution"] == 32 and got["encodings"]["bqbu"]["max_resolution"] == 8
    ratio = got["ratios"]["joint, 4 frames/cell"]["regularised WFA"]["bt_rmse"]
    assert ratio == pytest.approx(rows["joint, 4 frames/cell"]["bt_rmse"] / rows["regularised WFA"]["bt_rmse"])
