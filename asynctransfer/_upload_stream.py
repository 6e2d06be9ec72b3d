"""An upload from a stream of unknown length: an async iterable of bytes, or an object with an
async ``read(n)`` (an aiohttp request body, an anyio byte stream wrapper, an async file).

Bytes are gathered into pooled part buffers as they arrive; a full buffer goes out as a part at
once while the next one fills, so memory stays within the pool's budget however long the
stream is. A stream that ends within the first part is one PutObject; otherwise a multipart
upload, aborted on any failure or cancellation. The length is not known up front, so the part
size cannot grow to fit: a stream longer than 10,000 parts is refused when it gets there (raise
``part_size`` for such streams). A part is re-sent from its buffer on a retryable failure; a
BadDigest cannot be answered by reading the source again, and fails.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import anyio
import anyio.abc
import anyio.to_thread

from . import _events
from ._core.plan import MAX_PARTS
from ._errors import InvalidRequestError, ObjectTooLargeError
from ._io import hashing
from ._results import UploadResult
from ._upload import checksum_kwargs, complete

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ._core.urls import S3Address
    from ._engine import Engine
    from ._io.s3 import PutResult

logger = logging.getLogger("asynctransfer")


@runtime_checkable
class AsyncReader(Protocol):
    async def read(self, n: int = -1, /) -> bytes: ...


ByteSource = AsyncIterable[bytes] | AsyncReader
"""What ``upload`` takes besides a path: bytes as they come."""


async def _chunks(source: ByteSource, size: int) -> AsyncIterator[bytes]:
    if isinstance(source, AsyncIterable):
        async for chunk in source:
            yield bytes(chunk) if not isinstance(chunk, bytes) else chunk
        return
    while chunk := await source.read(size):
        yield chunk


def _hash_part(view: memoryview, algorithm: str, whole: hashing.Hasher) -> bytes | None:
    """Worker thread: the part's checksum, and the whole stream's xxh3 in order."""
    whole.update(view)
    if algorithm == "none":
        return None
    hasher = hashing.new_hasher(algorithm)
    hasher.update(view)
    return hasher.digest()


class StreamUpload:
    def __init__(self, engine: Engine, source: ByteSource, dest: S3Address, overwrite: bool):
        self.engine = engine
        self.source = source
        self.dest = dest
        self.url = str(dest)
        self.overwrite = overwrite
        self.algorithm = engine.config.checksum
        self.part_size = engine.config.part_size
        self.whole = hashing.new_hasher("xxh3")
        self.upload_id: str | None = None
        self.sent: dict[int, tuple[str, bytes | None]] = {}

    async def run(self) -> UploadResult:
        started = time.perf_counter()
        engine = self.engine
        _events.started(None, 0)
        buf = await engine.pool.acquire(self.part_size)
        filled = number = size = 0
        try:
            async with anyio.create_task_group() as tg:
                async for chunk in _chunks(self.source, self.part_size):
                    view = memoryview(chunk)
                    while view:
                        take = min(len(view), self.part_size - filled)
                        buf[filled : filled + take] = view[:take]
                        filled += take
                        size += take
                        view = view[take:]
                        if filled < self.part_size:
                            continue
                        number += 1
                        if number > MAX_PARTS:
                            raise ObjectTooLargeError(
                                f"{self.url}: the stream is longer than {MAX_PARTS} parts of "
                                f"{self.part_size} bytes; upload it with a larger part_size",
                                url=self.url,
                            )
                        if self.upload_id is None:
                            await self._create()
                        await self._start_part(tg, number, buf, self.part_size)
                        buf = await engine.pool.acquire(self.part_size)
                        filled = 0
                if self.upload_id is None:
                    put = await self._put_single(buf, filled)
                    parts = 1
                else:
                    if filled:
                        number += 1
                        await self._start_part(tg, number, buf, filled)
                        buf = bytearray()  # handed to the part
                    parts = number
            if self.upload_id is not None:
                put = await self._complete(parts)
        except BaseException:
            if self.upload_id is not None:
                await engine.abort(self.dest, self.upload_id)
            raise
        finally:
            if buf:
                engine.pool.release(buf)
        return UploadResult(
            source="<stream>",
            url=self.url,
            size=size,
            seconds=time.perf_counter() - started,
            parts=parts,
            etag=put.etag,
            version_id=put.version_id,
            checksum_algorithm=self.algorithm,
            checksums=put.checksums,
            xxh3_128=self.whole.digest().hex(),
        )

    async def _create(self) -> None:
        engine = self.engine
        await engine.throttle(0)
        self.upload_id = await engine.retrying(
            self.url,
            lambda: engine.s3.create_multipart_upload(
                self.dest.bucket,
                self.dest.key,
                "CRC32C" if self.algorithm == "crc32c" else None,
                self.url,
            ),
        )

    async def _start_part(
        self, tg: anyio.abc.TaskGroup, number: int, buf: bytearray, length: int
    ) -> None:
        """Hash the part (in order: the whole-stream digest) and send it in the background."""
        if length < len(buf):  # the last part: a buffer of its own size for botocore
            body = bytearray(buf[:length])
            self.engine.pool.release(buf)
        else:
            body = buf
        digest = await anyio.to_thread.run_sync(
            _hash_part, memoryview(body), self.algorithm, self.whole
        )
        tg.start_soon(self._send_part, number, body, digest, body is buf)

    async def _send_part(
        self, number: int, body: bytearray, digest: bytes | None, pooled: bool
    ) -> None:
        engine = self.engine
        assert self.upload_id is not None
        upload_id = self.upload_id

        async def send() -> PutResult:
            async with engine.limiter:
                return await engine.s3.upload_part(
                    self.dest.bucket,
                    self.dest.key,
                    upload_id,
                    number,
                    body,
                    checksum_kwargs(self.algorithm, digest),
                    self.url,
                )

        try:
            await engine.throttle(len(body))
            put = await engine.retrying(f"{self.url} part {number}", send)
            engine.count_sent(len(body))
        finally:
            if pooled:
                engine.pool.release(body)
        self.sent[number] = (put.etag, digest)
        _events.part_done(number, len(body), in_flight=engine.limiter.borrowed_tokens)

    async def _put_single(self, buf: bytearray, filled: int) -> PutResult:
        engine = self.engine
        body = bytearray(buf[:filled]) if filled < len(buf) else buf
        digest = await anyio.to_thread.run_sync(
            _hash_part, memoryview(body), self.algorithm, self.whole
        )
        extra: dict[str, Any] = checksum_kwargs(self.algorithm, digest)

        async def put() -> PutResult:
            async with engine.limiter:
                return await engine.s3.put_object(
                    self.dest.bucket,
                    self.dest.key,
                    body,
                    extra,
                    self.url,
                    if_none_match=not self.overwrite,
                )

        await engine.throttle(filled)
        result = await engine.retrying(self.url, put)
        engine.count_sent(filled)
        _events.part_done(1, filled, in_flight=engine.limiter.borrowed_tokens)
        return result

    async def _complete(self, parts: int) -> PutResult:
        assert self.upload_id is not None
        return await complete(
            self.engine, self.dest, self.upload_id, self.sent, parts, overwrite=self.overwrite
        )


def check_source(source: object) -> ByteSource:
    if isinstance(source, (AsyncIterable, AsyncReader)):
        return source
    raise InvalidRequestError(
        f"upload source {source!r}: expected a path, an async iterable of bytes, or an object "
        "with an async read(n)"
    )
