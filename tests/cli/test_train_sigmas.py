"""``hashwfa-train`` with sigma maps: extensions, units, noise cards, given noise, config errors, resume."""

import json

import numpy as np
import pytest
from astropy.io import fits

import hashwfa.training.bootstrap as uncertainty_module
from hashwfa.cli.train import build_parser, main
from hashwfa.run.train import run

EPOCHS = 20  # epochs per phase: the sigma maps only need to exist and be reproducible here
MAPS = ("BLOS", "BQ", "BU", "BTRANS", "AZIMUTH")
UNITS = {"BLOS": "G", "BTRANS": "G", "AZIMUTH": "rad", "BQ": "G2", "BU": "G2"}
SYNTHETIC_NOISE = 5e-3  # the noise of the small config's synthetic plage
SIGMAS = ["--set", "output.sigmas=true"]
NO_QUICKLOOK = ["--set", "output.quicklook=false"]

# Resumed runs are compared bit for bit with uninterrupted ones: one thread for all.
pytestmark = pytest.mark.usefixtures("one_thread")


def read(out_dir):
    """(primary header, {extension name: data}) of a run's field.fits."""
    with fits.open(out_dir / "field.fits") as hdul:
        return hdul[0].header.copy(), {hdu.name: np.array(hdu.data) for hdu in hdul[1:]}


def units(out_dir):
    with fits.open(out_dir / "field.fits") as hdul:
        return {hdu.name: hdu.header.get("BUNIT") for hdu in hdul[1:]}


@pytest.fixture(scope="module")
def config(tmp_path_factory, small_config_file):
    return small_config_file(tmp_path_factory.mktemp("cfg"), epochs=EPOCHS)


@pytest.fixture(scope="module")
def with_sigmas(config, tmp_path_factory, one_thread):
    """A complete run with output.sigmas on (estimated noise), shared by the tests below."""
    out = tmp_path_factory.mktemp("run") / "out"
    assert main([str(config), "--out", str(out), "--quiet", *SIGMAS]) == 0
    return out


def test_sigma_run_writes_sigma_maps_with_units_and_the_noise_cards(with_sigmas):
    header, maps = read(with_sigmas)
    bunit = units(with_sigmas)
    valid = maps["VALID"].astype(bool)
    for prefix in ("SIGMA_", "WFA_SIGMA_"):
        for name in MAPS:
            sigma = maps[prefix + name]
            assert sigma.shape == (40, 36), prefix + name
            assert bunit[prefix + name] == UNITS[name], prefix + name
            assert np.all(sigma[valid] > 0), prefix + name  # a sigma, never zero or NaN where fitted
    # The neural field's sigmas are finite where fitted; the azimuth's at most pi/sqrt(12).
    for name in MAPS:
        assert np.all(np.isfinite(maps["SIGMA_" + name][valid])), name
    assert np.max(maps["SIGMA_AZIMUTH"][valid]) <= np.pi / np.sqrt(12) + 1e-6
    # Estimated noise: the synthetic's known sigma, within the estimate's scatter on 40 x 36 pixels.
    assert header["NOISEMTH"] == "spatial-highpass-MAD"
    for stokes in "IQUV":
        assert header[f"NOISE_{stokes}"] == pytest.approx(SYNTHETIC_NOISE, rel=0.15), stokes
    history = json.loads((with_sigmas / "history.json").read_text())["uncertainty"]
    assert history["field_sigmas"] is True
    assert history["noise"]["method"] == "spatial-highpass-MAD"
    # One bootstrap member, trained with seed training.seed + 1000 (training.seed is 0).
    assert [m["seed"] for m in history["members"]] == [1000]
    assert history["members"][0]["timings_s"]["blos"] > 0
    assert (with_sigmas / "quicklook.png").is_file()


def test_given_noise_is_used_verbatim_and_scales_the_pixelwise_sigmas(config, tmp_path):
    # output.sigmas is off (the default): WFA_SIGMA_* only, no member is trained.
    # The first run gives 4 numbers, the second twice them as a 4 x nw table.
    given = [0.01, 0.004, 0.005, 0.006]
    table = [[2 * g] * 13 for g in given]
    runs = {}
    for name, value in (("numbers", given), ("table", table)):
        out = tmp_path / name
        assert main([str(config), "--out", str(out), "--quiet", "--set", "output.quicklook=false",
                     "--set", f"data.noise={json.dumps(value)}"]) == 0
        header, maps = read(out)
        assert header["NOISEMTH"] == "given"
        assert not any(n.startswith("SIGMA_") for n in maps)
        history = json.loads((out / "history.json").read_text())["uncertainty"]
        assert history["field_sigmas"] is False and history["members"] == []
        expected = [[g] * 13 for g in given] if name == "numbers" else table
        assert history["noise"]["sigma"] == expected
        for stokes, row in zip("IQUV", expected):
            assert header[f"NOISE_{stokes}"] == pytest.approx(np.sqrt(np.mean(np.square(row))), rel=1e-12)
        runs[name] = maps
    # Linear propagation is homogeneous of degree one in the noise: twice the noise, twice the sigma.
    for n in MAPS:
        a, b = runs["numbers"]["WFA_SIGMA_" + n], runs["table"]["WFA_SIGMA_" + n]
        ok = np.isfinite(a)
        if n == "AZIMUTH":  # below its cap, pi/sqrt(12) (no information), which does not scale
            ok &= b < np.pi / np.sqrt(12) - 1e-9
        assert ok.sum() > 100, n
        np.testing.assert_allclose(b[ok], 2 * a[ok], rtol=1e-6, err_msg=n)
        np.testing.assert_array_equal(runs["numbers"][n], runs["table"][n])  # the fit does not see the noise


@pytest.mark.parametrize(
    "value, expected",
    [
        ("[0.001, 0.001, 0.001]", "neither 4 numbers nor 4 lists"),
        ("[0.001, [0.001], 0.001, 0.001]", "neither 4 numbers nor 4 lists"),
        ("[[0.001, 0.002], [0.001], [0.001], [0.001]]", "neither 4 numbers nor 4 lists"),
        ("[0.001, -0.001, 0.001, 0.001]", "out of range"),
        ('"high"', "must be null or a list of numbers or lists of numbers"),
        ("[[0.001, 0.002], [0.001, 0.002], [0.001, 0.002], [0.001, 0.002]]", "(4, 13)"),
    ],
)
def test_wrong_noise_is_a_config_error_naming_the_key(config, tmp_path, capsys, value, expected):
    out = tmp_path / "o"
    assert main([str(config), "--out", str(out), "--quiet", "--set", f"data.noise={value}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashwfa-train: error: ") and "Traceback" not in err
    assert "data.noise" in err and expected in err, err
    assert not out.exists()  # found before anything is written


def test_keys_lists_the_sigma_settings(capsys):
    assert main(["--keys"]) == 0
    text = capsys.readouterr().out
    for key in ("data.noise", "output.sigmas", "uncertainty.members", "uncertainty.window_blos_px",
                "uncertainty.window_bqbu_px"):
        assert f"  {key} = " in text, key


def test_run_started_without_sigmas_resumes_with_them_to_the_same_maps(config, with_sigmas, tmp_path):
    out = tmp_path / "o"
    args = build_parser().parse_args([str(config), "--out", str(out), "--quiet", "--set", "training.checkpoint_every=5",
                                     "--set", "output.quicklook=false"])

    def stop(phase, epoch):
        if phase == "bqbu" and epoch == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(args, on_epoch_end=stop)
    assert (out / "checkpoint.pt").is_file() and not (out / "field.fits").exists()
    # output.sigmas and uncertainty.* may change on resume: they act after the fit.
    assert main([str(config), "--out", str(out), "--quiet", "--resume", "--set", "training.checkpoint_every=5",
                 *SIGMAS, *NO_QUICKLOOK]) == 0
    _, ref = read(with_sigmas)
    _, got = read(out)
    for name in MAPS:
        np.testing.assert_array_equal(got["SIGMA_" + name], ref["SIGMA_" + name], err_msg=name)
        np.testing.assert_array_equal(got["WFA_SIGMA_" + name], ref["WFA_SIGMA_" + name], err_msg=name)


def test_run_interrupted_while_the_member_trains_retrains_it_on_resume(config, with_sigmas, tmp_path, monkeypatch):
    out = tmp_path / "o"

    class Interrupted(uncertainty_module.TwoPhaseSolver):
        def run(self, **kwargs):
            raise KeyboardInterrupt

    monkeypatch.setattr(uncertainty_module, "TwoPhaseSolver", Interrupted)
    args = build_parser().parse_args([str(config), "--out", str(out), "--quiet", *SIGMAS, *NO_QUICKLOOK])
    with pytest.raises(KeyboardInterrupt):
        run(args)
    # The main fit's last checkpoint is kept; nothing final is written yet.
    assert (out / "checkpoint.pt").is_file() and not (out / "field.fits").exists()
    monkeypatch.undo()
    assert main([str(config), "--out", str(out), "--quiet", "--resume", *SIGMAS, *NO_QUICKLOOK]) == 0
    assert not (out / "checkpoint.pt").exists()
    _, ref = read(with_sigmas)
    _, got = read(out)
    for name in MAPS:
        np.testing.assert_array_equal(got[name], ref[name], err_msg=name)
        np.testing.assert_array_equal(got["SIGMA_" + name], ref["SIGMA_" + name], err_msg=name)


def test_a_diverging_member_costs_the_sigma_maps_not_the_results(config, tmp_path, monkeypatch, capsys):
    from hashwfa.training import bootstrap as unc
    from hashwfa.training.divergence import DivergenceError

    class DivergingSolver:
        def __init__(self, *a, **k):
            pass

        def start_from_fields(self, states):  # the member starts from the fit (uncertainty.member_start)
            pass

        def run(self):
            raise DivergenceError("the loss is nan in phase 1/2 (blos), epoch 1 of 2 (test)")

    monkeypatch.setattr(unc, "TwoPhaseSolver", DivergingSolver)
    out = tmp_path / "diverged_member"
    assert main([str(config), "--out", str(out), "--quiet", *SIGMAS, *NO_QUICKLOOK]) == 0
    assert "bootstrap member diverged" in capsys.readouterr().err
    with fits.open(out / "field.fits") as hdul:
        names = {h.name for h in hdul}
    assert {"BLOS", "BTRANS", "AZIMUTH", "WFA_SIGMA_BLOS"} <= names
    assert not any(n.startswith("SIGMA_") for n in names)
    history = json.loads((out / "history.json").read_text())
    assert "diverged" in history["uncertainty"]["skipped"]
