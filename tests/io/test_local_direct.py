"""O_DIRECT writes of ``_io/local.py`` on a real file: padded tails cut back, and the fallback
to buffered writes when the filesystem refuses an O_DIRECT write."""

from __future__ import annotations

import fcntl
import mmap
import os
from typing import TYPE_CHECKING

import pytest

from asynctransfer._io import local

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(not hasattr(os, "O_DIRECT"), reason="no O_DIRECT here")


def _is_direct(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_DIRECT)


def _direct_fd(path: Path, size: int) -> int:
    fd, temp = local.create_temp_beside(str(path), size)
    os.rename(temp, path)
    if not local.try_direct(fd):
        os.close(fd)
        pytest.skip(f"{path.parent}: filesystem without O_DIRECT")
    return fd


def test_direct_length_rounds_up_to_the_block() -> None:
    assert [local.direct_length(n) for n in (0, 1, 4096, 4097)] == [0, 4096, 4096, 8192]


def test_padded_tail_is_cut_back_to_the_size(tmp_path: Path) -> None:
    part, size = 64 * 1024, 3 * 64 * 1024 + 1234
    data = os.urandom(size)
    path = tmp_path / "f"
    fd = _direct_fd(path, size)
    try:
        assert _is_direct(fd)
        buf = mmap.mmap(-1, part)  # page-aligned, as the buffer pool hands them out
        for offset in reversed(range(0, size, part)):  # any order
            chunk = data[offset : offset + part]
            buf[: len(chunk)] = chunk
            local.pwrite_direct(fd, memoryview(buf), offset, len(chunk), str(path))
        assert os.fstat(fd).st_size > size  # the padded tail went past the end...
        local.finish_direct(fd, size, str(path))
        assert _is_direct(fd)  # every write went direct
    finally:
        os.close(fd)
    assert path.read_bytes() == data  # ...and is gone


def test_refused_direct_write_falls_back_to_buffered(tmp_path: Path) -> None:
    size = 3 * 4096
    data = os.urandom(size)
    path = tmp_path / "f"
    fd = _direct_fd(path, size)
    try:
        misaligned = memoryview(bytearray(size + 1))[1:]  # O_DIRECT refuses this address
        misaligned[:] = data
        local.pwrite_direct(fd, misaligned, 0, size, str(path))
        assert not _is_direct(fd)  # switched to buffered writes for the rest
        local.finish_direct(fd, size, str(path))
    finally:
        os.close(fd)
    assert path.read_bytes() == data
