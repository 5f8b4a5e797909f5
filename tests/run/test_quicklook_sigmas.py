"""The quick-look shows the sigma maps when they are given (one more row of panels)."""

import numpy as np
from matplotlib.image import imread

from hashwfa.run.quicklook import write_quicklook
from hashwfa.wfa.physics.maps import FieldMaps, FieldSigmas


def test_quicklook_adds_a_sigma_row(tmp_path):
    rng = np.random.default_rng(0)
    maps = FieldMaps.from_bqbu(*(rng.standard_normal((12, 10)) * 100 for _ in range(3)))
    sig = FieldSigmas(*(np.abs(rng.standard_normal((12, 10))) for _ in range(5)))
    history = {"blos": {"loss": [1.0, 0.5], "lr": [1e-3, 1e-3]}, "bqbu": {"loss": [2.0, 1.0], "lr": [1e-3, 1e-4]}}
    write_quicklook(tmp_path / "a.png", maps, maps, history, dpi=30)
    write_quicklook(tmp_path / "b.png", maps, maps, history, sigmas=sig, wfa_sigmas=sig, dpi=30)
    write_quicklook(tmp_path / "c.png", maps, maps, history, sigmas=sig, dpi=30)
    h_a, h_b, h_c = (imread(tmp_path / f"{n}.png").shape[0] for n in "abc")
    # 2 rows without sigmas, 3 with (4.2 inches a row at 30 dpi).
    assert h_b == h_c and abs(h_b * 2 - h_a * 3) <= 3
