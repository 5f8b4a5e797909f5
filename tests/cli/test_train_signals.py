"""``hashwfa-train`` stopped by a signal or given an impossible --dist-timeout: one true message."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from hashwfa.cli.train import main
from hashwfa.run import outputs

ROOT = Path(__file__).resolve().parents[2]


def test_sigterm_is_handled_like_ctrl_c(tmp_path, tiny_config):
    """SIGTERM arrives while model.pt is being written: exit 143, a message, the checkpoint kept, no temporary."""
    config = tiny_config
    out = tmp_path / "out"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        import torch
        from hashwfa.cli.train import main
        real_save = torch.save
        def save(obj, f, *args, **kwargs):
            real_save(obj, f, *args, **kwargs)
            if Path(f).name.startswith(".model.pt"):
                os.kill(os.getpid(), signal.SIGTERM)  # as a batch scheduler would, mid-write
        torch.save = save
        sys.exit(main([{str(config)!r}, "--out", {str(out)!r}, "--quiet"]))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 143, done.stderr
    assert "interrupted (SIGTERM)" in done.stderr and "--resume" in done.stderr and "Traceback" not in done.stderr
    assert (out / outputs.CHECKPOINT_PT).is_file() and not (out / outputs.MODEL_PT).exists()
    assert not list(out.glob(".*.tmp"))


def test_ctrl_c_of_independent_frames_does_not_promise_a_resume(tmp_path, monkeypatch, capsys, tiny_settings):
    from hashwfa.training import independent_frames

    config = tmp_path / "series.json"
    config.write_text(json.dumps({**tiny_settings, "data": {"synthetic": {"ny": 8, "nx": 7, "nt": 2, "seed": 0}},
                                  "training": {**tiny_settings["training"], "frames": "independent"}}))

    def interrupt(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(independent_frames.IndependentFrames, "run", interrupt)
    assert main([str(config), "--out", str(tmp_path / "out"), "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "nothing to resume" in err and "continue with the same command and --resume" not in err
    assert not (tmp_path / "out" / outputs.CHECKPOINT_PT).exists()


@pytest.mark.parametrize("minutes", ["inf", "nan", "1e12", "0", "-5"])
def test_impossible_dist_timeout_is_one_line(tmp_path, capsys, minutes, tiny_config):
    assert main([str(tiny_config), "--out", str(tmp_path / "out"), "--quiet", "--dist-timeout", minutes]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dist-timeout" in err and "Fix:" in err
    assert not (tmp_path / "out").exists()


def test_a_week_of_dist_timeout_is_accepted(tmp_path, tiny_config):
    assert main([str(tiny_config), "--out", str(tmp_path / "out"), "--quiet", "--dist-timeout", "10080"]) == 0
