"""The public verbs and the long-lived Transferer session."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import urllib.parse
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Self

import anyio
import anyio.abc
import anyio.from_thread
import anyio.to_thread

from . import _events
from ._batch import Batch, Copier, Job, Pairs, Tree, list_work, pairs_work, sync_work, tree_work
from ._checkpoints import CheckpointArg, resolve
from ._core.checkpoint import shown_source, source_digest
from ._core.tree import Filters
from ._core.urls import AddressError, S3Address, parse_s3_url, scheme_of
from ._download_url import UrlDownload
from ._engine import DownloadOptions, Engine, EngineStatistics
from ._errors import InvalidRequestError, ObjectChangedError, TransferError
from ._io.http import redact
from ._io.local import map_os_errors
from ._io.rangeget import proxy_applies
from ._io.s3 import S3Driver
from ._io.s3lean import LeanS3
from ._options import TransferConfig
from ._orphans import UploadInfo, abort_uploads, list_uploads
from ._small import download_small
from ._upload_stream import ByteSource, check_source

if TYPE_CHECKING:
    from collections.abc import (
        AsyncGenerator,
        AsyncIterator,
        Awaitable,
        Callable,
        Iterator,
        Mapping,
        Sequence,
    )
    from types import TracebackType

    from anyio.streams.memory import MemoryObjectSendStream

    from ._events import EventHook
    from ._results import BatchResult, DownloadResult, UploadResult
    from ._sinks import Writable

StrPath = str | os.PathLike[str]
logger = logging.getLogger("asynctransfer")


class _State(enum.Enum):
    UNOPENED = 1  # created; limits and clients not set up yet
    OPENED = 2  # inside `async with`: transfers may run
    CLOSED = 3  # left `async with`: clients closed, cannot be reopened


def _s3_address(url: str, role: str) -> S3Address:
    scheme = scheme_of(url)
    if scheme is None:
        raise InvalidRequestError(f"{role} {url!r} is a local path; expected s3://bucket/key")
    if scheme != "s3":
        raise InvalidRequestError(
            f"{role} {url!r}: unsupported URL scheme {scheme!r}; supported: s3:// (and http(s):// to download)",
            url=url,
        )
    try:
        return parse_s3_url(url)
    except AddressError as exc:
        raise InvalidRequestError(str(exc), url=url) from exc


def _local_path(path: StrPath, role: str) -> str:
    text = os.fspath(path)
    scheme = scheme_of(text)
    if scheme is not None:
        raise InvalidRequestError(
            f"{role} {text!r} is a {scheme}:// URL; expected a local path", url=text
        )
    return text


def _hex_digest(value: str | None, length: int, name: str) -> str | None:
    if value is None:
        return None
    text = value.strip().lower()
    if len(text) != length or any(c not in "0123456789abcdef" for c in text):
        raise InvalidRequestError(f"{name}: expected {length} hex digits, got {value!r}")
    return text


async def _destination(dest: StrPath | Writable, name: str, src: str) -> str | Writable:
    """A stream as it is; a path, or a file named ``name`` in it if it is a directory."""
    if not isinstance(dest, (str, os.PathLike)):
        if not callable(getattr(dest, "write", None)):
            raise InvalidRequestError(
                f"download destination {dest!r}: expected a path or a binary stream with write()"
            )
        return dest
    path = _local_path(dest, "download destination")
    if await anyio.to_thread.run_sync(os.path.isdir, path):
        # The name comes from the remote side: it must not lead out of the directory.
        if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
            raise InvalidRequestError(
                f"{redact(src)!r}: cannot name a file after it ({name!r}); give a file name, "
                f"not the directory {path!r}",
                url=redact(src),
            )
        path = os.path.join(path, name)
    return path


def _with_checkpoint(
    options: DownloadOptions, checkpoint: CheckpointArg, src: str, target: str | Writable
) -> DownloadOptions:
    if not isinstance(target, str):
        return options  # a stream cannot take back what it was given: nothing to resume
    # The default name hashes the source with its query (another presigned URL is another
    # source) but never its userinfo.
    key = shown_source(src) + "#" + source_digest(src)
    file = resolve(checkpoint, "download", key, os.path.abspath(target))
    return dataclasses.replace(options, checkpoint=file)


def _is_stream(dest: str | Writable) -> bool:
    return not isinstance(dest, str)


async def _restarting(
    download: Callable[[], Awaitable[DownloadResult]], restart: bool
) -> DownloadResult:
    """Run ``download``; if the object changes under it, once more from the new version."""
    for attempt in (1, 2):
        try:
            with _one_error():
                return await download()
        except ObjectChangedError as exc:
            if not restart or attempt == 2:
                raise
            logger.warning("%s; starting over", exc)
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _one_error() -> Iterator[None]:
    """Raise the first TransferError out of a task group's ExceptionGroup, so users can write
    ``except NotFoundError``; the others are attached as notes."""
    try:
        yield
    except BaseExceptionGroup as group:
        leaves: list[BaseException] = []

        def walk(g: BaseExceptionGroup[BaseException]) -> None:
            for e in g.exceptions:
                if isinstance(e, BaseExceptionGroup):
                    walk(e)
                else:
                    leaves.append(e)

        walk(group)
        first: BaseException | None = next(
            (e for e in leaves if isinstance(e, TransferError)), None
        )
        if first is None:
            first = next((e for e in leaves if isinstance(e, Exception)), None)
        if first is None:
            raise
        for other in leaves:
            if other is not first:
                first.add_note(f"also: {type(other).__name__}: {other}")
        raise first from first.__cause__


def _filters(filters: Sequence[tuple[str, str]]) -> Filters:
    try:
        return Filters(list(filters))
    except ValueError as exc:
        raise InvalidRequestError(f"filters: {exc}") from exc


def _make_parent(path: str) -> None:
    with map_os_errors(path, "create the destination directory"):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _set_mtime(path: str, mtime: float) -> None:
    with map_os_errors(path, "set the modification time"):
        os.utime(path, (mtime, mtime))


class _ReaderGone(Exception):
    """The consumer of ``open_read`` stopped reading."""


class _ChannelWriter:
    """A writable for ``StreamSink``: each in-order chunk goes, copied (the part buffer is
    reused), into a memory channel. ``write`` runs in a worker thread and blocks while the
    consumer is behind: that is the backpressure."""

    def __init__(self, send: MemoryObjectSendStream[bytes]) -> None:
        self._send = send

    def write(self, data: memoryview, /) -> int:
        try:
            anyio.from_thread.run(self._send.send, bytes(data))
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise _ReaderGone from exc
        return len(data)


class Transferer:
    """A session for many transfers: owns the S3 client and the limits they all share.

    ``async with Transferer(config) as t: await t.upload(...)``. Concurrency, memory and rate
    limits in ``config`` bound all transfers running in it together.
    """

    def __init__(self, config: TransferConfig | None = None) -> None:
        self._config = config or TransferConfig()
        self._state = _State.UNOPENED
        self._stack = AsyncExitStack()
        self._engine: Engine | None = None
        self._tasks: anyio.abc.TaskGroup | None = None

    @property
    def config(self) -> TransferConfig:
        return self._config

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise RuntimeError(f"a Transferer can be opened once; this one is {self._state.name}")
        self._state = _State.OPENED
        try:
            s3 = await S3Driver.open(self._config, self._stack)
        except BaseException:
            await self._stack.aclose()
            self._state = _State.CLOSED
            raise
        self._engine = Engine(self._config, s3)
        self._stack.callback(self._engine.close)
        # Like the ranged-GET client, the lean one connects directly: not when a proxy applies.
        if self._config.lean_requests and not proxy_applies(s3.endpoint_url):
            self._engine.lean = await LeanS3.from_client(s3.client, self._config)
            if self._engine.lean is not None:
                self._stack.push_async_callback(self._engine.lean.aclose)
        self._stack.push_async_callback(self._engine.http.aclose)
        # Background work of the session (open_read's downloads); stopped first on exit.
        self._tasks = await self._stack.enter_async_context(anyio.create_task_group())
        self._stack.callback(self._tasks.cancel_scope.cancel)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._state = _State.CLOSED
        self._engine = None
        self._tasks = None
        await self._stack.aclose()

    def _require_tasks(self) -> anyio.abc.TaskGroup:
        self._require_engine()
        assert self._tasks is not None
        return self._tasks

    def _require_engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError(
                f"Transferer is {self._state.name}; use it inside `async with Transferer(...)`"
            )
        return self._engine

    async def upload(
        self,
        src: StrPath | ByteSource,
        dest: str,
        *,
        checkpoint: CheckpointArg = None,
        restart: bool = True,
        overwrite: bool = True,
        on_event: EventHook | None = None,
    ) -> UploadResult:
        """Upload the local file ``src`` to ``dest`` (``s3://bucket/key``).

        ``on_event``: called with each ``Event`` of the transfer (started, part, retry,
        slowdown, finished, failed); see ``asynctransfer.progress`` for ready-made bars.

        ``src`` may also be bytes as they come: an async iterable of bytes, or an object with
        an async ``read(n)`` (a request body in a service), of any length: parts go out as
        they fill, within the memory budget (no checkpoint: a stream cannot be read again).

        ``overwrite=False``: if ``dest`` exists, ObjectExistsError, before any part is sent
        and atomically at the end (If-None-Match: *), and the multipart upload is aborted.

        ``checkpoint``: ``True`` (a file under the user's cache directory, named after ``src``
        and ``dest``) or a path. The multipart upload is then recorded there as its parts land;
        a failure or cancellation keeps it, and the next call with the same checkpoint sends
        only the parts the store does not have (verified against the file). Without one, any
        failure aborts the upload. ``restart``: if ``src`` changed since the checkpoint, abort
        the old upload and start over; ``False``: raise SourceChangedError instead.
        """
        address = _s3_address(dest, "upload destination")
        engine = self._require_engine()
        if not isinstance(src, (str, os.PathLike)):
            stream = check_source(src)
            if checkpoint:
                raise InvalidRequestError(
                    "checkpoint= needs a file: a stream cannot be read again to resume",
                    url=str(address),
                )
            with _events.reporting(on_event, str(address), "upload"), _one_error():
                return await engine.upload_stream(stream, address, overwrite)
        path = _local_path(src, "upload source")
        source = os.path.abspath(path)  # noqa: ASYNC240  (getcwd only: no disk access)
        file = resolve(checkpoint, "upload", source, str(address))
        with _events.reporting(on_event, str(address), "upload"), _one_error():
            return await engine.upload(path, address, file, restart, overwrite)

    async def download(
        self,
        src: str,
        dest: StrPath | Writable,
        *,
        headers: Mapping[str, str] | None = None,
        expected_sha256: str | None = None,
        expected_xxh3: str | None = None,
        checkpoint: CheckpointArg = None,
        on_event: EventHook | None = None,
    ) -> DownloadResult:
        """Download ``src`` (``s3://bucket/key``, or an ``http(s)://`` URL) to ``dest``.

        ``dest`` is a local path, or a writable binary stream (``sys.stdout.buffer``) that gets
        the bytes in order. A file appears under its name only once every byte is in and
        verified; if ``dest`` is a directory, the file is named after the key's or URL's last
        component. ``headers`` go with every request of a URL download (not to another origin
        that a redirect leads to). ``expected_sha256`` / ``expected_xxh3``: hex digests the
        bytes must have, else IntegrityError and no file.

        ``checkpoint`` (into a file): ``True`` (a file under the user's cache directory, named
        after ``src`` and ``dest``) or a path. A failed or cancelled download then keeps its
        temporary file and records there which ranges it holds; the next call with the same
        checkpoint checks the object is the same version and fetches only the rest (each kept
        range verified against its recorded xxh3). A changed object starts from zero.
        ``on_event``: as for :meth:`upload`.
        """
        options = DownloadOptions(
            headers=dict(headers or {}),
            expected_sha256=_hex_digest(expected_sha256, 64, "expected_sha256"),
            expected_xxh3=_hex_digest(expected_xxh3, 32, "expected_xxh3"),
        )
        if scheme_of(src) in ("http", "https"):
            name = urllib.parse.unquote(urllib.parse.urlsplit(src).path.rsplit("/", 1)[-1])
        else:
            if options.headers:
                raise InvalidRequestError("headers= applies to http(s):// URLs only", url=src)
            name = _s3_address(src, "download source").key.rstrip("/").rsplit("/", 1)[-1]
        target = await _destination(dest, name, src)
        return await self._download_to(src, target, options, checkpoint, on_event)

    async def _download_to(
        self,
        src: str,
        target: str | Writable,
        options: DownloadOptions,
        checkpoint: CheckpointArg,
        on_event: EventHook | None,
    ) -> DownloadResult:
        """``download`` once the destination is settled: a file path (written under that very
        name) or a stream."""
        engine = self._require_engine()
        restart = engine.config.restart_on_change and not _is_stream(target)
        if scheme_of(src) in ("http", "https"):
            options = _with_checkpoint(options, checkpoint, src, target)
            with _events.reporting(on_event, redact(src), "download"):
                return await _restarting(
                    lambda: UrlDownload(engine, engine.http, src, target, options).run(), restart
                )
        address = _s3_address(src, "download source")
        options = _with_checkpoint(options, checkpoint, str(address), target)
        with _events.reporting(on_event, str(address), "download"):
            return await _restarting(lambda: engine.download(address, target, options), restart)

    # ------------------------------------------------------------------- many files

    async def copy_tree(
        self,
        src: StrPath,
        dest: StrPath,
        *,
        filters: Sequence[tuple[str, str]] = (),
        fail_fast: bool = False,
        checkpoint: bool = False,
        on_event: EventHook | None = None,
    ) -> BatchResult:
        """Copy a directory tree to ``s3://bucket/prefix/``, or the keys under a prefix to a
        directory, as ``aws s3 cp --recursive`` does: ``DIR/a/b.txt`` <-> ``prefix/a/b.txt``.

        ``filters``: ``("include" | "exclude", glob)`` pairs over the path relative to the tree
        (``*`` crosses ``/``); every file is copied unless a filter matches it, and the last
        matching filter decides. The listing is streamed page by page, and every file shares
        the session's limits. A file that fails is recorded in the result's ``failures`` and
        the rest go on (``fail_fast``: the first failure stops the batch). ``checkpoint``:
        each multipart file records its progress for resume (see :meth:`upload`).
        ``on_event`` gets the events of every file (each names its file's URL).
        """
        src_tree, dest_tree = Tree.parse(src, "source"), Tree.parse(dest, "destination")
        engine = self._require_engine()
        work = tree_work(engine, src_tree, dest_tree, _filters(filters))
        return await self._run_batch(work, fail_fast, checkpoint, on_event)

    async def sync(
        self,
        src: StrPath,
        dest: StrPath,
        *,
        filters: Sequence[tuple[str, str]] = (),
        delete: bool = False,
        fail_fast: bool = False,
        checkpoint: bool = False,
        on_event: EventHook | None = None,
    ) -> BatchResult:
        """Like :meth:`copy_tree`, but only the files that are missing at ``dest`` or differ:
        another size; or the same size and, where the object's ETag is an MD5 of the bytes
        (or of parts of the size this session would use), another MD5; else, as the AWS CLI,
        a source newer than the destination. Downloaded files take the object's LastModified
        as their mtime. ``delete``: also remove destination files (among those the filters
        select) that the source does not have. Both sides are walked in key order side by
        side, so neither listing is held in memory."""
        src_tree, dest_tree = Tree.parse(src, "source"), Tree.parse(dest, "destination")
        engine = self._require_engine()
        batch = Batch(engine, fail_fast=fail_fast)
        work = sync_work(
            engine, src_tree, dest_tree, _filters(filters), delete=delete, skipped=batch.skipped
        )
        with _one_error():
            return await batch.run(work, self._copier(batch, checkpoint, on_event))

    async def copy_many(
        self,
        jobs: Pairs,
        *,
        fail_fast: bool = False,
        checkpoint: bool = False,
        on_event: EventHook | None = None,
    ) -> BatchResult:
        """Copy each ``(src, dest)`` pair: a local file to ``s3://bucket/key``, or
        ``s3://bucket/key`` or an ``http(s)://`` URL to a local file (its directory is created).
        ``jobs`` is read as the batch goes (a generator of millions is fine). Failures as in
        :meth:`copy_tree`."""
        return await self._run_batch(pairs_work(jobs), fail_fast, checkpoint, on_event)

    async def copy_list(
        self,
        list_file: StrPath,
        dest: StrPath,
        *,
        fail_fast: bool = False,
        checkpoint: bool = False,
        on_event: EventHook | None = None,
    ) -> BatchResult:
        """Download every URL of a list file into the directory ``dest``. One ``URL [NAME]``
        per line (http(s):// or s3://; blank lines and ``#`` comments skipped): the file is
        ``dest/NAME``, by default the URL's last path component. A line that is not valid, or
        that names a file an earlier line already writes, is a failure of its own."""
        work = list_work(os.fspath(list_file), _local_path(dest, "destination directory"))
        return await self._run_batch(work, fail_fast, checkpoint, on_event)

    async def tree_jobs(
        self, src: StrPath, dest: StrPath, *, filters: Sequence[tuple[str, str]] = ()
    ) -> AsyncGenerator[tuple[str, str], None]:
        """The ``(src, dest)`` pairs :meth:`copy_tree` would copy, as the walk or listing
        finds them: a manifest to split (see ``asynctransfer.dask``) or to inspect. Files that
        copy_tree would report as failures (a key that would lead out of the destination, a
        name that cannot be a key) are left out, with a warning logged."""
        src_tree, dest_tree = Tree.parse(src, "source"), Tree.parse(dest, "destination")
        async for job in tree_work(self._require_engine(), src_tree, dest_tree, _filters(filters)):
            if job.problem is not None:
                # (a key that would lead out of the destination directory, a name that cannot
                # be a key): never handed out as a pair to copy.
                logger.warning("%s: left out: %s", job.src, job.problem)
                continue
            yield job.src, job.dest

    async def _run_batch(
        self,
        work: AsyncIterator[Job],
        fail_fast: bool,
        checkpoint: bool,
        on_event: EventHook | None,
    ) -> BatchResult:
        batch = Batch(self._require_engine(), fail_fast=fail_fast)
        with _one_error():
            return await batch.run(work, self._copier(batch, checkpoint, on_event))

    def _copier(self, batch: Batch, checkpoint: bool, on_event: EventHook | None) -> Copier:
        engine = self._require_engine()

        async def copy(job: Job) -> int:
            if scheme_of(job.src) is None:
                address = _s3_address(job.dest, "upload destination")
                path = _local_path(job.src, "upload source")
                file = resolve(checkpoint, "upload", os.path.abspath(path), str(address))  # noqa: ASYNC240
                with _events.reporting(on_event, str(address), "upload"), _one_error():
                    up = await engine.upload(path, address, file, size_hint=job.size)
                return up.size
            path = _local_path(job.dest, "download destination")
            small = (
                scheme_of(job.src) == "s3"
                and job.size is not None
                and job.etag
                and job.size <= engine.single_request_limit()
            )
            if small:
                assert job.size is not None and job.etag is not None
                address = _s3_address(job.src, "download source")
                with _events.reporting(on_event, str(address), "download"), _one_error():
                    got = await download_small(
                        engine,
                        address,
                        path,
                        size=job.size,
                        etag=job.etag,
                        mtime=job.mtime,
                        unsynced=batch.unsynced,
                    )
                if got is not None:
                    return got.size
            await anyio.to_thread.run_sync(_make_parent, path)
            down = await self._download_to(job.src, path, DownloadOptions(), checkpoint, on_event)
            if job.mtime is not None:
                await anyio.to_thread.run_sync(_set_mtime, path, job.mtime)
            return down.size

        return copy

    async def open_read(
        self,
        src: str,
        *,
        headers: Mapping[str, str] | None = None,
        expected_sha256: str | None = None,
        expected_xxh3: str | None = None,
        on_event: EventHook | None = None,
    ) -> AsyncIterator[bytes]:
        """The bytes of ``src`` (``s3://bucket/key`` or an ``http(s)://`` URL) in order, as an
        async iterator of chunks: ``async for chunk in t.open_read(url)``. Parallel ranges run
        behind it within the memory budget, pinned to one version; a slow consumer slows the
        download down. The expected digests are checked at the end (an IntegrityError then
        comes after the bytes). Leaving the loop early cancels the download."""
        tasks = self._require_tasks()
        send, receive = anyio.create_memory_object_stream[bytes](max_buffer_size=2)
        writer = _ChannelWriter(send)
        failure: list[Exception] = []

        async def produce() -> None:
            async with send:
                try:
                    await self.download(
                        src,
                        writer,
                        headers=headers,
                        expected_sha256=expected_sha256,
                        expected_xxh3=expected_xxh3,
                        on_event=on_event,
                    )
                except _ReaderGone:
                    pass
                except Exception as exc:  # noqa: BLE001  (raised to the consumer below)
                    failure.append(exc)

        # The download runs in the session's task group, not in a task group of this
        # generator: a generator left early is closed later, from another task, where a
        # cancel scope of its own would break. Closing the channel is what stops the download.
        tasks.start_soon(produce)
        async with receive:
            async for chunk in receive:
                yield chunk
        if failure:
            raise failure[0]

    async def list_uploads(self, url: str, *, older_than: float | None = None) -> list[UploadInfo]:
        """The open multipart uploads under ``url`` (``s3://bucket`` or ``s3://bucket/prefix``),
        optionally only those started more than ``older_than`` seconds ago. Each says whether
        an upload checkpoint names it (a later run can resume it)."""
        engine = self._require_engine()
        with _one_error():
            return await list_uploads(engine, url, older_than)

    async def abort_uploads(
        self,
        url: str,
        *,
        older_than: float | None = None,
        key: str | None = None,
        upload_id: str | None = None,
    ) -> list[UploadInfo]:
        """Abort the open multipart uploads under ``url`` matching every filter given (with
        none, all of them), each confirmed gone; their checkpoints are removed. Returns those
        aborted; if any abort fails, one error names each failure."""
        engine = self._require_engine()
        with _one_error():
            return await abort_uploads(
                engine, url, older_than=older_than, key=key, upload_id=upload_id
            )

    def statistics(self) -> EngineStatistics:
        """A snapshot of in-flight requests, buffer memory and bytes moved."""
        return self._require_engine().statistics()

    def __repr__(self) -> str:
        return f"<Transferer {self._state.name}>"


async def upload(
    src: StrPath | ByteSource,
    dest: str,
    *,
    config: TransferConfig | None = None,
    checkpoint: CheckpointArg = None,
    restart: bool = True,
    overwrite: bool = True,
    on_event: EventHook | None = None,
) -> UploadResult:
    """Upload the local file ``src`` to ``dest`` (``s3://bucket/key``) in a one-off session.

    Multipart in parallel above ``config.part_size``. Without ``checkpoint`` the multipart
    upload is aborted on any failure or cancellation; with one it is kept for the next call to
    resume. See :meth:`Transferer.upload`.
    """
    async with Transferer(config) as transferer:
        return await transferer.upload(
            src,
            dest,
            checkpoint=checkpoint,
            restart=restart,
            overwrite=overwrite,
            on_event=on_event,
        )


async def download(
    src: str,
    dest: StrPath | Writable,
    *,
    config: TransferConfig | None = None,
    headers: Mapping[str, str] | None = None,
    expected_sha256: str | None = None,
    expected_xxh3: str | None = None,
    checkpoint: CheckpointArg = None,
    on_event: EventHook | None = None,
) -> DownloadResult:
    """Download ``src`` (``s3://bucket/key`` or an ``http(s)://`` URL) to ``dest`` (a path or
    a binary stream) in a one-off session, in parallel ranges pinned to one version. See
    :meth:`Transferer.download`."""
    async with Transferer(config) as transferer:
        return await transferer.download(
            src,
            dest,
            headers=headers,
            expected_sha256=expected_sha256,
            expected_xxh3=expected_xxh3,
            checkpoint=checkpoint,
            on_event=on_event,
        )
