"""The quick-look labels each panel with the unit of what it shows."""

import numpy as np

from hashwfa.run import quicklook
from hashwfa.wfa.physics.maps import FieldMaps


def test_azimuth_error_panel_is_in_degrees(tmp_path, monkeypatch):
    shown = []
    real = quicklook._show
    monkeypatch.setattr(quicklook, "_show", lambda fig, ax, data, title, cmap, lo, hi, unit: (shown.append((title, np.asarray(data), unit)), real(fig, ax, data, title, cmap, lo, hi, unit)))
    rng = np.random.default_rng(0)
    shape = (6, 5)
    blos, bt, zero = rng.normal(size=shape), np.abs(rng.normal(size=shape)), np.zeros(shape)
    truth = FieldMaps(blos=blos, bt=bt, azimuth=np.full(shape, 0.1), bq=zero, bu=zero)
    maps = FieldMaps(blos=blos, bt=bt, azimuth=np.full(shape, np.pi - 0.1), bq=zero, bu=zero)  # 0.2 rad = 11.46 deg apart
    quicklook.write_quicklook(tmp_path / "q.png", maps, truth, {}, truth=truth, dpi=20)
    (title, data, unit), = [s for s in shown if "azimuth|" in s[0]]
    assert unit == "deg"
    np.testing.assert_allclose(data, np.degrees(0.2), rtol=1e-9)
    assert "11.5 deg" in title
    assert all(u != "G" for t, _, u in shown if "azimuth" in t)
