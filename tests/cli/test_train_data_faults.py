"""``hashwfa-train`` on awkward data: the cube's own line, absurd pixels, no signal, wrong units, sizes."""

import json
import re

import numpy as np
import pytest

from hashwfa.cli.train import main
from hashwfa.config.run_config import load_config
from hashwfa.run.data import load_data
from hashwfa.errors import HashwfaError
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.synthetic.plage import synthetic_plage


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
def test_hot_pixel_is_left_out_and_the_run_equals_the_nan_run(tmp_path, capsys, value, stokes_index):
    maps = {}
    for name, v in (("hot", value), ("nan", np.nan)):
        with pytest.warns(UserWarning):
            sp, wp = _cube_with(tmp_path, name, v, stokes_index)
        config = _write_config(tmp_path, {"data": {"path": str(sp), "wavelengths": str(wp)}, **TINY_TRAINING},
                               name=f"{name}.json")
        capsys.readouterr()
        assert main([str(config), "--out", str(tmp_path / f"out_{name}"), "--quiet"]) == 0
        # The command shows the package's warnings as its own lines, even with --quiet.
        assert re.search("hashwfa-train: warning: .*" + ("absurd values" if name == "hot" else "NaN or infinite"),
                         capsys.readouterr().err)
        maps[name] = _blos(tmp_path / f"out_{name}")
    assert np.all(np.isfinite(maps["hot"]))
    # Same valid pixels, same process and thread count: the same fit, bit for bit.
    np.testing.assert_array_equal(maps["hot"], maps["nan"])


def _error(tmp_path, capsys, raw, *overrides):
    config = _write_config(tmp_path, {**TINY_TRAINING, **raw}, name="e.json")
    out = tmp_path / "o"
    code = main([str(config), "--out", str(out), "--quiet", *overrides])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and not (out / "field.fits").exists()
    return err


def test_zero_weights_are_refused_naming_the_key(tmp_path, capsys):
    err = _error(tmp_path, capsys, {"data": {"synthetic": {"ny": 8, "nx": 8}, "weights": [0, 0, 0, 0]}})
    assert "data.weights" in err and "nothing would be fitted" in err


def test_one_phase_without_weight_is_warned(tmp_path):
    plage = synthetic_plage(ny=4, nx=4, seed=1)
    with pytest.warns(UserWarning, match="B_los .weight of V is 0.: not fitted"):
        type(plage.observation)(plage.observation.stokes, plage.observation.wavelengths, weights=(1, 1, 1, 0))


@pytest.mark.parametrize("intensity", [0.0, 1.0], ids=["zero", "flat"])
def test_flat_or_zero_intensity_is_refused(tmp_path, capsys, intensity):
    plage = synthetic_plage(ny=6, nx=5, seed=1)
    cube = plage.observation.stokes.copy()
    cube[:, :, 0, :] = intensity
    # Written as they are (given valid: the scan refuses such a cube, the point of this test).
    obs = type(plage.observation)(cube, plage.observation.wavelengths, valid=np.ones((6, 5), bool))
    sp, wp = obs.write_fits(tmp_path / "s.fits", tmp_path / "w.fits")
    err = _error(tmp_path, capsys, {"data": {"path": str(sp), "wavelengths": str(wp)}})
    assert "no pixel carries a WFA signal" in err and "Stokes I" in err


def _wavelengths_file(tmp_path, values, header=None):
    from astropy.io import fits

    hdr = fits.Header()
    for key, value in (header or {}).items():
        hdr[key] = value
    path = tmp_path / "wl.fits"
    fits.PrimaryHDU(np.asarray(values, dtype=np.float64), header=hdr).writeto(path, overwrite=True)
    return path


def test_nm_wavelengths_without_unit_are_refused_with_the_fix(tmp_path, capsys, cube_8542):
    paths, truth = cube_8542
    from astropy.io import fits

    angstrom = fits.getdata(paths["wavelengths"])
    wl_nm = _wavelengths_file(tmp_path, angstrom / 10.0)  # relative, in nm, no BUNIT
    err = _error(tmp_path, capsys, {"data": {"path": str(paths["stokes"]), "wavelengths": str(wl_nm)}})
    assert "no BUNIT" in err and "read as Angstrom" in err and "BUNIT = 'nm'" in err
    # With the unit stated the same numbers give the right field (oracle: the synthetic truth).
    wl_nm = _wavelengths_file(tmp_path, angstrom / 10.0, {"BUNIT": "nm"})
    config = _write_config(tmp_path, {"data": {"path": str(paths["stokes"]), "wavelengths": str(wl_nm)}})
    blos = pixel_wfa(load_data(load_config(config)).observation).blos
    strong = np.abs(truth.blos) > 50
    np.testing.assert_allclose(blos[strong], truth.blos[strong], rtol=0.05)


def test_fine_but_real_angstrom_sampling_without_unit_is_accepted(tmp_path):
    from hashwfa.wfa.observation.stokes_fits import read_stokes_fits

    plage = synthetic_plage(ny=3, nx=3, seed=1, line="6302", wavelengths=np.arange(-6, 7) * 0.0215)
    sp, _ = plage.observation.write_fits(tmp_path / "s.fits", tmp_path / "w_unused.fits")
    wl = _wavelengths_file(tmp_path, np.arange(-6, 7) * 0.0215)  # Hinode SP sampling, no unit
    assert read_stokes_fits(sp, wl).wavelengths[1] == pytest.approx(-5 * 0.0215)


def test_active_index_out_of_range_names_the_key_range_and_fix(tmp_path, capsys):
    err = _error(tmp_path, capsys, {"data": {"synthetic": {"ny": 8, "nx": 8}, "active_indices": [50]}})
    assert "data.active_indices" in err and "0..12" in err and "[5, 6, 7]" in err


def test_absolute_nm_without_unit_are_still_recognised_by_their_magnitude(tmp_path, cube_8542):
    paths, _ = cube_8542
    from astropy.io import fits

    from hashwfa.wfa.observation.observation import Observation

    relative = fits.getdata(paths["wavelengths"]).astype(np.float64)
    wl = _wavelengths_file(tmp_path, (relative + 8542.091) / 10.0)  # absolute nm, no BUNIT
    with pytest.warns(UserWarning, match="absolute nm"):
        obs = Observation.from_fits(paths["stokes"], wl)
    np.testing.assert_allclose(obs.wavelengths, relative, atol=1e-9)


def test_resume_refuses_a_cube_rewritten_since_the_checkpoint(tmp_path, capsys):
    from hashwfa.cli.train import build_parser
    from hashwfa.run.train import run
    from hashwfa.wfa.synthetic.series import synthetic_series

    series = synthetic_series(nt=2, ny=8, nx=7, seed=1, model="wfa")
    paths = series.write_fits(tmp_path / "data")
    config = _write_config(tmp_path, {**_fits_config(paths), **TINY_TRAINING})
    out = tmp_path / "o"
    sets = ["--set", "training.epochs_per_phase=4", "--set", "training.checkpoint_every=1",
            "--set", "output.quicklook=false"]

    def stop(phase, epoch):
        if phase == "bqbu" and epoch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(build_parser().parse_args([str(config), "--out", str(out), "--quiet", *sets]), on_epoch_end=stop)
    assert (out / "checkpoint.pt").is_file()
    # The cube rewritten in place with the opposite field (same shape, header, size).
    flipped = series.stokes.copy()
    flipped[..., 1:, :] *= -1
    series.observation().with_stokes(flipped, "flipped").write_fits(paths["stokes"], tmp_path / "w.fits",
                                                                   overwrite=True)
    assert main([str(config), "--out", str(out), "--quiet", "--resume", *sets]) == 2
    err = capsys.readouterr().err
    assert "the data differ" in err and "the values" in err and "--overwrite" in err and "Traceback" not in err
    assert not (out / "field.fits").exists()
    # The data restored: the run resumes.
    series.observation().write_fits(paths["stokes"], tmp_path / "w.fits", overwrite=True)
    assert main([str(config), "--out", str(out), "--quiet", "--resume", *sets]) == 0


def test_a_cube_truncated_between_two_passes_is_one_error_not_sigbus(tmp_path):
    from hashwfa.wfa.observation.observation import Observation
    from hashwfa.wfa.synthetic.series import synthetic_series

    series = synthetic_series(nt=2, ny=8, nx=7, seed=1)
    paths = series.write_fits(tmp_path)
    obs = Observation.from_fits(paths["stokes"], paths["wavelengths"], active_indices=series.active_indices)
    assert obs.is_lazy
    whole = paths["stokes"].read_bytes()
    with open(paths["stokes"], "r+b") as f:  # in place: the mapping now reaches past the file's end
        f.truncate(len(whole) // 2)
    with pytest.raises(HashwfaError, match=r"stokes\.fits: the cube was truncated to \d+ bytes .* --resume"):
        next(obs.wfa_input_chunks())
