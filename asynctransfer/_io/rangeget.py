"""A minimal HTTP/1.1 client for ranged GETs that receives bodies straight into part buffers.

Why by hand: through aiohttp (and so aiobotocore), every received chunk becomes a new bytes
object, and the engine then copies it into the part buffer: two user-space copies and an
allocation per ~64-256 KiB, which made downloads cost more CPU than boto3's threads.

Why threads and blocking sockets, not the event loop: a body is received by one
``recv_into(buffer, n, MSG_WAITALL)`` into the part buffer, so the kernel copies a whole range
in place in one call with the GIL released, and the loop thread touches no byte of it. Through
an ``asyncio.BufferedProtocol`` the same bytes took one loop callback per ~64 KiB; the loop
thread saturated one core at ~1.45 GB/s from nginx, where worker threads reach 3-4 GB/s at a
third of the CPU (both cores receive at once; TLS is decrypted in parallel too). Only GET,
Content-Length bodies and keep-alive are needed; the S3 request is presigned by botocore (so
signing and credentials stay botocore's), and a response the client does not handle is
reported, never guessed at.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import struct
import urllib.parse
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import anyio

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
    Key: TypeAlias = tuple[str, str, int]

# Error documents are small; a larger non-2xx body is not read, the connection is dropped.
_MAX_ERROR_BODY = 64 * 1024
# The head is read in pieces of this size; what comes after it is the start of the body.
_HEAD_READ = 16 * 1024


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


class _StallError(OSError):
    """No byte arrived for the read timeout (the socket's SO_RCVTIMEO)."""


class _Connection:
    """One keep-alive connection, used by one worker thread at a time."""

    def __init__(self, key: Key) -> None:
        self.key = key
        self.sock: socket.socket | None = None
        self.reusable = False
        self.received = 0  # bytes of the current answer, head included
        self.filled = 0  # bytes of the current 2xx body in the caller's target
        self._interrupted = False

    def connect(self, timeout: float, read_timeout: float, context: ssl.SSLContext | None) -> None:
        _, host, port = self.key
        try:
            raw = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise TransferTimeoutError(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise NetworkError(f"cannot connect to {host}:{port}: {exc}") from exc
        # Blocking from here on, with the kernel's own receive timeout: a MSG_WAITALL read
        # then returns what came within the timeout, and fails only when nothing did.
        raw.settimeout(None)
        seconds = int(read_timeout)
        timeval = struct.pack("ll", seconds, int((read_timeout - seconds) * 1e6))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = raw
        if self._interrupted:
            self.interrupt()
        if context is not None:
            try:
                self.sock = context.wrap_socket(raw, server_hostname=host)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError) as exc:
                raw.close()
                raise TransferTimeoutError(f"TLS handshake with {host}:{port} timed out") from exc
            except (OSError, ssl.SSLError) as exc:
                raw.close()
                raise NetworkError(f"TLS handshake with {host}:{port} failed: {exc}") from exc

    def stale(self) -> bool:
        """Whether an idle connection has something to say: the server closed it, or sent
        bytes nobody asked for. Either way it cannot carry another request."""
        sock = self.sock
        if sock is None:
            return True
        if isinstance(sock, ssl.SSLSocket):
            # Undecrypted records (TLS 1.3 session tickets) may wait on the raw socket: only
            # decrypted leftovers say anything. A close is caught by the one retry.
            return sock.pending() > 0
        try:
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # a byte, or b"" for a close
        except BlockingIOError:
            return False
        except OSError:
            pass
        return True

    def interrupt(self) -> None:
        """From another thread: wake a blocked read or write, which then fails."""
        self._interrupted = True
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()

    def _recv_into(self, view: memoryview) -> int:
        assert self.sock is not None
        try:
            if isinstance(self.sock, ssl.SSLSocket):
                n = self.sock.recv_into(view, len(view))
            else:
                n = self.sock.recv_into(view, len(view), socket.MSG_WAITALL)
        except (BlockingIOError, ssl.SSLWantReadError) as exc:
            raise _StallError("stalled") from exc
        if n == 0:
            raise ConnectionResetError("the server closed the connection")
        self.received += n
        return n

    def _read_exactly(self, view: memoryview) -> None:
        done = 0
        while done < len(view):
            done += self._recv_into(view[done:])

    def exchange(
        self, request: bytes, target: memoryview, accept: Accept | None
    ) -> tuple[ResponseHead, bytes]:
        """Worker thread: send ``request``, receive the answer (see ``RangeClient.get_into``).
        Raises HeadError, _StallError, OSError, or what ``accept`` raises."""
        assert self.sock is not None
        self.reusable = False
        self.received = self.filled = 0
        try:
            self.sock.sendall(request)
        except (BlockingIOError, ssl.SSLWantWriteError) as exc:
            raise _StallError("stalled") from exc
        buf = bytearray(MAX_HEAD)
        head_view = memoryview(buf)
        got = 0
        end = -1
        while end < 0:
            if got >= MAX_HEAD:
                raise HeadError(f"response head larger than {MAX_HEAD} bytes")
            start = got
            assert self.sock is not None
            try:
                n = self.sock.recv_into(head_view[got : got + _HEAD_READ])
            except (BlockingIOError, ssl.SSLWantReadError) as exc:
                raise _StallError("stalled") from exc
            if n == 0:
                raise ConnectionResetError("the server closed the connection")
            self.received += n
            got += n
            end = find_head_end(buf, got, start)
        head = parse_response_head(bytes(buf[:end]))
        length = head.content_length
        extra = head_view[end:got]
        ok = 200 <= head.status < 300
        if ok and accept is not None:
            # Checked before any body byte lands in the target: a caller that keeps the bytes
            # of a broken body (to resume after them) must know they answer its question.
            accept(head)
        body: memoryview
        if ok and length is not None and length == len(target):
            body = target
        elif head.status in (204, 304) or length == 0:
            body = memoryview(b"")
        elif length is not None and length <= _MAX_ERROR_BODY:
            body = memoryview(bytearray(length))
        else:
            return head, b""  # not read: the connection is dropped
        if len(extra) > len(body):
            raise HeadError("the server sent more bytes than its Content-Length")
        body[: len(extra)] = extra
        if body is target:
            self.filled = len(extra)
            while self.filled < len(body):
                self.filled += self._recv_into(body[self.filled :])
        else:
            self._read_exactly(body[len(extra) :])
        self.reusable = head.keep_alive
        return head, b"" if body is target else bytes(body)


class RangeClient:
    """Keep-alive connections per origin; ``get_into`` receives a body into a given buffer,
    on a worker thread of the client's own pool."""

    def __init__(self, *, max_idle: int, connect_timeout: float, read_timeout: float) -> None:
        self._max_idle = max_idle
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: dict[Key, deque[_Connection]] = {}
        self._ssl: ssl.SSLContext | None = None
        # Its own threads: a range holds one for its whole body, and must not wait behind
        # (or starve) the short hashing and writing hops on anyio's default pool.
        self._threads = ThreadPoolExecutor(max_idle + 2, thread_name_prefix="asynctransfer-get")

    def _context(self, scheme: str, given: ssl.SSLContext | None) -> ssl.SSLContext | None:
        if scheme != "https":
            return None
        if given is not None:
            return given
        if self._ssl is None:
            # The same trust as botocore's requests: AWS_CA_BUNDLE when set (a private CA
            # for MinIO, Ceph...), else the system's.
            self._ssl = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
        return self._ssl

    def _take_idle(self, key: Key) -> _Connection | None:
        idle = self._idle.get(key)
        while idle:
            conn = idle.pop()
            if not conn.stale():
                return conn
            conn.close()
        return None

    def _give_back(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.key, deque())
        if len(idle) < self._max_idle:
            idle.append(conn)
        else:
            conn.close()

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
        raises is raised here (it runs on a worker thread). A NetworkError for a body broken
        after acceptance says in ``received`` how many bytes of it are in ``target``.
        ``ssl_context``: for https, instead of the default (AWS_CA_BUNDLE or the system's CAs).
        Cancellation interrupts the transfer and returns only once no thread writes into
        ``target`` any more.
        """
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        key = (scheme, host, port)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        authority = parts.netloc.rpartition("@")[2]  # never userinfo in Host
        request = request_head("GET", path, authority, [*headers, ("Accept-Encoding", "identity")])
        context = self._context(scheme, ssl_context)
        conn = self._take_idle(key)
        if conn is not None:
            try:
                return await self._run(conn, None, request, target, url, accept)
            except _StaleConnectionError:
                # The server closed the idle connection as we sent: no byte of an answer came,
                # so the request is safe to send again, once, on a new connection.
                pass
        try:
            return await self._run(_Connection(key), context, request, target, url, accept)
        except _StaleConnectionError as exc:
            raise NetworkError(f"{host}:{port}: connection broke: {exc}", url=url) from exc

    async def _run(
        self,
        conn: _Connection,
        context: ssl.SSLContext | None,
        request: bytes,
        target: memoryview,
        url: str,
        accept: Accept | None,
    ) -> tuple[ResponseHead, bytes]:
        loop = asyncio.get_running_loop()
        fresh = conn.sock is None

        def work() -> tuple[ResponseHead, bytes]:
            if fresh:
                conn.connect(self._connect_timeout, self._read_timeout, context)
            return self._exchange(conn, request, target, url, accept, fresh)

        future = loop.run_in_executor(self._threads, work)
        try:
            try:
                result = await asyncio.shield(future)
            except asyncio.CancelledError:
                # The thread may be writing into ``target``, which the caller is about to
                # give back: wake it, and wait for it to let go.
                conn.interrupt()
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({future})
                if not future.cancelled():
                    future.exception()  # retrieved: its error is the cancellation's doing
                raise
        except BaseException:
            conn.close()
            raise
        if conn.reusable:
            self._give_back(conn)
        else:
            conn.close()
        return result

    def _exchange(
        self,
        conn: _Connection,
        request: bytes,
        target: memoryview,
        url: str,
        accept: Accept | None,
        fresh: bool,
    ) -> tuple[ResponseHead, bytes]:
        host, port = conn.key[1], conn.key[2]
        try:
            return conn.exchange(request, target, accept)
        except HeadError as exc:
            raise ProtocolViolationError(f"{host}:{port}: {exc}", url=url) from exc
        except _StallError as exc:
            error: NetworkError = TransferTimeoutError(
                f"{url.split('?', 1)[0]}: no data for {self._read_timeout:g} s", url=url
            )
            error.received = conn.filled
            raise error from exc
        except OSError as exc:
            if conn.received == 0 and not fresh:
                raise _StaleConnectionError(str(exc)) from exc
            error = NetworkError(f"{host}:{port}: connection broke: {exc}", url=url)
            error.received = conn.filled
            raise error from exc

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        self._threads.shutdown(wait=False)
