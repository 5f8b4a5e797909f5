"""map_errors against hand-computed values."""

import numpy as np
import pytest

from hashwfa.wfa.physics.maps import FieldMaps, map_errors


def _maps(blos, bt, azimuth):
    blos, bt, azimuth = (np.asarray(a, float) for a in (blos, bt, azimuth))
    bq, bu = bt ** 2 * np.cos(2 * azimuth), bt ** 2 * np.sin(2 * azimuth)
    return FieldMaps(blos=blos, bq=bq, bu=bu, bt=bt, azimuth=azimuth)


def test_errors_in_gauss_and_degrees_with_the_azimuth_modulo_180():
    truth = _maps([[0.0, 0.0]], [[100.0, 100.0]], [[np.radians(1.0), np.radians(10.0)]])
    # B_los off by 3 and 4 G: rms = sqrt((9 + 16) / 2); B_t off by 0 and 10 G;
    # azimuth 179 deg against 1 deg is 2 deg apart, 40 against 10 is 30 apart.
    maps = _maps([[3.0, -4.0]], [[100.0, 110.0]], [[np.radians(179.0), np.radians(40.0)]])
    e = map_errors(maps, truth)
    assert e["blos_rmse"] == pytest.approx(np.sqrt(12.5))
    assert e["bt_rmse"] == pytest.approx(np.sqrt(50.0))
    assert e["azimuth_mae"] == pytest.approx(16.0)
    assert e["azimuth_rmse"] == pytest.approx(np.sqrt((4.0 + 900.0) / 2))


def test_only_valid_pixels_count():
    truth = _maps([[0.0, 0.0]], [[1.0, 1.0]], [[0.0, 0.0]])
    maps = _maps([[2.0, 1000.0]], [[1.0, 1.0]], [[0.0, 0.0]])
    assert map_errors(maps, truth, valid=np.array([[True, False]]))["blos_rmse"] == pytest.approx(2.0)
