"""Lazy cubes: a series mapped from its FITS file gives what the same cube in memory (float64) gives.

Oracle: the in-memory :class:`Observation` of ``np.asarray(cube, float64)``,
the cube read whole by astropy, independently of the lazy path. Memory:
tracemalloc sees every numpy allocation (not the file mapping), so a lazy
build and the WFA passes must stay well below the float64 cube.
"""

import importlib.util
import tracemalloc
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch
from astropy.io import fits

from hashwfa.training.loss import WFALoss
from hashwfa.wfa.observation.noise import estimate_noise
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.physics.weak_field import wfa_coefficients
from hashwfa.wfa.baselines.pixelwise import pixel_wfa
from hashwfa.wfa.uncertainty.pixelwise import pixel_wfa_sigmas
from hashwfa.wfa.baselines.regularized import regularized_wfa
from hashwfa.wfa.synthetic.series import synthetic_series

_spec = importlib.util.spec_from_file_location("sst_files", Path(__file__).with_name("sst_files.py"))
sst_files = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sst_files)

NT, NY, NX = 4, 14, 12


@pytest.fixture(scope="module")
def series_files(tmp_path_factory):
    """A small series with NaN pixels, an absurd pixel and a user mask, written as float32 FITS."""
    series = synthetic_series(nt=NT, ny=NY, nx=NX, seed=3, noise=2e-3)
    stokes = series.stokes.copy()
    stokes[1, 3, 4, 2, 6] = np.nan  # Q at an active wavelength: pixel left out
    stokes[2, 5, 5, 0, 0] = np.nan  # I at an unused wavelength: pixel kept
    stokes[3, 7, 2, 3, 7] = 1e9  # absurd V: left out
    stokes[0, :, 0, :, :] = 0.0  # a constant fill column (the noise estimate skips zeros)
    mask = np.ones((NT, NY, NX), bool)
    mask[2, 10, 3] = False
    directory = tmp_path_factory.mktemp("lazy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        obs = Observation(stokes, series.wavelengths, times=series.times, mask=mask,
                          active_indices=series.active_indices)
    paths = obs.write_fits(directory / "s.fits", directory / "w.fits")
    return paths, series.active_indices


def _both(paths, active):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        lazy = Observation.from_fits(*paths, active_indices=active)
        with fits.open(paths[0]) as hdul:
            cube = np.asarray(hdul[0].data, dtype=np.float64)
            mask = hdul["MASK"].data.astype(bool)
        wavelengths = fits.getdata(paths[1])
        memory = Observation(cube, wavelengths, active_indices=active, mask=mask, line=lazy.line)
    return lazy, memory


def _same_maps(a, b):
    for key in ("blos", "bq", "bu", "bt", "azimuth"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)


def test_lazy_series_is_mapped_not_copied(series_files):
    lazy, memory = _both(*series_files)
    assert lazy.is_lazy and not memory.is_lazy
    assert isinstance(lazy.stokes, np.memmap)
    assert lazy.stokes.dtype.itemsize == 4  # the file's float32, not a float64 copy
    assert lazy.stokes.shape == memory.stokes.shape == (NT, NY, NX, 4, 13)
    np.testing.assert_array_equal(np.asarray(lazy.stokes, np.float64), memory.stokes)


def test_lazy_series_gives_the_same_mask_inputs_and_loss(series_files):
    lazy, memory = _both(*series_files)
    assert (lazy.n_nonfinite, lazy.n_absurd) == (memory.n_nonfinite, memory.n_absurd) == (1, 1)
    np.testing.assert_array_equal(lazy.valid, memory.valid)
    assert lazy.n_valid == NT * NY * NX - 3
    for rows in (None, slice(100, 400), slice(5, 6)):
        a, b = lazy.wfa_inputs(rows), memory.wfa_inputs(rows)
        for field in ("index", "dI_dlambda", "d2I_dlambda2", "q", "u", "v", "wavelengths"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{field} rows {rows}")
    # Independent of the chunking: the in-memory inputs equal the oracle's plain formula on all pixels.
    flat = memory.stokes.reshape(-1, 4, 13)[memory.valid_index]
    np.testing.assert_array_equal(memory.wfa_inputs().v, flat[:, 3, list(memory.active_indices)])
    la, lb = WFALoss(lazy, rows=slice(50, 500)), WFALoss(memory, rows=slice(50, 500))
    for name in ("valid_index", "coef_v", "coef_qu", "target_q", "target_u", "target_v"):
        assert torch.equal(getattr(la, name), getattr(lb, name)), name


def test_lazy_series_gives_the_same_baselines_and_noise(series_files):
    lazy, memory = _both(*series_files)
    _same_maps(pixel_wfa(lazy), pixel_wfa(memory))
    noise_lazy, noise_memory = estimate_noise(lazy), estimate_noise(memory)
    np.testing.assert_array_equal(noise_lazy.sigma, noise_memory.sigma)
    assert noise_lazy.detail == noise_memory.detail
    _same_maps(pixel_wfa_sigmas(lazy, noise_lazy), pixel_wfa_sigmas(memory, noise_memory))
    for rule in ("discrepancy", "gcv", "misfit"):
        a, b = regularized_wfa(lazy, rule=rule), regularized_wfa(memory, rule=rule)
        assert (a.alpha_v, a.alpha_qu) == (b.alpha_v, b.alpha_qu)
        _same_maps(a.maps, b.maps)


def _path_laplacian(n):
    main = np.full(n, 2.0)
    main[[0, -1]] = 1.0
    return sp.diags([main, -np.ones(n - 1), -np.ones(n - 1)], [0, -1, 1])


def test_regularized_series_frame_by_frame_equals_the_whole_block_diagonal_system(series_files):
    """Oracle: the whole series' normal equations with a Kronecker-built Laplacian, one sparse solve."""
    lazy, memory = _both(*series_files)
    alpha = 0.3
    got = regularized_wfa(lazy, alpha=alpha, method="direct").maps
    inputs = memory.wfa_inputs()
    coef_v, _ = wfa_coefficients(inputs.dI_dlambda, inputs.wavelengths, memory.line,
                                 d2I_dlambda2=inputs.d2I_dlambda2)
    w = np.sum(coef_v ** 2, axis=1)
    m = np.median(w[w > 0])
    n = NT * NY * NX
    weight, rhs = np.zeros(n), np.zeros(n)
    weight[inputs.index] = w / m
    rhs[inputs.index] = np.sum(inputs.v * coef_v, axis=1) / m
    frame_laplacian = sp.kron(sp.identity(NY), _path_laplacian(NX)) + sp.kron(_path_laplacian(NY), sp.identity(NX))
    laplacian = sp.kron(sp.identity(NT), frame_laplacian)
    expected = spla.spsolve((sp.diags(weight) + alpha * laplacian).tocsc(), rhs)
    expected[~memory.valid] = np.nan
    np.testing.assert_allclose(got.blos.reshape(-1), expected, rtol=1e-9, atol=1e-9)


def test_lazy_sst_cube_matches_the_cube_read_whole(tmp_path):
    series = synthetic_series(nt=3, ny=9, nx=11, seed=4)
    wave_nm = (series.wavelengths + 5172.684) / 10.0
    times = np.arange(3)[:, None] * 20.0 + np.linspace(0, 5, 13)[None]
    path = sst_files.write_sst_cube(tmp_path / "c_im.fits", series.stokes, wave_nm, times)
    lazy = Observation.from_sst(path, active_indices=series.active_indices)
    read = Observation.from_sst(path, active_indices=series.active_indices, lazy=False)
    assert isinstance(lazy.stokes, np.memmap) and not read.is_lazy and not lazy.notes
    np.testing.assert_array_equal(lazy.valid, read.valid)
    _same_maps(pixel_wfa(lazy), pixel_wfa(read))
    np.testing.assert_array_equal(estimate_noise(lazy).sigma, estimate_noise(read).sigma)
    # Stokes stored in another order cannot be a plain view: read whole, and said.
    path2 = sst_files.write_sst_cube(tmp_path / "d_im.fits", series.stokes, wave_nm, times, stokes_codes=(4, 3, 2, 1))
    other = Observation.from_sst(path2, active_indices=series.active_indices)
    assert not other.is_lazy and "read whole" in other.notes[-1]
    _same_maps(pixel_wfa(other), pixel_wfa(read))


def test_scaled_cube_falls_back_to_reading_with_a_note(tmp_path):
    series = synthetic_series(nt=2, ny=8, nx=8, seed=5)
    obs = Observation(series.stokes, series.wavelengths, active_indices=series.active_indices)
    sp, wp = obs.write_fits(tmp_path / "s.fits", tmp_path / "w.fits")
    with fits.open(sp) as hdul:  # rewrite as int16 scaled by BSCALE/BZERO (cannot be mapped as is)
        hdu = hdul[0]
        hdu.scale("int16", bscale=1e-4, bzero=0.0)
        hdul.writeto(tmp_path / "scaled.fits")
    scaled = Observation.from_fits(tmp_path / "scaled.fits", wp, active_indices=series.active_indices)
    assert not scaled.is_lazy and "BSCALE" in scaled.notes[0]
    lazy_true = Observation.from_fits(sp, wp, active_indices=series.active_indices)
    assert lazy_true.is_lazy and lazy_true.notes == []
    with fits.open(sp) as hdul:  # a gzip-compressed file: astropy decompresses it, nothing to map
        hdul.writeto(tmp_path / "s.fits.gz")
    packed = Observation.from_fits(tmp_path / "s.fits.gz", wp, active_indices=series.active_indices)
    assert not packed.is_lazy and "compressed" in packed.notes[0]
    np.testing.assert_array_equal(pixel_wfa(packed).blos, pixel_wfa(lazy_true).blos)


def test_lazy_series_does_not_allocate_the_float64_cube(tmp_path):
    """tracemalloc peak of build + mask + pixel-wise WFA + noise (maps kept): well below the float64
    cube (oracle: the same steps on the cube read into memory reach at least its size)."""
    series = synthetic_series(nt=16, ny=32, nx=32, seed=6)
    obs = Observation(series.stokes, series.wavelengths, active_indices=series.active_indices)
    sp, wp = obs.write_fits(tmp_path / "s.fits", tmp_path / "w.fits")
    cube_bytes = 16 * 32 * 32 * 4 * 13 * 8
    del obs, series

    def peak(lazy: bool):
        tracemalloc.start()
        try:
            o = Observation.from_fits(sp, wp, active_indices=(5, 6, 7), lazy=lazy)
            maps = pixel_wfa(o)
            noise = estimate_noise(o)
            for _ in o.wfa_input_chunks():
                pass
            return tracemalloc.get_traced_memory()[1], maps, noise
        finally:
            tracemalloc.stop()

    in_memory, maps_memory, noise_memory = peak(lazy=False)
    lazy, maps_lazy, noise_lazy = peak(lazy=True)
    assert in_memory >= cube_bytes
    # What stays is per pixel ~100 B (maps kept, |I| for the median, pooled noise residuals) and one
    # frame (1/16 of the cube): a quarter of the float64 cube's 416 B per pixel, plus one frame.
    assert lazy < cube_bytes / 2
    # More than 600 interior pixels: numpy's other nanmedian path; still the same numbers.
    np.testing.assert_array_equal(noise_lazy.sigma, noise_memory.sigma)
    _same_maps(maps_lazy, maps_memory)


def test_coordinates_of_some_pixels_are_the_rows_of_the_whole_grid(series_files):
    lazy, _ = _both(*series_files)
    index = np.array([0, 7, NY * NX + 3, lazy.n_pixels - 1])
    t, y, x = np.unravel_index(index, (NT, NY, NX))
    times = lazy.times
    expected = np.stack([2 * (times[t] - times[0]) / (times[-1] - times[0]) - 1,
                         -1 + 2 * y / (NY - 1), -1 + 2 * x / (NX - 1)], axis=1).astype(np.float32)
    np.testing.assert_allclose(lazy.coordinates(index), expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(lazy.coordinates(index), lazy.coordinates()[index])


def test_a_truncated_or_unparsable_cube_is_one_error(tmp_path):
    from hashwfa.errors import HashwfaError

    series = synthetic_series(nt=2, ny=8, nx=8, seed=5)
    obs = Observation(series.stokes, series.wavelengths, active_indices=series.active_indices)
    sp, wp = obs.write_fits(tmp_path / "s.fits", tmp_path / "w.fits")
    whole = sp.read_bytes()
    (tmp_path / "half.fits").write_bytes(whole[:len(whole) // 2])  # a copy that stopped half-way
    for lazy in (True, False):
        with pytest.raises(HashwfaError, match=r"half\.fits: the file has \d+ bytes .* is the file complete"):
            Observation.from_fits(tmp_path / "half.fits", wp, active_indices=series.active_indices, lazy=lazy)
    sp, _ = obs.write_fits(tmp_path / "c.fits", tmp_path / "w2.fits", header={"CRVAL3": 1.0})
    raw = bytearray(sp.read_bytes())
    at = raw.index(b"CRVAL3  =")
    raw[at:at + 80] = b"CRVAL3  =                  NaN".ljust(80)  # not a FITS value
    (tmp_path / "nan.fits").write_bytes(bytes(raw))
    with pytest.raises(HashwfaError, match=r"nan\.fits: header card CRVAL3 cannot be parsed"):
        Observation.from_fits(tmp_path / "nan.fits", wp, active_indices=series.active_indices)


def test_fingerprint_is_the_same_for_the_same_data_read_or_mapped_and_differs_for_other_values(tmp_path):
    series = synthetic_series(nt=3, ny=8, nx=7, seed=5)
    obs = Observation(series.stokes, series.wavelengths, active_indices=series.active_indices)
    sp, wp = obs.write_fits(tmp_path / "s.fits", tmp_path / "w.fits", dtype=np.float64)
    mapped = Observation.from_fits(sp, wp, active_indices=series.active_indices)
    read = Observation.from_fits(sp, wp, active_indices=series.active_indices, lazy=False)
    assert mapped.is_lazy and mapped.fingerprint() == read.fingerprint()
    flipped = series.stokes.copy()
    flipped[..., 3, :] *= -1  # V of the opposite sign: B_los of the opposite sign
    other = read.fingerprint(), obs.with_stokes(flipped, "flipped").fingerprint()
    assert other[0]["shape"] == other[1]["shape"] and other[0]["header"] == other[1]["header"]
    assert other[0]["sample"] != other[1]["sample"]
    moved = Observation(series.stokes, series.wavelengths + 0.001, active_indices=series.active_indices)
    assert moved.fingerprint()["header"] != obs.fingerprint()["header"]
