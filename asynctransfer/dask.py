"""Copy a manifest or a tree across a Dask distributed cluster (``pip install
'asynctransfer[dask]'``).

    from distributed import Client
    from asynctransfer import TransferConfig, dask

    client = Client("tcp://scheduler:8786")
    config = TransferConfig(max_concurrency=256, max_bytes_per_second=2_000_000_000)
    result = dask.copy_many(dask.read_manifest("jobs.tsv"), client=client, config=config)
    result = dask.copy_tree("data/", "s3://bucket/data/", client=client, config=config)

How it works. The jobs are read lazily on the calling process and cut into chunks of
``chunk_size`` (src, dest) pairs. Each chunk is one Dask task, in which a worker thread runs
the engine (``Transferer(share).copy_many(chunk)``) on an event loop of its own and returns a
``BatchResult``; the results are merged on the calling process as the chunks finish. For
``copy_tree`` the listing (a directory walk or paginated ListObjects) runs on the calling
process in a thread and feeds the chunks as it goes. At most ``parallel`` chunks exist at any
moment, the next one being read and submitted only when one finishes, so neither the manifest
nor the listing is ever held whole, and the scheduler never holds more than ``parallel`` tasks.

The limits are global. Every limit of ``config`` (``max_concurrency``, the memory budget,
``max_bytes_per_second``, ``max_requests_per_second``) bounds the whole cluster: each chunk
runs with ``1/parallel`` of each (:func:`share_config`), and since no more than ``parallel``
chunks are ever submitted at once, whatever the scheduler does with them (a worker joining, a
chunk moved), the sums never exceed the limits. (The rates hold over time; their bursts add
up: each chunk's buckets start with one part's bytes and a second's requests, at least one.)
``parallel`` defaults to the cluster's worker
threads, lowered so that every share stays valid (at least one request, one part of memory,
1 byte/s each): a 64-thread cluster with the default ``max_concurrency=10`` runs 10 chunks at
once, each with one request in flight. For throughput, raise the limits to what the cluster
and the store can take. Submitting exactly ``parallel`` chunks costs a round trip to the
scheduler between two chunks of a slot, which is small against a chunk of many files.

What stays per chunk: each chunk opens its own ``Transferer``, so connections, the retry budget
(``retry_budget``) and the SlowDown back-off (``adaptive_concurrency``) are those of the chunk,
not of the cluster, and opening it (the S3 client, a few tenths of a second) is paid once per
chunk: keep chunks large (the default ``chunk_size`` is 1,000 files). The listing of
``copy_tree`` runs outside the shares (one request per 1,000 keys).

Failures. A file that fails is a ``FileFailure`` in the result, as with
``Transferer.copy_many``, and the rest go on. With ``fail_fast=True`` no chunk is submitted
after the first failure, and the chunks running stop taking new files (each looks at a
``distributed.Event`` about once a second as it takes files): the files they had started or
queued (up to four times the share's ``max_concurrency``, at least eight) finish and are
counted, the others are not attempted.

A worker that dies mid-chunk: Dask runs the chunk again on another worker (up to
``distributed.scheduler.allowed-failures`` times, 3 by default), and the files the dead worker
had already copied are copied again (the same bytes under the same name: a copy is
idempotent). A multipart upload the dead worker had open stays open on the store, as after any
crash (``asynctransfer uploads list`` / ``abort`` find it). If the chunk still cannot run
(``KilledWorker``), every file of that chunk is reported as a ``FileFailure`` with that error,
since which of them reached the destination is not known. An error that fails a whole batch
in one process (a bucket that does not exist, a listing that fails) is raised here too, as is
any other error of a chunk's task (``asynctransfer`` missing on a worker), once the chunks
running have been told to stop.

Requirements. The workers need ``asynctransfer`` installed, the credentials (the standard AWS
chain on each worker: environment, shared config, instance role), and to reach the sources
and destinations: local paths are paths on the workers, so a local tree must be on a
filesystem they all mount. ``client`` must be a synchronous ``distributed.Client``, and the
cluster must have its workers when the call starts, unless ``parallel`` is given (an adaptive
cluster that starts empty: pass ``parallel``, or ``client.wait_for_workers(n)`` first).
"""

# distributed ships types, but many of its functions (Client.nthreads, Event.set...) have no
# annotations: calling them is allowed here, and everything defined here stays annotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import itertools
import logging
import os
import queue
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from ._api import Transferer
from ._batch import Tree, tree_work
from ._core.tree import Filters
from ._errors import TransferError
from ._options import TransferConfig
from ._results import BatchResult, FileFailure

try:
    import distributed
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "asynctransfer.dask needs Dask distributed: pip install 'asynctransfer[dask]'"
    ) from exc

if TYPE_CHECKING:
    from collections.abc import (
        AsyncIterator,
        Callable,
        Generator,
        Iterable,
        Iterator,
        Sequence,
    )

__all__ = ["copy_many", "copy_tree", "read_manifest", "share_config"]

logger = logging.getLogger("asynctransfer")

Job = tuple[str, str]

# Seconds between two looks of a running chunk at the stop event (one scheduler request each).
_STOP_POLL = 1.0
# Chunks the listing of copy_tree may have ready ahead of the cluster.
_LISTING_AHEAD = 2


def share_config(config: TransferConfig, parallel: int) -> TransferConfig:
    """``config`` with each global limit divided among ``parallel`` chunks running at once:
    ``max_concurrency`` and the memory budget (``max_memory``, or its default) floored,
    ``max_bytes_per_second`` floored, ``max_requests_per_second`` divided. The shares add up
    to at most the limits. Raises ValueError naming the limit that cannot be split so many
    ways (each share needs one request, one part of memory and 1 byte/s)."""
    if parallel < 1:
        raise ValueError(f"parallel must be at least 1, got {parallel}")
    concurrency = config.max_concurrency // parallel
    if concurrency < 1:
        raise ValueError(
            f"max_concurrency={config.max_concurrency} cannot be shared by {parallel} chunks "
            "running at once (each needs one request in flight): raise max_concurrency or "
            "lower parallel"
        )
    memory = config.memory_budget // parallel
    if memory < config.part_size:
        raise ValueError(
            f"the memory budget (max_memory) of {config.memory_budget} bytes cannot be shared "
            f"by {parallel} chunks running at once (each needs one part, part_size="
            f"{config.part_size}): raise max_memory or lower parallel or part_size"
        )
    bytes_per_second = None
    if config.max_bytes_per_second is not None:
        bytes_per_second = config.max_bytes_per_second // parallel
        if bytes_per_second < 1:
            raise ValueError(
                f"max_bytes_per_second={config.max_bytes_per_second} cannot be shared by "
                f"{parallel} chunks running at once"
            )
    requests_per_second = None
    if config.max_requests_per_second is not None:
        requests_per_second = config.max_requests_per_second / parallel
    return dataclasses.replace(
        config,
        max_concurrency=concurrency,
        max_memory=memory,
        max_bytes_per_second=bytes_per_second,
        max_requests_per_second=requests_per_second,
    )


def _default_parallel(config: TransferConfig, threads: int) -> int:
    """Chunks to run at once on ``threads`` worker threads: one per thread, but no more than
    the limits can be shared among (see :func:`share_config`)."""
    if threads < 1:
        raise RuntimeError(
            "the Dask cluster has no workers: start some (client.wait_for_workers(n)) or pass "
            "parallel="
        )
    bounds = [threads, config.max_concurrency, config.memory_budget // config.part_size]
    if config.max_bytes_per_second is not None:
        bounds.append(config.max_bytes_per_second)
    return min(bounds)


def read_manifest(path: str | os.PathLike[str]) -> Iterator[Job]:
    """The (src, dest) pairs of a manifest file, read lazily: one ``SRC<TAB>DEST`` per line,
    UTF-8, each side a local path, ``s3://bucket/key`` or (as a source) an http(s) URL. Empty
    lines and lines starting with ``#`` are skipped. A line without exactly one tab raises
    ValueError naming the file and the line, when the reading gets there."""
    with open(path, encoding="utf-8", newline="\n") as lines:
        for number, line in enumerate(lines, 1):
            text = line.removesuffix("\n").removesuffix("\r")
            if not text or text.startswith("#"):
                continue
            fields = text.split("\t")
            if len(fields) != 2 or not fields[0] or not fields[1]:
                raise ValueError(
                    f"{os.fspath(path)}:{number}: expected SRC<TAB>DEST, got {text[:200]!r}"
                )
            yield fields[0], fields[1]


def copy_many(
    jobs: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str]]],
    *,
    client: distributed.Client,
    config: TransferConfig | None = None,
    chunk_size: int = 1000,
    fail_fast: bool = False,
    parallel: int | None = None,
) -> BatchResult:
    """Copy each (src, dest) of ``jobs`` on the cluster of ``client``, as
    :meth:`asynctransfer.Transferer.copy_many` does in one process; returns the merged result.

    ``jobs`` is read lazily (a generator of millions is fine). The limits of ``config`` bound
    the whole cluster; ``parallel`` is how many chunks of ``chunk_size`` files run at once
    (default: the cluster's worker threads, as the limits allow). See the module's
    documentation for failures, ``fail_fast`` and workers that die."""
    config = config or TransferConfig()
    share, parallel = _plan(client, config, chunk_size, parallel)
    return _distribute(client, _chunks(jobs, chunk_size), share, parallel, fail_fast)


def copy_tree(
    src: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    client: distributed.Client,
    config: TransferConfig | None = None,
    filters: Sequence[tuple[str, str]] = (),
    chunk_size: int = 1000,
    fail_fast: bool = False,
    parallel: int | None = None,
) -> BatchResult:
    """Copy the tree ``src`` to ``dest`` (a local directory to ``s3://bucket/prefix``, or
    back) on the cluster of ``client``, as :meth:`asynctransfer.Transferer.copy_tree` does in
    one process. The listing runs here, streamed; the copies run on the workers, as
    :func:`copy_many` runs them."""
    config = config or TransferConfig()
    share, parallel = _plan(client, config, chunk_size, parallel)
    listing = _listed_chunks(config, os.fspath(src), os.fspath(dest), filters, chunk_size)
    with contextlib.closing(listing):
        return _distribute(client, listing, share, parallel, fail_fast)


def _plan(
    client: distributed.Client, config: TransferConfig, chunk_size: int, parallel: int | None
) -> tuple[TransferConfig, int]:
    """The share of the limits each chunk gets, and how many chunks run at once."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if parallel is None:
        parallel = _default_parallel(config, sum(client.nthreads().values()))
    return share_config(config, parallel), parallel


def _chunks(
    jobs: Iterable[tuple[str | os.PathLike[str], str | os.PathLike[str]]], size: int
) -> Iterator[list[Job]]:
    it = iter(jobs)
    while chunk := [(os.fspath(s), os.fspath(d)) for s, d in itertools.islice(it, size)]:
        yield chunk


def _distribute(
    client: distributed.Client,
    items: Iterator[list[Job] | BatchResult],
    share: TransferConfig,
    parallel: int,
    fail_fast: bool,
) -> BatchResult:
    """Run the chunks of ``items`` on the cluster, ``parallel`` at a time, and merge their
    results with the results among ``items`` (files refused here, without the cluster)."""
    started = time.monotonic()
    run = uuid.uuid4().hex[:12]
    stop = distributed.Event(f"asynctransfer-stop-{run}", client=client)
    running: dict[distributed.Future[BatchResult], list[Job]] = {}
    finished: distributed.as_completed = distributed.as_completed(loop=client.loop)
    total = BatchResult()
    stopping = False
    numbers = itertools.count()

    def record(result: BatchResult) -> None:
        nonlocal total, stopping
        total = total.merge(result)
        if fail_fast and not result.ok and not stopping:
            stopping = True
            stop.set()

    def submit_next() -> None:
        while not stopping and (item := next(items, None)) is not None:
            if isinstance(item, BatchResult):
                record(item)
                continue
            future: distributed.Future[BatchResult] = client.submit(
                _run_chunk,
                item,
                share,
                fail_fast,
                stop,
                key=f"asynctransfer-chunk-{run}-{next(numbers)}",
            )
            running[future] = item
            finished.add(future)
            return

    try:
        for _ in range(parallel):
            submit_next()
        for future in finished:
            record(_outcome(future, running.pop(future)))
            future.release()
            if not stopping:
                submit_next()
    finally:
        if running:  # an error here (the jobs' iterator, Ctrl-C): let the cluster stop too
            _cleanup(stop.set)
            _cleanup(client.cancel, list(running))
        if stopping or running:
            _cleanup(stop.clear)  # forgets the event on the scheduler
    total.seconds = time.monotonic() - started
    return total


def _cleanup(fn: Callable[..., object], *args: object) -> None:
    """Cleanup that must not hide the error being raised (the scheduler may be gone)."""
    try:
        fn(*args)
    except Exception:
        logger.debug("asynctransfer.dask: cleanup failed", exc_info=True)


def _outcome(future: distributed.Future[BatchResult], chunk: list[Job]) -> BatchResult:
    """The chunk's result. Its files are failures if it could not run to its end (a worker
    that died every time, a cancellation); an error of the chunk's ``copy_many`` itself (a
    bucket that does not exist) is raised, as ``Transferer.copy_many`` raises it."""
    try:
        result: BatchResult = future.result()
    except (distributed.KilledWorker, concurrent.futures.CancelledError) as exc:
        logger.warning("a chunk of %d files could not run on the cluster: %r", len(chunk), exc)
        error = f"its chunk could not run on the cluster: {exc or type(exc).__name__}"
        return BatchResult(
            failures=[
                FileFailure(src=src, dest=dest, error=error, error_type=type(exc).__name__)
                for src, dest in chunk
            ]
        )
    return result


def _loop_options(config: TransferConfig) -> dict[str, Any]:
    if config.use_uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            pass
        else:
            return {"use_uvloop": True}
    return {}


def _run_chunk(
    jobs: list[Job], config: TransferConfig, fail_fast: bool, stop: distributed.Event
) -> BatchResult:
    """The task: copy ``jobs`` with the engine, on an event loop in this worker thread."""
    # The Event finds the worker's client from the task's thread only: look it up here, before
    # the event loop's helper threads ask it.
    if stop.client is None:
        raise RuntimeError("asynctransfer.dask: the chunk is not running in a Dask worker")

    async def main() -> BatchResult:
        async with Transferer(config) as transferer:
            return await transferer.copy_many(_unless_stopped(jobs, stop), fail_fast=fail_fast)

    try:
        return anyio.run(main, backend="asyncio", backend_options=_loop_options(config))
    except TransferError as exc:
        # The error goes to the client pickled, and what caused it (a botocore exception, of
        # a class made at run time) may not pickle: its message already says the cause.
        exc.__cause__ = exc.__context__ = None
        raise


async def _unless_stopped(jobs: list[Job], stop: distributed.Event) -> AsyncIterator[Job]:
    """``jobs``, until ``stop`` is set (looked at about once a second as they are taken)."""
    looked = -_STOP_POLL
    for job in jobs:
        if time.monotonic() - looked >= _STOP_POLL:
            if await anyio.to_thread.run_sync(stop.is_set):
                logger.info("asynctransfer.dask: the call stopped; so does this chunk")
                return
            looked = time.monotonic()
        yield job


def _listed_chunks(
    config: TransferConfig,
    src: str,
    dest: str,
    filters: Sequence[tuple[str, str]],
    chunk_size: int,
) -> Generator[list[Job] | BatchResult, None, None]:
    """``Transferer.tree_jobs(src, dest)`` in chunks, listed by an event loop in a thread of
    its own, a bounded number of chunks ahead; the files that cannot be copied come as a
    ``BatchResult`` of failures. Closing the generator stops the listing."""
    ready: queue.Queue[list[Job] | BatchResult | BaseException | None] = queue.Queue(
        maxsize=_LISTING_AHEAD
    )
    closed = threading.Event()

    def put(item: list[Job] | BatchResult | BaseException | None) -> None:
        while not closed.is_set():
            try:
                ready.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    async def list_tree() -> None:
        async with Transferer(config) as transferer:
            chunk: list[Job] = []
            refused = BatchResult()
            # The batch module's own walk, not tree_jobs: the files copy_tree would report as
            # failures (unsafe keys, names no key can hold) come with their reason.
            work = tree_work(
                transferer._require_engine(),
                Tree.parse(src, "source"),
                Tree.parse(dest, "destination"),
                Filters(filters),
            )
            async for listed in work:
                if listed.problem is not None:
                    refused.failures.append(
                        FileFailure(
                            src=listed.src,
                            dest=listed.dest,
                            error=f"{listed.src}: {listed.problem}",
                            error_type="InvalidRequestError",
                        )
                    )
                    if len(refused.failures) == chunk_size:
                        await anyio.to_thread.run_sync(put, refused)
                        refused = BatchResult()
                    continue
                job = (listed.src, listed.dest)
                chunk.append(job)
                if len(chunk) == chunk_size:
                    if refused.failures:
                        await anyio.to_thread.run_sync(put, refused)
                        refused = BatchResult()
                    await anyio.to_thread.run_sync(put, chunk)
                    if closed.is_set():
                        return
                    chunk = []
            if refused.failures:
                await anyio.to_thread.run_sync(put, refused)
            if chunk:
                await anyio.to_thread.run_sync(put, chunk)

    def lister() -> None:
        try:
            anyio.run(list_tree, backend="asyncio", backend_options=_loop_options(config))
        except BaseException as exc:  # noqa: BLE001 (raised to the consumer, in its thread)
            put(exc)
        else:
            put(None)

    thread = threading.Thread(target=lister, name="asynctransfer-dask-listing", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        closed.set()
        thread.join()
