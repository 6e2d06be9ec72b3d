"""An HTTP origin with fault knobs, run as its own process, for testing parallel Range downloads.

    python -m tests.http_origin --root DIR --port 0
    python tests/http_origin.py --root DIR --port 0

Prints ``listening on http://127.0.0.1:PORT`` once ready, serves until SIGTERM or SIGINT.
Only stdlib and aiohttp imports, so it runs from a file path too. Its test-side handle is the
``http_origin`` fixture in ``tests/web/conftest.py``.

Files under ``--root`` (a path cannot leave it) are served for GET and HEAD as RFC 9110 says:
``Accept-Ranges: bytes``, a strong ETag (size, mtime_ns, inode), ``Last-Modified``,
``Content-Length``, never compressed. ``Range: bytes=a-b``, ``bytes=a-``, ``bytes=-n``: 206
with ``Content-Range``; unsatisfiable: 416 with ``Content-Range: bytes */total``; multi-range
or malformed: 200, the whole body (HEAD ignores ``Range``). ``If-Match`` not matching (strong
comparison): 412. ``If-Range`` not matching (an ETag, strong comparison, or an HTTP-date equal
to Last-Modified): 200, the whole body.

Control API (JSON) under ``/__origin__/``:
- ``GET /__origin__/health`` -> ``{"pid": ..., "root": ...}``
- ``POST /__origin__/knobs`` with an object of knobs: replaces them and resets their counters
  (and the changed resources of ``change_after``); 400 on an unknown knob.
- ``GET /__origin__/knobs`` -> ``{"knobs": {...}, "applied": {counter: n}, "gets": {path: n}}``
- ``GET /__origin__/log`` -> the log entries, in arrival order.
- ``POST /__origin__/reset``: clears the knobs, their counters and the log.

Knobs (all optional). A ``times`` of null means every request. Checked in this order:
- ``require_header``: ``{"authorization": "Bearer secret"}``: 401 unless every header is sent
  with exactly that value.
- ``status``: ``{"/path": 403}`` (every request) or ``{"/path": {"status": 503, "times": 2,
  "method": "GET"}}`` (``times`` default null, ``method`` default any): that status, no body.
- ``redirect``: ``{"/from": "/to"}`` (or an absolute URL): 302 with that ``Location``.
  ``redirect_loop``: true: ``/loop`` redirects to itself.
- ``change_after``: N: a path's GETs served from its file are counted; from the (N+1)-th on,
  for GET and HEAD alike, the resource is its changed version: every byte XOR 0x5A, same size,
  an ETag with ``-x5a`` appended and a Last-Modified at least a second later (logged as the
  fault ``change_after``). The file on disk is not touched.
- ``ignore_range``: true: 200 with the whole body whatever ``Range`` says (``Accept-Ranges:
  bytes`` is still sent: a server that lies).
- ``wrong_content_range``: true: a 206 claims a range shifted by +1 (by -1 when the asked range
  ends at the last byte; a whole-file range loses its first byte) and sends the bytes at the
  claimed range. ``wrong_content_range_total``: N: the Content-Range claims total N.
- ``no_etag``, ``weak_etag`` (``W/"..."``; it never matches If-Range or If-Match),
  ``no_last_modified``, ``no_content_length`` (200 responses, HEAD included: no Content-Length,
  GET bodies chunked): true.
- Body faults, on GET bodies; each ``{..., "times": 1, "path": "/only/this"}`` (``times``
  default 1, ``path`` default any), and several may apply to one response:
  ``truncate``: ``{"bytes": K}``: full Content-Length, K body bytes (at most the body less one),
  then a clean close (FIN). ``reset``: the same, then an RST (SO_LINGER 0), once the K bytes are
  acknowledged by the client's kernel. ``slow``: ``{"chunk": C, "interval": S}``: C-byte pieces,
  S seconds apart. ``stall``: ``{"after": K, "seconds": S}``: K bytes, then S seconds of
  silence, then the rest.
- ``count_connections``: accepted for clarity; every log entry carries ``connection`` anyway.

A log entry: ``id``, ``method``, ``path`` (decoded), ``headers`` (request: range, if-range,
if-match, authorization, accept-encoding, cookie; lower-cased names), ``status``,
``response_headers`` (content-range, etag, content-length, last-modified, transfer-encoding,
location), ``response_bytes`` (body bytes written), ``fault`` (the knobs that altered the
response, joined by ``+``, or null), ``connection`` (an id per TCP connection), ``started`` and
``finished`` (``time.time()``), ``error`` (``"client went away: ..."`` or null).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import fcntl
import os
import re
import signal
import socket
import struct
import sys
import termios
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from aiohttp import web

CONTROL = "/__origin__/"
_CHUNK = 256 * 1024
_FLIP = bytes(i ^ 0x5A for i in range(256))
_RANGE = re.compile(r"bytes=(\d*)-(\d*)", re.ASCII | re.IGNORECASE)
_REQUEST_HEADERS = ("range", "if-range", "if-match", "authorization", "accept-encoding", "cookie")
_RESPONSE_HEADERS: tuple[str, ...] = ("content-range", "etag", "content-length", "last-modified")
_RESPONSE_HEADERS += ("transfer-encoding", "location")
_BODY_FAULTS = ("truncate", "reset", "slow", "stall")
_OBJECT_KNOBS = frozenset({"require_header", "status", "redirect", *_BODY_FAULTS})
KNOBS = _OBJECT_KNOBS | {"redirect_loop", "change_after", "ignore_range", "wrong_content_range"}
KNOBS |= {"wrong_content_range_total", "no_etag", "weak_etag", "no_last_modified"}
KNOBS |= {"no_content_length", "count_connections"}


class Unsatisfiable(Exception):
    """The Range asks for nothing the representation has: 416."""


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The inclusive (first, last) byte of a single ``bytes`` range, or None to ignore it."""
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first:
        if not last:
            return None
        if int(last) == 0:
            raise Unsatisfiable
        return (max(0, size - int(last)), size - 1) if size else None
    start = int(first)
    if last and int(last) < start:
        return None
    if start >= size:
        raise Unsatisfiable
    return start, min(int(last), size - 1) if last else size - 1


def if_range_matches(value: str, etag: str | None, last_modified: int | None) -> bool:
    value = value.strip()
    if value.startswith(('"', "W/")):
        return etag is not None and not etag.startswith("W/") and value == etag
    parsed = email.utils.parsedate_tz(value)
    return parsed is not None and email.utils.mktime_tz(parsed) == last_modified


def if_match_matches(value: str, etag: str | None) -> bool:
    if value.strip() == "*":
        return True
    if etag is None or etag.startswith("W/"):
        return False
    return etag in (tag.strip() for tag in value.split(","))


class Origin:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.knobs: dict[str, Any] = {}
        self.applied: dict[str, int] = {}
        self.gets: dict[str, int] = {}
        self.changed: dict[str, int] = {}  # path -> Last-Modified of its changed version
        self.log: list[dict[str, Any]] = []
        self._connections = weakref.WeakKeyDictionary[asyncio.BaseTransport, int]()
        self._opened = 0  # never reset: ids stay unique across tests

    def set_knobs(self, knobs: Any) -> None:
        if not isinstance(knobs, dict):
            raise TypeError("expected an object of knobs")
        unknown = set(knobs) - KNOBS
        if unknown:
            raise ValueError(f"unknown knobs {sorted(unknown)}; known: {sorted(KNOBS)}")
        for name in _OBJECT_KNOBS & set(knobs):
            if not isinstance(knobs[name], dict):
                raise TypeError(f"{name}: expected an object, got {knobs[name]!r}")
        self.knobs = knobs
        self.applied.clear()
        self.gets.clear()
        self.changed.clear()

    def take(self, counter: str, times: int | None) -> bool:
        """Count one application of a knob, unless it is spent."""
        if times is not None and self.applied.get(counter, 0) >= times:
            return False
        self.applied[counter] = self.applied.get(counter, 0) + 1
        return True

    def connection(self, transport: asyncio.BaseTransport | None) -> int | None:
        if transport is not None and transport not in self._connections:
            self._opened += 1
            self._connections[transport] = self._opened
        return None if transport is None else self._connections[transport]


STATE = web.AppKey("state", Origin)


@dataclass
class Resource:
    file: BinaryIO
    size: int
    etag: str | None
    last_modified: int | None
    flip: bool


def _open(origin: Origin, path: str) -> Resource | None:
    try:
        target = (origin.root / path.lstrip("/")).resolve()
        if not target.is_relative_to(origin.root) or not target.is_file():
            return None
        file = target.open("rb")
    except (OSError, ValueError):
        return None
    st, flip, knobs = os.fstat(file.fileno()), path in origin.changed, origin.knobs
    version = "-x5a" if flip else ""  # the changed resource is told apart by its ETag
    etag: str | None = f'"{st.st_size:x}-{st.st_mtime_ns:x}-{st.st_ino:x}{version}"'
    if knobs.get("no_etag"):
        etag = None
    elif knobs.get("weak_etag"):
        etag = f"W/{etag}"
    modified = None if knobs.get("no_last_modified") else origin.changed.get(path, st.st_mtime)
    return Resource(file, st.st_size, etag, None if modified is None else int(modified), flip)


# ------------------------------------------------------------------------------ data paths


@dataclass
class Exchange:
    """A request being answered, and its log entry."""

    request: web.Request
    origin: Origin
    entry: dict[str, Any]
    faults: list[str]  # the knobs that altered the response

    def answer(self, response: web.StreamResponse) -> web.StreamResponse:
        """Log the response's status and headers as they are about to be sent."""
        self.entry["status"] = response.status
        self.entry["response_headers"] = {
            k: response.headers[k] for k in _RESPONSE_HEADERS if k in response.headers
        }
        return response

    def empty(self, status: int, **headers: str) -> web.StreamResponse:
        return self.answer(web.Response(status=status, headers=headers))


async def serve(request: web.Request) -> web.StreamResponse:
    origin = request.app[STATE]
    entry: dict[str, Any] = {
        "id": len(origin.log),
        "method": request.method,
        "path": request.path,
        "headers": {k: request.headers[k] for k in _REQUEST_HEADERS if k in request.headers},
        "status": None,
        "response_headers": {},
        "response_bytes": 0,
        "fault": None,
        "connection": origin.connection(request.transport),
        "started": time.time(),
        "finished": None,
        "error": None,
    }
    origin.log.append(entry)
    exchange = Exchange(request, origin, entry, [])
    try:
        return await _serve(exchange)
    finally:
        entry["fault"] = "+".join(exchange.faults) or None
        entry["finished"] = time.time()


async def _serve(x: Exchange) -> web.StreamResponse:
    request, origin, knobs, path = x.request, x.origin, x.origin.knobs, x.request.path
    if request.method not in ("GET", "HEAD"):
        return x.empty(405, Allow="GET, HEAD")
    required: dict[str, str] = knobs.get("require_header", {})
    if any(request.headers.get(name) != value for name, value in required.items()):
        x.faults.append("require_header")
        return x.empty(401, **{"WWW-Authenticate": "Bearer"})
    spec = knobs.get("status", {}).get(path)
    if spec is not None:
        spec = spec if isinstance(spec, dict) else {"status": spec}
        method = spec.get("method")
        if (method is None or method.upper() == request.method) and origin.take(
            f"status {path}", spec.get("times")
        ):
            x.faults.append("status")
            return x.empty(int(spec["status"]))
    location = knobs.get("redirect", {}).get(path)
    if location is None and knobs.get("redirect_loop") and path == "/loop":
        location = "/loop"
    if location is not None:
        x.faults.append("redirect")
        return x.empty(302, Location=location)

    if request.method == "GET":
        origin.gets[path] = gets = origin.gets.get(path, 0) + 1
        change_after = knobs.get("change_after")
        if change_after is not None and gets > int(change_after) and path not in origin.changed:
            with contextlib.suppress(OSError):
                mtime = int((origin.root / path.lstrip("/")).stat().st_mtime)
                origin.changed[path] = max(int(time.time()), mtime + 1)
    resource = _open(origin, path)
    if resource is None:
        return x.empty(404)
    if resource.flip:
        x.faults.append("change_after")
    with resource.file:
        return await _respond(x, resource)


async def _respond(x: Exchange, resource: Resource) -> web.StreamResponse:
    request, knobs, size = x.request, x.origin.knobs, resource.size
    headers = {"Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    if resource.etag is not None:
        headers["ETag"] = resource.etag
    if resource.last_modified is not None:
        headers["Last-Modified"] = email.utils.formatdate(resource.last_modified, usegmt=True)
    if_match = request.headers.get("If-Match")
    if if_match is not None and not if_match_matches(if_match, resource.etag):
        return x.empty(412, **headers)

    asked: tuple[int, int] | None = None
    header = request.headers.get("Range")
    if header is not None and request.method == "GET":
        if_range = request.headers.get("If-Range")
        if if_range is None or if_range_matches(if_range, resource.etag, resource.last_modified):
            try:
                asked = parse_range(header, size)
            except Unsatisfiable:
                return x.empty(416, **headers, **{"Content-Range": f"bytes */{size}"})
        if asked is not None and knobs.get("ignore_range"):
            x.faults.append("ignore_range")
            asked = None

    response = web.StreamResponse(status=200 if asked is None else 206, headers=headers)
    offset, length = 0, size
    if asked is not None:
        start, end = asked
        if knobs.get("wrong_content_range"):
            x.faults.append("wrong_content_range")
            if end + 1 < size:
                start, end = start + 1, end + 1
            elif start > 0:
                start, end = start - 1, end - 1
            else:
                start = min(1, end)
        total = knobs.get("wrong_content_range_total", size)
        if total != size:
            x.faults.append("wrong_content_range_total")
        response.headers["Content-Range"] = f"bytes {start}-{end}/{total}"
        offset, length = start, end - start + 1
        response.content_length = length
    elif knobs.get("no_content_length"):
        x.faults.append("no_content_length")
        if request.method == "GET":
            response.enable_chunked_encoding()
    else:
        response.content_length = size
    if request.method == "HEAD":
        return x.answer(response)
    await response.prepare(request)
    x.answer(response)
    try:
        await _send_body(x, response, resource, offset, length)
    except ConnectionError as exc:  # a cancelled download: no reason for a traceback
        x.entry["error"] = f"client went away: {exc!r}"
    return response


async def _send_body(
    x: Exchange, response: web.StreamResponse, resource: Resource, offset: int, length: int
) -> None:
    applied: dict[str, dict[str, Any]] = {}
    for name in _BODY_FAULTS:
        spec = x.origin.knobs.get(name)
        if spec is None or spec.get("path", x.request.path) != x.request.path:
            continue
        if x.origin.take(name, spec.get("times", 1)):
            applied[name] = spec
            x.faults.append(name)
    cut_spec = applied.get("truncate") or applied.get("reset")
    cut = None if cut_spec is None else max(0, min(int(cut_spec["bytes"]), length - 1))
    chunk = int(applied["slow"]["chunk"]) if "slow" in applied else _CHUNK
    interval = float(applied["slow"]["interval"]) if "slow" in applied else 0.0
    stall_at = int(applied["stall"]["after"]) if "stall" in applied else None
    end = length if cut is None else cut

    loop = asyncio.get_running_loop()
    resource.file.seek(offset)
    sent = 0
    while True:
        if sent == stall_at:
            await asyncio.sleep(float(applied["stall"]["seconds"]))
        if sent >= end:
            break
        n = min(chunk, end - sent)
        if stall_at is not None and sent < stall_at:
            n = min(n, stall_at - sent)
        # Off the loop: other connections keep flowing while a cold file is read.
        data = await loop.run_in_executor(None, resource.file.read, n)
        if not data:
            break  # the file shrank under us: the client sees a short body
        await response.write(data.translate(_FLIP) if resource.flip else data)
        sent += len(data)
        x.entry["response_bytes"] = sent
        if interval and sent < end:
            await asyncio.sleep(interval)
    if cut is None:
        await response.write_eof()
    elif "reset" in applied:
        await _abort_with_rst(x.request)
    elif x.request.transport is not None:
        x.request.transport.close()  # sends what is buffered, then FIN


async def _abort_with_rst(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    # An RST discards data not yet delivered: wait (briefly) until the client's kernel has
    # acknowledged every byte written, so it sees exactly the bytes that were "sent".
    for _ in range(1000):
        if not transport.get_write_buffer_size() and (sock is None or not _unacked(sock)):
            break
        await asyncio.sleep(0.001)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _unacked(sock: socket.socket) -> int:
    """Bytes written to the socket that the peer has not acknowledged yet (Linux)."""
    try:
        buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", buf)[0])


# ------------------------------------------------------------------------------ control API


async def health(request: web.Request) -> web.Response:
    return web.json_response({"pid": os.getpid(), "root": str(request.app[STATE].root)})


async def get_log(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].log)


async def get_knobs(request: web.Request) -> web.Response:
    o = request.app[STATE]
    return web.json_response({"knobs": o.knobs, "applied": o.applied, "gets": o.gets})


async def post_knobs(request: web.Request) -> web.Response:
    try:
        request.app[STATE].set_knobs(await request.json())
    except (ValueError, TypeError) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"knobs": sorted(request.app[STATE].knobs)})


async def post_reset(request: web.Request) -> web.Response:
    origin = request.app[STATE]
    origin.set_knobs({})
    origin.log.clear()
    return web.json_response({"ok": True})


def make_app(root: Path) -> web.Application:
    app = web.Application()
    app[STATE] = Origin(root)
    app.router.add_get(CONTROL + "health", health, allow_head=False)
    app.router.add_get(CONTROL + "log", get_log, allow_head=False)
    app.router.add_get(CONTROL + "knobs", get_knobs, allow_head=False)
    app.router.add_post(CONTROL + "knobs", post_knobs)
    app.router.add_post(CONTROL + "reset", post_reset)
    app.router.add_route("*", "/{tail:.*}", serve)
    return app


async def run(root: Path, host: str, port: int) -> None:
    app = make_app(root)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        sys.stdout.write(f"listening on http://{host}:{runner.addresses[0][1]}\n")
        sys.stdout.flush()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--root", type=Path, required=True, help="the directory to serve")
    parser.add_argument("--port", type=int, required=True, help="0: a free port")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    asyncio.run(run(args.root, args.host, args.port))


if __name__ == "__main__":
    main()
