"""field.fits as a Level-2 product: SunPy opens every map, astropy and ndcube read a series' time axis.

Small runs through ``hashwfa-train`` (8 x 8 pixels, 2 epochs per phase) on
the synthetic plage and series and on SST-layout cubes written by
``sst_files``; the oracles are the inputs' own coordinates (the tabulated
corners and times, DATEREF), the synthetic's documented pixel scale and, for
the observer, SunPy's Earth-centred ephemeris (B0 angle, Earth-Sun
distance), which the observatory on Earth's surface differs from by under an
Earth radius.
"""

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import EarthLocation
from astropy.io import fits
from astropy.time import Time
from astropy.wcs import WCS

from hashwfa.cli.train import main
from hashwfa.run import quicklook
from hashwfa.run.map_header import NOMINAL_WCSNAME, map_header
from hashwfa.wfa.physics.lines import get_line
from hashwfa.wfa.synthetic.series import synthetic_series

_spec = importlib.util.spec_from_file_location(
    "sst_files", Path(__file__).resolve().parents[1] / "wfa" / "observation" / "sst_files.py")
sst_files = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sst_files)

pytestmark = pytest.mark.usefixtures("one_thread")

NY = NX = 8
DATEREF = "2021-06-22T00:00:00.000000"
CONFIG = {
    "line": "5173",
    "encoding": {"version": 1, "n_levels": 4, "max_resolution": 8, "log2_hashmap_size": 8},
    "network": {"n_neurons": 16},
    "training": {"epochs_per_phase": 2, "device": "cpu", "seed": 0},
    "output": {"dpi": 30},
}
#: The Swedish 1-m Solar Telescope, La Palma (geodetic longitude, latitude, height).
SST = EarthLocation.from_geodetic(-17.8806 * u.deg, 28.7597 * u.deg, 2360.0 * u.m)
OBSERVER = {"OBSGEO-X": SST.x.to_value(u.m), "OBSGEO-Y": SST.y.to_value(u.m), "OBSGEO-Z": SST.z.to_value(u.m),
            "OBJECT": "plage", "FILTER1": "Mg I b2"}
#: Tabulated times [s since DATEREF] of 3 scans x 13 tunings: unequal cadence (12 s, then 13 s).
SCAN_TIMES = 28800.0 + np.array([0.0, 12.0, 25.0])[:, None] + 0.3 * np.arange(13)[None, :]


def _run(directory: Path, data: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "c.json").write_text(json.dumps({**CONFIG, "data": data}))
    assert main([str(directory / "c.json"), "--out", str(directory / "out"), "--quiet"]) == 0
    return directory / "out" / "field.fits"


@pytest.fixture(scope="module")
def series():
    return synthetic_series(nt=3, ny=NY, nx=NX, seed=1, model="wfa")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, series):
    """field.fits of: the synthetic plage, one SST scan, three SST scans, the synthetic series."""
    tmp = tmp_path_factory.mktemp("level2")
    wave_nm = (get_line("5173").center + series.wavelengths) / 10.0
    sst_files.write_sst_cube(tmp / "one_im.fits", series.stokes[:1], wave_nm, SCAN_TIMES[:1], extra=OBSERVER)
    sst_files.write_sst_cube(tmp / "three_im.fits", series.stokes, wave_nm, SCAN_TIMES, extra=OBSERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run's own warnings are other tests' business
        return {
            "synthetic": _run(tmp / "synthetic", {"synthetic": {"ny": NY, "nx": NX}}),
            "sst": _run(tmp / "sst", {"path": str(tmp / "one_im.fits")}),
            "sst_series": _run(tmp / "sst_series", {"path": str(tmp / "three_im.fits")}),
            "series": _run(tmp / "series", {"synthetic": {"nt": 3, "ny": NY, "nx": NX, "cadence": 15.0}}),
        }


def _open_every_map(path: Path):
    """sunpy.map.Map of every image extension; returns [(name, map, warning messages)]."""
    sunpy_map = pytest.importorskip("sunpy.map")
    opened = []
    with fits.open(path) as hdul:
        for hdu in hdul[1:]:
            if not isinstance(hdu, fits.ImageHDU):
                continue
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                m = sunpy_map.Map(hdu.data, hdu.header)
                _ = (m.date, m.observer_coordinate, m.coordinate_frame)  # what reads the observer cards
            opened.append((hdu.name, m, [str(w.message) for w in caught]))
    assert len(opened) >= 11  # field, pixel-wise WFA and its sigmas, VALID at least
    return opened


def test_sunpy_opens_every_map_of_a_synthetic_run(runs):
    for name, m, _ in _open_every_map(runs["synthetic"]):
        # The synthetic plage's documented pixel scale, around disk centre.
        assert m.scale.axis1.to_value(u.arcsec / u.pix) == pytest.approx(0.044), name
        assert m.scale.axis2.to_value(u.arcsec / u.pix) == pytest.approx(0.044), name
        centre = m.pixel_to_world((NX - 1) / 2 * u.pix, (NY - 1) / 2 * u.pix)
        assert abs(centre.Tx.to_value(u.arcsec)) < 1e-6 and abs(centre.Ty.to_value(u.arcsec)) < 1e-6


def test_sunpy_opens_every_map_of_an_sst_scan_with_its_observer(runs):
    coordinates = pytest.importorskip("sunpy.coordinates")
    begin = Time(DATEREF) + SCAN_TIMES[0].min() * u.s
    mean = Time(DATEREF) + SCAN_TIMES[0].mean() * u.s
    for name, m, messages in _open_every_map(runs["sst"]):
        assert not [msg for msg in messages if "observer" in msg.lower() or "missing" in msg.lower()], (name, messages)
        # Coordinates of the cube's tabulated corners (sst_files: origin and step in arcsec).
        corner = m.pixel_to_world(0 * u.pix, 0 * u.pix)
        assert corner.Tx.to_value(u.arcsec) == pytest.approx(sst_files.ORIGIN_ARCSEC[0], abs=1e-6)
        assert corner.Ty.to_value(u.arcsec) == pytest.approx(sst_files.ORIGIN_ARCSEC[1], abs=1e-6)
        assert m.scale.axis1.to_value(u.arcsec / u.pix) == pytest.approx(sst_files.STEP_ARCSEC)
        assert abs((m.date - begin).to_value(u.s)) < 1e-3
        assert m.wavelength.to_value(u.AA) == pytest.approx(get_line("5173").center)
        assert m.meta["object"] == "plage" and m.meta["filter1"] == "Mg I b2"
        observer = m.observer_coordinate
        # An observer on Earth: B0 and the Earth-Sun distance, to an Earth radius (0.003 deg, 6400 km).
        assert observer.lat.to_value(u.deg) == pytest.approx(coordinates.sun.B0(mean).to_value(u.deg), abs=0.01)
        assert abs(observer.lon.to_value(u.deg)) < 0.01
        assert observer.radius.to_value(u.m) == pytest.approx(coordinates.sun.earth_distance(mean).to_value(u.m),
                                                               abs=1e7)


def _time_axis(path: Path, name: str = "BLOS"):
    """(WCS, the frame times as astropy reads them, TIMES [s]) of a series map."""
    with fits.open(path) as hdul:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # astropy's notes on what it fixed (MJD-OBS from DATE-OBS, ...)
            wcs = WCS(hdul[name].header, hdul)
            nt = hdul[name].data.shape[0]
            zeros = np.zeros(nt)
            seconds = wcs.pixel_to_world_values(zeros, zeros, np.arange(nt))[2]
            world = wcs.pixel_to_world(zeros, zeros, np.arange(nt))[-1]
        return wcs, seconds, world, np.array(hdul["TIMES"].data["TIME"])


def test_an_sst_series_with_unequal_cadence_has_a_tabulated_time_axis(runs):
    wcs, seconds, world, times = _time_axis(runs["sst_series"])
    assert "UTC--TAB" in wcs.wcs.ctype and "time" in wcs.world_axis_physical_types
    expected = SCAN_TIMES.mean(axis=1)  # the reader's frame times: the mean over each scan's tunings
    np.testing.assert_allclose(times, expected)
    np.testing.assert_allclose(seconds, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose((world - Time(DATEREF)).to_value(u.s), expected, rtol=0, atol=1e-4)
    ndcube = pytest.importorskip("ndcube")
    with fits.open(runs["sst_series"]) as hdul:
        cube = ndcube.NDCube(hdul["BLOS"].data, wcs=wcs)
        (read,) = cube.axis_world_coords("time")
    np.testing.assert_allclose((read - Time(DATEREF)).to_value(u.s), expected, rtol=0, atol=1e-4)


def test_a_synthetic_series_has_a_linear_time_axis(runs, series):
    wcs, seconds, _, times = _time_axis(runs["series"], "VALID")
    assert "TIME" in wcs.wcs.ctype and "time" in wcs.world_axis_physical_types
    np.testing.assert_array_equal(seconds, [0.0, 15.0, 30.0])
    np.testing.assert_array_equal(times, [0.0, 15.0, 30.0])


def test_no_spatial_wcs_gives_a_nominal_one_sunpy_opens(series):
    header = map_header((), (NY, NX), wavelength=5172.68)
    cards = {key: value for key, value, _ in header.cards}
    assert cards["WCSNAME"] == NOMINAL_WCSNAME and cards["CDELT1"] == cards["CDELT2"] == 1.0
    assert any("no spatial WCS" in note for note in header.notes)
    sunpy_map = pytest.importorskip("sunpy.map")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no date, no observer: SunPy says so, and must not fail
        m = sunpy_map.Map(np.zeros((NY, NX), np.float32), fits.Header(list(header.cards)))
    assert m.scale.axis1.to_value(u.arcsec / u.pix) == 1.0


def test_without_sunpy_the_observer_is_left_out_and_said_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "sunpy.coordinates", None)  # import fails as if not installed
    cards = [("CTYPE1", "HPLN-TAN", ""), ("CTYPE2", "HPLT-TAN", ""), ("CUNIT1", "arcsec", ""),
             ("CUNIT2", "arcsec", ""), ("DATE-AVG", "2021-06-22T08:00:00", "")]
    cards += [(key, OBSERVER[key], "") for key in ("OBSGEO-X", "OBSGEO-Y", "OBSGEO-Z")]
    header = map_header(cards, (NY, NX))
    keys = [key for key, _, _ in header.cards]
    assert not {"HGLN_OBS", "HGLT_OBS", "DSUN_OBS"} & set(keys)
    assert any("SunPy" in note for note in header.notes)
    assert "DATE-OBS" in keys and "RSUN_REF" in keys


def test_a_cd_matrix_gets_the_time_step_too():
    cards = [("CTYPE1", "HPLN-TAN", ""), ("CTYPE2", "HPLT-TAN", ""), ("CD1_1", 0.05, ""), ("CD2_2", 0.05, ""),
             ("DATEREF", "2020-01-01T00:00:00", "")]
    header = fits.Header([("NAXIS", 3)] + list(map_header(cards, (3, 4, 5), times=np.array([10.0, 20.0, 30.0])).cards))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        seconds = WCS(header).pixel_to_world_values(np.zeros(3), np.zeros(3), np.arange(3))[2]
    np.testing.assert_allclose(seconds, [10.0, 20.0, 30.0])


def test_quicklook_extent_and_title_in_a_scientists_units(tmp_path, monkeypatch, series):
    cards = dict((key, value) for key, value, _ in series.observation().map_cards)
    # Pixel edges of 8 pixels of 0.044 arcsec centred on (0, 0).
    np.testing.assert_allclose(quicklook.sky_extent(cards, NY, NX), [-0.176, 0.176, -0.176, 0.176], rtol=1e-6)
    assert quicklook.sky_extent({**cards, "WCSNAME": NOMINAL_WCSNAME}, NY, NX) is None
    titles = []

    class Recording(quicklook.Figure):
        def suptitle(self, text, **kwargs):
            titles.append(text)
            return super().suptitle(text, **kwargs)

    monkeypatch.setattr(quicklook, "Figure", Recording)
    header = {**cards, "DATEREF": "2021-06-22T00:00:00", "DATE-OBS": "2021-06-22T08:00:00.000"}
    history = {"blos": {"loss": [1.0, 0.5], "lr": [1e-3, 1e-3]}, "bqbu": {"loss": [2.0, 1.0], "lr": [1e-3, 1e-3]}}
    quicklook.write_quicklook(tmp_path / "q.png", series.truth, series.truth, history, dpi=20, frame=1,
                              times=np.array([28800.0, 28815.0, 28830.0]), header=header, title="run")
    (title,) = titles
    assert "observed 2021-06-22 08:00:00 UT" in title and "t = 08:00:15 UT" in title
