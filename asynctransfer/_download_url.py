"""Downloads from plain HTTP(S) URLs: the engine's range machinery, with what S3 gives for free
(size, version pinning) learnt from the first response instead.

The first request is a ranged GET of the first part, so a 206 gives the total size from
Content-Range without a HEAD. Its strong ETag (else Last-Modified) pins the version: every
later range carries ``If-Range``, and a server that answers 200 to it (or a different ETag, or
another total) says the resource changed; the download then starts over once, or fails. A 200
to the first request means the server ignores Range: the body is taken as one stream, in
order, through one part buffer. So is a resource without any validator, since its ranges
could not be pinned to one version.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import netrc
import os
import time
import urllib.parse
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from . import _events
from ._core.plan import Part, plan_download
from ._core.ranges import RangeMismatchError, parse_content_range, range_header
from ._engine import store_in_order
from ._errors import (
    NetworkError,
    ObjectChangedError,
    ProtocolViolationError,
)
from ._io import local
from ._io.http import CREDENTIAL_HEADERS, HttpDriver, http_error, read_into, redact
from ._io.rangeget import proxy_applies
from ._results import DownloadResult
from ._sinks import FileSink

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import aiohttp

    from ._buffers import Buffer
    from ._core.http1 import ResponseHead
    from ._engine import DownloadOptions, Engine
    from ._io.hashing import Hasher
    from ._sinks import Sink, Writable

logger = logging.getLogger("asynctransfer")
_REDIRECTS = (301, 302, 303, 307, 308)


def _validator(etag: str | None, last_modified: str | None) -> str | None:
    """What If-Range may carry: a strong ETag, else a Last-Modified date (RFC 9110 13.1.5)."""
    if etag and not etag.startswith("W/"):
        return etag
    return last_modified or None


def _needs_aiohttp(url: str) -> bool:
    """Credentials the engine's own client does not apply: userinfo in the URL, or a .netrc
    entry for the host (aiohttp applies both, trust_env); such ranges go through aiohttp."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is not None:
        return True
    try:
        entries = netrc.netrc(os.environ.get("NETRC") or None)
    except (OSError, netrc.NetrcParseError):
        return False
    return entries.authenticators(parts.hostname or "") is not None


def _origin(url: str) -> tuple[str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class UrlDownload:
    """One download of ``url`` into ``dest``; ``run`` may start over once if it changes."""

    def __init__(
        self,
        engine: Engine,
        http: HttpDriver,
        url: str,
        dest: str | Writable,
        options: DownloadOptions,
    ) -> None:
        self.engine = engine
        self.http = http
        self.headers = dict(options.headers)
        parts = urllib.parse.urlsplit(url)
        if parts.username is not None:
            # user:pass@ becomes Basic auth for this origin, as curl does; the URL loses it, so
            # every client sends the header and no Host or message carries the password.
            if not any(k.lower() == "authorization" for k in self.headers):
                userinfo = f"{urllib.parse.unquote(parts.username)}:"
                userinfo += urllib.parse.unquote(parts.password or "")
                token = base64.b64encode(userinfo.encode()).decode("ascii")
                self.headers["Authorization"] = f"Basic {token}"
            url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
        self.url = url
        self.dest = dest
        self.options = options
        self.started = time.perf_counter()
        self.total = 0
        self.committed = False
        self.range_size = engine.range_size(dest)
        self.shown = redact(url)
        """The URL for messages and results: without a password."""

    async def run(self) -> DownloadResult:
        return await self._attempt()

    async def _attempt(self) -> DownloadResult:
        engine = self.engine
        await engine.throttle(self.range_size)
        # Past the first response, ranges have retries of their own; and bytes a stream has
        # been given cannot be taken back.
        return await engine.retrying(
            self.shown, self._probe_and_fetch, retry_if=lambda _: not self.committed
        )

    async def _probe_and_fetch(self) -> DownloadResult:
        engine, part_size = self.engine, self.range_size
        # Aligned, so that the first range can be written with O_DIRECT like the others.
        buf = await engine.pool.acquire(local.direct_length(part_size), aligned=True)
        owned = True
        try:
            ranged = {**self.headers, "Range": f"bytes=0-{part_size - 1}"}
            async with self.http.get(self.url, ranged, redirects=True) as response:
                if response.status == 200:  # the server ignores Range
                    return await self._sequential(response, buf)
                if response.status == 416 and _empty(response):
                    return await self._empty()
                if response.status != 206:
                    raise http_error(self.shown, response.status, response.reason)
                probe = await self._first_range(response, memoryview(buf))
            if probe is not None:
                first, received, final, validator, etag = probe
                owned = False  # _parallel releases it
                self.committed = True
                return await self._parallel(first, received, buf, final, validator, etag)
            # No validator to pin ranges to one version: the whole body in one stream.
            async with self.http.get(self.url, self.headers, redirects=True) as whole:
                if whole.status != 200:
                    raise http_error(self.shown, whole.status, whole.reason)
                return await self._sequential(whole, buf)
        finally:
            if owned:
                engine.pool.release(buf)

    # ------------------------------------------------------------ the first response

    async def _first_range(
        self, response: aiohttp.ClientResponse, view: memoryview
    ) -> tuple[Part, int, str, str, str | None] | None:
        """The first range of a 206: (part 1, bytes of it received, final URL, validator,
        ETag); None when the resource has no validator (the caller then streams it whole)."""
        header = response.headers.get("Content-Range")
        try:
            got = parse_content_range(header or "")
        except RangeMismatchError as exc:
            raise ProtocolViolationError(f"{self.shown}: {exc}", url=self.shown) from exc
        want_end = min(self.range_size, got.total or 0) - 1
        if got.total is None or got.start != 0 or got.end != want_end:
            raise ProtocolViolationError(
                f"{self.shown}: asked for bytes 0-{self.range_size - 1}, got "
                f"Content-Range {header!r}",
                url=self.shown,
            )
        if response.content_length is not None and response.content_length != got.length:
            raise ProtocolViolationError(
                f"{self.shown}: Content-Range {header!r} but Content-Length "
                f"{response.content_length}",
                url=self.shown,
            )
        etag = response.headers.get("ETag")
        validator = _validator(etag, response.headers.get("Last-Modified"))
        if validator is None:
            logger.info("%s: no ETag or Last-Modified to pin ranges to; one stream", self.shown)
            return None
        try:
            received = await read_into(response, view[: got.length], self.shown)
        except NetworkError as exc:
            # Size and version are known: the rest of this range is fetched like any other.
            logger.info("%s: first range broke after %d bytes: %s", self.shown, exc.received, exc)
            received = exc.received
        self.total = got.total
        return Part(1, 0, got.length), received, str(response.url), validator, etag

    async def _empty(self) -> DownloadResult:
        plan = plan_download(0, self.range_size)
        hashers = self.engine.hashers(self.options)
        sink = await self.engine.open_sink(self.dest, 0, plan, hashers)
        try:
            return await self._finish(sink, hashers, size=0, parts=0, etag=None)
        except BaseException:
            sink.discard()
            raise

    # ------------------------------------------------------------ ranges in parallel

    async def _parallel(
        self,
        first: Part,
        received: int,
        buf: Buffer,
        final: str,
        validator: str,
        etag: str | None,
    ) -> DownloadResult:
        engine = self.engine
        total = self.total
        plan = plan_download(total, self.range_size)
        hashers = engine.hashers(self.options)
        try:
            resume, temp = await engine.open_resume(
                self.options, self.dest, self.url, total, plan, validator
            )
            sink = await engine.open_sink(self.dest, total, plan, hashers, temp=temp, resume=resume)
        except BaseException:
            engine.pool.release(buf)
            raise
        headers = dict(self.headers)
        if _origin(final) != _origin(self.url):
            headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
        fetcher = _RangeFetcher(self, final, headers, validator, etag, total)
        _events.started(total, len(plan))
        try:
            await engine.fetch_ranges(
                self.shown, plan, sink, fetcher, first=(first, buf, received), resume=resume
            )
            result = await self._finish(sink, hashers, size=total, parts=len(plan), etag=etag)
        except BaseException as exc:
            await engine.interrupted(sink, resume, exc)
            raise
        if resume is None:
            return result
        await resume.finished()
        return dataclasses.replace(
            result, reused_parts=resume.reused_parts, reused_bytes=resume.reused_bytes
        )

    # ------------------------------------------------------------ one stream

    async def _sequential(self, response: aiohttp.ClientResponse, buf: Buffer) -> DownloadResult:
        """The whole body in order, through one part buffer: a server that ignores Range."""
        engine = self.engine
        size = response.content_length
        plan = plan_download(0, self.range_size)
        hashers = engine.hashers(self.options)
        # Chunks of any length, so no O_DIRECT.
        sink = await engine.open_sink(self.dest, size, plan, hashers, direct=False)
        _events.started(size, 0)
        view = memoryview(buf)
        offset = number = 0
        try:
            while True:
                filled = 0
                while filled < len(view):
                    try:
                        chunk = await response.content.read(len(view) - filled)
                    except Exception as exc:
                        raise NetworkError(
                            f"{self.shown}: body broke: {exc}", url=self.shown
                        ) from exc
                    if not chunk:
                        break
                    view[filled : filled + len(chunk)] = chunk
                    filled += len(chunk)
                if filled:
                    number += 1
                    part = Part(number, offset, filled)
                    await engine.throttle_bytes(filled)
                    self.committed = self.committed or not isinstance(sink, FileSink)
                    await anyio.to_thread.run_sync(
                        store_in_order, sink, None, part, view[:filled], False
                    )
                    offset += filled
                    engine._bytes_received += filled
                    _events.part_done(number, filled, in_flight=engine.limiter.borrowed_tokens)
                if filled < len(view):
                    break
            if size is not None and offset != size:
                raise NetworkError(
                    f"{self.shown}: body ended after {offset} of {size} bytes", url=self.shown
                )
            etag = response.headers.get("ETag")
            return await self._finish(sink, hashers, size=offset, parts=1, etag=etag)
        except BaseException:
            sink.discard()
            raise

    async def _finish(
        self,
        sink: Sink,
        hashers: dict[str, Hasher],
        *,
        size: int,
        parts: int,
        etag: str | None,
    ) -> DownloadResult:
        self.engine.check_expected(self.shown, hashers, self.options)
        await anyio.to_thread.run_sync(sink.finish, size)
        return DownloadResult(
            url=self.shown,
            path=self.dest if isinstance(self.dest, str) else "-",
            size=size,
            seconds=time.perf_counter() - self.started,
            parts=parts,
            etag=etag or "",
            version_id=None,
            checksums={},
            xxh3_128=hashers["xxh3"].digest().hex(),
        )


def _empty(response: aiohttp.ClientResponse) -> bool:
    """A 416 to ``bytes=0-...``: the resource is empty (``Content-Range: bytes */0``)."""
    return response.headers.get("Content-Range", "").replace(" ", "") == "bytes*/0"


class _RangeFetcher:
    """Fetches one range of a pinned URL: through the engine's own client when it can (no copy
    in Python), through aiohttp when a proxy or credentials it does not apply (userinfo,
    .netrc) are in play, or when the server redirects again or answers chunked."""

    def __init__(
        self,
        download: UrlDownload,
        url: str,
        headers: dict[str, str],
        validator: str,
        etag: str | None,
        total: int,
    ) -> None:
        self.download = download
        self.url = url
        self.headers = headers
        self.validator = validator
        self.etag = etag
        self.total = total
        plain = not proxy_applies(url) and not _needs_aiohttp(url)
        self.direct = download.engine.range_client if plain else None

    def _changed(self, why: str) -> ObjectChangedError:
        url = self.download.shown
        return ObjectChangedError(
            f"{url}: the resource changed during the download ({why})", url=url
        )

    async def __call__(
        self, part: Part, view: memoryview, *, on_head: Callable[[], None] | None = None
    ) -> None:
        headers = {
            **self.headers,
            "Range": range_header(part.offset, part.length),
            "If-Range": self.validator,
        }
        engine = self.download.engine

        def accept(head: ResponseHead) -> None:
            if on_head is not None:
                on_head()
            self._check(part, head.status, head.reason, head.headers)
            if head.content_length is not None and head.content_length != part.length:
                raise ProtocolViolationError(
                    f"{self.download.shown}: asked for {part.length} bytes at {part.offset}, "
                    f"Content-Length says {head.content_length}",
                    url=self.download.shown,
                )

        if self.direct is not None:
            async with engine.limiter:
                head, _ = await self.direct.get_into(
                    self.url,
                    list(headers.items()),
                    view,
                    accept=accept,
                    ssl_context=self.download.http.ssl_context,
                )
            if head.status not in _REDIRECTS and head.content_length is not None:
                if not 200 <= head.status < 300:
                    accept(head)  # raises: an error status, a 412 or 416 (changed)...
                return
        async with engine.limiter, self.download.http.get(self.url, headers, redirects=True) as r:
            if on_head is not None:
                on_head()
            self._check(part, r.status, r.reason, r.headers)
            received = await read_into(r, view, self.download.shown)
            if received != part.length:
                error = NetworkError(
                    f"{self.download.shown}: body ended after {received} of {part.length} "
                    f"bytes at offset {part.offset}",
                    url=self.download.shown,
                )
                error.received = received
                raise error

    def _check(
        self, part: Part, status: int, reason: str | None, headers: Mapping[str, str]
    ) -> None:
        url = self.download.shown
        if status == 200:
            raise self._changed("If-Range no longer matched: the server sent the whole body")
        if status in (412, 416):
            raise self._changed(f"HTTP {status}")
        if status != 206:
            raise http_error(url, status, reason)
        etag = headers.get("etag") or headers.get("ETag")
        if self.etag is not None and etag is not None and etag != self.etag:
            raise self._changed(f"ETag {self.etag} became {etag}")
        value = headers.get("content-range") or headers.get("Content-Range")
        try:
            got = parse_content_range(value or "")
        except RangeMismatchError as exc:
            raise ProtocolViolationError(f"{url}: {exc}", url=url) from exc
        if got.total is not None and got.total != self.total:
            raise self._changed(f"its size went from {self.total} to {got.total} bytes")
        if got.start != part.offset or got.end != part.end - 1:
            raise ProtocolViolationError(
                f"{url}: asked for bytes {part.offset}-{part.end - 1}, got Content-Range {value!r}",
                url=url,
            )
