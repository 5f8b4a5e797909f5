"""hashwfa-train in a batch job: plain progress lines off a terminal, run.log, warnings as
one line each, --version, and the README's series recipe."""

import io
import subprocess
import sys

import numpy as np
import pytest
from astropy.io import fits

import hashwfa
from hashwfa.cli import bench, train
from hashwfa.training.progress import PLAIN_EVERY, PlainProgress
from hashwfa.wfa.physics.lines import get_line
from hashwfa.wfa.synthetic.plage import synthetic_plage
from hashwfa.wfa.synthetic.series import synthetic_series

#: The reference protocol's epochs (2 phases x 200) and the most it may write off a terminal.
SEED_EPOCHS, SEED_BUDGET_BYTES = 400, 20_000


def _train(args, cwd):
    """hashwfa-train in a subprocess: stdout and stderr are pipes, not a terminal."""
    return subprocess.run([sys.executable, "-m", "hashwfa.cli.train", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=600,
                          env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(train.__file__)
                               .rsplit("/hashwfa/", 1)[0]})


def test_plain_progress_prints_every_n_epochs_and_the_last():
    stream = io.StringIO()
    bar = PlainProgress(total=200, initial=0, desc="phase 1/2 B_los", every=25, stream=stream)
    for _ in range(200):  # read back every epoch (CPU)
        bar.update(1)
        bar.set_postfix(loss="1e-3")
    assert len(stream.getvalue().splitlines()) == 8
    stream = io.StringIO()
    bar = PlainProgress(total=200, initial=90, desc="resumed", every=25, stream=stream)
    for _ in range(11):  # read back every 10 epochs: the first read-back past each multiple of 25
        bar.update(10)
        bar.set_postfix(loss="1e-3")
    lines = stream.getvalue().splitlines()
    assert [line.split("epoch ")[1].split(",")[0] for line in lines] == ["100/200", "130/200", "150/200", "180/200", "200/200"]


def test_off_a_terminal_a_run_writes_a_few_lines_and_a_run_log(tmp_path, small_config_file):
    epochs = 2 * PLAIN_EVERY  # per phase
    config = small_config_file(tmp_path, epochs=epochs)
    done = _train([config, "--out", tmp_path / "out"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    # The reference protocol's budget, per epoch.
    assert len(done.stderr.encode()) <= SEED_BUDGET_BYTES * (2 * epochs) / SEED_EPOCHS, done.stderr
    assert done.stderr.count("epoch ") == 4  # every PLAIN_EVERY epochs, two phases
    log = (tmp_path / "out" / "run.log").read_text()
    line = get_line("5173")
    assert f"line 5173: centre {line.center} A" in log
    # The config's active indices 5, 6, 7 of the plage's wavelengths.
    wl = synthetic_plage(ny=4, nx=4, seed=3).observation.wavelengths[[5, 6, 7]]
    assert "active wavelengths [A from the line centre]: " + ", ".join(f"{w:.4g}" for w in wl) in log
    assert str(config) in log and "phase B_los: 50 epochs" in log and "noise (rms over wavelengths)" in log
    assert all(entry[:4].isdigit() and entry[10] == " " for entry in log.splitlines())  # timestamped


def test_a_package_warning_is_one_cli_line_even_when_quiet(tmp_path, small_config_file):
    obs = synthetic_plage(ny=12, nx=10, seed=1, noise=1e-3).observation
    stokes, wavelengths = obs.write_fits(tmp_path / "s.fits", tmp_path / "w.fits")
    with fits.open(wavelengths, mode="update") as hdul:  # absolute Angstrom: converted with a warning
        hdul[0].data = hdul[0].data + get_line("5173").center
        hdul[0].header["WAVEREF"] = "LINECENTRE"
    config = small_config_file(tmp_path, epochs=2)
    done = _train([config, "--set", f"data.path={stokes}", "--set", f"data.wavelengths={wavelengths}",
                   "--out", tmp_path / "out", "--quiet"], tmp_path)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "look like absolute Angstrom" in line]
    assert len(warned) == 1 and warned[0].startswith("hashwfa-train: warning: "), done.stderr
    assert "UserWarning" not in done.stderr and "warnings.warn" not in done.stderr
    assert "warning: " in (tmp_path / "out" / "run.log").read_text()


@pytest.mark.parametrize("cli", [train, bench])
def test_version(cli, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.split() == [cli.build_parser().prog, hashwfa.__version__]


def test_the_readme_series_recipe_runs_on_a_cube(tmp_path, repo_root, capsys):
    """hashwfa-train configs/recommended_series.json --set data.path=... (the config has a synthetic section)."""
    obs = synthetic_series(nt=2, ny=10, nx=8, seed=0, noise=1e-3).observation()
    stokes, wavelengths = obs.write_fits(tmp_path / "s.fits", tmp_path / "w.fits")
    small = ["--set", "training.epochs_per_phase=2", "--set", "output.sigmas=false", "--set", "output.quicklook=false",
             "--set", "training.device=cpu", "--quiet"]
    args = [str(repo_root / "configs" / "recommended_series.json"), "--set", f"data.path={stokes}",
            "--set", f"data.wavelengths={wavelengths}", *small]
    assert train.main(args + ["--out", str(tmp_path / "out")]) == 0
    with fits.open(tmp_path / "out" / "field.fits") as hdul:
        assert hdul["BLOS"].data.shape == (2, 10, 8)
    assert "replaces the config's synthetic data" in (tmp_path / "out" / "run.log").read_text()
    # Both set on the command line: still a contradiction.
    capsys.readouterr()
    assert train.main(args + ["--set", "data.synthetic.nt=3", "--out", str(tmp_path / "out2")]) == 2
    assert "data.synthetic" in capsys.readouterr().err
