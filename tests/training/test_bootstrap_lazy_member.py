"""run_uncertainty on a lazy series (a FITS cube mapped from its file) with a scratch directory: the same
SIGMA_* maps, bit for bit, as on the same data in memory; the scratch cube is gone afterwards.

Oracle: the in-memory observation of ``np.asarray(cube, float64)`` (the cube read whole by astropy),
whose members' data come from the in-memory redraw."""

import warnings

import numpy as np
import pytest
from astropy.io import fits

from hashwfa.wfa.baselines.products import Baselines
from hashwfa.training.bootstrap import run_uncertainty
from hashwfa.wfa.observation.noise import given_noise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.synthetic.series import synthetic_series

pytestmark = pytest.mark.usefixtures("one_thread")


def test_lazy_series_members_give_the_in_memory_sigma_maps(tmp_path, small_solver_config):
    series = synthetic_series(nt=2, ny=8, nx=7, seed=4, noise=2e-3, model="wfa")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        written = Observation(series.stokes, series.wavelengths, times=series.times,
                              active_indices=series.active_indices)
        paths = written.write_fits(tmp_path / "s.fits", tmp_path / "w.fits")
        lazy = Observation.from_fits(*paths, active_indices=series.active_indices)
    with fits.open(paths[0]) as hdul:
        cube = np.asarray(hdul[0].data, dtype=np.float64)
    memory = Observation(cube, lazy.wavelengths, active_indices=series.active_indices, line=lazy.line,
                         times=lazy.times)
    assert lazy.is_lazy and not memory.is_lazy
    config = small_solver_config(seed=5, epochs_per_phase=3)
    noise = given_noise([2e-3, 2e-3, 2e-3, 2e-3], lazy.nw)
    maps = pixel_wfa(memory)  # any field's maps do: the members and the risk are what is compared
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    found_lazy = run_uncertainty(lazy, maps, config, baselines=Baselines(lazy, given_noise=noise), field_sigmas_too=True, progress=False,
                                 scratch_dir=scratch)
    found_memory = run_uncertainty(memory, maps, config, baselines=Baselines(memory, given_noise=noise), field_sigmas_too=True, progress=False)
    assert found_lazy.skipped is None and found_memory.skipped is None
    assert list(scratch.iterdir()) == []
    assert [m["final_loss"] for m in found_lazy.members] == [m["final_loss"] for m in found_memory.members]
    for name in ("blos", "bq", "bu", "bt", "azimuth"):
        a, b = getattr(found_lazy.sigmas, name), getattr(found_memory.sigmas, name)
        assert a.shape == (2, 8, 7) and np.isfinite(a).any(), name
        np.testing.assert_array_equal(a, b, err_msg=name)
