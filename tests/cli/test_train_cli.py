"""``hashwfa-train`` end to end on a small synthetic plage (CPU)."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from astropy.io import fits

from hashwfa.cli.train import build_parser, main

from hashwfa.run.train import run
from hashwfa.config.run_config import load_config
from hashwfa.run.outputs import load_model
from hashwfa.run.data import load_data

EPOCHS = 60  # epochs per phase of the shared run
MAPS = ("BLOS", "BTRANS", "AZIMUTH", "BQ", "BU")
UNITS = {"BLOS": "G", "BTRANS": "G", "AZIMUTH": "rad", "BQ": "G2", "BU": "G2"}


def read_maps(out_dir):
    with fits.open(out_dir / "field.fits") as hdul:
        return {hdu.name: np.array(hdu.data) for hdu in hdul[1:]}


# The resumed run is compared bit for bit with the shared one: one thread for all.
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def finished(tmp_path_factory, small_config_file, one_thread):
    """One complete run through main(), shared by the tests that inspect its files."""
    directory = tmp_path_factory.mktemp("run")
    config = small_config_file(directory, epochs=EPOCHS)
    out = directory / "out"
    assert main([str(config), "--out", str(out), "--quiet"]) == 0
    return config, out


def test_writes_every_file_with_shapes_units_and_provenance(finished):
    config, out = finished
    for name in ("field.fits", "history.json", "config.json", "model.pt", "quicklook.png"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoint.pt").exists()
    assert not list(out.glob(".*.tmp"))
    with fits.open(out / "field.fits") as hdul:
        names = [hdu.name for hdu in hdul]
        for prefix in ("", "WFA_", "REG_", "TRUE_"):
            for name in MAPS:
                hdu = hdul[prefix + name]
                assert hdu.data.shape == (40, 36)
                assert hdu.header["BUNIT"] == UNITS[name]
        assert "VALID" in names
        header = hdul[0].header
        assert header["ENCVER"] == 1 and header["BACKEND"] == "torch" and header["DEVICE"] == "cpu"
        assert header["SEED"] == 0 and header["HWVERS"]
        assert (header["DERIV"], header["DERIVQU"]) == ("spline", "three_point")  # physics.derivative(_qu), the defaults
        # The regularised WFA's weights, chosen by the default rule from the estimated noise.
        assert header["REGALPV"] > 0 and header["REGALPQU"] > 0
        assert (header["REGRULV"], header["REGRULQU"]) == ("misfit", "discrepancy") and header["REGSIGES"] is True
        history = json.loads((out / "history.json").read_text())
        assert header["FINLOSS"] == pytest.approx(history["final_loss"])
        cards = "\n".join(str(c) for c in header["HISTORY"])
        assert "encoding.version = 1" in cards and "training.epochs_per_phase = 60" in cards
        azimuth = hdul["AZIMUTH"].data
        assert np.all((azimuth >= 0) & (azimuth < np.pi + 1e-6))
    # config.json is the resolved config and a valid config file itself.
    assert load_config(out / "config.json") == load_config(config)


def test_weakfld_is_the_zeeman_splitting_of_the_field_over_the_width_of_i(finished):
    config, out = finished
    maps = read_maps(out)
    obs = load_data(load_config(config)).observation
    wl = obs.wavelengths
    line = obs.line
    assert maps["WEAKFLD"].shape == maps["BLOS"].shape
    for y, x in ((3, 4), (20, 18), (39, 35)):
        spectrum = obs.stokes[y, x, 0]
        k = int(np.argmin(spectrum))
        a, b, c = np.polyfit(wl[k - 1:k + 2], spectrum[k - 1:k + 2], 2)  # independent parabola fit
        width = np.sqrt(2 * (spectrum.max() - (c - b * b / (4 * a))) / (2 * a))
        b_abs = np.hypot(maps["BLOS"][y, x], maps["BTRANS"][y, x])
        expected = 4.6686e-13 * line.center ** 2 * line.geff * b_abs / width
        assert maps["WEAKFLD"][y, x] == pytest.approx(expected, rel=1e-5)


def test_loss_falls_in_both_phases(finished):
    history = json.loads((finished[1] / "history.json").read_text())
    # Q and U of a plage are close to the noise: the loss floor of phase 2 is
    # near its start, so the fall there is small but must be there.
    for phase, factor in (("blos", 0.6), ("bqbu", 0.98)):
        loss = history["phases"][phase]["loss"]
        assert len(loss) == len(history["phases"][phase]["lr"]) == EPOCHS
        assert loss[-1] < factor * loss[0], (phase, loss[0], loss[-1])
    assert history["final_loss"] > 0


def test_field_beats_the_pixelwise_wfa_on_blos(finished):
    maps = read_maps(finished[1])
    valid = maps["VALID"].astype(bool)

    def rmse(a):
        return float(np.sqrt(np.mean((a - maps["TRUE_BLOS"])[valid] ** 2)))

    field, wfa = rmse(maps["BLOS"]), rmse(maps["WFA_BLOS"])
    truth_rms = float(np.sqrt(np.mean(maps["TRUE_BLOS"][valid] ** 2)))
    # A real inversion: far better than the noisy pixel-wise WFA, and far
    # better than a field of zeros.
    assert field < 0.7 * wfa, (field, wfa)
    assert field < 0.4 * truth_rms, (field, truth_rms)
    history = json.loads((finished[1] / "history.json").read_text())
    assert history["errors_vs_truth"]["blos_rmse"] == pytest.approx(field, rel=1e-4)
    reg = rmse(maps["REG_BLOS"])
    assert history["errors_vs_truth"]["reg_blos_rmse"] == pytest.approx(reg, rel=1e-4)
    assert reg < wfa, (reg, wfa)


def test_model_pt_rebuilds_the_maps(finished):
    model = load_model(finished[1] / "model.pt", backend="torch")
    maps = read_maps(finished[1])
    y, x = np.meshgrid(np.linspace(-1, 1, 40), np.linspace(-1, 1, 36), indexing="ij")
    coords = torch.tensor(np.stack([y.ravel(), x.ravel()], 1), dtype=torch.float32)
    with torch.no_grad():
        blos = model["blos"](coords)[:, 0] * model["scales"]["blos"]
    np.testing.assert_allclose(blos.numpy().reshape(40, 36), maps["BLOS"], rtol=1e-5, atol=1e-3)


def test_same_seed_identical_maps_and_interrupted_run_resumes_to_the_same(finished, tmp_path):
    config, reference = finished
    ref = read_maps(reference)
    out = tmp_path / "out"
    # Interrupt phase 2 after a few epochs; a checkpoint is written every 5.
    args = build_parser().parse_args(
        [str(config), "--out", str(out), "--quiet", "--set", "training.checkpoint_every=5",
         "--set", "output.quicklook=false"]
    )

    def stop(phase, epoch):
        if phase == "bqbu" and epoch == 12:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(args, on_epoch_end=stop)
    assert (out / "checkpoint.pt").is_file() and not (out / "field.fits").exists()
    # Without --resume the directory is not touched.
    assert main([str(config), "--out", str(out), "--quiet"]) == 2
    assert main([str(config), "--out", str(out), "--quiet", "--resume",
                 "--set", "training.checkpoint_every=5", "--set", "output.quicklook=false"]) == 0
    resumed = read_maps(out)
    for name in MAPS:
        np.testing.assert_array_equal(resumed[name], ref[name])
    h_ref = json.loads((reference / "history.json").read_text())["phases"]
    h_res = json.loads((out / "history.json").read_text())["phases"]
    assert h_res == h_ref
    assert not (out / "checkpoint.pt").exists()


def test_existing_output_directory_is_not_overwritten_silently(finished, tmp_path, capsys, small_config_file):
    config, _ = finished
    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main([str(config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "not empty" in err and "--resume" in err and "--overwrite" in err
    assert "Traceback" not in err
    # --overwrite replaces our files only.
    tiny = small_config_file(tmp_path, epochs=2, name="tiny.json")
    assert main([str(tiny), "--out", str(out), "--quiet", "--overwrite", "--set", "output.quicklook=false"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "field.fits").is_file()
    # A complete run has nothing to resume.
    assert main([str(tiny), "--out", str(out), "--quiet", "--resume", "--set", "output.quicklook=false"]) == 2
    assert "complete" in capsys.readouterr().err
    # Resuming with another config is refused, naming the key.
    (out / "checkpoint.pt").write_bytes(b"")
    assert main([str(tiny), "--out", str(out), "--quiet", "--resume", "--set", "training.lr=0.1"]) == 2
    assert "training.lr" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text, overrides, expected",
    [
        ('{"training": {"learning_rate": 0.1}}', [], ["'training.learning_rate'", "'training.lr'"]),
        ('{"encoding": {"version": 9}}', [], ["'encoding.version'", "0, 1, 2, 3, 4, 5, 6"]),
        ('{"training": {"lr": "fast"}}', [], ["'training.lr'", "must be a number"]),
        ('{\n  "line": "5173",\n  "training": {"lr": 0.1,,}\n}', [], ["line 3, column", "invalid JSON"]),
        ("{}", ["training.epochs_per_phase=-1"], ["'training.epochs_per_phase'", "--set"]),
        ("{}", ["data.wavelengths=w.fits"], ["'data.path'"]),
    ],
)
def test_config_errors_exit_2_with_our_message(tmp_path, capsys, text, overrides, expected):
    path = tmp_path / "bad.json"
    path.write_text(text)
    argv = [str(path), "--out", str(tmp_path / "o"), "--quiet"]
    for item in overrides:
        argv += ["--set", item]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashwfa-train: error: ") and str(path) in err
    for piece in expected:
        assert piece in err
    assert "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(importlib.util.find_spec("tinycudann") is not None, reason="tiny-cuda-nn is installed")
def test_tcnn_backend_without_tiny_cuda_nn_is_our_error(tmp_path, capsys, small_config_file):
    config = small_config_file(tmp_path, epochs=1)
    assert main([str(config), "--out", str(tmp_path / "o"), "--quiet", "--backend", "tcnn"]) == 2
    err = capsys.readouterr().err
    assert "hashwfa-train: error: " in err and "tiny-cuda-nn" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_default_out_dir_and_module_entry_point(tmp_path, monkeypatch, capsys, small_config_file, repo_root):
    config = small_config_file(tmp_path, epochs=1, name="mini.json")
    monkeypatch.chdir(tmp_path)
    assert main([str(config), "--quiet", "--set", "output.quicklook=false"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "runs" / "mini" / "field.fits").is_file()
    assert "runs/mini" in out and "final loss" in out
    # python -m hashwfa.cli.train (what torchrun launches) is the same command.
    proc = subprocess.run(
        [sys.executable, "-m", "hashwfa.cli.train", "--keys"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "training.epochs_per_phase = 200" in proc.stdout


def test_fits_data_from_the_config(tmp_path):
    from hashwfa.run.data import load_data
    from hashwfa.wfa.synthetic.plage import synthetic_plage

    synthetic_plage(ny=12, nx=10, seed=2, noise=1e-3).write_fits(tmp_path / "data")
    config = tmp_path / "fits.json"
    config.write_text(
        '{"data": {"path": "data/stokes.fits", "wavelengths": "data/wavelengths.fits",'
        ' "active_indices": [4, 5, 7, 8], "weights": [1, 1, 1, 2]},'
        ' "encoding": {"n_levels": 4, "max_resolution": 8},'
        ' "training": {"epochs_per_phase": 2, "device": "cpu"}, "output": {"quicklook": false}}'
    )
    data = load_data(load_config(config))
    assert data.truth is None and "stokes.fits" in data.description
    assert data.observation.active_indices == (4, 5, 7, 8) and data.observation.weights == (1, 1, 1, 2)
    out = tmp_path / "out"
    assert main([str(config), "--out", str(out), "--quiet"]) == 0
    with fits.open(out / "field.fits") as hdul:
        names = [hdu.name for hdu in hdul]
        assert hdul["BLOS"].data.shape == (12, 10)
    assert "TRUE_BLOS" not in names and "WFA_BLOS" in names


def test_data_too_small_for_the_regularised_wfa_still_write_the_run(tmp_path, capsys):
    """A 2 x 3 image has no noise estimate: the run ends normally without REG_* and says why."""
    config = tmp_path / "tiny.json"
    config.write_text('{"data": {"synthetic": {"ny": 2, "nx": 3}}, "encoding": {"n_levels": 4, '
                      '"max_resolution": 8, "log2_hashmap_size": 8}, "network": {"n_neurons": 8}, '
                      '"training": {"epochs_per_phase": 2, "device": "cpu"}, "output": {"quicklook": false}}')
    out = tmp_path / "out"
    assert main([str(config), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "no regularised WFA" in captured.err
    assert "regularised WFA" not in captured.out and "pixel-wise WFA" in captured.out
    with fits.open(out / "field.fits") as hdul:
        names = [hdu.name for hdu in hdul]
    assert "WFA_BLOS" in names and "REG_BLOS" not in names
