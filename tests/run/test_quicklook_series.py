"""The quick-look of a time series: one frame plus a row of summary numbers per frame."""

import numpy as np
import pytest
from matplotlib.image import imread

from hashwfa.errors import HashwfaError
from hashwfa.run.quicklook import write_quicklook
from hashwfa.wfa.physics.maps import FieldMaps

HISTORY = {"blos": {"loss": [1.0, 0.5], "lr": [1e-3, 1e-3]}, "bqbu": {"loss": [2.0, 1.0], "lr": [1e-3, 1e-3]}}


def _maps(shape, seed):
    rng = np.random.default_rng(seed)
    return FieldMaps.from_bqbu(blos=100 * rng.standard_normal(shape), bq=1e4 * rng.standard_normal(shape),
                               bu=1e4 * rng.standard_normal(shape))


@pytest.mark.parametrize("shape, truth, rows", [((3, 8, 9), True, 4), ((3, 8, 9), False, 3), ((8, 9), True, 3)])
def test_series_adds_one_row(tmp_path, shape, truth, rows):
    path = tmp_path / "q.png"
    write_quicklook(path, _maps(shape, 0), _maps(shape, 1), HISTORY, truth=_maps(shape, 2) if truth else None,
                    dpi=30, times=np.array([0.0, 20.0, 40.0]) if len(shape) == 3 else None)
    image = imread(path)
    assert image.shape[:2] == (round(4.2 * rows * 30), 16 * 30)


def test_frame_out_of_range(tmp_path):
    with pytest.raises(HashwfaError, match="frame 3"):
        write_quicklook(tmp_path / "q.png", _maps((3, 4, 4), 0), _maps((3, 4, 4), 1), HISTORY, dpi=30, frame=3)
