"""The quick-look of a series shows the sigma maps of the chosen frame (one more row of panels)."""

import numpy as np
import pytest
from matplotlib.image import imread

import hashwfa.run.quicklook as quicklook
from hashwfa.wfa.physics.maps import FieldMaps, FieldSigmas

HISTORY = {"blos": {"loss": [1.0, 0.5], "lr": [1e-3, 1e-3]}, "bqbu": {"loss": [2.0, 1.0], "lr": [1e-3, 1e-3]}}


@pytest.mark.parametrize("frame", [0, 2])
def test_series_sigma_row_shows_the_chosen_frame(tmp_path, monkeypatch, frame):
    rng = np.random.default_rng(frame)
    shape = (3, 8, 9)
    maps = FieldMaps.from_bqbu(*(rng.standard_normal(shape) * s for s in (100, 1e4, 1e4)))
    sig = FieldSigmas(*(np.abs(rng.standard_normal(shape)) + 1 for _ in range(5)))
    wfa_sig = FieldSigmas(*(np.abs(rng.standard_normal(shape)) + 5 for _ in range(5)))
    shown = {}
    real_show = quicklook._show

    def recording_show(fig, ax, data, title, *args):
        shown[title] = np.array(data)
        real_show(fig, ax, data, title, *args)

    monkeypatch.setattr(quicklook, "_show", recording_show)
    path = tmp_path / "q.png"
    quicklook.write_quicklook(path, maps, maps, HISTORY, sigmas=sig, wfa_sigmas=wfa_sig, dpi=30,
                              times=np.array([0.0, 20.0, 40.0]), frame=frame)
    np.testing.assert_array_equal(shown["field: sigma of B_los"], sig.blos[frame])
    np.testing.assert_array_equal(shown["field: sigma of B_t"], sig.bt[frame])
    np.testing.assert_array_equal(shown["field: sigma of azimuth"], np.degrees(sig.azimuth[frame]))  # shown in deg
    np.testing.assert_array_equal(shown["pixel-wise WFA: sigma of B_los"], wfa_sig.blos[frame])
    # Maps, WFA error... : 2 rows, the sigma row, the time row (4.2 inches a row at 30 dpi).
    assert imread(path).shape[0] == round(4.2 * 4 * 30)
