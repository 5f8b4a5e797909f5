"""The data readers refuse a device, a FIFO or a directory as "not a regular file", without opening it."""

import os

import pytest

from hashwfa.errors import HashwfaError
from hashwfa.wfa.observation.fits_files import map_image, read_image
from hashwfa.wfa.observation.sst import read_sst_cube
from hashwfa.wfa.observation.stokes_fits import read_stokes_fits


def _special(tmp_path, kind):
    if kind == "device":
        if not os.path.exists("/dev/zero"):
            pytest.skip("no /dev/zero here")
        return "/dev/zero", "a device"
    if kind == "fifo":
        path = tmp_path / "stokes.fits"
        os.mkfifo(path)  # opening it for reading would wait for a writer forever
        return str(path), "a FIFO"
    path = tmp_path / "stokes.fits"
    path.mkdir()
    return str(path), "a directory"


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
@pytest.mark.parametrize("reader", [
    lambda p: read_image(p, "Stokes cube"),
    lambda p: map_image(p, "Stokes cube"),
    lambda p: read_stokes_fits(p, p),
    lambda p: read_sst_cube(p),
], ids=["read_image", "map_image", "read_stokes_fits", "read_sst_cube"])
def test_special_file_is_not_a_regular_file(tmp_path, kind, reader):
    path, words = _special(tmp_path, kind)
    with pytest.raises(HashwfaError, match="is not a regular file") as info:
        reader(path)
    message = str(info.value)
    assert path in message and f"({words})" in message and "not found" not in message


def test_missing_file_is_still_not_found(tmp_path):
    with pytest.raises(HashwfaError, match="not found"):
        read_image(tmp_path / "nope.fits", "Stokes cube")
