"""``hashwfa-train`` on time series: the synthetic series, a (nt, ny, nx, 4, nw) FITS cube and an SST cube."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hashwfa.cli.train import main
from hashwfa.run.outputs import load_model
from hashwfa.wfa.synthetic.series import synthetic_series

_spec = importlib.util.spec_from_file_location(
    "sst_files", Path(__file__).resolve().parents[1] / "wfa" / "observation" / "sst_files.py")
sst_files = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sst_files)

NT, NY, NX = 3, 12, 10
CONFIG = """{
  "line": "5173",
  "data": %(data)s,
  "encoding": {"version": 1, "n_levels": 6, "max_resolution": 16, "log2_hashmap_size": 10},
  "network": {"n_neurons": 16},
  "training": {"epochs_per_phase": 4, "lr": 0.05, "device": "cpu", "seed": 0},
  "output": {"dpi": 30}
}
"""

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(tmp_path, data, *overrides):
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = tmp_path / "c.json"
    config.write_text(CONFIG % {"data": json.dumps(data)})
    out = tmp_path / "out"
    argv = [str(config), "--out", str(out), "--quiet"]
    for item in overrides:
        argv += ["--set", item]
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def series():
    return synthetic_series(nt=NT, ny=NY, nx=NX, seed=4, model="wfa")


def test_synthetic_series_gives_series_maps(tmp_path):
    out = _run(tmp_path, {"synthetic": {"nt": NT, "ny": NY, "nx": NX, "cadence": 15.0}}, "output.frame=2")
    with fits.open(out / "field.fits") as hdul:
        for name in ("BLOS", "BTRANS", "AZIMUTH", "WFA_BLOS", "TRUE_BLOS", "VALID"):
            assert hdul[name].data.shape == (NT, NY, NX), name
        assert hdul[0].header["HWAXES"] == "T,Y,X"
        np.testing.assert_array_equal(hdul["TIMES"].data["TIME"], [0.0, 15.0, 30.0])
    history = json.loads((out / "history.json").read_text())
    assert history["errors_vs_truth"]["blos_rmse"] > 0
    assert (out / "quicklook.png").is_file()
    model = load_model(out / "model.pt")
    assert model["blos"].encoding.n_input_dims == 3


def test_fits_series_cube_keeps_times_and_wcs(tmp_path, series):
    obs = series.observation()
    header = {"CTYPE3": "HPLN-TAN", "CTYPE4": "HPLT-TAN", "CDELT3": 0.044, "CDELT4": 0.044,
              "DATEREF": "2022-05-01T00:00:00"}
    obs.write_fits(tmp_path / "s.fits", tmp_path / "w.fits", header=header)
    out = _run(tmp_path, {"path": "s.fits", "wavelengths": "w.fits"})
    with fits.open(out / "field.fits") as hdul:
        assert hdul["BLOS"].data.shape == (NT, NY, NX)
        assert hdul["BLOS"].header["CTYPE1"] == "HPLN-TAN" and hdul["BLOS"].header["CDELT2"] == 0.044
        assert hdul[0].header["DATEREF"] == "2022-05-01T00:00:00"
        np.testing.assert_array_equal(hdul["TIMES"].data["TIME"], series.times)


def test_sst_cube_without_wavelengths_file(tmp_path, capsys, series):
    times = 7200.0 + 12.0 * np.arange(NT)[:, None] + 0.3 * np.arange(13)[None, :]
    wave_nm = (5172.6843 + series.wavelengths) / 10.0
    cavity = np.full((NT, NY, NX), 1e-4)
    sst_files.write_sst_cube(tmp_path / "crisp_im.fits", series.stokes, wave_nm, times, cavity_nm=cavity)
    out = _run(tmp_path, {"path": "crisp_im.fits"}, "training.frames=independent")
    # The reader's cavity-map warning: one line of the command, no Python source line, also in run.log.
    err = capsys.readouterr().err
    assert [line.startswith("hashwfa-train: warning: ") for line in err.splitlines() if "cavity" in line] == [True]
    assert "UserWarning" not in err and "cavity" in (out / "run.log").read_text()
    with fits.open(out / "field.fits") as hdul:
        assert hdul["BLOS"].data.shape == (NT, NY, NX)
        assert hdul["BLOS"].header["CTYPE1"] == "HPLN-TAN"
        assert hdul[0].header["DATEREF"].startswith("2021-06-22")
        assert any("cavity" in str(card) for card in hdul[0].header["COMMENT"])
        np.testing.assert_allclose(hdul["TIMES"].data["TIME"], times.mean(axis=1))
    model = load_model(out / "model.pt")
    assert len(model["frames"]) == NT and model["frames"][0]["blos"].encoding.n_input_dims == 2


def test_a_plain_cube_without_wavelengths_is_a_clear_error(tmp_path, capsys, series):
    fits.PrimaryHDU(series.stokes[0].astype(np.float32)).writeto(tmp_path / "s.fits")
    config = tmp_path / "c.json"
    config.write_text(CONFIG % {"data": json.dumps({"path": "s.fits"})})
    assert main([str(config), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "SST" in err and "data.wavelengths" in err


def test_interrupted_joint_series_run_resumes_to_the_same_maps(tmp_path):
    from hashwfa.cli.train import build_parser
    from hashwfa.run.train import run

    data = {"synthetic": {"nt": NT, "ny": NY, "nx": NX, "model": "wfa"}}
    reference = _run(tmp_path / "ref", data, "training.epochs_per_phase=8", "output.quicklook=false")
    config = tmp_path / "c.json"
    config.write_text(CONFIG % {"data": json.dumps(data)})
    out = tmp_path / "resumed"
    sets = ["--set", "training.epochs_per_phase=8", "--set", "training.checkpoint_every=3",
            "--set", "output.quicklook=false"]
    args = build_parser().parse_args([str(config), "--out", str(out), "--quiet", *sets])

    def stop(phase, epoch):
        if phase == "bqbu" and epoch == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(args, on_epoch_end=stop)
    assert (out / "checkpoint.pt").is_file()
    assert main([str(config), "--out", str(out), "--quiet", "--resume", *sets]) == 0
    with fits.open(reference / "field.fits") as ref, fits.open(out / "field.fits") as res:
        for name in ("BLOS", "BQ", "BU"):
            np.testing.assert_array_equal(res[name].data, ref[name].data)


def test_quicklook_frame_out_of_range_fails_before_training(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(CONFIG % {"data": json.dumps({"synthetic": {"nt": NT, "ny": NY, "nx": NX}})})
    assert main([str(config), "--out", str(tmp_path / "o"), "--quiet", "--set", f"output.frame={NT}"]) == 2
    assert "output.frame" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("frames", ["joint", "independent"])
def test_series_run_writes_per_frame_baselines_and_field_sigmas(tmp_path, capsys, frames):
    config = tmp_path / "series.json"
    config.write_text(json.dumps({
        "data": {"synthetic": {"ny": 12, "nx": 10, "nt": 3, "seed": 0}},
        "encoding": {"version": 1, "n_levels": 4, "max_resolution": 8},
        "network": {"n_neurons": 16},
        "training": {"epochs_per_phase": 2, "device": "cpu", "frames": frames},
        "output": {"quicklook": frames == "joint", "dpi": 30, "sigmas": True},
    }))
    out = tmp_path / "out"
    assert main([str(config), "--out", str(out), "--quiet"]) == 0
    assert (out / "quicklook.png").is_file() == (frames == "joint")
    err = capsys.readouterr().err
    assert "not available for time series" not in err and "SIGMA" not in err
    with fits.open(out / "field.fits") as hdul:
        assert hdul["REG_BLOS"].data.shape == (3, 12, 10)
        valid = hdul["VALID"].data.astype(bool)
        assert valid.any()
        for name in ("SIGMA_BLOS", "SIGMA_BTRANS", "SIGMA_AZIMUTH", "WFA_SIGMA_BLOS"):
            data = hdul[name].data
            assert data.shape == (3, 12, 10), name
            assert np.all(np.isfinite(data[valid])) and np.all(data[valid] > 0), name
        # The azimuth's sigma never exceeds that of an azimuth without information.
        assert np.all(hdul["SIGMA_AZIMUTH"].data[valid] <= np.pi / np.sqrt(12) + 1e-6)
    history = json.loads((out / "history.json").read_text())["uncertainty"]
    # One bootstrap member: one more fit of the whole series (seed 0 + 1000).
    assert history["field_sigmas"] is True and [m["seed"] for m in history["members"]] == [1000]
