"""``hashwfa-train`` on cubes in other intensity units, on fits that did not train, and on NaN corners."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from hashwfa.cli.train import main
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.synthetic.plage import synthetic_plage

_spec = importlib.util.spec_from_file_location("sst_files", Path(__file__).parents[1] / "wfa" / "observation" / "sst_files.py")
sst_files = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sst_files)

pytestmark = pytest.mark.usefixtures("one_thread")

TRAINING = {
    "encoding": {"version": 1, "n_levels": 8, "max_resolution": 16, "log2_hashmap_size": 12},
    "network": {"n_neurons": 16},
    "training": {"epochs_per_phase": 30, "lr": 0.05, "device": "cpu", "seed": 0},
    "output": {"quicklook": False},
}
#: The SST pipeline's default intensity unit, and a detector's counts.
PHYSICAL, COUNTS = 3e-8, 2500.0


def _plage():
    return synthetic_plage(ny=24, nx=20, seed=3, noise=5e-3)


def _fits_cube(directory: Path, factor: float) -> dict:
    plage = _plage()
    obs = plage.observation
    scaled = Observation(obs.stokes * factor, obs.wavelengths, line=obs.line, active_indices=obs.active_indices)
    directory.mkdir()
    stokes, wavelengths = scaled.write_fits(directory / "stokes.fits", directory / "wl.fits")
    return {"path": str(stokes), "wavelengths": str(wavelengths)}


def _run(tmp_path, name, data, **training):
    raw = json.loads(json.dumps(TRAINING))
    raw["data"] = data
    raw["training"].update(training)
    config = tmp_path / f"{name}.json"
    config.write_text(json.dumps(raw))
    out = tmp_path / name
    return main([str(config), "--out", str(out), "--quiet"]), out


def _maps(out):
    with fits.open(out / "field.fits") as hdul:
        header, maps = hdul[0].header.copy(), {hdu.name: np.array(hdu.data, dtype=np.float64) for hdu in hdul[1:]}
    return header, maps, json.loads((out / "history.json").read_text())


@pytest.fixture(scope="module")
def unit_runs(tmp_path_factory):
    """The same plage in continuum units, times 2**-25 (exact), in W m^-2 Hz^-1 sr^-1 (an SST cube) and in counts."""
    base = tmp_path_factory.mktemp("units")
    runs = {}
    for name, factor in (("ic", 1.0), ("pow2", 2.0 ** -25), ("counts", COUNTS)):
        code, out = _run(base, name, _fits_cube(base / f"{name}_cube", factor))
        assert code == 0, name
        runs[name] = _maps(out)
    obs = _plage().observation
    wave_nm = (obs.wavelengths + obs.line.center) / 10.0
    sst = sst_files.write_sst_cube(base / "c_im.fits", obs.stokes[None] * PHYSICAL, wave_nm,
                                   np.zeros((1, obs.nw)), extra={"BUNIT": "W m^-2 Hz^-1 sr^-1"})
    code, out = _run(base, "sst", {"path": str(sst), "wavelengths": None})  # every wavelength, like the others
    assert code == 0
    runs["sst"] = _maps(out)
    return runs


def test_the_intensity_scale_is_the_power_of_two_nearest_the_continuum_and_recorded(unit_runs):
    # Oracle: the plage's continuum is 1 (the far wings about 0.96), so the scale is 2**round(log2(factor)).
    # The card has 15 digits; history.json has the exact number.
    expected = {"ic": 1.0, "pow2": 2.0 ** -25, "sst": 2.0 ** -25, "counts": 2048.0}  # 3e-8 ~ 2**-25.0, 2500 ~ 2**11.3
    for name, scale in expected.items():
        header, _, history = unit_runs[name]
        assert header["ISCALE"] == pytest.approx(scale, rel=1e-13), name
        assert history["intensity_scale"] == scale, name  # exactly: continuum-unit data are not changed at all


def test_a_power_of_two_unit_gives_the_same_maps_bit_for_bit(unit_runs):
    ic, pow2 = unit_runs["ic"][1], unit_runs["pow2"][1]
    for name in ("BLOS", "BQ", "BU", "WFA_BLOS", "REG_BLOS", "REG_BQ"):
        np.testing.assert_array_equal(pow2[name], ic[name], err_msg=name)


@pytest.mark.parametrize("name", ["sst", "counts"])
def test_any_unit_trains_to_the_maps_of_continuum_units(unit_runs, name):
    ic, other = unit_runs["ic"][1], unit_runs[name][1]
    truth_maps = _plage().truth
    truth = truth_maps.blos
    rms = lambda a: float(np.sqrt(np.nanmean(a * a)))  # noqa: E731
    # Not untrained (a cube in W m^-2 Hz^-1 sr^-1 once gave B_los = -0 G everywhere) ...
    assert rms(other["BLOS"]) > 0.5 * rms(truth)
    # ... and the same fit up to float rounding that the training amplifies (a few G of ~300 G).
    assert rms(other["BLOS"] - ic["BLOS"]) < 0.02 * rms(ic["BLOS"])
    err, err_ic = rms(other["BLOS"] - truth), rms(ic["BLOS"] - truth)
    assert err < 1.1 * err_ic
    err_bt, err_bt_ic = rms(other["BTRANS"] - truth_maps.bt), rms(ic["BTRANS"] - truth_maps.bt)
    assert err_bt < 1.1 * err_bt_ic
    # The baselines are scale invariant.
    np.testing.assert_allclose(other["WFA_BLOS"], ic["WFA_BLOS"], rtol=1e-4, atol=1e-3)


def test_a_fit_that_did_not_train_is_an_error_not_a_result(tmp_path, capsys):
    data = _fits_cube(tmp_path / "cube", 1.0)
    code, out = _run(tmp_path, "frozen", data, epochs_per_phase=20, lr=1e-30)
    err = capsys.readouterr().err
    assert code == 2
    line = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(line) == 1 and "did not train" in line[0] and "training.lr" in line[0], err
    assert "the loss" in line[0] and "B_los" in line[0]
    assert not (out / "field.fits").exists()


def test_field_maps_are_nan_outside_the_data_footprint_and_filled_inside(tmp_path):
    plage = _plage()
    obs = plage.observation
    cube = obs.stokes.copy()
    ny, nx = obs.ny, obs.nx
    y, x = np.mgrid[:ny, :nx]
    corner = (y + x) < 5  # the corner of a derotated field
    cube[corner] = np.nan
    cube[12, 10, 3, 6] = np.nan  # one bad pixel inside (V at an active wavelength)
    directory = tmp_path / "cube"
    directory.mkdir()
    scaled = Observation(cube, obs.wavelengths, line=obs.line, active_indices=obs.active_indices)
    stokes, wavelengths = scaled.write_fits(directory / "s.fits", directory / "w.fits")
    code, out = _run(tmp_path, "corners", {"path": str(stokes), "wavelengths": str(wavelengths)}, epochs_per_phase=3)
    assert code == 0
    _, maps, _ = _maps(out)
    for name in ("BLOS", "BQ", "BU", "BTRANS", "AZIMUTH", "WFA_BLOS"):
        assert np.all(np.isnan(maps[name][corner])), name
        assert np.all(np.isfinite(maps[name][~corner & ~((y == 12) & (x == 10))])), name
    # The isolated pixel: no WFA there, the field fills it.
    assert np.isnan(maps["WFA_BLOS"][12, 10])
    for name in ("BLOS", "BQ", "BU", "BTRANS", "AZIMUTH"):
        assert np.isfinite(maps[name][12, 10]), name

