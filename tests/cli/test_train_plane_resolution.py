"""hashwfa-train records V6's plane_resolution per field (FITS header, model.pt, config.json)."""

import pytest
from astropy.io import fits

from hashwfa.cli.train import main
from hashwfa.run.outputs import load_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_v6_plane_resolution_reaches_every_output(tmp_path, small_config_file):
    config = small_config_file(tmp_path, epochs=2)  # max_resolution 16
    out = tmp_path / "out"
    sets = ["encoding.version=6", "encoding_blos.plane_resolution=24", "output.quicklook=false",
            "output.sigmas=false"]
    assert main([str(config), "--out", str(out), "--quiet", *sum((["--set", s] for s in sets), [])]) == 0
    header = fits.getheader(out / "field.fits")
    assert (header["PLNRESV"], header["PLNRESQU"]) == (24, 16)  # B_Q, B_U: the default, max_resolution
    model = load_model(out / "model.pt")
    assert model["config"]["encoding_blos"]["plane_resolution"] == 24
    assert (model["blos"].encoding.plane_resolution, model["bqbu"].encoding.plane_resolution) == (24, 16)
    assert '"plane_resolution": 24' in (out / "config.json").read_text()


def test_no_plane_keywords_without_a_plane(tmp_path, small_config_file):
    config = small_config_file(tmp_path, epochs=2)
    out = tmp_path / "out"
    assert main([str(config), "--out", str(out), "--quiet", "--set", "output.quicklook=false",
                 "--set", "output.sigmas=false"]) == 0
    header = fits.getheader(out / "field.fits")
    assert "PLNRESV" not in header and "PLNRESQU" not in header
