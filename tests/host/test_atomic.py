"""host.atomic: a result file is complete or absent, flushed to disk, and never written through a link."""

import os
import stat

import pytest

from hashwfa.errors import OutputWriteError
from hashwfa.host import atomic


def test_file_then_directory_are_fsynced_around_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        mode = os.fstat(fd).st_mode
        events.append("fsync dir" if stat.S_ISDIR(mode) else "fsync file" if stat.S_ISREG(mode) else "fsync other")
        real_fsync(fd)

    def replace(src, dst):
        events.append("rename")
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    monkeypatch.setattr(atomic.os, "replace", replace)
    with atomic.atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("new")
    assert events == ["fsync file", "rename", "fsync dir"]
    assert (tmp_path / "a.txt").read_text() == "new"


def test_a_link_at_the_final_name_is_replaced_not_its_target(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "field.fits").symlink_to(victim)
    with atomic.atomic_path(out / "field.fits") as tmp:
        tmp.write_text("result")
    assert victim.read_text() == "keep me"
    assert not (out / "field.fits").is_symlink() and (out / "field.fits").read_text() == "result"


def test_a_link_planted_at_the_temporary_name_is_refused(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    planted = tmp_path / ".a.txt.1.0badcafe.tmp"
    planted.symlink_to(victim)
    monkeypatch.setattr(atomic, "temporary_path", lambda directory, name: planted)
    with pytest.raises(OutputWriteError, match=r"a\.txt.*Fix:"):
        with atomic.atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("written through the link")
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "a.txt").exists()


def test_the_temporary_is_a_fresh_regular_file_and_gone_after_a_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic.atomic_path(tmp_path / "a.txt") as tmp:
            assert stat.S_ISREG(os.lstat(tmp).st_mode) and tmp.stat().st_size == 0
            raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []


def test_a_dangling_link_as_directory_names_the_link_and_the_fix(tmp_path):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    with pytest.raises(OutputWriteError, match=r"symbolic link to .*gone.*does not exist\. Fix:"):
        atomic.make_directory(link)
