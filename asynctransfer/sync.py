"""Blocking twins of the async verbs, for scripts, threads and notebooks.

    from asynctransfer import sync
    sync.upload("big.bin", "s3://bucket/big.bin")
    with sync.Transferer(config) as t:
        t.download("s3://bucket/big.bin", "copy.bin")

Every verb has the async one's name, signature and documentation. The work runs on an event
loop in a background thread (one, shared, started on first use and stopped when the last user
is done: anyio's ``BlockingPortalProvider``), so a call works the same from a plain script, from
any thread, and from a thread whose own loop is running, such as a Jupyter cell, where
``asyncio.run`` fails with "Cannot run the event loop while another loop is running" and no
``nest_asyncio`` is needed. Ctrl-C (KeyboardInterrupt) cancels the transfer and waits for its
cleanup (the multipart upload aborted, or kept with its checkpoint) before it propagates.
"""

from __future__ import annotations

import functools
import queue
import threading
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar

from anyio.from_thread import BlockingPortal, BlockingPortalProvider

from . import _api

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Generator, Iterator, Mapping, Sequence
    from contextlib import AbstractContextManager
    from types import TracebackType

    from ._api import StrPath
    from ._engine import EngineStatistics
    from ._events import EventHook
    from ._options import TransferConfig

__all__ = ["Transferer", "download", "upload"]

P = ParamSpec("P")
T = TypeVar("T")

# Seconds a cancelled transfer may take to clean up after Ctrl-C before the interrupt goes on:
# an abort is bounded by the engine at 30 s.
_CLEANUP_WAIT = 45.0


def _backend_options() -> dict[str, Any]:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return {}
    return {"use_uvloop": True}


_portals = BlockingPortalProvider(backend="asyncio", backend_options=_backend_options())


def _run(
    portal: BlockingPortal, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
) -> T:
    """``fn(*args, **kwargs)`` on the portal's loop; blocks until it is done. On Ctrl-C the
    task is cancelled, and this returns (raising KeyboardInterrupt) only once it has cleaned
    up."""
    finished = threading.Event()

    async def task() -> T:
        try:
            return await fn(*args, **kwargs)
        finally:
            finished.set()

    future = portal.start_task_soon(task)
    try:
        return future.result()
    except KeyboardInterrupt:
        future.cancel()
        finished.wait(_CLEANUP_WAIT)
        raise


def _blocking(fn: Callable[P, Awaitable[T]]) -> Callable[P, T]:
    @functools.wraps(fn)
    def verb(*args: P.args, **kwargs: P.kwargs) -> T:
        with _portals as portal:
            return _run(portal, fn, *args, **kwargs)

    return verb


def _blocking_method(
    method: Callable[Concatenate[_api.Transferer, P], Awaitable[T]],
) -> Callable[Concatenate[Transferer, P], T]:
    def verb(self: Transferer, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return _run(self._open_portal(), method, self._session, *args, **kwargs)

    functools.update_wrapper(verb, method)  # name, docs and (via __wrapped__) signature
    return verb


upload = _blocking(_api.upload)
download = _blocking(_api.download)


class _ReaderGone(Exception):
    """The consumer of ``open_read`` stopped reading."""


class Transferer:
    """The blocking twin of :class:`asynctransfer.Transferer`: ``with sync.Transferer(config)
    as t: t.upload(...)``. Its limits bound every transfer made through it, from any thread."""

    def __init__(self, config: TransferConfig | None = None) -> None:
        self._session = _api.Transferer(config)
        self._portal: BlockingPortal | None = None
        self._held: AbstractContextManager[_api.Transferer] | None = None

    @property
    def config(self) -> TransferConfig:
        return self._session.config

    def _open_portal(self) -> BlockingPortal:
        if self._portal is None:
            raise RuntimeError("use it inside `with sync.Transferer(...) as t:`")
        return self._portal

    def __enter__(self) -> Self:
        portal = _portals.__enter__()
        # One task holds the session open from enter to exit: its task group must be entered
        # and left by the same task.
        session = portal.wrap_async_context_manager(self._session)
        try:
            session.__enter__()
        except BaseException:
            _portals.__exit__(None, None, None)
            raise
        self._portal, self._held = portal, session
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._open_portal()
        session, self._portal, self._held = self._held, None, None
        try:
            if session is not None:
                session.__exit__(exc_type, exc, tb)
        finally:
            _portals.__exit__(None, None, None)

    upload = _blocking_method(_api.Transferer.upload)
    download = _blocking_method(_api.Transferer.download)
    list_uploads = _blocking_method(_api.Transferer.list_uploads)
    abort_uploads = _blocking_method(_api.Transferer.abort_uploads)
    copy_tree = _blocking_method(_api.Transferer.copy_tree)
    sync = _blocking_method(_api.Transferer.sync)
    copy_many = _blocking_method(_api.Transferer.copy_many)
    copy_list = _blocking_method(_api.Transferer.copy_list)

    def tree_jobs(
        self,
        src: StrPath,
        dest: StrPath,
        *,
        filters: Sequence[tuple[str, str]] = (),
    ) -> Generator[tuple[str, str], None, None]:
        """The ``(src, dest)`` pairs :meth:`copy_tree` would copy, as the walk or listing finds
        them; see :meth:`asynctransfer.Transferer.tree_jobs`."""
        portal = self._open_portal()
        pairs = self._session.tree_jobs(src, dest, filters=filters)
        try:
            while True:
                try:
                    yield _run(portal, pairs.__anext__)
                except StopAsyncIteration:
                    return
        finally:
            portal.call(pairs.aclose)

    def open_read(
        self,
        src: str,
        *,
        headers: Mapping[str, str] | None = None,
        expected_sha256: str | None = None,
        expected_xxh3: str | None = None,
        on_event: EventHook | None = None,
    ) -> Iterator[bytes]:
        """The bytes of ``src`` in order, as an iterator of chunks: ``for chunk in
        t.open_read(url)``; see :meth:`asynctransfer.Transferer.open_read`. Leaving the loop
        early cancels the download."""
        portal = self._open_portal()
        chunks: queue.Queue[bytes] = queue.Queue(maxsize=2)
        stop = threading.Event()

        class Writer:
            # Called in the engine's worker threads: blocking here is the backpressure.
            def write(self, data: memoryview, /) -> int:
                chunk = bytes(data)
                while not stop.is_set():
                    try:
                        chunks.put(chunk, timeout=0.1)
                        return len(data)
                    except queue.Full:
                        continue
                raise _ReaderGone

        future = portal.start_task_soon(
            functools.partial(
                self._session.download,
                src,
                Writer(),
                headers=headers,
                expected_sha256=expected_sha256,
                expected_xxh3=expected_xxh3,
                on_event=on_event,
            )
        )
        try:
            while True:
                try:
                    yield chunks.get(timeout=0.05)
                except queue.Empty:
                    if future.done() and chunks.empty():
                        future.result()  # the download's error, if it failed
                        return
        finally:
            if not future.done():
                stop.set()
                future.cancel()

    def statistics(self) -> EngineStatistics:
        """A snapshot of in-flight requests, buffer memory and bytes moved."""
        return self._open_portal().call(self._session.statistics)

    def __repr__(self) -> str:
        return f"<sync.Transferer {self._session!r}>"
