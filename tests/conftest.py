"""Shared fixtures: a small synthetic observation, small configs, pinned threads.

Everything here is small enough for a 2-core CPU: a 24 x 20 pixel plage and a
reduced reference protocol (6 levels, max resolution 16, 12 epochs per phase).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np
import pytest
import torch

from hashwfa.training import EncodingConfig, NetworkConfig, SolverConfig, TrainingConfig
from hashwfa.wfa.observation.observation import Observation
from hashwfa.wfa.synthetic.plage import synthetic_plage

#: The repository's root (configs/, scripts/ live there).
REPO_ROOT = Path(__file__).resolve().parents[1]

# A reduced reference protocol for hashwfa-train: small and fast, and noisy enough
# that the pixel-wise WFA is visibly noisy (the spatially coherent neural
# field must beat it on B_los). A larger learning rate than the reference report's 5e-3
# lets B_los (output scale 1 G) reach hundreds of gauss within a few dozen
# epochs.
SMALL_CONFIG_TEXT = """// a reduced reference protocol for the tests (its three wavelengths: with every
// wavelength Q and U at noise 5e-3 are mostly noise and phase 2's loss hardly falls)
{
  "data": {"synthetic": {"ny": 40, "nx": 36, "seed": 3, "noise": %(noise)s}, "active_indices": [5, 6, 7]},
  "encoding": {"version": 1, "n_levels": 8, "max_resolution": 16, "log2_hashmap_size": 12},
  "network": {"n_neurons": 32},
  "training": {"epochs_per_phase": %(epochs)d, "lr": 0.05, "device": "cpu", "seed": 0},
  "output": {"dpi": 40}
}
"""


def _small_solver_config(version: int = 1, **training) -> SolverConfig:
    train = dict(epochs_per_phase=12, device="cpu", seed=0)
    train.update(training)
    return SolverConfig(
        encoding=EncodingConfig(version=version, n_levels=6, max_resolution=16, log2_hashmap_size=10),
        network=NetworkConfig(n_neurons=16),
        training=TrainingConfig(**train),
    )


def _small_config_file(directory, noise: float = 5e-3, epochs: int = 60, name: str = "small.json") -> Path:
    path = Path(directory) / name
    path.write_text(SMALL_CONFIG_TEXT % {"noise": noise, "epochs": epochs})
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's root directory."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def small_observation() -> Observation:
    """A 24 x 20 synthetic plage (Zeeman profiles, noise 1e-3, seed 1)."""
    return synthetic_plage(ny=24, nx=20, seed=1, noise=1e-3).observation


@pytest.fixture(scope="session")
def small_solver_config() -> Callable[..., SolverConfig]:
    """``make(version=1, **training)``: a reduced reference protocol as a :class:`SolverConfig`.

    6 levels, max resolution 16, 2^10 table entries, 16 neurons, 12 epochs per
    phase on the CPU, seed 0; ``training`` overrides TrainingConfig keys.
    """
    return _small_solver_config


@pytest.fixture(scope="session")
def small_config_file() -> Callable[..., Path]:
    """``make(directory, noise=5e-3, epochs=60, name="small.json")``: a reduced hashwfa-train config file.

    A 40 x 36 synthetic plage, V1 with 8 levels, lr 0.05, on the CPU.
    """
    return _small_config_file


@pytest.fixture(scope="module")
def one_thread():
    """Pins torch to one CPU thread for a module (bit-for-bit comparisons), then restores it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _start_ranks_without_agent(script: Path, argv: Sequence[str], env: Dict[str, str],
                               world_size: int = 2) -> List[subprocess.Popen]:
    """``world_size`` processes of ``python script *argv``, launched as ``torchrun`` would but without its
    agent (which would end the other ranks itself when one dies): rank 0 hosts the store on a free port.
    ``env`` is every rank's environment; RANK, LOCAL_RANK, WORLD_SIZE and MASTER_* are added."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(world_size):
        rank_env = dict(env, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size),
                        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        procs.append(subprocess.Popen([sys.executable, str(script), *argv], env=rank_env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


@pytest.fixture
def start_ranks_without_agent() -> Callable[..., List[subprocess.Popen]]:
    """Starts data-parallel ranks without torchrun's agent (see :func:`_start_ranks_without_agent`)."""
    return _start_ranks_without_agent


def assert_sigmas_cover_the_truth(field, truth, sigmas) -> None:
    """Loose calibration bands of sigma maps against a known truth (a few thousand correlated points).

    ``field``, ``truth``, ``sigmas``: objects with ``blos``, ``bt`` [G] and
    ``azimuth`` [rad] arrays of one shape. The fraction of points with
    |error| <= sigma must lie in 0.5-0.9 (nominal 0.683) and with
    |error| <= 2 sigma in 0.8-1.0 (nominal 0.954); the azimuth error is taken
    modulo pi (the 180-degree ambiguity).
    """
    d_az = np.abs((field.azimuth - truth.azimuth + np.pi / 2) % np.pi - np.pi / 2)
    ratios = {
        "blos": np.abs(field.blos - truth.blos) / sigmas.blos,
        "bt": np.abs(field.bt - truth.bt) / sigmas.bt,
        "azimuth": d_az / sigmas.azimuth,
    }
    for name, r in ratios.items():
        assert 0.5 <= np.mean(r <= 1) <= 0.9, (name, np.mean(r <= 1))
        assert 0.8 <= np.mean(r <= 2) <= 1.0, (name, np.mean(r <= 2))


@pytest.fixture
def sigmas_cover_the_truth() -> Callable[..., None]:
    """:func:`assert_sigmas_cover_the_truth`, for tests of sigma maps."""
    return assert_sigmas_cover_the_truth
