"""Sizes that cannot fit in memory are refused with the numbers, before anything is allocated."""

import json
import tracemalloc

import pytest

from hashwfa.host import memory
from hashwfa.cli.train import main
from hashwfa.errors import HashwfaError
from hashwfa.training import TwoPhaseSolver
from hashwfa.training.footprint import training_bytes
from hashwfa.training.loss import WFALoss
from hashwfa.wfa.synthetic.plage import synthetic_plage, synthetic_plage_bytes


def _peak(make):
    tracemalloc.start()
    try:
        result = make()
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("kwargs", [{}, {"noise": 0.0, "psf_fwhm": 0}, {"model": "wfa"}, {"model": "wfa", "noise": 0.0}])
def test_synthetic_estimate_is_a_lower_bound_of_the_measured_peak(kwargs):
    peak, plage = _peak(lambda: synthetic_plage(ny=40, nx=30, **kwargs))
    estimate = synthetic_plage_bytes(40, 30, plage.observation.nw)
    assert plage.observation.stokes.nbytes < estimate <= peak


def test_training_estimate_is_a_lower_bound_of_the_loss_arrays(small_observation):
    obs = small_observation
    peak, loss = _peak(lambda: WFALoss(obs))
    held = sum(b.numel() * b.element_size() for b in loss.buffers())  # torch memory, not seen by tracemalloc
    estimate = training_bytes(obs.n_valid, obs.nw, len(obs.active_indices))
    assert obs.n_valid * 4 * obs.nw * 8 < estimate <= peak + held + obs.n_valid * 2 * 4


def test_available_memory_is_known_here():
    available = memory.available_memory()
    assert available is None or available > 0


def test_too_large_synthetic_cube_is_refused_with_the_numbers(monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 10**9)
    # two float64 cubes: 2 x 10000 x 178 x 4 x 13 x 8 B = 1.48 GB
    with pytest.raises(HashwfaError, match=r"needs at least 1\.48 GB.*only 1 GB is available.*data\.synthetic\.ny"):
        synthetic_plage(ny=10000, nx=178)


def test_cli_refuses_a_huge_synthetic_plage(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(memory, "available_memory", lambda: 10**9)
    config = tmp_path / "c.json"
    config.write_text("{}")
    assert main([str(config), "--out", str(tmp_path / "o"), "--quiet", "--set", "data.synthetic.ny=100000"]) == 2
    err = capsys.readouterr().err
    assert "14.8 GB" in err and "1 GB is available" in err  # 2 x 100000 x 178 x 4 x 13 x 8 B and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_solver_refuses_training_that_cannot_fit(small_observation, small_solver_config, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda: 1000)
    with pytest.raises(HashwfaError, match=r"training on 480 pixels.*only 1 kB is available"):
        TwoPhaseSolver(small_observation, small_solver_config(), progress=False)


def test_float32_cube_too_large_for_its_float64_copy_is_refused(monkeypatch):
    import numpy as np

    from hashwfa.wfa.observation.observation import Observation

    cube = np.ones((20, 30, 4, 5), dtype=np.float32)
    cube[..., 0, :] = np.linspace(0.8, 1.0, 5)  # a spectrum: a flat I has no signal (refused)
    monkeypatch.setattr(memory, "available_memory", lambda: cube.size * 8 - 1)
    with pytest.raises(HashwfaError, match=r"float64 copy of the cube \(20, 30, 4, 5\) needs at least 96 kB"):
        Observation(cube, np.linspace(-0.2, 0.2, 5), active_indices=(2,))
    monkeypatch.setattr(memory, "available_memory", lambda: cube.size * 8)
    assert Observation(cube, np.linspace(-0.2, 0.2, 5), active_indices=(2,)).stokes.dtype == np.float64
