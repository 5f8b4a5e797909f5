"""``hashwfa-train`` on awkward data: the cube's own line, absurd pixels, no signal, wrong units, sizes."""

import json

import numpy as np
import pytest

from hashwfa.cli.train import main
from hashwfa.config import load_config, load_data
from hashwfa.errors import HashwfaError
from hashwfa.wfa.pixelwise import pixel_wfa
from hashwfa.wfa.synthetic import synthetic_plage


def _write_config(tmp_path, raw, name="c.json"):
    path = tmp_path / name
    path.write_text(json.dumps(raw))
    return path


@pytest.fixture(scope="module")
def cube_8542(tmp_path_factory):
    """A noiseless WFA plage in Ca II 8542 written as FITS (header LINE = 8542), with its truth."""
    directory = tmp_path_factory.mktemp("c8542")
    plage = synthetic_plage(ny=8, nx=7, seed=2, noise=0.0, model="wfa", line="8542")
    paths = plage.write_fits(directory)
    return paths, plage.truth


def _fits_config(paths, **extra):
    return {"data": {"path": str(paths["stokes"]), "wavelengths": str(paths["wavelengths"])}, **extra}


def test_line_unset_in_config_is_read_from_the_cube_header(tmp_path, cube_8542):
    paths, truth = cube_8542
    data = load_data(load_config(_write_config(tmp_path, _fits_config(paths))))
    assert data.observation.line.name == "8542"
    assert "8542" in data.description and "LINE header" in data.description
    # Oracle: the synthetic truth. Read as 5173, B_los would be off by the ratio of the Lande factors.
    blos = pixel_wfa(data.observation).blos
    strong = np.abs(truth.blos) > 50
    np.testing.assert_allclose(blos[strong], truth.blos[strong], rtol=0.05)


def test_explicit_line_contradicting_the_header_is_an_error_naming_both(tmp_path, cube_8542, capsys):
    paths, _ = cube_8542
    config = _write_config(tmp_path, _fits_config(paths, line="5173"))
    with pytest.raises(HashwfaError, match="LINE = '8542'.*'5173'"):
        load_data(load_config(config))
    assert main([str(config), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "8542" in err and "5173" in err and "Traceback" not in err
    # The same line given explicitly is fine.
    agreeing = _write_config(tmp_path, _fits_config(paths, line="8542"), name="agree.json")
    assert load_data(load_config(agreeing)).observation.line.name == "8542"


TINY_TRAINING = {
    "encoding": {"version": 1, "n_levels": 4, "max_resolution": 8},
    "network": {"n_neurons": 16},
    "training": {"epochs_per_phase": 3, "device": "cpu", "seed": 0},
    "output": {"quicklook": False},
}


def _cube_with(tmp_path, name, value, stokes_index=0):
    plage = synthetic_plage(ny=10, nx=9, seed=5, noise=1e-3)
    cube = plage.observation.stokes.copy()
    cube[4, 4, stokes_index, 6] = value
    obs = type(plage.observation)(cube, plage.observation.wavelengths, source=name)
    directory = tmp_path / name
    directory.mkdir()
    return obs.write_fits(directory / "stokes.fits", directory / "wl.fits")


def _blos(out):
    from astropy.io import fits

    with fits.open(out / "field.fits") as hdul:
        return hdul["BLOS"].data.copy()


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("value, stokes_index", [(1e25, 0), (1e30, 3), (1e19, 0)], ids=["I=1e25", "V=1e30", "I=1e19"])
def test_hot_pixel_is_left_out_and_the_run_equals_the_nan_run(tmp_path, value, stokes_index):
    maps = {}
    for name, v in (("hot", value), ("nan", np.nan)):
        with pytest.warns(UserWarning):
            sp, wp = _cube_with(tmp_path, name, v, stokes_index)
        config = _write_config(tmp_path, {"data": {"path": str(sp), "wavelengths": str(wp)}, **TINY_TRAINING},
                               name=f"{name}.json")
        with pytest.warns(UserWarning, match="absurd values" if name == "hot" else "NaN or infinite"):
            assert main([str(config), "--out", str(tmp_path / f"out_{name}"), "--quiet"]) == 0
        maps[name] = _blos(tmp_path / f"out_{name}")
    assert np.all(np.isfinite(maps["hot"]))
    # Same valid pixels, same process and thread count: the same fit, bit for bit.
    np.testing.assert_array_equal(maps["hot"], maps["nan"])
