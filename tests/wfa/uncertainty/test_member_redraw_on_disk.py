"""A bootstrap member's data of a lazy series: the redraw written frame by frame to a scratch file.

Oracle: ``np.asarray(cube, float64) + sigma * rng.standard_normal(shape)``, the
cube read whole by astropy and one draw over the whole shape from the same
seed, computed here. Memory: tracemalloc sees every numpy allocation (not the
file mapping), so the redraw must stay well below the float64 cube.
"""

import tracemalloc
import warnings

import numpy as np
import pytest
from astropy.io import fits

from hashwfa.errors import OutputWriteError
from hashwfa.wfa.uncertainty import local_risk as field_uncertainty
from hashwfa.wfa.uncertainty.local_risk import member_data, redraw_noise, redraw_noise_on_disk
from hashwfa.wfa.observation.noise import StokesNoise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.synthetic.series import synthetic_series

NT, NY, NX = 3, 10, 9

pytestmark = pytest.mark.filterwarnings("ignore:.*NaN or infinite values:UserWarning")


def _write_series(directory, nt=NT, ny=NY, nx=NX):
    series = synthetic_series(nt=nt, ny=ny, nx=nx, seed=5, noise=2e-3)
    stokes = series.stokes.copy()
    stokes[1, 2, 3, 1, series.active_indices[0]] = np.nan  # Q at an active wavelength: an invalid pixel
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        obs = Observation(stokes, series.wavelengths, times=series.times, active_indices=series.active_indices)
    return obs.write_fits(directory / "s.fits", directory / "w.fits"), series.active_indices


def _lazy(paths, active):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return Observation.from_fits(*paths, active_indices=active)


def _noise(nw):
    sigma = np.outer([3e-3, 1e-3, 1.5e-3, 2e-3], np.linspace(1.0, 2.0, nw))
    return StokesNoise(sigma=sigma, method="given")


def _scratch_files(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(".member-stokes."))


def test_frame_by_frame_draws_are_the_one_call_stream():
    shape = (4, 5, 6, 4, 7)
    whole = np.random.default_rng(11).standard_normal(shape)
    rng = np.random.default_rng(11)
    frames = np.stack([rng.standard_normal(shape[1:]) for _ in range(shape[0])])
    np.testing.assert_array_equal(frames, whole)


def test_lazy_redraw_equals_the_in_memory_redraw_exactly(tmp_path):
    paths, active = _write_series(tmp_path)
    lazy = _lazy(paths, active)
    assert lazy.is_lazy
    noise = _noise(lazy.nw)
    with fits.open(paths[0]) as hdul:
        cube = np.asarray(hdul[0].data, dtype=np.float64)
    oracle = cube + noise.sigma * np.random.default_rng(7).standard_normal(cube.shape)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    rng = np.random.default_rng(7)
    with redraw_noise_on_disk(lazy, noise, rng, scratch) as data:
        assert data.is_lazy and data.stokes.dtype == np.float64 and data.stokes.shape == cube.shape
        assert len(_scratch_files(scratch)) == 1
        on_disk = np.array(data.stokes)
        valid = data.valid.copy()
        assert (data.times == lazy.times).all() and data.line == lazy.line
    np.testing.assert_array_equal(on_disk, oracle)  # NaN at the same place too
    assert _scratch_files(scratch) == []
    # The generator moved on by the whole cube, as one call over the shape moves it.
    reference = np.random.default_rng(7)
    reference.standard_normal(cube.shape)
    assert rng.standard_normal() == reference.standard_normal()
    # The in-memory path (kept as it was) gives the same member data.
    in_memory = redraw_noise(Observation(cube, lazy.wavelengths, active_indices=active, line=lazy.line,
                                         times=lazy.times), noise, np.random.default_rng(7))
    np.testing.assert_array_equal(in_memory.stokes, oracle)
    np.testing.assert_array_equal(in_memory.valid, valid)


def test_member_data_picks_the_disk_only_for_a_lazy_cube_and_a_scratch_dir(tmp_path):
    paths, active = _write_series(tmp_path)
    lazy = _lazy(paths, active)
    noise = _noise(lazy.nw)
    with member_data(lazy, noise, np.random.default_rng(0), tmp_path) as data:
        assert isinstance(data.stokes, np.memmap) and len(_scratch_files(tmp_path)) == 1
    with member_data(lazy, noise, np.random.default_rng(0), None) as data:
        assert not data.is_lazy and _scratch_files(tmp_path) == []


def test_lazy_redraw_holds_about_one_frame(tmp_path):
    nt, ny, nx = 12, 24, 24
    paths, active = _write_series(tmp_path, nt, ny, nx)
    lazy = _lazy(paths, active)
    noise = _noise(lazy.nw)
    cube_bytes = 8 * int(np.prod(lazy.stokes.shape))
    tracemalloc.start()
    try:
        with redraw_noise_on_disk(lazy, noise, np.random.default_rng(1), tmp_path) as data:
            assert data.n_valid == nt * ny * nx - 1
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"peak {peak} B of a {cube_bytes} B float64 cube")
    assert peak < 0.35 * cube_bytes, (peak, cube_bytes)


def test_scratch_file_is_removed_on_an_error(tmp_path):
    paths, active = _write_series(tmp_path)
    lazy = _lazy(paths, active)
    with pytest.raises(RuntimeError, match="member failed"):
        with redraw_noise_on_disk(lazy, _noise(lazy.nw), np.random.default_rng(0), tmp_path):
            assert len(_scratch_files(tmp_path)) == 1
            raise RuntimeError("member failed")
    assert _scratch_files(tmp_path) == []


def test_too_little_free_disk_is_refused_before_writing(tmp_path, monkeypatch):
    paths, active = _write_series(tmp_path)
    lazy = _lazy(paths, active)
    needed = 8 * NT * NY * NX * 4 * lazy.nw
    real = field_uncertainty.shutil.disk_usage

    def almost_full(path):
        return real(path)._replace(free=needed - 1)

    monkeypatch.setattr(field_uncertainty.shutil, "disk_usage", almost_full)
    with pytest.raises(OutputWriteError, match="scratch disk"):
        with redraw_noise_on_disk(lazy, _noise(lazy.nw), np.random.default_rng(0), tmp_path):
            pytest.fail("the member must not start")
    assert _scratch_files(tmp_path) == []


def test_unwritable_scratch_directory_is_an_output_write_error(tmp_path):
    paths, active = _write_series(tmp_path)
    lazy = _lazy(paths, active)
    not_a_directory = tmp_path / "plain-file"  # fails for root too, unlike a read-only directory
    not_a_directory.write_text("")
    with pytest.raises(OutputWriteError, match="cannot write the bootstrap member"):
        with redraw_noise_on_disk(lazy, _noise(lazy.nw), np.random.default_rng(0), not_a_directory):
            pytest.fail("the member must not start")
    with pytest.raises(OutputWriteError, match="cannot use"):
        with redraw_noise_on_disk(lazy, _noise(lazy.nw), np.random.default_rng(0), tmp_path / "missing"):
            pytest.fail("the member must not start")
    assert _scratch_files(tmp_path) == []
