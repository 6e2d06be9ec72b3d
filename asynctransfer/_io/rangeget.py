"""A minimal HTTP/1.1 client for ranged GETs that receives bodies straight into part buffers.

Why by hand: through aiohttp (and so aiobotocore), every received chunk becomes a new bytes
object, and the engine then copies it into the part buffer: two user-space copies and an
allocation per ~64-256 KiB, which made downloads cost more CPU than boto3's threads. Here an
``asyncio.BufferedProtocol`` hands the event loop a slice of the part buffer itself, so the
kernel copies the body into place and Python touches no byte of it. Only GET, Content-Length
bodies and keep-alive are needed; the S3 request is presigned by botocore (so signing and
credentials stay botocore's), and a response the client does not handle is reported, never
guessed at.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import urllib.parse
import urllib.request
from collections import deque
from typing import TYPE_CHECKING, cast

from .._core.http1 import (
    MAX_HEAD,
    HeadError,
    ResponseHead,
    find_head_end,
    parse_response_head,
    request_head,
)
from .._errors import NetworkError, ProtocolViolationError, TransferTimeoutError

if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeAlias

    Accept: TypeAlias = Callable[[ResponseHead], None]

# Error documents are small; a larger non-2xx body is not read, the connection is dropped.
_MAX_ERROR_BODY = 64 * 1024


def proxy_applies(url: str) -> bool:
    """Whether the environment routes ``url`` through a proxy (HTTP_PROXY, HTTPS_PROXY...).
    This client does not speak to proxies; the caller then takes the aiohttp path."""
    parts = urllib.parse.urlsplit(url)
    proxies = urllib.request.getproxies()
    if parts.scheme not in proxies:
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")


class _StaleConnectionError(ConnectionError):
    """The connection failed before any byte of the answer arrived."""


class _GetProtocol(asyncio.BufferedProtocol):
    """One connection; one response at a time, its body received into ``begin``'s target."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.progress = loop.time()
        self._head = bytearray(MAX_HEAD)
        self._sink = bytearray(4096)
        self._reset(None)

    def _reset(self, target: memoryview | None, accept: Accept | None = None) -> None:
        self._target = target
        self._accept = accept
        self.received = 0
        self._head_len = 0
        self.head: ResponseHead | None = None
        self._body: memoryview | None = None
        self._filled = 0
        self.overflow = False
        self._waiter: asyncio.Future[None] | None = None

    def begin(self, target: memoryview, accept: Accept | None = None) -> asyncio.Future[None]:
        """Expect a response whose 2xx body of ``len(target)`` bytes goes into ``target``, if
        ``accept`` (given the head) does not raise."""
        self._reset(target, accept)
        self._waiter = self._loop.create_future()
        return self._waiter

    @property
    def body(self) -> memoryview | None:
        return self._body

    @property
    def filled(self) -> int:
        """Bytes of the body received so far."""
        return self._filled

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports do not subclass asyncio's.
        self.transport = cast("asyncio.Transport", transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(exc or ConnectionResetError("the server closed the connection"))

    def eof_received(self) -> bool:
        return False  # close the transport; connection_lost reports it

    def get_buffer(self, sizehint: int) -> memoryview:
        if self.head is None and self._head_len < MAX_HEAD:
            return memoryview(self._head)[self._head_len :]
        if self._body is not None and self._filled < len(self._body):
            return self._body[self._filled :]
        return memoryview(self._sink)  # bytes past the body: caught in buffer_updated

    def buffer_updated(self, nbytes: int) -> None:
        self.progress = self._loop.time()
        self.received += nbytes
        if self._waiter is None or self._waiter.done():
            self.overflow = True  # data nobody asked for: this connection is not reusable
            return
        if self.head is not None:
            if self._body is None or self._filled >= len(self._body):
                self.overflow = True
                self._finish(HeadError("the server sent more bytes than its Content-Length"))
                return
            self._filled += nbytes
            self._check_done()
            return
        start, self._head_len = self._head_len, self._head_len + nbytes
        end = find_head_end(self._head, self._head_len, start)
        if end < 0:
            if self._head_len >= MAX_HEAD:
                self._finish(HeadError(f"response head larger than {MAX_HEAD} bytes"))
            return
        try:
            head = parse_response_head(bytes(self._head[:end]))
            length = head.content_length
        except HeadError as exc:
            self._finish(exc)
            return
        self.head = head
        if self._accept is not None and 200 <= head.status < 300:
            # Checked before any body byte lands in the target: a caller that keeps the bytes
            # of a broken body (to resume after them) must know they answer its question.
            try:
                self._accept(head)
            except Exception as exc:  # noqa: BLE001  (re-raised to the caller, whatever it is)
                self.overflow = True  # the body is not read: the connection is not reusable
                self._finish(exc)
                return
        if 200 <= head.status < 300 and self._target is not None and length == len(self._target):
            self._body = self._target
        elif head.status in (204, 304) or length == 0:
            self._body = memoryview(bytearray(0))
        elif length is not None and length <= _MAX_ERROR_BODY:
            self._body = memoryview(bytearray(length))
        else:
            self._body = None  # not read: the caller drops the connection
        extra = self._head_len - end
        if extra:
            if self._body is None:
                self.overflow = True
                self._finish(None)
                return
            if extra > len(self._body):
                self.overflow = True
                self._finish(HeadError("the server sent more bytes than its Content-Length"))
                return
            self._body[:extra] = self._head[end : self._head_len]
            self._filled = extra
        self._check_done()

    def abandon(self) -> None:
        """Drop the connection mid-response: nobody will wait for this answer any more."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()  # so connection_lost does not leave an unretrieved error
        if self.transport is not None:
            self.transport.abort()

    def _check_done(self) -> None:
        if self._body is None or self._filled == len(self._body):
            self._finish(None)

    def _finish(self, exc: BaseException | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)


class RangeClient:
    """Keep-alive connections per origin; ``get_into`` receives a body into a given buffer."""

    def __init__(self, *, max_idle: int, connect_timeout: float, read_timeout: float) -> None:
        self._max_idle = max_idle
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: dict[tuple[str, str, int], deque[_GetProtocol]] = {}
        self._ssl: ssl.SSLContext | None = None

    async def _connect(
        self, scheme: str, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> _GetProtocol:
        loop = asyncio.get_running_loop()
        if scheme != "https":
            ssl_context = None
        elif ssl_context is None:
            if self._ssl is None:
                # The same trust as botocore's requests: AWS_CA_BUNDLE when set (a private CA
                # for MinIO, Ceph...), else the system's.
                self._ssl = ssl.create_default_context(
                    cafile=os.environ.get("AWS_CA_BUNDLE") or None
                )
            ssl_context = self._ssl
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _GetProtocol(loop), host, port, ssl=ssl_context),
                self._connect_timeout,
            )
        except TimeoutError as exc:
            raise TransferTimeoutError(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise NetworkError(f"cannot connect to {host}:{port}: {exc}") from exc
        return protocol

    def _take_idle(self, key: tuple[str, str, int]) -> _GetProtocol | None:
        idle = self._idle.get(key)
        while idle:
            protocol = idle.pop()
            if not protocol.closed and not protocol.overflow:
                return protocol
            if protocol.transport is not None:
                protocol.transport.abort()
        return None

    def _give_back(self, key: tuple[str, str, int], protocol: _GetProtocol) -> None:
        idle = self._idle.setdefault(key, deque())
        if len(idle) < self._max_idle and not protocol.closed:
            idle.append(protocol)
        elif protocol.transport is not None:
            protocol.transport.close()

    async def get_into(
        self,
        url: str,
        headers: list[tuple[str, str]],
        target: memoryview,
        *,
        accept: Accept | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> tuple[ResponseHead, bytes]:
        """GET ``url``. A 2xx body of exactly ``len(target)`` bytes is received into
        ``target`` and ``b""`` returned; any other answer returns its (small) body.

        ``accept`` sees a 2xx head before its body is taken and raises to refuse it; what it
        raises is raised here. A NetworkError for a body broken after acceptance says in
        ``received`` how many bytes of it are in ``target``. ``ssl_context``: for https, instead
        of the default (AWS_CA_BUNDLE or the system's CAs).
        """
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = parts.netloc.rpartition("@")[2]  # never userinfo in Host
        request = request_head("GET", path, authority, [*headers, ("Accept-Encoding", "identity")])
        protocol = self._take_idle(key)
        if protocol is not None:
            try:
                return await self._exchange(protocol, key, request, target, url, accept)
            except _StaleConnectionError:
                # The server closed the idle connection as we sent: no byte of an answer came,
                # so the request is safe to send again, once, on a new connection.
                pass
        protocol = await self._connect(scheme, host, port, ssl_context)
        try:
            return await self._exchange(protocol, key, request, target, url, accept)
        except _StaleConnectionError as exc:
            raise NetworkError(f"{host}:{port}: connection broke: {exc}", url=url) from exc

    async def _exchange(
        self,
        protocol: _GetProtocol,
        key: tuple[str, str, int],
        request: bytes,
        target: memoryview,
        url: str,
        accept: Accept | None,
    ) -> tuple[ResponseHead, bytes]:
        host, port = key[1], key[2]
        reusable = False
        try:
            waiter = protocol.begin(target, accept)
            assert protocol.transport is not None
            protocol.transport.write(request)
            await self._wait(waiter, protocol, url)
            head = protocol.head
            assert head is not None
            body = protocol.body
            reusable = (
                head.keep_alive
                and body is not None
                and not protocol.overflow
                and not protocol.closed
            )
            if body is None:
                return head, b""
            return head, b"" if body is target else bytes(body)
        except HeadError as exc:
            raise ProtocolViolationError(f"{host}:{port}: {exc}", url=url) from exc
        except ConnectionError as exc:
            if protocol.head is None and protocol.received == 0:
                raise _StaleConnectionError(str(exc)) from exc
            error = NetworkError(f"{host}:{port}: connection broke: {exc}", url=url)
            error.received = protocol.filled if protocol.body is target else 0
            raise error from exc
        except NetworkError as exc:  # a stall
            exc.received = protocol.filled if protocol.body is target else 0
            raise
        finally:
            if reusable:
                self._give_back(key, protocol)
            else:
                protocol.abandon()

    async def _wait(self, waiter: asyncio.Future[None], protocol: _GetProtocol, url: str) -> None:
        # A stall, not a slow body, is the failure: wake once per read_timeout and look at
        # the time of the last bytes, instead of arming a timer per received chunk.
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.wait({waiter}, timeout=self._read_timeout)
            if waiter.done():
                waiter.result()
                return
            if loop.time() - protocol.progress >= self._read_timeout:
                raise TransferTimeoutError(
                    f"{url.split('?', 1)[0]}: no data for {self._read_timeout:g} s", url=url
                )

    def close(self) -> None:
        for idle in self._idle.values():
            for protocol in idle:
                if protocol.transport is not None:
                    protocol.transport.close()
        self._idle.clear()
