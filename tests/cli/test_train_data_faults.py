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
