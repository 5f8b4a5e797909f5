"""field.fits is written extension by extension and frame by frame: the same bytes as a plain astropy write.

The reference below builds every extension the plain way (a whole float32
copy of each map, one ``HDUList.writeto``), as ``write_field_fits`` did before
it streamed the data; the file written frame by frame must match it byte for
byte, and writing must not allocate a float32 copy of the whole series.
"""

import tracemalloc

import numpy as np
import pytest
from astropy.io import fits

from hashwfa.run.outputs import write_field_fits
from hashwfa.wfa.physics.maps import FieldMaps, FieldSigmas
from hashwfa.wfa.observation.noise import given_noise
from hashwfa.wfa.baselines.regularized import RegularizedResult

NAMES = ("BLOS", "BQ", "BU", "BTRANS", "AZIMUTH")
UNITS = {"BLOS": ("G", "gauss"), "BQ": ("G2", "gauss^2"), "BU": ("G2", "gauss^2"), "BTRANS": ("G", "gauss"),
         "AZIMUTH": ("rad", "radians, 0..pi from +x to +y")}
SIGMA_UNITS = {"BLOS": ("G", "gauss"), "BQ": ("G2", "gauss^2"), "BU": ("G2", "gauss^2"), "BTRANS": ("G", "gauss"),
               "AZIMUTH": ("rad", "radians")}


def _maps(rng, shape, nan_fraction=0.1):
    """Random maps with some NaN pixels, as FieldMaps (values chosen directly, not derived)."""
    arrays = [rng.normal(0.0, 300.0, shape) for _ in NAMES]
    for a in arrays:
        a[rng.random(shape) < nan_fraction] = np.nan
    return FieldMaps(*arrays)


def _sigmas(rng, shape):
    arrays = [np.abs(rng.normal(0.0, 30.0, shape)) for _ in NAMES]
    arrays[0][rng.random(shape) < 0.05] = np.inf
    return FieldSigmas(*arrays)


def _reference_hdus(groups, valid, map_cards):
    """The extensions written the plain way: float32 copies of the maps, uint8 VALID."""
    hdus = []
    for prefix, sigma, arrays in groups:
        for name, array in zip(NAMES, arrays):
            unit, comment = (SIGMA_UNITS if sigma else UNITS)[name]
            header = fits.Header()
            header["BUNIT"] = (unit, ("one-sigma uncertainty, " + comment) if sigma else comment)
            extname = prefix + ("SIGMA_" if sigma else "") + name
            hdus.append(fits.ImageHDU(np.array(array, dtype=np.float32), header=header, name=extname))
    hdu = fits.ImageHDU(np.array(valid, dtype=np.uint8), name="VALID")
    hdu.header["BUNIT"] = ("", "1 = pixel used in the fit (mask and finite)")
    hdus.append(hdu)
    for hdu in hdus:
        for key, value, comment in map_cards:
            hdu.header[key] = (value, comment)
    return hdus


@pytest.mark.parametrize("shape", [(5, 7, 6), (7, 6)], ids=["series", "one frame"])
def test_streamed_field_fits_equals_a_plain_write(tmp_path, shape):
    rng = np.random.default_rng(3)
    maps, wfa, reg_maps, truth = (_maps(rng, shape) for _ in range(4))
    sigmas, wfa_sigmas = _sigmas(rng, shape), _sigmas(rng, shape)
    valid = rng.random(shape) < 0.8
    reg = RegularizedResult(maps=reg_maps, alpha_v=0.5, alpha_qu=0.25, rule_v="discrepancy", rule_qu="gcv",
                            method="direct", noise_v=1e-3)
    series = len(shape) == 3
    times = np.arange(shape[0]) * 12.5 if series else None
    map_cards = [("CTYPE1", "HPLN-TAN", "x"), ("CDELT1", 0.059, "arcsec")]
    path = tmp_path / "field.fits"
    write_field_fits(path, maps, wfa, provenance={"SEED": (4, "seed")}, config={"a": {"b": 1}}, valid=valid,
                     truth=truth, sigmas=sigmas, wfa_sigmas=wfa_sigmas, regularized=reg, times=times,
                     noise=given_noise([1e-3, 2e-3, 3e-3, 4e-3], nw=5), map_cards=map_cards)

    def arrays(group):
        return [getattr(group, a) for a in ("blos", "bq", "bu", "bt", "azimuth")]

    groups = [("", False, arrays(maps)), ("WFA_", False, arrays(wfa)), ("", True, arrays(sigmas)),
              ("WFA_", True, arrays(wfa_sigmas)), ("REG_", False, arrays(reg_maps)), ("TRUE_", False, arrays(truth))]
    with fits.open(path) as hdul:
        primary = fits.PrimaryHDU(header=hdul[0].header.copy())
        tail = [fits.BinTableHDU(hdul["TIMES"].data, header=hdul["TIMES"].header.copy())] if series else []
        names = [h.name for h in hdul]
        # Every value as written, read back: the float32 of each float64 map (NaN and inf kept).
        for prefix, sigma, group in groups:
            for name, array in zip(NAMES, group):
                data = hdul[prefix + ("SIGMA_" if sigma else "") + name].data
                assert data.dtype == np.dtype(">f4") and data.shape == shape
                np.testing.assert_array_equal(data, np.float32(array))
        np.testing.assert_array_equal(hdul["VALID"].data, valid.astype(np.uint8))
    reference = tmp_path / "reference.fits"
    fits.HDUList([primary, *_reference_hdus(groups, valid, map_cards), *tail]).writeto(reference)
    with fits.open(reference) as ref:
        assert [h.name for h in ref] == names
    assert path.read_bytes() == reference.read_bytes()


def test_writing_a_series_makes_no_float32_copy_of_it(tmp_path):
    # 26 maps of 32 x 96 x 96: the plain write held a float32 copy of all of
    # them (26 x 1.2 MB = 31 MB) at once; the streamed one about one frame each
    # (and a constant: headers, astropy objects, under 1 MB).
    shape = (32, 96, 96)
    rng = np.random.default_rng(0)
    maps, wfa, reg_maps, truth = (_maps(rng, shape, 0.0) for _ in range(4))
    sigmas, wfa_sigmas = _sigmas(rng, shape), _sigmas(rng, shape)
    reg = RegularizedResult(maps=reg_maps, alpha_v=1.0, alpha_qu=1.0, rule_v="given", rule_qu="given",
                            method="direct")
    one_map_float32 = np.prod(shape) * 4
    kwargs = dict(provenance={}, config={}, truth=truth, sigmas=sigmas, wfa_sigmas=wfa_sigmas, regularized=reg)
    # A first write imports what astropy imports lazily (tables, time): not counted.
    small = FieldMaps(*(a[:2, :2, :2] for a in maps.as_dict().values()))
    write_field_fits(tmp_path / "small.fits", small, small, provenance={}, config={}, valid=np.ones((2, 2, 2), bool),
                     truth=small, times=np.arange(2.0))
    valid = np.ones(shape, bool)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        write_field_fits(tmp_path / "field.fits", maps, wfa, valid=valid, times=np.arange(shape[0], dtype=float),
                         **kwargs)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < one_map_float32, f"writing allocated {peak} B, a whole float32 map is {one_map_float32} B"
    with fits.open(tmp_path / "field.fits") as hdul:
        np.testing.assert_array_equal(hdul["TRUE_AZIMUTH"].data, np.float32(truth.azimuth))


def test_a_failure_while_filling_the_maps_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    import errno

    import hashwfa.run.outputs as results_module
    from hashwfa.errors import OutputWriteError

    path = tmp_path / "field.fits"
    path.write_bytes(b"the previous run's file")

    def disk_full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(results_module, "_fill_images", disk_full)
    maps = _maps(np.random.default_rng(1), (3, 4, 5))
    with pytest.raises(OutputWriteError, match="No space left"):
        write_field_fits(path, maps, maps, provenance={}, config={})
    assert path.read_bytes() == b"the previous run's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field.fits"]
