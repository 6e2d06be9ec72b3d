"""Request bodies: streamed to a temp file, hashed on the way, verified before anything is kept.

The event loop only collects the chunks aiohttp has read (no copy) into ~1 MiB batches; a
worker thread hashes each batch (MD5 for the ETag, the ``x-amz-checksum-*`` algorithm, the
SigV4 payload SHA-256: all release the GIL) and writes it with one ``writev``. One batch is in
the thread while the next is collected, so a body costs at most two batches of memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import hashlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._io.hashing import Hasher, new_hasher
from ._s3_xml import S3Error

if TYPE_CHECKING:
    from collections.abc import Mapping

    from aiohttp import web

    from ._s3_store import Store

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
    """The temp file holding the body (the caller moves it into place or unlinks it)."""
    size: int
    md5: bytes
    checksum: bytes | None
    """The digest of ``Expected.algorithm``, if there was one."""


class _Sink:
    """Runs in a worker thread, one batch at a time: hash, then write."""

    def __init__(self, fd: int, expected: Expected) -> None:
        self.fd = fd
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.checksum: Hasher | None = None
        if expected.algorithm is not None:
            self.checksum = new_hasher(expected.algorithm.lower())
        self.sha256 = hashlib.sha256() if expected.sha256_hex is not None else None

    def write(self, chunks: list[bytes]) -> None:
        hashers: list[Hasher] = [self.md5]
        if self.checksum is not None:
            hashers.append(self.checksum)
        if self.sha256 is not None:
            hashers.append(self.sha256)
        for chunk in chunks:
            for hasher in hashers:
                hasher.update(chunk)
        written = os.writev(self.fd, chunks)
        total = sum(len(c) for c in chunks)
        if written < total:  # short write (rare on files): finish it plainly
            rest = b"".join(chunks)[written:]
            view = memoryview(rest)
            while view:
                view = view[os.write(self.fd, view) :]


async def receive(
    request: web.Request,
    store: Store,
    executor: concurrent.futures.Executor,
    expected: Expected,
    *,
    limit: int,
) -> Received:
    """Stream the body to a temp file; verify it against ``expected`` (BadDigest etc.)."""
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
            raise S3Error(
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length HTTP "
                "header",
            )
    except BaseException:
        if pending is not None:  # the thread still writes to fd: let it finish first
            concurrent.futures.wait([pending])
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    os.close(fd)
    received = Received(
        path, total, sink.md5.digest(), sink.checksum.digest() if sink.checksum else None
    )
    try:
        verify(received, expected, sink.sha256.hexdigest() if sink.sha256 else None)
    except S3Error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return received


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
