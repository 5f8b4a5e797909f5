"""``hashwfa-train`` under faults: no input, fault or concurrent run loses a finished result."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hashwfa.host import atomic
from hashwfa.run import outputs as results
from hashwfa.cli.train import main
from hashwfa.host.lock import LOCK_NAME, DirectoryBusyError, DirectoryLock

@pytest.fixture
def finished(tmp_path, tiny_config):
    out = tmp_path / "out"
    assert main([str(tiny_config), "--out", str(out), "--quiet"]) == 0
    return out


def _snapshot(out):
    return {p.name: p.read_bytes() for p in out.iterdir()}


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param(
            ["--device", "cuda"],
            marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA works here: no unusable device to ask for"),
        ),
        ["--set", "data.path=does-not-exist.fits", "--set", "data.wavelengths=nope.fits"],
        ["--set", "encoding.version=1", "--set", "network.n_neurons=-3"],
    ],
    ids=["unusable-device", "missing-data", "bad-model"],
)
def test_failed_overwrite_keeps_the_finished_results(finished, tiny_config, extra, capsys):
    before = _snapshot(finished)
    assert main([str(tiny_config), "--out", str(finished), "--quiet", "--overwrite", *extra]) == 2
    assert "error" in capsys.readouterr().err
    assert _snapshot(finished) == before


def test_second_run_into_a_held_directory_is_refused_with_the_holder(tmp_path, tiny_config, capsys):
    out = tmp_path / "busy"
    with DirectoryLock(out):
        assert main([str(tiny_config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "in use by another hashwfa run" in err and f"pid {os.getpid()}" in err
    assert not (out / results.FIELD_FITS).exists()


def test_lock_of_a_killed_process_is_stale_and_ignored(tmp_path, tiny_config):
    out = tmp_path / "stale"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            from hashwfa.host.lock import DirectoryLock
            DirectoryLock({str(out)!r}).acquire()
            print("held", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DirectoryBusyError, match="in use"):
            DirectoryLock(out).acquire()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_NAME).exists()  # the killed holder could not clean up
    assert main([str(tiny_config), "--out", str(out), "--quiet"]) == 0
    assert not (out / LOCK_NAME).exists()


def test_out_below_a_file_is_one_message(tmp_path, tiny_config, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main([str(tiny_config), "--out", str(afile / "sub"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is a file, not a directory" in err and "Traceback" not in err


def test_full_disk_during_model_save_is_one_message_and_keeps_written_files(tmp_path, tiny_config, monkeypatch, capsys):
    out = tmp_path / "full"
    real_save = torch.save

    def save(obj, f, *a, **k):
        if Path(f).name.startswith(".model.pt"):
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing file data/0: file write failed")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save)
    assert main([str(tiny_config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "model.pt" in err and "Traceback" not in err
    assert not list(out.glob(".*.tmp"))  # no temporary left behind
    assert results.read_json(out / results.HISTORY_JSON)["final_loss"] > 0  # written before, still valid


def test_read_only_directory_is_one_message(tmp_path, tiny_config, monkeypatch, capsys):
    out = tmp_path / "ro"

    def refuse(src, dst):
        raise OSError(30, "Read-only file system", str(dst))

    def refuse_unlink(path, *a, **k):
        raise OSError(30, "Read-only file system", str(path))

    monkeypatch.setattr(atomic.os, "replace", refuse)
    monkeypatch.setattr(atomic.os, "unlink", refuse_unlink)  # the cleanup fails too
    assert main([str(tiny_config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "config.json" in err


def test_stale_temporaries_are_removed_by_the_next_run(finished, tiny_config):
    stale = finished / f".{results.CHECKPOINT_PT}.{2**22 + 7}.0badcafe.tmp"
    stale.write_bytes(b"half a checkpoint")
    unrelated = finished / "notes.txt"
    unrelated.write_text("mine")
    assert main([str(tiny_config), "--out", str(finished), "--quiet", "--overwrite"]) == 0
    assert not stale.exists()
    assert unrelated.read_text() == "mine"


def test_remove_stale_temporaries_keeps_this_process_files(tmp_path):
    own = tmp_path / f".field.fits.{os.getpid()}.0123abcd.tmp"
    other = tmp_path / ".field.fits.1.0123abcd.tmp"
    lookalike = tmp_path / ".field.fits.1.tmp"
    for p in (own, other, lookalike):
        p.write_text("x")
    assert atomic.remove_stale_temporaries(tmp_path) == [other]
    assert own.exists() and lookalike.exists()


def test_json_is_strict_without_nan(tmp_path):
    path = tmp_path / "h.json"
    results.write_json(path, {"loss": float("nan"), "list": [1.0, float("inf")], "ok": 2.5})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict constant {c}")) == {
        "loss": None, "list": [1.0, None], "ok": 2.5,
    }


def test_non_ascii_data_path_is_escaped_in_the_header_and_kept_in_history(tmp_path, tiny_settings):
    from astropy.io import fits

    from hashwfa.wfa.synthetic.plage import synthetic_plage

    paths = synthetic_plage(ny=12, nx=10, seed=1, noise=1e-3).write_fits(tmp_path / "obs_é")
    raw = {k: v for k, v in tiny_settings.items() if k != "data"}
    raw["data"] = {"path": str(paths["stokes"]), "wavelengths": str(paths["wavelengths"])}
    config = tmp_path / "c.json"
    config.write_text(json.dumps(raw))
    out = tmp_path / "out"
    assert main([str(config), "--out", str(out), "--quiet"]) == 0
    with fits.open(out / results.FIELD_FITS) as hdul:
        assert "obs_\\u00e9/stokes.fits" in hdul[0].header["DATASRC"]
    assert str(paths["stokes"]) in results.read_json(out / results.HISTORY_JSON)["data"]
    assert results.read_json(out / results.CONFIG_JSON)["data"]["path"] == str(paths["stokes"])


def test_overwrite_that_fails_at_the_end_keeps_the_previous_results(finished, tiny_config, monkeypatch, capsys):
    before = _snapshot(finished)
    from hashwfa.errors import OutputWriteError
    from hashwfa.run import train as train_module

    def full_disk(path, *args, **kwargs):
        raise OutputWriteError(f"cannot write '{path}': No space left on device")

    monkeypatch.setattr(train_module.outputs, "write_field_fits", full_disk)
    assert main([str(tiny_config), "--out", str(finished), "--quiet", "--overwrite"]) == 2
    assert "No space left" in capsys.readouterr().err
    after = _snapshot(finished)
    for name in (results.FIELD_FITS, results.HISTORY_JSON, results.MODEL_PT):
        assert after[name] == before[name], name
    assert results.CHECKPOINT_PT in after  # the new run's: --resume continues it


def test_overwrite_removes_an_earlier_file_it_does_not_write(finished, tiny_config):
    (finished / results.QUICKLOOK_PNG).write_bytes(b"an earlier run's picture")  # this config draws none
    assert main([str(tiny_config), "--out", str(finished), "--quiet", "--overwrite"]) == 0
    assert sorted(p.name for p in finished.iterdir()) == sorted(
        [results.FIELD_FITS, results.HISTORY_JSON, results.CONFIG_JSON, results.MODEL_PT, results.RUN_LOG])


def test_dangling_link_as_out_names_the_link_and_the_fix(tmp_path, tiny_config, capsys):
    out = tmp_path / "out"
    out.symlink_to(tmp_path / "gone")
    assert main([str(tiny_config), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "symbolic link" in err and "Fix:" in err and "File exists" not in err
    assert err.count("\n") == 1
