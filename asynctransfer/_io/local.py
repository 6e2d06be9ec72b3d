"""Local files: slices read with pread, ranges written with pwrite, atomic publication.

These functions block; the engine runs them in worker threads. Every OSError becomes a
LocalFileError naming the path.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import LocalFileError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator


@contextlib.contextmanager
def map_os_errors(path: str, doing: str) -> Iterator[None]:
    try:
        yield
    except LocalFileError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        hint = ""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            hint = ": free some space or choose another destination"
        raise LocalFileError(f"{path}: cannot {doing}: {reason}{hint}", url=path) from exc


@dataclass(frozen=True)
class SourceFile:
    """An open source file and the identity it had when opened."""

    path: str
    fd: int
    size: int
    mtime_ns: int
    device: int
    inode: int


def open_source(path: str) -> SourceFile:
    with map_os_errors(path, "open the source file"):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise LocalFileError(
                    f"{path}: is a directory; give a file (directories come with cp -r later)",
                    url=path,
                )
            if not stat.S_ISREG(st.st_mode):
                raise LocalFileError(f"{path}: not a regular file", url=path)
        except BaseException:
            os.close(fd)
            raise
    return SourceFile(path, fd, st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino)


def close_fd(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


def pread_exact(fd: int, buf: memoryview, offset: int, path: str) -> None:
    """Fill ``buf`` from ``offset``; a short file means it changed under us."""
    done = 0
    with map_os_errors(path, "read"):
        while done < len(buf):
            n = os.preadv(fd, [buf[done:]], offset + done)
            if n == 0:
                raise LocalFileError(
                    f"{path}: file shrank during the transfer (expected bytes up to "
                    f"{offset + len(buf)}, got end of file at {offset + done})",
                    url=path,
                )
            done += n


def pwrite_all(fd: int, data: memoryview, offset: int, path: str) -> None:
    with map_os_errors(path, "write"):
        done = 0
        while done < len(data):
            done += os.pwrite(fd, data[done:], offset + done)


DIRECT_ALIGN = 4096
"""Offsets, lengths and buffer addresses of O_DIRECT writes are multiples of this: the largest
logical block size of common disks (most take 512)."""


def direct_length(length: int) -> int:
    """``length`` rounded up to what an O_DIRECT write may carry."""
    return -(-length // DIRECT_ALIGN) * DIRECT_ALIGN


def try_direct(fd: int) -> bool:
    """Switch ``fd`` to O_DIRECT; False where the platform or filesystem has none (tmpfs).

    Why: a buffered write copies every byte into the page cache, and on this class of machine
    that copy (copy_folio_from_iter_atomic: fresh pages, faulted in by the hypervisor) was 40-50%
    of a download's CPU, ahead of receiving the bytes; then fsync writes it all out again. With
    O_DIRECT the disk reads the part buffer itself, so a durable download costs the receive copy
    alone. The price: the file is not left in the page cache.
    """
    direct = getattr(os, "O_DIRECT", 0)
    if not direct:
        return False
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | direct)
    except OSError:
        return False
    return True


def pwrite_direct(fd: int, data: memoryview, offset: int, length: int, path: str) -> None:
    """Write ``length`` bytes at ``offset`` through O_DIRECT.

    ``data`` is page-aligned and at least ``direct_length(length)`` long; a short last range is
    written padded, and :func:`finish_direct` cuts the file back to its size. A filesystem that
    accepted O_DIRECT but refuses this write (stricter alignment) gets buffered writes instead.
    """
    padded = data[: direct_length(length)]
    done = 0
    with map_os_errors(path, "write"):
        try:
            while done < len(padded):
                done += os.pwrite(fd, padded[done:], offset + done)
            return
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
    clear_direct(fd, path)
    pwrite_all(fd, padded[done:], offset + done, path)


def clear_direct(fd: int, path: str) -> None:
    """Back to buffered I/O on ``fd`` (reads into unaligned buffers, refused direct writes)."""
    with map_os_errors(path, "write"):
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~getattr(os, "O_DIRECT", 0))


def finish_direct(fd: int, size: int, path: str) -> None:
    with map_os_errors(path, "set the size of"):
        os.ftruncate(fd, size)


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range to disk now, without waiting.

    The download is fsync'ed before it is renamed into place; here that fsync alone costs
    ~1 s per GiB when all the writeback is left for it. Starting writeback of each range as it
    is written overlaps that work with the transfer. POSIX_FADV_DONTNEED is the portable way
    (Python has no sync_file_range): it starts writeback of the dirty pages and drops only
    pages already clean, so the freshly written data mostly stays cached.
    """
    if hasattr(os, "posix_fadvise"):
        with contextlib.suppress(OSError):
            os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)


def create_temp_beside(dest: str, size: int) -> tuple[int, str]:
    """A uniquely named file in dest's directory, with ``size`` bytes reserved.

    Same directory so the final ``os.replace`` is atomic; unique so two transfers to one
    destination never write into each other's file. Space is reserved up front so a full disk
    fails now, not after the download.
    """
    directory = os.path.dirname(os.path.abspath(dest))
    base = os.path.basename(dest)
    with map_os_errors(dest, "create a temporary file beside the destination"):
        # Not mkstemp: its 0600 would stick to the published file. O_EXCL on a random name is
        # as safe, and the umask applies as for any file the user creates.
        while True:
            temp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.part")
            try:
                fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                break
            except FileExistsError:
                continue
        try:
            if size:
                try:
                    os.posix_fallocate(fd, 0, size)
                except OSError as exc:
                    if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                        raise
                    os.ftruncate(fd, size)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    return fd, temp


def publish(
    fd: int, temp: str, dest: str, *, durable: bool = True, sync_directory: bool = True
) -> None:
    """Close ``fd`` (always) and rename the temp file over ``dest``; ``durable``: fsync it
    first and the directory after, so that after a crash ``dest`` holds either the old file or
    every byte of the new one. ``sync_directory=False``: the caller fsyncs the directory later
    (once for many files: see :func:`sync_directories`); the file's bytes are still on disk
    before its name is, so a crash never leaves a partial file under ``dest``."""
    with map_os_errors(dest, "publish the downloaded file"):
        try:
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)  # whatever happens: the caller must not close it again
        os.replace(temp, dest)
        if durable and sync_directory:
            sync_directories([os.path.dirname(os.path.abspath(dest))])


def sync_directories(directories: Iterable[str]) -> None:
    """fsync each directory: the renames into it survive a crash."""
    for directory in directories:
        with map_os_errors(directory, "sync the directory"):
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def discard(fd: int, temp: str) -> None:
    """Close ``fd`` (unless -1) and remove ``temp``, quietly: this runs on the error path."""
    if fd >= 0:
        close_fd(fd)
    with contextlib.suppress(OSError):
        os.unlink(temp)
