"""hashwfa.fit / hashwfa.fit_file: the job of hashwfa-train from Python, maps with units."""

import json

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits

import hashwfa
from hashwfa.cli.train import main
from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.synthetic.plage import synthetic_plage

pytestmark = pytest.mark.usefixtures("one_thread")
EPOCHS = 8
MAPS = {"blos": ("BLOS", u.G), "bq": ("BQ", u.G ** 2), "bu": ("BU", u.G ** 2), "bt": ("BTRANS", u.G)}


@pytest.fixture(scope="module")
def cube(tmp_path_factory):
    """A 24 x 20 synthetic plage as two FITS files (float32 cube, LINE header), and the small config."""
    directory = tmp_path_factory.mktemp("api")
    obs = synthetic_plage(ny=24, nx=20, seed=1, noise=2e-3).observation
    stokes, wavelengths = obs.write_fits(directory / "stokes.fits", directory / "wl.fits")
    config = directory / "small.json"
    config.write_text(json.dumps({
        "encoding": {"version": 1, "n_levels": 6, "max_resolution": 16, "log2_hashmap_size": 10},
        "network": {"n_neurons": 16},
        "training": {"epochs_per_phase": EPOCHS, "lr": 0.05, "device": "cpu", "seed": 0},
        "output": {"quicklook": False},
    }))
    return directory, stokes, wavelengths, config


def test_the_api_is_at_the_package_root():
    assert {"fit", "fit_file", "FitResult", "Maps"} <= set(dir(hashwfa))
    assert hashwfa.fit is hashwfa.run.api.fit


def test_fit_and_fit_file_give_the_maps_of_hashwfa_train(cube):
    directory, stokes, wavelengths, config = cube
    out = directory / "cli"
    assert main([str(config), "--set", f"data.path={stokes}", "--set", f"data.wavelengths={wavelengths}",
                 "--out", str(out), "--quiet"]) == 0
    with fits.open(out / "field.fits") as hdul:
        cli = {hdu.name: np.array(hdu.data, dtype=np.float64) for hdu in hdul[1:]}
    # The same values the CLI reads (float32 on disk), in memory.
    obs = Observation.from_fits(stokes, wavelengths, lazy=False)
    from_array = hashwfa.fit(obs.stokes, obs.wavelengths, line="5173", config=str(config), quiet=True)
    from_file = hashwfa.fit_file(stokes, wavelengths, config=str(config), quiet=True)
    for res in (from_array, from_file):
        for name, (ext, unit) in MAPS.items():
            value = getattr(res, name)
            assert value.unit == unit
            np.testing.assert_array_equal(value.value.astype(np.float32), cli[ext], err_msg=name)
            np.testing.assert_array_equal(getattr(res.pixelwise, name).value.astype(np.float32), cli["WFA_" + ext])
        assert res.azimuth.unit == u.deg
        np.testing.assert_allclose(res.azimuth.to_value(u.rad), cli["AZIMUTH"], rtol=1e-6, atol=1e-6)
        assert res.regularized is not None and res.pixelwise_sigma is not None and res.sigma is None
        np.testing.assert_array_equal(res.valid, cli["VALID"].astype(bool))
    # to_fits writes what the CLI's field.fits holds.
    path = from_array.to_fits(directory / "api_field.fits")
    with fits.open(path) as hdul:
        np.testing.assert_array_equal(hdul["BLOS"].data, cli["BLOS"])
    with pytest.raises(HashwfaError, match="exists"):
        from_array.to_fits(path)


def test_overrides_as_keywords_or_a_dict_and_a_shipped_config_by_name():
    obs = synthetic_plage(ny=8, nx=8, seed=2, noise=1e-3).observation
    a = hashwfa.fit(obs.stokes, obs.wavelengths, line="5173", config="v1", quiet=True,
                    training__epochs_per_phase=2, training__device="cpu", network__n_neurons=8)
    b = hashwfa.fit(obs.stokes, obs.wavelengths, line="5173", config="v1", quiet=True,
                    overrides={"training.epochs_per_phase": 2, "training.device": "cpu", "network.n_neurons": 8})
    assert a.config.training.epochs_per_phase == 2 and a.config.network.n_neurons == 8
    np.testing.assert_array_equal(a.blos.value, b.blos.value)
    assert a.config.data.synthetic is None  # the array is the data


def test_the_checks_of_the_cli():
    obs = synthetic_plage(ny=8, nx=8, seed=2, noise=1e-3).observation
    with pytest.raises(HashwfaError, match="no line given.*'6173'"):
        hashwfa.fit(obs.stokes, obs.wavelengths)
    with pytest.raises(HashwfaError, match="line 'Fe' is unknown|not a known line"):
        hashwfa.fit(obs.stokes, obs.wavelengths, line="Fe")
    # Offsets in nm given as plain numbers: refused with the fix (B would be 10x too small).
    with pytest.raises(HashwfaError, match="look like nm.*Quantity"):
        hashwfa.fit(obs.stokes, obs.wavelengths / 10.0, line="5173")
    with pytest.raises(HashwfaError, match="unknown key 'training.epoch'"):
        hashwfa.fit(obs.stokes, obs.wavelengths, line="5173", training__epoch=3)


def test_wavelengths_as_a_quantity_are_converted():
    obs = synthetic_plage(ny=8, nx=8, seed=2, noise=1e-3).observation
    kw = dict(line="5173", config="v1", quiet=True, training__epochs_per_phase=2, training__device="cpu")
    a = hashwfa.fit(obs.stokes, obs.wavelengths, **kw)
    b = hashwfa.fit(obs.stokes, (obs.wavelengths / 10.0) * u.nm, **kw)
    np.testing.assert_allclose(b.pixelwise.blos.value, a.pixelwise.blos.value, rtol=1e-12)


def test_fit_file_needs_the_line_when_the_cube_names_none(tmp_path):
    obs = synthetic_plage(ny=8, nx=8, seed=2, noise=1e-3).observation
    stokes, wavelengths = obs.write_fits(tmp_path / "s.fits", tmp_path / "w.fits")
    with fits.open(stokes, mode="update") as hdul:
        del hdul[0].header["LINE"]
    with pytest.raises(HashwfaError, match="no LINE header keyword.*line='6173'"):
        hashwfa.fit_file(stokes, wavelengths)
