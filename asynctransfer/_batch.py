"""Many files in one Transferer: directory trees, ``sync``, lists of URLs.

Theory of operation
-------------------
A producer turns a source (a directory walk, a paginated listing, a list file; for ``sync``
both sides walked side by side, see ``_core/tree.py`` for why their orders agree) into work
items and sends them down a bounded channel; a fixed set of worker tasks takes them one at a
time. So nothing holds the whole listing: memory is the channel, the workers' files in flight
and their part buffers, which the Transferer's shared budget bounds, however many keys there
are. Every file runs under the same limits as any other transfer of the session (in-flight
requests, memory, bytes/s, requests/s), so a huge file's parts and thousands of small files
share them side by side, FIFO.

A file that fails is recorded (its source, destination and error) and the rest go on; with
``fail_fast`` the first failure cancels the batch, whose transfers then clean up as any
cancelled transfer does. Errors that concern the batch as a whole (the source directory or
bucket does not exist) are raised.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.parse
from collections.abc import AsyncIterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, TypeAlias

import anyio
import anyio.to_thread

from ._core.tree import (
    Entry,
    Filters,
    UnsafeNameError,
    comparable_etag,
    decide,
    etag_of,
    is_folder_marker,
    key_order,
    key_prefix,
    relative_name,
    same_etag,
    walk_order,
)
from ._core.urls import scheme_of
from ._errors import InvalidRequestError, LocalFileError, NotFoundError, TransferError
from ._io import local
from ._orphans import parse_location
from ._results import BatchResult, FileFailure

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Iterable

    from ._engine import Engine

_DELETE_BATCH = 1000  # keys per DeleteObjects request, S3's maximum
_MD5_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Job:
    """One file to copy. The hints come from the walk or listing that found it."""

    src: str
    dest: str
    size: int | None = None
    etag: str | None = None
    """The object's ETag as listed: pins the version a small download gets."""
    mtime: float | None = None
    """The object's LastModified, given to the downloaded file (downloads only)."""
    compare: bool = False
    """``sync``: same size, comparable ETag: copy only if the local file's MD5s differ."""
    problem: str | None = None
    """Why this file cannot be copied (an unsafe key, an undecodable name): a failure."""


@dataclass(frozen=True)
class Deletion:
    """Destination files the source does not have (``sync --delete``): s3:// URLs of one
    bucket, or local paths."""

    targets: tuple[str, ...]


Work = Job | Deletion
StrPath: TypeAlias = "str | os.PathLike[str]"
Pairs: TypeAlias = "Iterable[tuple[StrPath, StrPath]] | AsyncIterable[tuple[StrPath, StrPath]]"


# ---------------------------------------------------------------------- the two kinds of tree


@dataclass(frozen=True)
class Tree:
    """A directory, or the keys under ``s3://bucket/prefix/``."""

    directory: str | None = None
    bucket: str = ""
    prefix: str = ""

    @classmethod
    def parse(cls, location: str | os.PathLike[str], role: str) -> Tree:
        text = os.fspath(location)
        scheme = scheme_of(text)
        if scheme is None:
            return cls(directory=text)
        if scheme != "s3":
            raise InvalidRequestError(
                f"{role} {text!r}: a tree is a local directory or s3://bucket/prefix/",
                url=text,
            )
        bucket, prefix = parse_location(text)
        return cls(bucket=bucket, prefix=key_prefix(prefix))

    @property
    def is_local(self) -> bool:
        return self.directory is not None

    def __str__(self) -> str:
        return self.directory if self.directory is not None else f"s3://{self.bucket}/{self.prefix}"

    def address(self, relative: str) -> str:
        if self.directory is not None:
            return os.path.join(self.directory, *relative.split("/"))
        return f"s3://{self.bucket}/{self.prefix}{relative}"

    async def entries(
        self, engine: Engine, *, missing_ok: bool = False
    ) -> AsyncIterator[tuple[str, Entry | str]]:
        """(relative name, entry) in key order; the entry is a string when the file cannot
        be copied (it says why). ``missing_ok``: a directory that does not exist is empty."""
        if self.directory is not None:
            async for item in _walk(self.directory, missing_ok):
                yield item
        else:
            async for item in _listing(engine, self.bucket, self.prefix):
                yield item


def _scan(directory: str) -> list[tuple[str, bool, int, float]]:
    """Worker thread: one directory's entries, sorted in key order (see ``walk_order``).
    Symlinks to files are followed; directories are entered only when real (no cycles);
    sockets, FIFOs and devices are skipped."""
    found = []
    with os.scandir(directory) as it:
        for entry in it:
            try:
                if entry.is_dir(follow_symlinks=False):
                    found.append((entry.name, True, 0, 0.0))
                elif entry.is_file(follow_symlinks=True):
                    st = entry.stat(follow_symlinks=True)
                    found.append((entry.name, False, st.st_size, st.st_mtime))
            except FileNotFoundError:
                continue  # gone since the directory was read
    found.sort(key=lambda e: walk_order(e[0], e[1]))
    return found


async def _walk(root: str, missing_ok: bool) -> AsyncIterator[tuple[str, Entry | str]]:
    with local.map_os_errors(root, "read the directory"):
        if missing_ok and not await anyio.to_thread.run_sync(os.path.lexists, root):
            return
        if not await anyio.to_thread.run_sync(os.path.isdir, root):
            raise LocalFileError(f"{root}: not a directory", url=root)
        first = await anyio.to_thread.run_sync(_scan, root)
    stack = [("", iter(first))]
    while stack:
        base, entries = stack[-1]
        item = next(entries, None)
        if item is None:
            stack.pop()
            continue
        name, is_dir, size, mtime = item
        relative = base + name
        try:
            relative.encode("utf-8")
        except UnicodeEncodeError:
            yield relative, "the file name is not valid UTF-8, so it cannot be an S3 key"
            continue
        if not is_dir:
            yield relative, Entry(size, mtime)
            continue
        path = os.path.join(root, relative)
        try:
            with local.map_os_errors(path, "read the directory"):
                found = await anyio.to_thread.run_sync(_scan, path)
        except LocalFileError as exc:
            yield relative, str(exc)  # that directory fails; the rest of the tree goes on
            continue
        stack.append((relative + "/", iter(found)))


async def _listing(
    engine: Engine, bucket: str, prefix: str
) -> AsyncIterator[tuple[str, Entry | str]]:
    url = f"s3://{bucket}/{prefix}"
    token: str | None = None
    while True:
        page, token = await engine.retrying(
            url,
            lambda token=token: engine.s3.list_objects_page(bucket, prefix, token, url),  # type: ignore[misc]
        )
        for listed in page:
            if is_folder_marker(listed.key, listed.size):
                continue
            try:
                relative = relative_name(listed.key, prefix)
            except UnsafeNameError as exc:
                yield listed.key[len(prefix) :], str(exc)
                continue
            yield relative, Entry(listed.size, listed.last_modified, listed.etag)
        if token is None:
            return


def _check_pair(src: Tree, dest: Tree) -> None:
    if src.is_local == dest.is_local:
        raise InvalidRequestError(
            f"{src} -> {dest}: one side must be a local directory and the other "
            "s3://bucket/prefix/",
            url=str(src),
        )


def _job(src: Tree, dest: Tree, relative: str, entry: Entry | str, compare: bool = False) -> Job:
    if isinstance(entry, str):
        return Job(src.address(relative), dest.address(relative), problem=entry)
    return Job(
        src.address(relative),
        dest.address(relative),
        size=entry.size,
        etag=entry.etag,
        mtime=entry.mtime if not src.is_local else None,
        compare=compare,
    )


async def tree_work(engine: Engine, src: Tree, dest: Tree, filters: Filters) -> AsyncIterator[Job]:
    """Every file of ``src`` that the filters select, as a copy to ``dest``."""
    _check_pair(src, dest)
    async for relative, entry in src.entries(engine):
        if filters.selects(relative):
            yield _job(src, dest, relative, entry)


async def _merged(
    left: AsyncIterator[tuple[str, Entry | str]], right: AsyncIterator[tuple[str, Entry | str]]
) -> AsyncIterator[tuple[str, Entry | str | None, Entry | str | None]]:
    """Two key-ordered streams joined on the name: (name, left entry, right entry)."""
    a = await anext(left, None)
    b = await anext(right, None)
    while a is not None or b is not None:
        if b is None or (a is not None and key_order(a[0]) < key_order(b[0])):
            assert a is not None
            yield a[0], a[1], None
            a = await anext(left, None)
        elif a is None or key_order(b[0]) < key_order(a[0]):
            yield b[0], None, b[1]
            b = await anext(right, None)
        else:
            yield a[0], a[1], b[1]
            a, b = await anext(left, None), await anext(right, None)


async def sync_work(
    engine: Engine,
    src: Tree,
    dest: Tree,
    filters: Filters,
    *,
    delete: bool,
    skipped: Callable[[], None],
) -> AsyncIterator[Work]:
    """What ``sync`` must do: copies of what is missing or differs, deletions of what only
    the destination has (``delete``); ``skipped`` is called for each file already there."""
    _check_pair(src, dest)
    direction: Literal["upload", "download"] = "upload" if src.is_local else "download"
    doomed: list[str] = []
    async for relative, theirs, ours in _merged(
        src.entries(engine), dest.entries(engine, missing_ok=True)
    ):
        if not filters.selects(relative):
            continue
        if theirs is None:
            if delete and not isinstance(ours, str):
                doomed.append(dest.address(relative))
                if len(doomed) == _DELETE_BATCH:
                    yield Deletion(tuple(doomed))
                    doomed = []
            continue
        if isinstance(theirs, str) or isinstance(ours, str):
            yield _job(src, dest, relative, theirs)
            continue
        size = theirs.size
        verdict = decide(theirs, ours, direction=direction, part_size=engine.md5_part_size(size))
        if verdict == "skip":
            skipped()
            continue
        job = _job(src, dest, relative, theirs, compare=verdict == "compare-md5")
        if direction == "upload" and ours is not None:
            job = Job(job.src, job.dest, size=size, etag=ours.etag, compare=job.compare)
        yield job
    if doomed:
        yield Deletion(tuple(doomed))


def _list_line(line: str, number: int, path: str, dest: str) -> tuple[str, str] | str:
    """One line of a list file: ``SRC [NAME]``; the (src, dest) pair, or why it is wrong."""
    src, _, name = line.partition(" ")
    src, name = src.strip(), name.strip()
    if scheme_of(src) not in ("http", "https", "s3"):
        return f"{path}:{number}: {src!r} is not an http(s):// or s3:// URL"
    if not name:
        name = urllib.parse.unquote(urllib.parse.urlsplit(src).path.rsplit("/", 1)[-1])
    parts = name.split("/")
    if any(p in ("", ".", "..") or "\0" in p for p in parts):
        return (
            f"{path}:{number}: cannot name a file {name!r} under {dest}; give a name after "
            "the URL on that line"
        )
    return src, os.path.join(dest, *parts)


async def list_work(list_path: str, dest: str) -> AsyncIterator[Job]:
    """The lines of a list file (``SRC [NAME]``; blank lines and ``#`` comments skipped) as
    downloads into the directory ``dest``: the file is NAME, or the URL's last component."""
    with local.map_os_errors(list_path, "read the list file"):
        lines = await anyio.to_thread.run_sync(_read_lines, list_path)
    seen: set[str] = set()
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parsed = _list_line(text, number, list_path, dest)
        if isinstance(parsed, str):
            yield Job(text.split()[0], dest, problem=parsed)
            continue
        src, target = parsed
        if target in seen:
            yield Job(
                src,
                target,
                problem=f"{list_path}:{number}: an earlier line writes {target} too; "
                "name the file after the URL",
            )
            continue
        seen.add(target)
        yield Job(src, target)


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.readlines()


async def pairs_work(jobs: Pairs) -> AsyncIterator[Job]:
    if isinstance(jobs, AsyncIterable):
        async for src, dest in jobs:
            yield Job(os.fspath(src), os.fspath(dest))
    else:
        for src, dest in jobs:
            yield Job(os.fspath(src), os.fspath(dest))


# -------------------------------------------------------------------------------- the runner


def local_etag(path: str, size: int, part_size: int) -> str:
    """Worker thread: the ETag S3 gives this file uploaded in ``part_size`` parts."""
    digests = []
    with local.map_os_errors(path, "read the file to compare it"), open(path, "rb") as f:
        remaining = size
        while True:
            md5 = hashlib.md5(usedforsecurity=False)
            left = min(part_size, remaining)
            while left:
                chunk = f.read(min(left, _MD5_CHUNK))
                if not chunk:
                    break
                md5.update(chunk)
                left -= len(chunk)
            digests.append(md5.digest())
            remaining -= min(part_size, remaining)
            if remaining <= 0:
                break
    return etag_of(digests)


class Copier(Protocol):
    """Copies one file (upload or download, chosen by the job's addresses); returns its size."""

    def __call__(self, job: Job, /) -> Awaitable[int]: ...


class Batch:
    """Runs work items with a fixed set of workers, counting what happened."""

    def __init__(self, engine: Engine, *, fail_fast: bool) -> None:
        self.engine = engine
        self._fail_fast = fail_fast
        self.result = BatchResult()
        self.unsynced: set[str] = set()
        """Directories that files were renamed into without a directory fsync: synced once
        each at the end."""

    def skipped(self) -> None:
        self.result.skipped += 1

    async def run(self, work: AsyncIterator[Work], copy: Copier) -> BatchResult:
        started = time.perf_counter()
        self._copy = copy
        # Files in flight: more than requests in flight, so that reading, hashing and writing
        # files overlap the requests of others.
        workers = max(4, 2 * self.engine.config.max_concurrency)
        send, receive = anyio.create_memory_object_stream[Work](workers)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for _ in range(workers):
                    tg.start_soon(self._worker, receive.clone())
                receive.close()
                async with send:
                    async for item in work:
                        await send.send(item)
            if self.unsynced:
                directories, self.unsynced = sorted(self.unsynced), set()
                await anyio.to_thread.run_sync(local.sync_directories, directories)
        finally:
            self.result.seconds = time.perf_counter() - started
        return self.result

    async def _worker(self, receive: anyio.abc.ObjectReceiveStream[Work]) -> None:
        async with receive:
            async for item in receive:
                if isinstance(item, Deletion):
                    await self._delete(item)
                    continue
                try:
                    await self._one(item)
                except TransferError as exc:
                    if isinstance(exc, NotFoundError) and exc.code == "NoSuchBucket":
                        raise  # every other file would fail the same way: the batch fails
                    self._failed(item.src, item.dest, str(exc), type(exc).__name__)

    def _failed(self, src: str, dest: str, error: str, kind: str) -> None:
        self.result.failures.append(FileFailure(src=src, dest=dest, error=error, error_type=kind))
        if self._fail_fast:
            self._tg.cancel_scope.cancel()

    async def _one(self, job: Job) -> None:
        if job.problem is not None:
            self._failed(job.src, job.dest, f"{job.src}: {job.problem}", "InvalidRequestError")
            return
        if job.compare and job.size is not None and job.etag is not None:
            path = job.src if scheme_of(job.src) is None else job.dest
            part_size = self.engine.md5_part_size(job.size)
            if comparable_etag(job.etag, job.size, part_size) is not None:
                ours = await anyio.to_thread.run_sync(local_etag, path, job.size, part_size)
                if same_etag(job.etag, ours):
                    self.result.skipped += 1
                    return
        size = await self._copy(job)
        self.result.files += 1
        self.result.bytes += size

    async def _delete(self, deletion: Deletion) -> None:
        first = deletion.targets[0]
        if scheme_of(first) is None:
            for path in deletion.targets:
                try:
                    with local.map_os_errors(path, "delete the file"):
                        await anyio.to_thread.run_sync(os.unlink, path)
                    self.result.deleted += 1
                except LocalFileError as exc:
                    self._failed("", path, str(exc), type(exc).__name__)
            return
        bucket, _ = parse_location(first)
        keys = [parse_location(t)[1] for t in deletion.targets]
        url = f"s3://{bucket}/"
        try:
            failed = await self.engine.retrying(
                url, lambda: self.engine.s3.delete_objects(bucket, keys, url)
            )
        except TransferError as exc:
            for target in deletion.targets:
                self._failed("", target, f"{target}: cannot delete: {exc}", type(exc).__name__)
            return
        for key, reason in failed.items():
            self._failed("", f"s3://{bucket}/{key}", f"cannot delete: {reason}", "RemoteError")
        self.result.deleted += len(keys) - len(failed)
