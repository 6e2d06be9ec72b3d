"""Request bodies: streamed to a temp file, hashed on the way, verified before anything is kept.

The event loop only collects the chunks aiohttp has read (no copy) into ~1 MiB batches; a
worker thread hashes each batch (MD5 for the ETag, the ``x-amz-checksum-*`` algorithm, the
SigV4 payload SHA-256: all release the GIL) and writes it with one ``writev``. One batch is in
the thread while the next is collected, so a body costs at most two batches of memory.

A small body (``receive_then``: at most ``ServerConfig.small_body``, 1 MiB by default) is
instead collected whole on the loop, then hashed, verified, written and committed in ONE
worker-thread call. Each hop to a thread costs ~80 us of CPU (submit, a thread wake-up, the
self-pipe write and the loop's wake-up, future chaining); a 64 KiB PutObject used to take four
(check the name, open the temp file, write, commit) and spend ~2 ms of server CPU.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import hashlib
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from .._io.hashing import Hasher, new_hasher
from ._s3_store import write_all
from ._s3_xml import S3Error

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from aiohttp import web

    from ._s3_store import Store

T = TypeVar("T")

# S3 checksum algorithms this server verifies, with their digest sizes.
ALGORITHMS = {"CRC32C": 4, "CRC32": 4, "SHA1": 20, "SHA256": 32}
UNSUPPORTED_ALGORITHMS = ("CRC64NVME",)
_BATCH = 1024 * 1024
_MAX_CHUNKS = 512  # below IOV_MAX (1024) for writev


@dataclass(frozen=True)
class Expected:
    """What a body must hash to, from the request's headers; None: not checked."""

    md5: bytes | None = None
    algorithm: str | None = None
    """The S3 checksum to compute (sent, or the multipart upload's)."""
    checksum: bytes | None = None
    """The value sent for it, if one was."""
    sha256_hex: str | None = None
    """The SigV4 payload hash, when it is signed and credentials are checked."""


def checksum_header(algorithm: str) -> str:
    return f"x-amz-checksum-{algorithm.lower()}"


def _b64(value: str, size: int | None) -> bytes | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if size is None or len(raw) == size else None


def expected_digests(
    headers: Mapping[str, str],
    *,
    upload_algorithm: str | None = None,
    sha256_hex: str | None = None,
) -> Expected:
    """Parse Content-MD5 and ``x-amz-checksum-*``; malformed or conflicting ones are refused."""
    md5 = None
    if (value := headers.get("Content-MD5")) is not None:
        md5 = _b64(value.strip(), 16)
        if md5 is None:
            raise S3Error("InvalidDigest", "The Content-MD5 you specified was invalid.")
    for name in UNSUPPORTED_ALGORITHMS:
        if checksum_header(name) in headers:
            raise S3Error(
                "InvalidRequest", f"{name} checksums are not supported by this server (use CRC32C)"
            )
    sent = [name for name in ALGORITHMS if checksum_header(name) in headers]
    if len(sent) > 1:
        raise S3Error(
            "InvalidRequest",
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        )
    algorithm = upload_algorithm
    checksum = None
    if sent:
        algorithm = sent[0]
        checksum = _b64(headers[checksum_header(algorithm)].strip(), ALGORITHMS[algorithm])
        if checksum is None:
            raise S3Error(
                "InvalidRequest", f"Value for {checksum_header(algorithm)} header is invalid."
            )
        if upload_algorithm is not None and algorithm != upload_algorithm:
            raise S3Error(
                "InvalidRequest",
                "Checksum Type mismatch occurred, expected checksum Type: "
                f"{upload_algorithm.lower()}, actual checksum Type: {algorithm.lower()}",
            )
    return Expected(md5, algorithm, checksum, sha256_hex)


@dataclass(frozen=True)
class Received:
    path: str
    """The temp file holding the body (the caller moves it into place or unlinks it); empty
    when the body is in ``body``."""
    size: int
    md5: bytes
    checksum: bytes | None
    """The digest of ``Expected.algorithm``, if there was one."""
    body: list[bytes] | None = None
    """A small body, in memory (``receive_then``), instead of a temp file."""


class _Hashes:
    """The digests a body is checked against, updated chunk by chunk (in a worker thread)."""

    def __init__(self, expected: Expected) -> None:
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.checksum: Hasher | None = None
        if expected.algorithm is not None:
            self.checksum = new_hasher(expected.algorithm.lower())
        self.sha256 = hashlib.sha256() if expected.sha256_hex is not None else None
        self._all: list[Hasher] = [self.md5]
        if self.checksum is not None:
            self._all.append(self.checksum)
        if self.sha256 is not None:
            self._all.append(self.sha256)

    def update(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            for hasher in self._all:
                hasher.update(chunk)

    def received(self, path: str, size: int) -> Received:
        return Received(
            path, size, self.md5.digest(), self.checksum.digest() if self.checksum else None
        )

    def sha256_hex(self) -> str | None:
        return self.sha256.hexdigest() if self.sha256 is not None else None


class _Sink:
    """Runs in a worker thread, one batch at a time: hash, then write."""

    def __init__(self, fd: int, expected: Expected) -> None:
        self.fd = fd
        self.hashes = _Hashes(expected)

    def write(self, chunks: list[bytes]) -> None:
        self.hashes.update(chunks)
        write_all(self.fd, chunks)


def _check_length(request: web.Request, limit: int) -> int:
    length = request.content_length
    if length is None:
        raise S3Error("MissingContentLength", "You must provide the Content-Length HTTP header.")
    if length > limit:
        raise S3Error(
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
            ProposedSize=length,
            MaxSizeAllowed=limit,
        )
    return length


def _incomplete() -> S3Error:
    return S3Error(
        "IncompleteBody",
        "You did not provide the number of bytes specified by the Content-Length HTTP header",
    )


async def receive(
    request: web.Request,
    store: Store,
    executor: concurrent.futures.Executor,
    expected: Expected,
    *,
    limit: int,
) -> Received:
    """Stream the body to a temp file; verify it against ``expected`` (BadDigest etc.)."""
    length = _check_length(request, limit)
    loop = asyncio.get_running_loop()
    fd, path = await loop.run_in_executor(executor, store.new_temp)
    sink = _Sink(fd, expected)
    pending: concurrent.futures.Future[None] | None = None
    batch: list[bytes] = []
    batched = total = 0
    try:
        while chunk := await request.content.readany():
            batch.append(chunk)
            batched += len(chunk)
            if batched >= _BATCH or len(batch) >= _MAX_CHUNKS:
                if pending is not None:
                    await asyncio.wrap_future(pending)
                pending = executor.submit(sink.write, batch)
                total += batched
                batch, batched = [], 0
        if pending is not None:
            await asyncio.wrap_future(pending)
        pending = None
        if batch:
            pending = executor.submit(sink.write, batch)
            await asyncio.wrap_future(pending)
            pending = None
        total += batched
        if total != length:
            raise _incomplete()
    except BaseException:
        if pending is not None:  # the thread still writes to fd: let it finish first
            concurrent.futures.wait([pending])
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    os.close(fd)
    received = sink.hashes.received(path, total)
    try:
        verify(received, expected, sink.hashes.sha256_hex())
    except S3Error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return received


async def receive_then(
    request: web.Request,
    store: Store,
    executor: concurrent.futures.Executor,
    expected: Expected,
    commit: Callable[[Received], T],
    *,
    limit: int,
    small: int,
    check: Callable[[], None] | None = None,
) -> T:
    """Receive and verify the body, then ``commit(received)`` in a worker thread (it owns a
    received temp file from then on; the file is removed if commit raises). ``check`` runs
    first in a worker thread (a missing bucket is refused before the body's digests are judged).

    A body of at most ``small`` bytes is read into memory here, then checked, hashed, verified
    (nothing is written when it does not match) and handed to ``commit`` in ``Received.body``,
    all in one worker-thread call; a larger one streams to a temp file through ``receive``."""
    length = _check_length(request, limit)
    loop = asyncio.get_running_loop()
    if length > small:
        if check is not None:
            await loop.run_in_executor(executor, check)
        received = await receive(request, store, executor, expected, limit=limit)
        try:
            return await loop.run_in_executor(executor, commit, received)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(received.path)
            raise
    chunks = []
    total = 0
    while chunk := await request.content.readany():
        chunks.append(chunk)
        total += len(chunk)
    if total != length:
        raise _incomplete()
    if len(chunks) > _MAX_CHUNKS:  # (a client that sent it in dribbles)
        chunks = [b"".join(chunks)]

    def store_small() -> T:
        if check is not None:
            check()
        hashes = _Hashes(expected)
        hashes.update(chunks)
        received = hashes.received("", total)
        verify(received, expected, hashes.sha256_hex())
        return commit(replace(received, body=chunks))

    return await loop.run_in_executor(executor, store_small)


def verify(received: Received, expected: Expected, sha256_hex: str | None) -> None:
    if expected.sha256_hex is not None and sha256_hex != expected.sha256_hex:
        raise S3Error(
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
            ClientComputedContentSHA256=expected.sha256_hex,
            S3ComputedContentSHA256=sha256_hex or "",
        )
    if expected.md5 is not None and received.md5 != expected.md5:
        raise S3Error(
            "BadDigest",
            "The Content-MD5 you specified did not match what we received.",
            ExpectedDigest=expected.md5.hex(),
            CalculatedDigest=received.md5.hex(),
        )
    if expected.checksum is not None and received.checksum != expected.checksum:
        raise S3Error(
            "BadDigest",
            f"The {expected.algorithm} you specified did not match the calculated checksum.",
        )


async def read_small(
    request: web.Request, expected: Expected, *, limit: int = 20 * 1024 * 1024
) -> bytes:
    """A small body (an XML document) in memory, bounded and verified like any other."""
    if request.content_length is not None and request.content_length > limit:
        raise S3Error("EntityTooLarge", f"request documents are limited to {limit} bytes")
    chunks = []
    size = 0
    while chunk := await request.content.readany():
        size += len(chunk)
        if size > limit:
            raise S3Error("EntityTooLarge", f"request documents are limited to {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    checksum = None
    if expected.algorithm is not None:
        hasher = new_hasher(expected.algorithm.lower())
        hasher.update(body)
        checksum = hasher.digest()
    received = Received("", len(body), hashlib.md5(body, usedforsecurity=False).digest(), checksum)
    sha = hashlib.sha256(body).hexdigest() if expected.sha256_hex is not None else None
    verify(received, expected, sha)
    return body
