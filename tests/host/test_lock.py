"""host.lock: the lock file is a regular file of ours; anything else there is refused in one line."""

import errno
import os

import pytest

from hashwfa.errors import HashwfaError
from hashwfa.host import lock as lock_module
from hashwfa.host.lock import LOCK_NAME, DirectoryLock


def _one_line_with_file_and_fix(message, path):
    assert "\n" not in message and str(path) in message and "Fix:" in message


def test_a_planted_link_is_refused_and_its_target_untouched(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(victim)
    with pytest.raises(HashwfaError, match="symbolic link") as info:
        DirectoryLock(out).acquire()
    _one_line_with_file_and_fix(str(info.value), out / LOCK_NAME)
    assert victim.read_text() == "precious"


def test_a_dangling_planted_link_creates_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(tmp_path / "created-through-the-link")
    with pytest.raises(HashwfaError, match="symbolic link"):
        DirectoryLock(out).acquire()
    assert not (tmp_path / "created-through-the-link").exists()


def test_a_directory_at_the_lock_name_is_one_line(tmp_path):
    (tmp_path / LOCK_NAME).mkdir()
    with pytest.raises(HashwfaError, match="is a directory, not a regular file") as info:
        DirectoryLock(tmp_path).acquire()
    _one_line_with_file_and_fix(str(info.value), tmp_path / LOCK_NAME)


def test_a_fifo_at_the_lock_name_is_one_line(tmp_path):
    os.mkfifo(tmp_path / LOCK_NAME)
    with pytest.raises(HashwfaError, match="is a FIFO, not a regular file") as info:
        DirectoryLock(tmp_path).acquire()
    _one_line_with_file_and_fix(str(info.value), tmp_path / LOCK_NAME)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EPERM, errno.EROFS])
def test_an_unwritable_directory_is_one_line(tmp_path, monkeypatch, code):
    real_open = os.open

    def refuse(path, flags, *args, **kwargs):
        if str(path).endswith(LOCK_NAME):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(lock_module.os, "open", refuse)
    with pytest.raises(HashwfaError, match="writable") as info:
        DirectoryLock(tmp_path).acquire()
    _one_line_with_file_and_fix(str(info.value), tmp_path / LOCK_NAME)


def test_a_regular_lock_file_is_taken_and_released(tmp_path):
    (tmp_path / LOCK_NAME).write_text("pid 1 on elsewhere\n")  # left by a killed run
    with DirectoryLock(tmp_path) as held:
        assert held.held and f"pid {os.getpid()}" in (tmp_path / LOCK_NAME).read_text()
    assert not (tmp_path / LOCK_NAME).exists()
