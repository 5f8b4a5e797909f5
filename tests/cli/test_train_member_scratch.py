"""``hashwfa-train`` with ``output.sigmas`` on a series read from FITS (a lazy, memory-mapped cube):
the bootstrap member's redrawn cube goes to a scratch file in the output directory and is gone after the
run; when the member's data or setup fail the fit's results are still written, without SIGMA_*."""

import json
import warnings

import numpy as np
import pytest
from astropy.io import fits

from hashwfa.cli.train import main
from hashwfa.errors import HashwfaError
from hashwfa.training import bootstrap as uncertainty
from hashwfa.wfa.uncertainty import local_risk as field_uncertainty
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.synthetic.series import synthetic_series

pytestmark = pytest.mark.usefixtures("one_thread")

SIGMA_NAMES = ("SIGMA_BLOS", "SIGMA_BQ", "SIGMA_BU", "SIGMA_BTRANS", "SIGMA_AZIMUTH")


@pytest.fixture(scope="module")
def config_path(tmp_path_factory):
    """A tiny synthetic series written to FITS, and a config that fits it with sigma maps."""
    directory = tmp_path_factory.mktemp("member_scratch")
    series = synthetic_series(nt=2, ny=8, nx=7, seed=2, noise=2e-3, model="wfa")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        obs = Observation(series.stokes, series.wavelengths, times=series.times,
                          active_indices=series.active_indices)
    stokes, wavelengths = obs.write_fits(directory / "s.fits", directory / "w.fits")
    config = {
        "line": "5173",
        "data": {"path": str(stokes), "wavelengths": str(wavelengths),
                 "active_indices": [int(i) for i in series.active_indices], "noise": [2e-3, 2e-3, 2e-3, 2e-3]},
        "encoding": {"version": 1, "n_levels": 4, "max_resolution": 8, "log2_hashmap_size": 8},
        "network": {"n_neurons": 8},
        "training": {"epochs_per_phase": 2, "lr": 0.05, "device": "cpu", "seed": 1},
        "output": {"quicklook": False, "sigmas": True},
    }
    path = directory / "c.json"
    path.write_text(json.dumps(config))
    return path


def _scratch_files(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".member-stokes."))


def _run(config_path, out, *extra):
    return main([str(config_path), "--out", str(out), "--quiet", *extra])


def test_the_member_trains_on_a_scratch_cube_in_the_out_dir_which_is_gone_after(config_path, tmp_path,
                                                                                monkeypatch):
    seen = []
    real = field_uncertainty.redraw_noise_on_disk

    def spy(observation, noise, rng, scratch_dir):
        seen.append((observation.is_lazy, scratch_dir))
        with real(observation, noise, rng, scratch_dir) as data:
            seen.append(_scratch_files(scratch_dir))
            yield data

    import contextlib
    monkeypatch.setattr(field_uncertainty, "redraw_noise_on_disk", contextlib.contextmanager(spy))
    out = tmp_path / "run"
    assert _run(config_path, out) == 0
    assert seen[0] == (True, out) and len(seen[1]) == 1
    assert _scratch_files(out) == []
    with fits.open(out / "field.fits") as hdul:
        for name in SIGMA_NAMES:
            assert hdul[name].data.shape == (2, 8, 7), name


def _check_fit_kept_without_sigmas(out, capsys, reason):
    assert _scratch_files(out) == []
    with fits.open(out / "field.fits") as hdul:
        names = {hdu.name for hdu in hdul}
    assert "WFA_SIGMA_BLOS" in names and not names & set(SIGMA_NAMES)
    assert (out / "history.json").exists() and (out / "model.pt").exists()
    skipped = json.loads((out / "history.json").read_text())["uncertainty"]["skipped"]
    assert skipped.startswith("no SIGMA_* maps") and reason in skipped
    assert reason in capsys.readouterr().err


def test_out_of_memory_in_the_redraw_costs_the_sigma_maps_only(config_path, tmp_path, monkeypatch, capsys):
    def no_memory(*args, **kwargs):
        raise MemoryError("Unable to allocate 80.0 GiB")

    monkeypatch.setattr(field_uncertainty, "redraw_noise_on_disk", no_memory)
    out = tmp_path / "run"
    assert _run(config_path, out) == 0
    _check_fit_kept_without_sigmas(out, capsys, "ran out of memory")


def test_an_unwritable_scratch_file_costs_the_sigma_maps_only(config_path, tmp_path, monkeypatch, capsys):
    gone = tmp_path / "gone"  # a directory that does not exist: opening the scratch file fails
    monkeypatch.setattr(field_uncertainty, "temporary_path", lambda directory, name: gone / f".{name}.tmp")
    out = tmp_path / "run"
    assert _run(config_path, out) == 0
    _check_fit_kept_without_sigmas(out, capsys, "cannot write the bootstrap member's redrawn cube")


def test_a_full_scratch_disk_is_refused_before_writing(config_path, tmp_path, monkeypatch, capsys):
    real = field_uncertainty.shutil.disk_usage
    monkeypatch.setattr(field_uncertainty.shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    out = tmp_path / "run"
    assert _run(config_path, out) == 0
    _check_fit_kept_without_sigmas(out, capsys, "of scratch disk")


def test_a_member_setup_error_costs_the_sigma_maps_only(config_path, tmp_path, monkeypatch, capsys):
    def refused(data, config, progress, *rest, **options):  # options: the member's start and settings
        raise HashwfaError("member config refused")

    monkeypatch.setattr(uncertainty, "member_solver", refused)
    out = tmp_path / "run"
    assert _run(config_path, out) == 0
    _check_fit_kept_without_sigmas(out, capsys, "member config refused")


def test_a_killed_runs_scratch_cube_is_removed_by_the_next_run(config_path, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    leftover = out / ".member-stokes.999999999.0123abcd.tmp"  # another (dead) process's scratch cube
    leftover.write_bytes(b"\0" * 64)
    assert main([str(config_path), "--out", str(out), "--overwrite"]) == 0
    assert not leftover.exists() and _scratch_files(out) == []
    assert f"removed '{leftover}'" in capsys.readouterr().err
