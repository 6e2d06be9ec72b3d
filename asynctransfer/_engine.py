"""The engine: composes the pure core and the drivers. The only module that starts tasks.

Theory of operation
-------------------
Upload: one producer (the transfer's own task) walks the part plan in order. For each part it
takes a buffer from the shared pool (waiting when the memory budget is spent), then, in a worker
thread, reads the slice with ``pread`` and hashes it: the part checksum the store will verify,
and the running xxh3-128 of the whole file. Reading is sequential, so the whole-file digest
comes from the same pass. The filled buffer goes to a new task that waits for an in-flight slot
and the rate limits, sends it, and returns the buffer. So part N+1 is read and hashed while
parts N, N-1, ... are on the wire, and at most ``memory_budget / part_size`` parts exist.

Download: HeadObject pins the version (ETag, VersionId). Each range is fetched into a pooled
buffer with If-Match, its Content-Range checked, then written with ``pwrite`` at its offset in a
unique temporary file beside the destination (O_DIRECT for large files: no page-cache copy), in
a worker thread. The range then waits, holding its buffer, for its turn to feed the whole-file
digests in plan order, so no byte is read back. Only when every range is in and the digests
agree is the file fsync'ed and renamed over the destination.

Failure: every task runs in a task group; the first error cancels the rest. An upload's
multipart upload is aborted and a download's temporary file removed, shielded from
cancellation, before the error propagates.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

import anyio
import anyio.abc
import anyio.to_thread

from . import _events
from ._buffers import Buffer, BufferPool, BufferPoolStatistics
from ._core.checksums import (
    UniformComposite,
    composite_checksum,
    full_object_checksums,
    with_uniform_layout,
)
from ._core.hedge import FirstByteLatency
from ._core.http1 import ResponseHead
from ._core.plan import Part, Plan, PlanError, TooLargeError, plan_download, plan_upload
from ._core.ranges import RangeMismatchError, check_content_range, range_header
from ._core.ratelimit import TokenBucket
from ._core.retry import Aimd, RetryBudget, RetryBudgetStatistics, Verdict, classify, full_jitter
from ._errors import (
    IntegrityError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    ObjectChangedError,
    ObjectExistsError,
    ObjectTooLargeError,
    PreconditionFailedError,
    ProtocolViolationError,
    RemoteError,
    RetryBudgetError,
    SourceChangedError,
    TransferError,
    TransferTimeoutError,
)
from ._io import hashing, local
from ._io.base import SystemClock
from ._io.http import HttpDriver
from ._io.rangeget import RangeClient, proxy_applies
from ._io.s3 import error_answer
from ._orphans import abort_upload
from ._results import DownloadResult, UploadResult
from ._resume import DownloadResume
from ._sinks import FileSink, Sink, StreamSink, Writable
from ._small import put_whole, upload_small
from ._turns import Turns
from ._upload import MultipartUpload, read_part
from ._upload_stream import ByteSource, StreamUpload

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Mapping

    from ._checkpoints import CheckpointFile
    from ._core.http1 import ResponseHead
    from ._core.urls import S3Address
    from ._io.s3 import ObjectInfo, PutResult, S3Driver
    from ._io.s3lean import LeanS3
    from ._options import TransferConfig

logger = logging.getLogger("asynctransfer")
T = TypeVar("T")


class RangeFetch(Protocol):
    def __call__(
        self, part: Part, view: memoryview, *, on_head: Callable[[], None] | None = None
    ) -> Awaitable[None]:
        """Fetch bytes [part.offset, part.end) into the view (exactly part.length long);
        ``on_head`` is called (from any thread) when the answer's head has arrived."""
        ...


_ABORT_TIMEOUT = 30.0
_PRESIGNED_REUSE = 300.0  # seconds; the URLs themselves are valid for an hour
_PRESIGNED_CACHE = 1024
_DIRECT_MIN_SIZE = 64 * 1024 * 1024
"""Smaller downloads go through the page cache: O_DIRECT saves little there, and a small file
is more likely to be read right away."""


def _exists(dest: S3Address) -> ObjectExistsError:
    return ObjectExistsError(
        f"{dest} already exists; not overwritten (overwrite=False / --no-overwrite)",
        url=str(dest),
        status=412,
        code="PreconditionFailed",
    )


@dataclass
class _Hedge:
    """Where a range's hedged request stands; only the event loop thread touches it."""

    head: bool = False
    """The first request's head has arrived."""
    closed: bool = False
    """The range is done with the first request (it won, failed, or was cancelled)."""
    spare: bytearray | None = None
    scope: anyio.CancelScope | None = None
    won: bool = False
    finished: bool = False


def _verdict(exc: TransferError) -> Verdict:
    if isinstance(exc, NetworkError):
        return classify(None, None, transport=True)
    if isinstance(exc, RemoteError):
        return classify(exc.status, exc.code)
    return Verdict.FAIL


def _store(sink: Sink, resume: DownloadResume | None, part: Part, view: memoryview) -> None:
    sink.write(part, view)
    if resume is not None:
        resume.record(part, view)


def store_in_order(
    sink: Sink, resume: DownloadResume | None, part: Part, view: memoryview, stored: bool
) -> None:
    if not stored:
        _store(sink, resume, part, view)
    sink.in_order(view[: part.length])


class _Window:
    """The buffers one download holds: at most ``size``, taken from and returned to the pool."""

    def __init__(self, pool: BufferPool, size: int) -> None:
        self._pool = pool
        self._slots = anyio.Semaphore(size)

    def adopt(self) -> None:
        """Count a buffer the download already holds."""
        self._slots.acquire_nowait()

    async def acquire(self, engine: Engine, direct: bool, length: int) -> Buffer:
        await self._slots.acquire()
        try:
            return await engine.acquire_for(direct, length)
        except BaseException:
            self._slots.release()
            raise

    def release(self, buf: Buffer) -> None:
        self._pool.release(buf)
        self._slots.release()


@dataclass(frozen=True)
class DownloadOptions:
    """Per-download choices (the config holds what is shared by every transfer)."""

    headers: Mapping[str, str] = field(default_factory=dict)
    """Extra request headers for URL downloads (Authorization, Cookie...)."""
    expected_sha256: str | None = None
    expected_xxh3: str | None = None
    """Hex digests the downloaded bytes must have; else IntegrityError and no file."""
    checkpoint: CheckpointFile | None = None
    """Into a file: keep the temporary file and this checkpoint when the download fails, and
    resume from them."""


@dataclass(frozen=True)
class EngineStatistics:
    in_flight: int
    max_in_flight: int
    """The in-flight limit now: ``max_concurrency``, lowered while the store throttles."""
    memory: BufferPoolStatistics
    bytes_sent: int
    bytes_received: int
    retries: int = 0
    """Requests sent again after a retryable failure."""
    throttled: int = 0
    """Answers that asked to slow down (503 SlowDown, 429)."""
    concurrency_decreases: int = 0
    retry_budget: RetryBudgetStatistics | None = None
    hedges: int = 0
    """Ranged GETs sent a second time because their first byte was late."""
    hedges_won: int = 0
    """...of which the second request answered first."""


class Engine:
    """Shared state of one Transferer: limits, buffers and the S3 driver."""

    def __init__(self, config: TransferConfig, s3: S3Driver) -> None:
        self.config = config
        self.s3 = s3
        self.pool = BufferPool(config.memory_budget)
        self.limiter = anyio.CapacityLimiter(config.max_concurrency)
        clock = SystemClock()
        self._byte_bucket = (
            TokenBucket(config.max_bytes_per_second, config.part_size, clock)
            if config.max_bytes_per_second
            else None
        )
        self._request_bucket = (
            TokenBucket(
                config.max_requests_per_second, max(1.0, config.max_requests_per_second), clock
            )
            if config.max_requests_per_second
            else None
        )
        self._bytes_sent = 0
        self._bytes_received = 0
        self._retries = 0
        self._throttled = 0
        self._clock = clock
        self._budget = RetryBudget(clock) if config.retry_budget else None
        self._aimd = Aimd(config.max_concurrency, clock) if config.adaptive_concurrency else None
        self._latency = FirstByteLatency()
        self._hedges = 0
        self._hedges_won = 0
        self._rng = random.Random()
        self.http = HttpDriver(config)
        self.lean: LeanS3 | None = None
        """The small-object client (see ``_small``), when the Transferer could set one up."""
        self._presigned: dict[tuple[str, str, str | None], tuple[str, float]] = {}
        self._direct = (
            None
            if proxy_applies(s3.endpoint_url)
            else RangeClient(
                max_idle=config.max_concurrency,
                connect_timeout=config.connect_timeout,
                read_timeout=config.read_timeout,
            )
        )

    def close(self) -> None:
        if self._direct is not None:
            self._direct.close()

    def statistics(self) -> EngineStatistics:
        return EngineStatistics(
            in_flight=self.limiter.borrowed_tokens,
            max_in_flight=int(self.limiter.total_tokens),
            memory=self.pool.statistics(),
            bytes_sent=self._bytes_sent,
            bytes_received=self._bytes_received,
            retries=self._retries,
            throttled=self._throttled,
            concurrency_decreases=self._aimd.decreases if self._aimd is not None else 0,
            retry_budget=self._budget.statistics() if self._budget is not None else None,
            hedges=self._hedges,
            hedges_won=self._hedges_won,
        )

    @property
    def range_client(self) -> RangeClient | None:
        """The engine's own ranged-GET client; None when a proxy applies to the endpoint."""
        return self._direct

    def count_sent(self, nbytes: int) -> None:
        self._bytes_sent += nbytes

    def count_received(self, nbytes: int) -> None:
        self._bytes_received += nbytes

    def single_request_limit(self) -> int:
        """The largest object that goes up (and comes down) in one request."""
        c = self.config
        return c.part_size if c.multipart_threshold is None else c.multipart_threshold

    def md5_part_size(self, size: int) -> int:
        """The part size an upload of ``size`` bytes uses: what its multipart ETag is made of."""
        try:
            plan = self._plan_upload(size, "")
        except TransferError:
            return self.config.part_size
        return plan.part_size if plan.multipart else max(size, 1)

    def backoff(self, attempt: int) -> float:
        return full_jitter(attempt, self._rng)

    async def retrying(
        self,
        url: str,
        request: Callable[[], Awaitable[T]],
        *,
        reread: Callable[[], Awaitable[None]] | None = None,
        retry_if: Callable[[TransferError], bool] | None = None,
    ) -> T:
        """``request()``, again after each retryable failure, within ``max_attempts``,
        ``retry_deadline`` and the session's retry budget; throttling lowers the in-flight
        limit. ``reread``: refills the request's body from the source, once, when the store
        saw other bytes than were sent (BadDigest). ``retry_if``: a further condition on
        retrying an error (False: raise it)."""
        c = self.config
        started = self._clock.monotonic()
        reread_done = False
        attempt = 1
        while True:
            try:
                if c.part_timeout is None:
                    result = await request()
                else:
                    try:
                        with anyio.fail_after(c.part_timeout):
                            result = await request()
                    except TimeoutError as timeout:
                        raise TransferTimeoutError(
                            f"{url}: an attempt took longer than {c.part_timeout:g} s "
                            "(part_timeout)",
                            url=url,
                        ) from timeout
            except TransferError as exc:
                verdict = _verdict(exc)
                if retry_if is not None and not retry_if(exc):
                    raise
                if verdict is Verdict.SLOW_DOWN:
                    self._slowed_down()
                if verdict is Verdict.REREAD:
                    if reread is None or reread_done:
                        raise
                    reread_done = True
                elif verdict is Verdict.FAIL or attempt >= c.max_attempts:
                    raise
                waited = self._clock.monotonic() - started
                if c.retry_deadline is not None and waited >= c.retry_deadline:
                    exc.add_note(f"no retry after {waited:.0f} s (retry_deadline)")
                    raise
                if self._budget is not None and not self._budget.try_retry(
                    timeout=isinstance(exc, TransferTimeoutError)
                ):
                    raise RetryBudgetError(
                        f"{url}: not retried: the retry budget of this session is spent "
                        f"(failures have outrun successes; {self._retries} retries so far). "
                        f"Last failure: {exc}",
                        url=url,
                    ) from exc
                self._retries += 1
                _events.retry(attempt + 1, exc)
                logger.info("%s: retrying (attempt %d): %s", url, attempt + 1, exc)
                await anyio.sleep(full_jitter(attempt, self._rng))
                if verdict is Verdict.REREAD and reread is not None:
                    await reread()
                attempt += 1
                continue
            self._succeeded()
            return result

    def _slowed_down(self) -> None:
        self._throttled += 1
        if self._aimd is not None:
            limit = self._aimd.throttled()
            if limit != self.limiter.total_tokens:
                logger.info("store throttling: in-flight limit now %d", limit)
                self.limiter.total_tokens = limit
                _events.slowdown(limit)

    def _succeeded(self) -> None:
        if self._budget is not None:
            self._budget.succeeded()
        if self._aimd is not None and self._aimd.limit < self.config.max_concurrency:
            limit = self._aimd.succeeded()
            if limit != self.limiter.total_tokens:
                self.limiter.total_tokens = limit

    async def throttle(self, nbytes: int) -> None:
        await self._throttle(nbytes)

    async def throttle_bytes(self, nbytes: int) -> None:
        """Wait for ``nbytes`` of payload of a request already counted."""
        if self._byte_bucket is not None:
            wait = self._byte_bucket.reserve(nbytes)
            if wait > 0:
                await anyio.sleep(wait)

    async def _throttle(self, nbytes: int) -> None:
        """Wait for one request and ``nbytes`` of payload under the rate caps. Every request
        but an abort (cleanup must not wait) passes here."""
        wait = 0.0
        if self._byte_bucket is not None:
            wait = self._byte_bucket.reserve(nbytes)
        if self._request_bucket is not None:
            wait = max(wait, self._request_bucket.reserve(1))
        if wait > 0:
            await anyio.sleep(wait)

    def _plan_upload(self, size: int, url: str) -> Plan:
        c = self.config
        try:
            return plan_upload(
                size,
                c.part_size,
                multipart_threshold=c.multipart_threshold,
                max_object_size=c.max_object_size,
                min_part_size=c.min_part_size,
            )
        except TooLargeError as exc:
            raise ObjectTooLargeError(f"{url}: {exc}", url=url) from exc
        except PlanError as exc:
            raise InvalidRequestError(f"{url}: {exc}", url=url) from exc

    # ---------------------------------------------------------------- upload

    async def upload(
        self,
        path: str,
        dest: S3Address,
        checkpoint: CheckpointFile | None = None,
        restart: bool = True,
        overwrite: bool = True,
        size_hint: int | None = None,
    ) -> UploadResult:
        """``checkpoint``: where an interrupted multipart upload is recorded and resumed from
        (None: abort it on failure). ``restart``: when the source changed since the checkpoint,
        start over (else SourceChangedError). ``overwrite=False``: ObjectExistsError if the
        key exists, checked before anything is sent and made atomic by If-None-Match.
        ``size_hint``: the size a directory walk saw; a file small enough for one request then
        takes the short path (``_small``)."""
        if size_hint is not None and size_hint <= self.single_request_limit() and overwrite:
            small = await upload_small(self, path, dest, size_hint)
            if small is not None:
                return small
        url = str(dest)
        started = time.perf_counter()
        source = await anyio.to_thread.run_sync(local.open_source, path)
        reused = (0, 0)
        try:
            plan = self._plan_upload(source.size, url)
            if not overwrite:
                await self._refuse_existing(dest)
            _events.started(source.size, len(plan) if plan.multipart else 1)
            whole = hashing.new_hasher("xxh3")
            algorithm = self.config.checksum
            if plan.multipart:
                upload = MultipartUpload(
                    self, source, dest, plan, whole, checkpoint, overwrite=overwrite
                )
                put, parts = await upload.run(restart), len(plan)
                reused = (upload.reused_parts, upload.reused_bytes)
            else:
                put, parts = await self._upload_single(source, dest, whole, overwrite), 1
        except PreconditionFailedError as exc:
            if overwrite or isinstance(exc, ObjectExistsError):
                raise
            raise _exists(dest) from exc
        finally:
            local.close_fd(source.fd)
        return UploadResult(
            source=path,
            url=url,
            size=source.size,
            seconds=time.perf_counter() - started,
            parts=parts,
            etag=put.etag,
            version_id=put.version_id,
            checksum_algorithm=algorithm,
            checksums=put.checksums,
            xxh3_128=whole.digest().hex(),
            reused_parts=reused[0],
            reused_bytes=reused[1],
        )

    async def upload_stream(
        self, source: ByteSource, dest: S3Address, overwrite: bool = True
    ) -> UploadResult:
        """Bytes as they come (an async iterable, or an async ``read``) to ``dest``."""
        try:
            if not overwrite:
                await self._refuse_existing(dest)
            return await StreamUpload(self, source, dest, overwrite).run()
        except PreconditionFailedError as exc:
            if overwrite or isinstance(exc, ObjectExistsError):
                raise
            raise _exists(dest) from exc

    async def check_unchanged(self, source: local.SourceFile) -> None:
        st = await anyio.to_thread.run_sync(os.stat, source.path)
        if st.st_size != source.size or st.st_mtime_ns != source.mtime_ns:
            raise SourceChangedError(
                f"{source.path}: the file changed while it was being uploaded", url=source.path
            )

    async def _refuse_existing(self, dest: S3Address) -> None:
        url = str(dest)
        try:
            await self.retrying(url, lambda: self.s3.head_object(dest.bucket, dest.key, url))
        except NotFoundError:
            return
        raise _exists(dest)

    async def _upload_single(
        self,
        source: local.SourceFile,
        dest: S3Address,
        whole: hashing.Hasher,
        overwrite: bool = True,
    ) -> PutResult:
        algorithm = self.config.checksum
        buf = await self.pool.acquire(source.size)
        try:
            digest, _ = await anyio.to_thread.run_sync(read_part, source, buf, 0, algorithm, whole)
            await self.check_unchanged(source)
            return await put_whole(self, dest, buf, digest, overwrite)
        finally:
            self.pool.release(buf)

    async def abort(self, dest: S3Address, upload_id: str) -> bool:
        """Abort a multipart upload, with its own retries, confirmed by ListParts (see
        ``_orphans.abort_upload``); shielded, since it runs when a transfer is cancelled.
        False (and an error logged, naming the command that finishes the job) when it fails."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(_ABORT_TIMEOUT) as scope:
            try:
                await abort_upload(self, dest.bucket, dest.key, upload_id)
                return True
            except TransferError as exc:
                logger.error("could not abort multipart upload %s of %s: %s", upload_id, dest, exc)
        if scope.cancelled_caught:
            logger.error(
                "timed out aborting multipart upload %s of %s; abort it with: asynctransfer "
                "uploads abort s3://%s --key '%s' --upload-id '%s'",
                upload_id,
                dest,
                dest.bucket,
                dest.key,
                upload_id,
            )
        return False

    # -------------------------------------------------------------- download

    async def download(
        self, source: S3Address, dest: str | Writable, options: DownloadOptions
    ) -> DownloadResult:
        url = str(source)
        started = time.perf_counter()
        await self._throttle(0)
        info = await self.retrying(url, lambda: self.s3.head_object(source.bucket, source.key, url))
        plan = plan_download(info.size, self.range_size(dest))
        expected = full_object_checksums(info.checksums, info.checksum_type, info.etag)
        hashers = self.hashers(options, expected)
        composite = None if expected else await self._composite_layout(source, info)
        if composite is not None:
            hashers["composite"] = hashing.PartwiseHasher(
                composite.name.lower(), composite.part_size
            )
        resume, temp = await self.open_resume(
            options, dest, url, info.size, plan, info.etag, info.version_id
        )
        sink = await self.open_sink(dest, info.size, plan, hashers, temp=temp, resume=resume)
        _events.started(info.size, len(plan))
        try:
            await self.fetch_ranges(
                url,
                plan,
                sink,
                functools.partial(self._fetch_s3_range, source, info),
                resume=resume,
            )
            for name, value in expected.items():
                actual = hashing.b64(hashers[name].digest())
                if actual != value:
                    raise IntegrityError(
                        f"{url}: downloaded bytes have {name} {actual}, the store says {value}",
                        url=url,
                    )
            if composite is not None:
                await self._verify_composite(source, info, composite, hashers["composite"], sink)
                expected = {composite.name: str(composite)}
            self.check_expected(url, hashers, options)
            await anyio.to_thread.run_sync(sink.finish, info.size)
        except BaseException as exc:
            await self.interrupted(sink, resume, exc)
            raise
        if resume is not None:
            await resume.finished()
        return DownloadResult(
            url=url,
            path=dest if isinstance(dest, str) else "-",
            size=info.size,
            seconds=time.perf_counter() - started,
            parts=len(plan),
            etag=info.etag,
            version_id=info.version_id,
            checksums=expected,
            xxh3_128=hashers["xxh3"].digest().hex(),
            reused_parts=resume.reused_parts if resume is not None else 0,
            reused_bytes=resume.reused_bytes if resume is not None else 0,
        )

    # ------------------------------------------------ download: shared by S3 and URLs

    def range_size(self, dest: str | Writable) -> int:
        """Bytes per range: ``part_size`` into a file, at most ``stream_range_size`` to a
        stream, where every range waits with its buffer for its turn: small buffers stay in
        the CPU caches between the socket, the digests and the stream."""
        if isinstance(dest, str):
            return self.config.part_size
        return min(self.config.part_size, self.config.stream_range_size)

    @staticmethod
    def hashers(options: DownloadOptions, names: Iterable[str] = ()) -> dict[str, hashing.Hasher]:
        """xxh3-128 always; the store's whole-object checksums; the digests the user expects."""
        hashers: dict[str, hashing.Hasher] = {"xxh3": hashing.new_hasher("xxh3")}
        hashers.update({name: hashing.new_hasher(name.lower()) for name in names})
        if options.expected_sha256 is not None:
            hashers["expected-sha256"] = hashing.new_hasher("sha256")
        return hashers

    @staticmethod
    def check_expected(
        url: str, hashers: dict[str, hashing.Hasher], options: DownloadOptions
    ) -> None:
        checks = [("xxh3", "xxh3", options.expected_xxh3)]
        checks.append(("expected-sha256", "sha256", options.expected_sha256))
        for key, name, want in checks:
            if want is None:
                continue
            got = hashers[key].digest().hex()
            if got != want.lower():
                raise IntegrityError(
                    f"{url}: downloaded bytes have {name} {got}, expected {want.lower()}", url=url
                )

    async def open_sink(
        self,
        dest: str | Writable,
        size: int | None,
        plan: Plan,
        hashers: dict[str, hashing.Hasher],
        *,
        direct: bool = True,
        temp: str | None = None,
        resume: DownloadResume | None = None,
    ) -> Sink:
        """``temp``: an interrupted download's temporary file, to reuse; ``resume``: its
        checkpoint, which learns the temporary file's name."""
        sink: Sink
        if isinstance(dest, str):
            direct = (
                direct
                and self.config.direct_io
                and size is not None
                and size >= _DIRECT_MIN_SIZE
                and plan.part_size % local.DIRECT_ALIGN == 0
            )
            if temp is not None:
                opened = functools.partial(FileSink.reopen, dest, temp)
            else:
                opened = functools.partial(FileSink.create, dest, size)
            file_sink = await anyio.to_thread.run_sync(
                functools.partial(
                    opened, direct=direct, durable=self.config.durable, parts=len(plan)
                )
            )
            if resume is not None:
                resume.attach(file_sink.temp)
            sink = file_sink
        else:
            sink = StreamSink(dest, Turns(len(plan)))
        sink.hashers = list(hashers.values())
        return sink

    async def open_resume(
        self,
        options: DownloadOptions,
        dest: str | Writable,
        source: str,
        size: int,
        plan: Plan,
        validator: str,
        version_id: str | None = None,
    ) -> tuple[DownloadResume | None, str | None]:
        """The checkpoint of a download into a file, and the temporary file to reuse."""
        if options.checkpoint is None or not isinstance(dest, str):
            return None, None
        return await DownloadResume.open(
            options.checkpoint,
            source=source,
            dest=dest,
            size=size,
            part_size=plan.part_size,
            validator=validator,
            version_id=version_id,
        )

    @staticmethod
    async def interrupted(sink: Sink, resume: DownloadResume | None, exc: BaseException) -> None:
        """A download failed: keep its temporary file for resume, or remove it."""
        if resume is not None and isinstance(sink, FileSink):
            with anyio.CancelScope(shield=True):
                keep = await resume.interrupted(exc)
            if keep:
                sink.keep()
                return
        sink.discard()

    async def fetch_ranges(
        self,
        url: str,
        plan: Plan,
        sink: Sink,
        fetch: RangeFetch,
        first: tuple[Part, Buffer, int] | None = None,
        resume: DownloadResume | None = None,
    ) -> None:
        """Every range of ``plan`` fetched into a pooled buffer, then into ``sink``. ``first``:
        a range whose first bytes (maybe all) are already in its buffer (a URL download's
        first response). ``resume``: ranges an interrupted run wrote are read back from the
        file, and fetched only if they no longer match their record; every range written is
        recorded."""
        # A task cancelled before its first step never runs its try/finally: buffers handed
        # to tasks that never started are given back here.
        unstarted: dict[int, Buffer] = {}
        # At most this many of this download's buffers at once, whatever the pool's budget:
        # more would only wait for a request slot, and cost memory and cache. With hedging,
        # one part of the default budget stays free for a hedged request.
        extra = 1 if self.config.hedge else 2
        window = _Window(self.pool, self.config.max_concurrency + extra)
        try:
            async with anyio.create_task_group() as fetches:
                for part in plan:
                    if first is not None and part.number == first[0].number:
                        window.adopt()
                        unstarted[part.number] = first[1]
                        received = first[2]
                        first = None
                        fetches.start_soon(
                            self._fetch_part,
                            url,
                            part,
                            unstarted,
                            sink,
                            None if received == part.length else fetch,
                            received,
                            window,
                            resume,
                            fetches,
                        )
                        continue
                    unstarted[part.number] = await window.acquire(self, sink.direct, part.length)
                    fetches.start_soon(
                        self._fetch_part,
                        url,
                        part,
                        unstarted,
                        sink,
                        fetch,
                        0,
                        window,
                        resume,
                        fetches,
                    )
        finally:
            if first is not None:
                self.pool.release(first[1])
            for buf in unstarted.values():
                window.release(buf)
        if not sink.turns.complete:
            raise RuntimeError(f"{url}: internal error: not every range went to the sink")

    async def acquire_for(self, sink_direct: bool, length: int) -> Buffer:
        if sink_direct:
            return await self.pool.acquire(local.direct_length(length), aligned=True)
        return await self.pool.acquire(length)

    async def _composite_layout(
        self, source: S3Address, info: ObjectInfo
    ) -> UniformComposite | None:
        """The part layout of a multipart object with a COMPOSITE checksum, so the download can
        be verified end to end. One HEAD of part 1 gives its size and the part count; the
        layout is assumed uniform (every uploader we know cuts equal parts) and confirmed part
        by part only if the checksum then disagrees."""
        composite = composite_checksum(info.checksums, info.checksum_type, info.etag)
        if composite is None or info.size == 0:
            return None
        url = str(source)
        await self._throttle(0)
        first, parts = await self.retrying(
            url,
            lambda: self.s3.head_part(
                source.bucket, source.key, 1, version_id=info.version_id, url=url
            ),
        )
        layout = with_uniform_layout(composite, info.size, first, parts)
        if layout is None:
            logger.debug("%s: no usable part layout; %s not verified", url, composite.name)
        return layout

    async def _verify_composite(
        self,
        source: S3Address,
        info: ObjectInfo,
        composite: UniformComposite,
        hasher: hashing.Hasher,
        sink: Sink,
    ) -> None:
        url = str(source)
        if hashing.b64(hasher.digest()) == composite.value:
            return
        if not isinstance(sink, FileSink):
            raise IntegrityError(
                f"{url}: the streamed bytes do not match the store's {composite.name} {composite} "
                "(for parts of equal size; the object may have been uploaded in other sizes)",
                url=url,
            )
        # Maybe the parts were not uniform after all: learn the real sizes and check again.
        parts = composite.parts
        sizes = [0] * parts

        async def size_of(number: int) -> None:
            await self._throttle(0)

            async def head() -> tuple[int, int | None]:
                async with self.limiter:
                    return await self.s3.head_part(
                        source.bucket, source.key, number, version_id=info.version_id, url=url
                    )

            sizes[number - 1], _ = await self.retrying(url, head)

        async with anyio.create_task_group() as tg:
            for number in range(1, parts + 1):
                tg.start_soon(size_of, number)
        if sum(sizes) == info.size and any(s != composite.part_size for s in sizes[:-1]):
            if sink.direct:  # reads into an unaligned buffer: not through O_DIRECT
                await anyio.to_thread.run_sync(local.clear_direct, sink.fd, sink.temp)
            digest = await anyio.to_thread.run_sync(
                hashing.partwise_file_digest, sink.fd, sizes, composite.name.lower(), sink.temp
            )
            if hashing.b64(digest) == composite.value:
                return
        raise IntegrityError(
            f"{url}: downloaded bytes do not match the store's {composite.name} {composite}",
            url=url,
        )

    async def _fetch_part(
        self,
        url: str,
        part: Part,
        unstarted: dict[int, Buffer],
        sink: Sink,
        fetch: RangeFetch | None,
        done: int,
        window: _Window,
        resume: DownloadResume | None = None,
        tasks: anyio.abc.TaskGroup | None = None,
    ) -> None:
        """One range: fetched (``fetch`` None: already in its buffer; ``done``: bytes that
        are), retried from the byte where a broken body stopped, written, then handed to the
        sink in plan order. With ``resume``, a range the interrupted run wrote is read back
        instead, if it still matches its record."""
        buf = unstarted.pop(part.number)
        try:
            view = memoryview(buf)
            # Not over bytes already received (a URL's first range): a failed check would
            # have overwritten them.
            reused = (
                resume is not None
                and fetch is not None
                and done == 0
                and part.number in resume.kept
                and await anyio.to_thread.run_sync(resume.reuse, part, view)
            )
            if fetch is not None and not reused:
                await self._throttle(part.length - done)

                async def attempt() -> None:
                    # After a broken body, only what is missing is asked for again.
                    nonlocal done
                    if done >= part.length:  # the break came after the last byte
                        return
                    rest = Part(part.number, part.offset + done, part.length - done)
                    try:
                        await self._hedged(rest, view[done : part.length], fetch, tasks)
                    except NetworkError as exc:
                        done += exc.received
                        raise

                await self.retrying(url, attempt)
            if not reused:
                self._bytes_received += part.length
            stored = reused or not sink.writes_ranges
            # One hop to a worker thread per range when it can be: each costs ~0.1 ms of loop.
            if sink.turns.is_next(part.number):
                await anyio.to_thread.run_sync(store_in_order, sink, resume, part, view, stored)
            else:
                if not stored:
                    await anyio.to_thread.run_sync(_store, sink, resume, part, view)
                await sink.turns.wait(part.number)
                await anyio.to_thread.run_sync(sink.in_order, view[: part.length])
            sink.turns.done(part.number)
            _events.part_done(
                part.number, part.length, in_flight=self.limiter.borrowed_tokens, reused=reused
            )
            if resume is not None and not reused:
                await resume.save()
        finally:
            window.release(buf)

    async def _hedged(
        self,
        part: Part,
        target: memoryview,
        fetch: RangeFetch,
        tasks: anyio.abc.TaskGroup | None,
    ) -> None:
        """``fetch`` into ``target``; if its first byte is late (see ``_core/hedge.py``), the
        same range again into a spare buffer, as a task of the download (``tasks``), and the
        first to finish wins (copied in if it is the spare). The loser is cancelled; a failed
        hedge is ignored (the first request goes on). Without a basis, room in the budget, or
        ``config.hedge``, just ``fetch``.

        The common case costs a timer and a flag: no task, no event (a task group per range
        cost ~0.3 ms of loop time, 0.15 CPU-s per GiB of 2 MiB ranges)."""
        loop = asyncio.get_running_loop()
        started = self._clock.monotonic()
        hedge = _Hedge()

        def heard() -> None:
            if not hedge.head:
                hedge.head = True
                self._latency.record(self._clock.monotonic() - started)

        def on_head() -> None:  # from the worker thread that received the head
            loop.call_soon_threadsafe(heard)

        after = self._latency.hedge_after() if self.config.hedge and tasks is not None else None
        if after is None or tasks is None:
            await fetch(part, target, on_head=on_head)
            return
        primary = anyio.CancelScope()

        async def second(spare: bytearray) -> None:
            try:
                if hedge.closed:
                    return
                with anyio.CancelScope() as hedge.scope:
                    await fetch(part, memoryview(spare))
                    hedge.won = True
                    primary.cancel()
            except TransferError as exc:
                logger.debug("hedged request for %s failed: %s", part, exc)
            finally:
                hedge.finished = True
                if hedge.closed or not hedge.won:
                    self.pool.release(spare)

        def late() -> None:
            if hedge.head or hedge.closed:
                return
            spare = self.pool.try_acquire(len(target))
            if spare is None:
                return
            hedge.spare = spare
            self._hedges += 1
            logger.info("%s: no first byte after %.2f s; hedging", part, after)
            tasks.start_soon(second, spare)

        timer = loop.call_later(after, late)
        try:
            with primary:
                await fetch(part, target, on_head=on_head)
        finally:
            timer.cancel()
            hedge.closed = True
            if hedge.scope is not None and not hedge.finished:
                hedge.scope.cancel()  # the hedge gives its buffer back as it ends
        if hedge.won and hedge.spare is not None:
            if primary.cancelled_caught:
                target[:] = hedge.spare
                self._hedges_won += 1
            self.pool.release(hedge.spare)

    async def _fetch_s3_range(
        self,
        source: S3Address,
        info: ObjectInfo,
        part: Part,
        view: memoryview,
        *,
        on_head: Callable[[], None] | None = None,
    ) -> None:
        try:
            if self._direct is not None:
                await self._fetch_direct(source, info, part, view, on_head)
            else:
                await self._fetch_via_botocore(source, info, part, view, on_head)
        except PreconditionFailedError as exc:
            raise ObjectChangedError(
                f"{source}: the object changed during the download (its ETag is no longer "
                f"{info.etag})",
                url=str(source),
                status=exc.status,
                code=exc.code,
                request_id=exc.request_id,
            ) from exc

    async def _presigned_get(self, source: S3Address, info: ObjectInfo) -> str:
        """A presigned GetObject URL, reused for a few minutes: signing costs ~0.8 ms of loop
        time, once per range otherwise. The reuse window stays well inside the URL's validity
        and short enough for temporary credentials that are about to be refreshed."""
        cache_key = (source.bucket, source.key, info.version_id)
        now = time.monotonic()
        hit = self._presigned.get(cache_key)
        if hit is not None and hit[1] > now:
            return hit[0]
        url = await self.s3.presign_get(source.bucket, source.key, info.version_id, str(source))
        if len(self._presigned) >= _PRESIGNED_CACHE:
            self._presigned.clear()
        self._presigned[cache_key] = (url, now + _PRESIGNED_REUSE)
        return url

    async def _fetch_direct(
        self,
        source: S3Address,
        info: ObjectInfo,
        part: Part,
        view: memoryview,
        on_head: Callable[[], None] | None = None,
    ) -> None:
        """GetObject through the engine's own client: botocore presigns, the body lands in
        ``view`` with no copy in Python (see ``_io/rangeget.py``)."""
        assert self._direct is not None
        url = str(source)
        presigned = await self._presigned_get(source, info)
        headers = [("If-Match", info.etag)]
        ranged = not (part.offset == 0 and part.length == info.size)
        if ranged:
            headers.append(("Range", range_header(part.offset, part.length)))

        def accept(head: ResponseHead) -> None:
            if on_head is not None:
                on_head()
            expected = 206 if ranged else 200
            if head.status != expected:
                raise ProtocolViolationError(
                    f"{url}: asked for bytes {part.offset}-{part.end - 1}, got HTTP "
                    f"{head.status} ({'the server ignored Range' if head.status == 200 else head.reason})",
                    url=url,
                )
            if ranged:
                try:
                    check_content_range(
                        head.headers.get("content-range"), part.offset, part.length, info.size
                    )
                except RangeMismatchError as exc:
                    raise ProtocolViolationError(f"{url}: {exc}", url=url) from exc
            if head.content_length != part.length:
                raise ProtocolViolationError(
                    f"{url}: asked for {part.length} bytes at {part.offset}, "
                    f"Content-Length says {head.headers.get('content-length')}",
                    url=url,
                )

        async with self.limiter:
            head, body = await self._direct.get_into(presigned, headers, view, accept=accept)
        if not 200 <= head.status < 300:
            raise error_answer(url, head.status, body, head.headers.get("x-amz-request-id"))

    async def _fetch_via_botocore(
        self,
        source: S3Address,
        info: ObjectInfo,
        part: Part,
        view: memoryview,
        on_head: Callable[[], None] | None = None,
    ) -> None:
        """GetObject through aiobotocore/aiohttp: the path when a proxy is configured."""
        url = str(source)
        async with (
            self.limiter,
            self.s3.get_range(
                source.bucket,
                source.key,
                part.offset,
                part.length,
                total=info.size,
                etag=info.etag,
                version_id=info.version_id,
                url=url,
            ) as stream,
        ):
            if on_head is not None:
                on_head()
            filled = 0
            while True:
                # readchunk, not readany: readany joins the buffered chunks into a new bytes
                # object, a second copy before ours into the buffer.
                chunk, end_of_http_chunk = await stream.readchunk()
                if not chunk:
                    if end_of_http_chunk:
                        continue
                    break
                end = filled + len(chunk)
                if end > part.length:
                    raise ProtocolViolationError(
                        f"{url}: more than the {part.length} bytes asked for at {part.offset}",
                        url=url,
                    )
                view[filled:end] = chunk
                filled = end
        if filled != part.length:
            error = NetworkError(
                f"{url}: body ended after {filled} of {part.length} bytes at offset {part.offset}",
                url=url,
            )
            error.received = filled
            raise error
