"""Objects that fit in one request: one PutObject or one GetObject, and as little else as can be.

Why a path of their own: for a 64 KiB object the bytes cost microseconds, and everything else
costs milliseconds: the HEAD before a download, three worker-thread hops per upload (open,
read, stat), botocore's request pipeline. A dataset of 10,000 small files is made of nothing
else. Here an upload is one thread hop (open, read, hash, check, close) and one request; a
download whose size and ETag a listing already gave is one request (pinned to that ETag with
If-Match) and one thread hop (write a temporary file, fsync when durable, rename). Requests go
through the engine's lean client when it has one (``_io/s3lean.py``), else through botocore.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio.to_thread

from . import _events
from ._errors import IntegrityError, LocalFileError, ObjectChangedError, PreconditionFailedError
from ._io import hashing, local
from ._io.s3lean import TooLargeForLean
from ._results import DownloadResult, UploadResult
from ._upload import checksum_kwargs

if TYPE_CHECKING:
    from ._core.urls import S3Address
    from ._engine import Engine
    from ._io.s3 import ObjectInfo, PutResult


@dataclass(frozen=True)
class _Read:
    digest: bytes | None
    xxh3: str


def _read_whole(path: str, buf: bytearray, algorithm: str) -> _Read:
    """Worker thread: the whole file into ``buf`` (sized by the walk that found it), hashed;
    a file whose size or mtime moved meanwhile is refused, not sent torn."""
    with local.map_os_errors(path, "read the source file"):
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise LocalFileError(f"{path}: not a regular file", url=path)
            if before.st_size != len(buf):
                raise _SizeMoved(before.st_size)
            view = memoryview(buf)
            local.pread_exact(fd, view, 0, path)
            after = os.fstat(fd)
        finally:
            os.close(fd)
    if after.st_size != before.st_size or after.st_mtime_ns != before.st_mtime_ns:
        raise _SizeMoved(after.st_size)
    digest = None
    if algorithm != "none":
        hasher = hashing.new_hasher(algorithm)
        hasher.update(view)
        digest = hasher.digest()
    return _Read(digest, hashing.slice_xxh3(view))


class _SizeMoved(Exception):
    """The file is not the size the walk saw: the caller takes the general path."""

    def __init__(self, size: int) -> None:
        self.size = size


async def _put(
    engine: Engine, dest: S3Address, buf: bytearray, digest: bytes | None, overwrite: bool
) -> PutResult:
    url = str(dest)
    algorithm = engine.config.checksum
    lean = engine.lean
    async with engine.limiter:
        if lean is not None:
            headers: dict[str, str] = {}
            if digest is not None and algorithm == "crc32c":
                # Both, as botocore sends them (moto stores the checksum only when told the
                # algorithm; S3 takes either).
                headers["x-amz-sdk-checksum-algorithm"] = "CRC32C"
                headers["x-amz-checksum-crc32c"] = hashing.b64(digest)
            elif digest is not None:
                headers["content-md5"] = hashing.b64(digest)
            if not overwrite:
                headers["If-None-Match"] = "*"
            return await lean.put_object(dest.bucket, dest.key, buf, headers, url)
        return await engine.s3.put_object(
            dest.bucket,
            dest.key,
            buf,
            checksum_kwargs(algorithm, digest),
            url,
            if_none_match=not overwrite,
        )


async def put_whole(
    engine: Engine, dest: S3Address, buf: bytearray, digest: bytes | None, overwrite: bool
) -> PutResult:
    """``buf`` as the whole object in one PutObject, under the rate caps and retried; the
    CRC32C the store answers is checked against ``digest``."""
    url = str(dest)
    await engine.throttle(len(buf))
    put = await engine.retrying(url, lambda: _put(engine, dest, buf, digest, overwrite))
    engine.count_sent(len(buf))
    _events.part_done(1, len(buf), in_flight=engine.limiter.borrowed_tokens)
    if engine.config.checksum == "crc32c" and digest is not None:
        theirs = put.checksums.get("CRC32C")
        if theirs is not None and theirs != hashing.b64(digest):
            raise IntegrityError(
                f"{url}: the store's CRC32C {theirs} differs from the file's {hashing.b64(digest)}",
                url=url,
            )
    return put


async def upload_small(
    engine: Engine, path: str, dest: S3Address, size: int, *, overwrite: bool = True
) -> UploadResult | None:
    """Upload a file the caller believes is ``size`` bytes (at most the multipart threshold)
    in one PutObject. None when the file is not that size any more: take the general path."""
    url = str(dest)
    started = time.perf_counter()
    algorithm = engine.config.checksum
    buf = await engine.pool.acquire(size)
    try:
        try:
            read = await anyio.to_thread.run_sync(_read_whole, path, buf, algorithm)
        except _SizeMoved:
            return None
        _events.started(size, 1)
        put = await put_whole(engine, dest, buf, read.digest, overwrite)
    finally:
        engine.pool.release(buf)
    return UploadResult(
        source=path,
        url=url,
        size=size,
        seconds=time.perf_counter() - started,
        parts=1,
        etag=put.etag,
        version_id=put.version_id,
        checksum_algorithm=algorithm,
        checksums=put.checksums,
        xxh3_128=read.xxh3,
    )


def _write_whole(
    dest: str, data: memoryview, durable: bool, mtime: float | None, unsynced: set[str] | None
) -> str:
    """Worker thread: ``data`` to a temporary file beside ``dest``, renamed over it.
    ``unsynced``: where to note the directory for the caller to fsync once for all its files
    (a directory fsync per small file cost as much as the download itself)."""
    directory = os.path.dirname(os.path.abspath(dest))
    with local.map_os_errors(dest, "create the destination directory"):
        os.makedirs(directory, exist_ok=True)
    fd, temp = local.create_temp_beside(dest, 0)
    try:
        local.pwrite_all(fd, data, 0, dest)
    except BaseException:
        local.discard(fd, temp)
        raise
    try:
        local.publish(fd, temp, dest, durable=durable, sync_directory=unsynced is None)
    except BaseException:
        local.discard(-1, temp)
        raise
    if unsynced is not None and durable:
        unsynced.add(os.path.dirname(os.path.abspath(dest)))
    if mtime is not None:
        # As `aws s3 sync` does: the file carries the object's LastModified, so that the next
        # sync of an object whose ETag it cannot compare sees the two as the same age.
        with local.map_os_errors(dest, "set the modification time"):
            os.utime(dest, (mtime, mtime))
    return hashing.slice_xxh3(data)


async def download_small(
    engine: Engine,
    source: S3Address,
    dest: str,
    *,
    size: int,
    etag: str,
    mtime: float | None = None,
    unsynced: set[str] | None = None,
) -> DownloadResult | None:
    """Download an object a listing said is ``size`` bytes with ETag ``etag`` (at most the
    multipart threshold) in one GetObject pinned to that ETag. None when this path cannot take
    it (no lean client, or the object is larger now): take the general path."""
    lean = engine.lean
    if lean is None:
        return None
    url = str(source)
    started = time.perf_counter()
    await engine.throttle(0)

    async def get() -> tuple[ObjectInfo, bytes]:
        async with engine.limiter:
            return await lean.get_object(
                source.bucket, source.key, url, if_match=etag, max_size=size
            )

    # The body is held whole between the request and the write: counted in the memory budget.
    await engine.pool.reserve(size)
    try:
        try:
            info, body = await engine.retrying(url, get)
        except PreconditionFailedError as exc:
            raise ObjectChangedError(
                f"{url}: the object changed since it was listed (its ETag is no longer {etag})",
                url=url,
            ) from exc
        except TooLargeForLean:
            return None
        _events.started(len(body), 1)
        engine.count_received(len(body))
        checksums = _verify(url, body, info)
        xxh3 = await anyio.to_thread.run_sync(
            _write_whole, dest, memoryview(body), engine.config.durable, mtime, unsynced
        )
        _events.part_done(1, len(body), in_flight=engine.limiter.borrowed_tokens)
    finally:
        engine.pool.unreserve(size)
    return DownloadResult(
        url=url,
        path=dest,
        size=len(body),
        seconds=time.perf_counter() - started,
        parts=1,
        etag=etag,
        version_id=info.version_id,
        checksums=checksums,
        xxh3_128=xxh3,
    )


def _verify(url: str, body: bytes, info: ObjectInfo) -> dict[str, str]:
    """The body against the whole-object checksums the store sent with it."""
    checked: dict[str, str] = {}
    for name, value in info.checksums.items():
        if "-" in value or name not in ("CRC32C", "CRC32", "SHA256"):
            continue  # a composite of parts: not a checksum of these bytes
        hasher = hashing.new_hasher(name.lower())
        hasher.update(body)
        actual = hashing.b64(hasher.digest())
        if actual != value:
            raise IntegrityError(
                f"{url}: downloaded bytes have {name} {actual}, the store says {value}", url=url
            )
        checked[name] = value
    return checked
