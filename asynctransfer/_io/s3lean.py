"""PutObject and GetObject of small objects, one request each, over our own connections.

Why by hand: many-file transfers are bound by the client's CPU per request, not by bytes.
Measured on this project's 2-core test machine (64 KiB objects, 32 at a time, uvloop, client
CPU per object against ``local_s3_process``): aiobotocore ~2.4 ms, aiohttp signed by hand
~0.5 ms, this client ~0.25 ms, and ~0.15 ms against a server that answers at once (from a slow
store each answer costs a loop wakeup of its own); so thousands of objects per second are
bound by the store. It signs with ``_core/sigv4.py`` and frames answers in an
``asyncio.Protocol``'s callbacks: one wakeup of the waiting task per request and no timeout
context per request (through StreamReader, a GET measured ~20% dearer).

It does only what small objects need: the whole body in memory, Content-Length or chunked
answers, keep-alive; what it does not handle is reported, never guessed at. It runs on the
event loop, not on threads like ``rangeget.py``: a small body arrives in one or two reads,
cheaper than a thread hop. No retries here: the engine's ``retrying`` classifies, counts and
retries every failure.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import ssl
import time
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from botocore import UNSIGNED

from .._core.http1 import MAX_HEAD, HeadError, ResponseHead, find_head_end, parse_response_head
from .._core.http1 import request_head as _request_head
from .._core.sigv4 import Signer, quote_key
from .._errors import (
    InvalidRequestError,
    NetworkError,
    ProtocolViolationError,
    TransferTimeoutError,
)
from .s3 import CHECKSUM_FIELDS, ObjectInfo, PutResult, error_answer

if TYPE_CHECKING:
    from collections.abc import Mapping

    from .._options import TransferConfig

    Key = tuple[str, str, int]  # scheme, host, port: one pool each
    Body = bytes | bytearray | memoryview

# Error documents are small; a larger error body is not read and its connection is dropped.
_MAX_ERROR_BODY = 64 * 1024
# Reread refreshable credentials this often: botocore renews them 15 minutes before they expire.
_CREDENTIALS_RECHECK = 60.0
_CHECKSUM_HEADERS = tuple((name, f"x-amz-checksum-{name.lower()}") for name in CHECKSUM_FIELDS)
# Bucket names that can be a DNS label of a TLS certificate's wildcard (no dots), as botocore's
# "auto" addressing decides; others go path style.
_VIRTUAL_BUCKET = re.compile(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]")
_AWS_HOST = re.compile(r"s3(?:\.(?P<region>[a-z0-9-]+))?\.amazonaws\.com")
_AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d+")


class TooLargeForLean(Exception):
    """The object is larger than ``max_size``: its body was not read, take the ranged path."""

    def __init__(self, message: str, size: int | None) -> None:
        super().__init__(message)
        self.size = size
        """Its Content-Length, or None when the answer was chunked."""


@dataclass(frozen=True)
class LeanStatistics:
    requests: int
    """Requests sent."""
    connections_opened: int
    """Connections opened: requests - connections_opened were carried by reused ones."""
    idle: int
    """Connections waiting in the pools now."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time. The answer is framed here, in
    the loop's callbacks, and handed over through one future: (head, body), body None when it
    was not read (an error document too large or of unknown length; the connection then goes)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, key: Key) -> None:
        self.loop = loop
        self.key = key
        self.transport: asyncio.Transport | None = None
        self.alive = True
        self.reusable = False
        self._waiter: asyncio.Future[tuple[ResponseHead, bytes | None]] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._read_timeout = 0.0
        self._progress = (0, 0)
        self._get = False
        self._max_ok = self._limit = 0  # largest 2xx body to read; largest body of this answer
        self._refuse_larger = False
        self._buf = bytearray()
        self._scan = self._received = 0
        self._head: ResponseHead | None = None
        self._need = 0  # body bytes by Content-Length; -1 for a chunked body
        self._parts: list[bytes] = []
        self._got = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast("asyncio.Transport", transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:
            self._fail(None)  # bytes nobody asked for: this connection can carry no request
            return
        self._received += len(data)
        try:
            if self._head is None:
                self._buf += data
                self._read_head()
            elif self._need >= 0:
                self._read_body(data)
            else:
                self._buf += data
                self._read_chunks()
        except (HeadError, TooLargeForLean) as exc:
            self._fail(exc)

    def eof_received(self) -> bool | None:
        self.alive = False
        return None  # the transport closes; connection_lost fails a pending request

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        if self._waiter is not None:
            if self._received == 0:
                what = "the server closed the connection before answering"
            elif self._head is None:
                what = "the connection broke in the answer's head"
            else:
                expected = self._need if self._need >= 0 else "chunked"
                what = f"the connection broke after {self._got} of {expected} body bytes"
            error = ConnectionResetError(f"{what}: {exc}" if exc else what)
            error.__cause__ = exc
            self._fail(error)

    def start(
        self, data: list[Body], *, get: bool, max_ok: int, read_timeout: float
    ) -> asyncio.Future[tuple[ResponseHead, bytes | None]]:
        """Send a request. ``get``: a 2xx body larger than ``max_ok`` raises TooLargeForLean
        (else it is left unread), and an error answer may leave the connection reusable (after
        a refused PUT, the server may not have read our body)."""
        assert self.transport is not None and self._waiter is None
        self.reusable = False
        self._get, self._max_ok = get, max_ok
        self._head = None
        self._buf.clear()
        self._scan = self._received = self._got = 0
        waiter = self._waiter = self.loop.create_future()
        self._read_timeout = read_timeout
        self._progress = (-1, -1)
        self._check_progress()
        self.transport.writelines(data)
        return waiter

    def _check_progress(self) -> None:
        # One timer per request, re-armed while bytes move either way: cheaper than a timeout
        # around every await, and a slow but moving transfer never times out.
        assert self.transport is not None
        progress = (self._received, self.transport.get_write_buffer_size())
        if progress == self._progress:
            self._timer = None
            self._fail(TimeoutError(f"no data for {self._read_timeout:g} s"))
        else:
            self._progress = progress
            self._timer = self.loop.call_later(self._read_timeout, self._check_progress)

    def _read_head(self) -> None:
        buf = self._buf
        while True:
            end = find_head_end(buf, len(buf), self._scan)
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise HeadError(f"response head larger than {MAX_HEAD} bytes")
                self._scan = len(buf)
                return
            head = parse_response_head(bytes(buf[:end]))
            if head.status >= 200:
                break
            del buf[:end]  # 100 Continue and its kin: the real answer follows
            self._scan = 0
        self._head = head
        connection = head.headers.get("connection", "").lower()
        if buf.startswith(b"HTTP/1.0") and "keep-alive" not in connection:
            self.alive = False  # HTTP/1.0 closes unless it says otherwise
        ok = 200 <= head.status < 300
        length = 0 if head.status in (204, 304) else head.content_length
        chunked = length is None and head.headers.get("transfer-encoding", "").lower() == "chunked"
        unframed = length is None and not chunked
        self._limit = self._max_ok if ok else _MAX_ERROR_BODY
        self._refuse_larger = ok and self._get
        if unframed or (length or 0) > self._limit:
            if ok and unframed:
                raise HeadError("a 2xx answer with neither Content-Length nor chunked encoding")
            if self._refuse_larger:
                raise TooLargeForLean(f"{length} bytes, more than {self._limit}", length)
            self._finish(None)  # an error's status says enough; the connection goes
            return
        rest = bytes(memoryview(buf)[end:])
        buf.clear()
        self._parts, self._got = [], 0
        if length is not None:
            self._need = length
            self._read_body(rest)
        else:
            self._need = -1
            buf += rest
            self._read_chunks()

    def _read_body(self, data: bytes) -> None:
        if data:
            self._parts.append(data)
            self._got += len(data)
        if self._got >= self._need:
            if self._got > self._need:
                raise HeadError("the server sent more bytes than its Content-Length")
            parts = self._parts
            self._finish(parts[0] if len(parts) == 1 else b"".join(parts))

    def _read_chunks(self) -> None:
        """Decode the complete chunks that have arrived into ``_parts``; finish at the last."""
        buf, pos = self._buf, 0
        while (line_end := buf.find(b"\r\n", pos)) >= 0:
            size_text = bytes(buf[pos:line_end]).partition(b";")[0].strip()
            if not size_text or size_text.strip(b"0123456789abcdefABCDEF"):
                raise HeadError(f"invalid chunk size {size_text!r}")
            size = int(size_text, 16)
            if size == 0:
                # Trailer fields, if any, end with a blank line.
                end = line_end if buf.startswith(b"\r\n\r\n", line_end) else -1
                if end < 0 and (end := buf.find(b"\r\n\r\n", line_end + 2)) < 0:
                    break
                if end + 4 != len(buf):
                    raise HeadError("the server sent more bytes than its chunked body")
                self._finish(b"".join(self._parts))
                return
            if self._got + size > self._limit:
                if self._refuse_larger:
                    raise TooLargeForLean(f"a chunked body of more than {self._limit}", None)
                self._finish(None)
                return
            data_end = line_end + 2 + size
            if len(buf) < data_end + 2:
                break
            if buf[data_end : data_end + 2] != b"\r\n":
                raise HeadError("a chunk does not end with CRLF")
            self._parts.append(bytes(buf[line_end + 2 : data_end]))
            self._got += size
            pos = data_end + 2
        if len(buf) - pos > 1024 and buf.find(b"\r\n", pos) < 0:
            raise HeadError("a chunk-size line longer than 1 KiB")
        del buf[:pos]  # the decoded chunks go; the next call starts at an undecoded one

    def _finish(self, body: bytes | None) -> None:
        head, waiter = self._head, self._waiter
        assert head is not None and waiter is not None and self.transport is not None
        self._waiter = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.reusable = (
            body is not None
            and self.alive
            and head.keep_alive
            and (200 <= head.status < 300 or self._get)
            and self.transport.get_write_buffer_size() == 0  # all of the request went out
        )
        if not self.reusable:
            self.close()
        if not waiter.done():
            waiter.set_result((head, body))

    def _fail(self, error: BaseException | None) -> None:
        waiter, self._waiter = self._waiter, None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.close()
        if waiter is not None and error is not None and not waiter.done():
            waiter.set_exception(error)

    def close(self) -> None:
        """Drop the connection, unsent bytes too (they may be a caller's buffer)."""
        self.alive = self.reusable = False
        if self.transport is not None:
            self.transport.abort()


class LeanS3:
    """PutObject and GetObject of whole small objects, signed by hand, over keep-alive
    connections kept per host (at most ``max_idle`` idle ones each)."""

    def __init__(
        self,
        endpoint_url: str,
        signer: Signer,
        *,
        path_style: bool,
        max_idle: int,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        parts = urllib.parse.urlsplit(endpoint_url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint_url!r}")
        self._scheme = scheme
        self._hostname = parts.hostname
        self._port = parts.port or (443 if scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._signer = signer
        self._path_style = path_style
        self._max_idle = max_idle
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._idle: dict[Key, deque[_Connection]] = {}
        self._routes: dict[str, tuple[Key, str, str]] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False
        self._requests = 0
        self._opened = 0
        self._credentials: Any = None  # refreshable botocore credentials, reread now and then
        self._frozen: tuple[str, str, str | None] | None = None
        self._recheck_at = 0.0

    @classmethod
    async def from_client(cls, client: Any, config: TransferConfig) -> LeanS3 | None:
        """A client with the credentials, region and addressing of an aiobotocore S3 client;
        None when it has no credentials or its addressing is not one this client knows."""
        if client.meta.config.signature_version is UNSIGNED:
            return None  # anonymous requests
        credentials = client._get_credentials()
        if inspect.isawaitable(credentials):
            credentials = await credentials
        if credentials is None:
            return None
        frozen = await credentials.get_frozen_credentials()
        if not frozen.access_key or not frozen.secret_key:
            return None
        region = client.meta.region_name or "us-east-1"
        path_style = bool(config.endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))
        endpoint = str(client.meta.endpoint_url) if path_style else _aws_endpoint(client, region)
        if endpoint is None:
            return None
        lean = cls(
            endpoint,
            Signer(frozen.access_key, frozen.secret_key, frozen.token, region=region),
            path_style=path_style,
            max_idle=config.max_concurrency + 4,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
        )
        if hasattr(credentials, "refresh_needed"):
            lean._credentials = credentials
            lean._frozen = (frozen.access_key, frozen.secret_key, frozen.token)
            lean._recheck_at = time.monotonic() + _CREDENTIALS_RECHECK
        return lean

    def statistics(self) -> LeanStatistics:
        idle = sum(len(q) for q in self._idle.values())
        return LeanStatistics(self._requests, self._opened, idle)

    def __repr__(self) -> str:
        s = self.statistics()
        return (
            f"<LeanS3 {self._scheme}://{self._hostname}:{self._port} requests={s.requests} "
            f"opened={s.connections_opened} idle={s.idle}{' closed' if self._closed else ''}>"
        )

    async def put_object(
        self, bucket: str, key: str, body: Body, headers: Mapping[str, str], url: str
    ) -> PutResult:
        """PutObject of ``body``; ``headers`` go with it (checksums, Content-MD5,
        If-None-Match...)."""
        head, _ = await self._request("PUT", bucket, key, headers, body, url, max_ok=0)
        h = head.headers
        etag = h.get("etag")
        if not etag:
            raise ProtocolViolationError(f"{url}: PutObject answered without an ETag", url=url)
        return PutResult(etag, h.get("x-amz-version-id"), _checksums(h))

    async def get_object(
        self, bucket: str, key: str, url: str, *, if_match: str | None = None, max_size: int
    ) -> tuple[ObjectInfo, bytes]:
        """GetObject of the whole object, with its checksums. An object of more than
        ``max_size`` bytes raises TooLargeForLean, its body unread."""
        headers = {"x-amz-checksum-mode": "ENABLED"}
        if if_match is not None:
            headers["If-Match"] = if_match
        head, body = await self._request("GET", bucket, key, headers, None, url, max_ok=max_size)
        h = head.headers
        etag = h.get("etag")
        if head.status != 200 or body is None:
            raise ProtocolViolationError(
                f"{url}: GetObject of the whole object answered {head.status}", url=url
            )
        if not etag:
            raise ProtocolViolationError(f"{url}: GetObject answered without an ETag", url=url)
        info = ObjectInfo(
            size=len(body),
            etag=etag,
            version_id=h.get("x-amz-version-id"),
            checksums=_checksums(h),
            checksum_type=h.get("x-amz-checksum-type"),
        )
        return info, body

    async def _request(
        self,
        method: str,
        bucket: str,
        key: str,
        headers: Mapping[str, str],
        body: Body | None,
        url: str,
        *,
        max_ok: int,
    ) -> tuple[ResponseHead, bytes | None]:
        if self._closed:
            raise RuntimeError("LeanS3 is closed")
        if self._credentials is not None and time.monotonic() >= self._recheck_at:
            await self._reread_credentials()
        try:
            pool, host, path = self._route(bucket, key)
            signed = self._signer.sign(method, host, path, "", headers, time.time())
            fields = [*headers.items(), *signed.items()]
            if body is not None:
                size = body.nbytes if isinstance(body, memoryview) else len(body)
                fields.append(("Content-Length", str(size)))
            request = _request_head(method, path, host, fields)
        except ValueError as exc:  # a line break in a header, a key that is not UTF-8...
            raise InvalidRequestError(f"{url}: {exc}", url=url) from exc
        conn = self._take_idle(pool) or await self._connect(pool, url)
        self._requests += 1
        try:
            waiter = conn.start(
                [request] if body is None else [request, body],
                get=body is None,
                max_ok=max_ok,
                read_timeout=self._read_timeout,
            )
            head, data = await waiter
        except BaseException as exc:
            conn.close()  # cancelled or failed mid-answer: its state is unknown
            mapped = _mapped(exc, url)
            if mapped is exc:
                raise
            raise mapped from exc
        if conn.reusable:
            self._give_back(conn)
        if not 200 <= head.status < 300:
            raise error_answer(url, head.status, data or b"", head.headers.get("x-amz-request-id"))
        return head, data

    def _route(self, bucket: str, key: str) -> tuple[Key, str, str]:
        """(pool, Host header, path) for an object."""
        route = self._routes.get(bucket)
        if route is None:
            virtual = not self._path_style and _VIRTUAL_BUCKET.fullmatch(bucket) is not None
            hostname = f"{bucket}.{self._hostname}" if virtual else self._hostname
            default = 443 if self._scheme == "https" else 80
            shown = f"[{hostname}]" if ":" in hostname else hostname
            host = shown if self._port == default else f"{shown}:{self._port}"
            prefix = self._prefix if virtual else f"{self._prefix}/{quote_key(bucket)}"
            route = self._routes[bucket] = ((self._scheme, hostname, self._port), host, prefix)
        pool, host, prefix = route
        return pool, host, f"{prefix}/{quote_key(key)}"

    def _take_idle(self, pool: Key) -> _Connection | None:
        idle = self._idle.get(pool)
        while idle:
            conn = idle.pop()  # the most recently used: the least likely to be timed out
            if conn.alive:
                return conn
            conn.close()
        return None

    def _give_back(self, conn: _Connection) -> None:
        idle = self._idle.setdefault(conn.key, deque())
        if self._closed or len(idle) >= self._max_idle:
            conn.close()
        else:
            idle.append(conn)

    async def _connect(self, pool: Key, url: str) -> _Connection:
        scheme, host, port = pool
        loop = asyncio.get_running_loop()
        conn = _Connection(loop, pool)
        context = self._context() if scheme == "https" else None
        try:
            async with asyncio.timeout(self._connect_timeout):
                transport, _ = await loop.create_connection(
                    lambda: conn, host, port, ssl=context, server_hostname=host if context else None
                )
        except TimeoutError as exc:
            raise TransferTimeoutError(
                f"{url}: connecting to {host}:{port} took more than {self._connect_timeout:g} s",
                url=url,
            ) from exc
        except OSError as exc:
            raise NetworkError(f"{url}: cannot connect to {host}:{port}: {exc}", url=url) from exc
        conn.transport = transport  # uvloop returns before it calls connection_made
        self._opened += 1
        return conn

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            # The same trust as botocore: AWS_CA_BUNDLE when set, else the system's.
            self._ssl = ssl.create_default_context(cafile=os.environ.get("AWS_CA_BUNDLE") or None)
        return self._ssl

    async def _reread_credentials(self) -> None:
        # Other requests go on with the current signer meanwhile: only one rereads.
        self._recheck_at = time.monotonic() + _CREDENTIALS_RECHECK
        frozen = await self._credentials.get_frozen_credentials()
        current = (frozen.access_key, frozen.secret_key, frozen.token)
        if current != self._frozen:
            self._frozen = current
            self._signer = Signer(*current, region=self._signer.region)

    def close(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self._closed = True
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()

    async def aclose(self) -> None:
        self.close()
        await asyncio.sleep(0)  # let the transports' close callbacks run


def _mapped(exc: BaseException, url: str) -> BaseException:
    """This library's error for what a request raised (TooLargeForLean passes through)."""
    if isinstance(exc, HeadError):
        return ProtocolViolationError(f"{url}: {exc}", url=url)
    if isinstance(exc, TimeoutError):
        return TransferTimeoutError(f"{url}: {exc}", url=url)
    if isinstance(exc, OSError):
        return NetworkError(f"{url}: connection broke: {exc}", url=url)
    return exc


def _checksums(headers: Mapping[str, str]) -> dict[str, str]:
    return {name: headers[field] for name, field in _CHECKSUM_HEADERS if headers.get(field)}


def _aws_endpoint(client: Any, region: str) -> str | None:
    """The regional AWS endpoint, for virtual-hosted addressing; None when the client goes
    elsewhere (an endpoint from the config file, FIPS, dualstack, accelerate, China)."""
    config = client.meta.config
    options = config.s3 or {}
    if (
        config.use_fips_endpoint
        or config.use_dualstack_endpoint
        or options.get("use_accelerate_endpoint")
        or options.get("use_dualstack_endpoint")
        or options.get("addressing_style") == "path"
    ):
        return None
    host = urllib.parse.urlsplit(str(client.meta.endpoint_url)).hostname or ""
    match = _AWS_HOST.fullmatch(host)
    if match is None or match["region"] not in (None, region) or not _AWS_REGION.fullmatch(region):
        return None
    return f"https://s3.{region}.amazonaws.com"
