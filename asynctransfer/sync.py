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
import threading
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Self, TypeVar

from anyio.from_thread import BlockingPortal, BlockingPortalProvider

from . import _api

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable
    from types import TracebackType

    from ._engine import EngineStatistics
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


class Transferer:
    """The blocking twin of :class:`asynctransfer.Transferer`: ``with sync.Transferer(config)
    as t: t.upload(...)``. Its limits bound every transfer made through it, from any thread."""

    def __init__(self, config: TransferConfig | None = None) -> None:
        self._session = _api.Transferer(config)
        self._portal: BlockingPortal | None = None

    @property
    def config(self) -> TransferConfig:
        return self._session.config

    def _open_portal(self) -> BlockingPortal:
        if self._portal is None:
            raise RuntimeError("use it inside `with sync.Transferer(...) as t:`")
        return self._portal

    def __enter__(self) -> Self:
        portal = _portals.__enter__()
        try:
            portal.call(self._session.__aenter__)
        except BaseException:
            _portals.__exit__(None, None, None)
            raise
        self._portal = portal
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        portal, self._portal = self._open_portal(), None
        try:
            portal.call(self._session.__aexit__, exc_type, exc, tb)
        finally:
            _portals.__exit__(None, None, None)

    upload = _blocking_method(_api.Transferer.upload)
    download = _blocking_method(_api.Transferer.download)
    list_uploads = _blocking_method(_api.Transferer.list_uploads)
    abort_uploads = _blocking_method(_api.Transferer.abort_uploads)

    def statistics(self) -> EngineStatistics:
        """A snapshot of in-flight requests, buffer memory and bytes moved."""
        return self._open_portal().call(self._session.statistics)

    def __repr__(self) -> str:
        return f"<sync.Transferer {self._session!r}>"
