"""A fault-injecting reverse proxy for S3, run as its own process in front of a test S3 server.

    python -m tests.proxy_server --upstream http://127.0.0.1:5000 --port 8000
    python tests/proxy_server.py --upstream http://127.0.0.1:5000 --port 8000

Every request is forwarded to the upstream as the client sent it: method, raw path and query,
headers (SigV4 ``Authorization`` and ``Host`` included; hop-by-hop headers and ``Expect``
dropped), body streamed. The response is streamed back. Each request is logged, and the first
applicable fault rule is applied to it. It depends on aiohttp and crc32c only, so it runs from a
file path too; ``tests/proxy.py`` is its test-side handle.

Control API (JSON) under ``/__proxy__/``:
- ``GET /__proxy__/health`` -> ``{"pid": ...}``
- ``POST /__proxy__/rules`` with a list of rules, or ``{"rules": [...], "seed": N}``: replaces
  the rules, resets their counters and reseeds the RNG used by ``probability``.
- ``GET /__proxy__/rules`` -> the rules with how many times each was applied.
- ``GET /__proxy__/log`` -> the log entries, in arrival order.
- ``POST /__proxy__/reset``: clears the log and the rules.

A rule::

    {"match": {"operation": "UploadPart", "method": "PUT", "query_has": ["uploadId"],
               "query": {"partNumber": "1"}, "path_regex": "^/bucket/key$"},
     "times": 1,            # applications before the rule is spent; null (default) = forever
     "probability": 0.3,    # chance that a matching request is faulted (seeded RNG)
     "action": "status", ...action parameters...}

``header_prefix`` matches a request that has a (logged) header whose lower-cased name starts
with it, e.g. ``"x-amz-checksum-"``. Every ``match`` field is optional (an empty match matches every request). Actions:
- ``status``: ``status`` (503), ``code`` ("SlowDown"), ``message``: an S3 XML error response.
- ``error_200``: a 200 whose body is an S3 ``<Error>`` document (``code``: "InternalError").
  Both answer without contacting the upstream unless ``forward: true`` (the upstream then does
  the work and its answer is replaced).
- ``reset_before``: read the request body (or only ``after_request_bytes`` of it), then abort
  the connection with an RST (SO_LINGER 0) before any response. ``forward: true`` forwards the
  request first, so the upstream does the work and the answer is lost.
- ``reset_mid``: send the response headers and ``bytes`` bytes of the body (default: half), then
  RST.
- ``truncate``: send ``bytes`` bytes of the body (default: half), then close cleanly (FIN).
- ``slow``: send the body in ``chunk_size`` pieces (1024) every ``interval`` seconds (0.1).
- ``delay``: wait ``seconds`` (1.0) before forwarding (``when: "before"``, default) or after the
  upstream answered, before answering the client (``when: "after"``).
- ``ignore_range``: drop ``Range`` from the forwarded request (the upstream answers 200 whole).
- ``rewrite_header``: ``headers``: {name: value or null (remove)} on the response.
- ``corrupt_response``: XOR ``xor`` (0xFF) into the response body byte at ``offset`` (0).
- ``corrupt_request``: the same on the request body before it is forwarded.

A log entry: ``id``, ``method``, ``path`` (decoded), ``raw_path``, ``raw_query``, ``query`` (dict), ``operation``,
``headers`` (selected, lower-cased), ``body_length``, ``body_crc32c`` and ``body_md5`` (hex, of
the body as received), ``body_text`` (POST bodies under 64 KiB), ``status``, ``fault`` (action
name or null), ``rule`` (its index), ``response_headers`` (selected), ``response_bytes`` (body
bytes sent to the client), ``started`` (request headers in) and ``finished`` (``time.time()``:
the last response byte written, or for an answer made by the proxy, just before it is sent),
``error``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import re
import socket
import struct
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from crc32c import crc32c
from multidict import CIMultiDict
from yarl import URL

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

CONTROL = "/__proxy__/"
_TEXT_LIMIT = 64 * 1024
_CHUNK = 64 * 1024

_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "expect",
    }
)
_LOGGED_REQUEST_HEADERS = frozenset(
    {
        "range",
        "if-match",
        "if-none-match",
        "content-md5",
        "content-length",
        "content-type",
        "x-amz-content-sha256",
        "x-amz-sdk-checksum-algorithm",
        "content-encoding",
        "x-amz-decoded-content-length",
        "x-amz-trailer",
        "transfer-encoding",
        "expect",
    }
)
_LOGGED_RESPONSE_HEADERS = frozenset(
    {"etag", "content-range", "content-length", "content-type", "accept-ranges"}
)
ACTIONS = frozenset(
    {
        "status",
        "error_200",
        "reset_before",
        "reset_mid",
        "truncate",
        "slow",
        "delay",
        "ignore_range",
        "rewrite_header",
        "corrupt_response",
        "corrupt_request",
    }
)
_MATCH_KEYS = frozenset(
    {"method", "operation", "query_has", "query", "path_regex", "header_prefix"}
)


def _logged(name: str, response: bool = False) -> bool:
    name = name.lower()
    if response:
        return name in _LOGGED_RESPONSE_HEADERS or name.startswith("x-amz-checksum-")
    return name in _LOGGED_REQUEST_HEADERS or name.startswith("x-amz-checksum-")


def operation_of(method: str, path: str, query: dict[str, str]) -> str:
    """The S3 operation of a path-style request (the subset the engine and the tests use)."""
    parts = path.lstrip("/").split("/", 1)
    has_key = len(parts) == 2 and parts[1] != ""
    method = method.upper()
    if not parts[0]:
        return "ListBuckets" if method == "GET" else f"{method}Service"
    if not has_key:
        bucket_ops = {
            ("HEAD", False): "HeadBucket",
            ("PUT", False): "CreateBucket",
            ("DELETE", False): "DeleteBucket",
            ("GET", False): "ListObjects",
            ("GET", True): "ListMultipartUploads",
            ("POST", False): "DeleteObjects" if "delete" in query else "PostBucket",
        }
        return bucket_ops.get((method, "uploads" in query), f"{method}Bucket")
    if "uploadId" in query:
        return {
            "PUT": "UploadPart",
            "POST": "CompleteMultipartUpload",
            "DELETE": "AbortMultipartUpload",
            "GET": "ListParts",
        }.get(method, f"{method}Upload")
    if method == "POST" and "uploads" in query:
        return "CreateMultipartUpload"
    return {
        "PUT": "PutObject",
        "GET": "GetObject",
        "HEAD": "HeadObject",
        "DELETE": "DeleteObject",
    }.get(method, f"{method}Object")


def s3_error_xml(code: str, message: str, resource: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<Resource>{resource}</Resource><RequestId>PROXYFAULT</RequestId>"
        "<HostId>fault-proxy</HostId></Error>"
    ).encode()


class Rule:
    def __init__(self, index: int, spec: dict[str, Any]) -> None:
        if not isinstance(spec, dict):
            raise TypeError(f"rule {index}: expected an object, got {spec!r}")
        action = spec.get("action")
        if action not in ACTIONS:
            raise ValueError(f"rule {index}: unknown action {action!r}; known: {sorted(ACTIONS)}")
        match = spec.get("match") or {}
        unknown = set(match) - _MATCH_KEYS
        if unknown:
            raise ValueError(f"rule {index}: unknown match keys {sorted(unknown)}")
        self.index = index
        self.spec = spec
        self.action: str = action
        self.method: str | None = match.get("method")
        self.operation: str | None = match.get("operation")
        self.query_has: list[str] = list(match.get("query_has") or [])
        self.query: dict[str, str] = {k: str(v) for k, v in (match.get("query") or {}).items()}
        regex = match.get("path_regex")
        self.path_regex = re.compile(regex) if regex else None
        self.header_prefix: str | None = match.get("header_prefix")
        times = spec.get("times")
        self.times: int | None = None if times is None else int(times)
        self.probability = float(spec.get("probability", 1.0))
        self.applied = 0

    def matches(self, entry: dict[str, Any]) -> bool:
        if self.method is not None and entry["method"] != self.method.upper():
            return False
        if self.operation is not None and entry["operation"] != self.operation:
            return False
        query: dict[str, str] = entry["query"]
        if any(key not in query for key in self.query_has):
            return False
        if any(query.get(key) != value for key, value in self.query.items()):
            return False
        if self.header_prefix is not None and not any(
            name.startswith(self.header_prefix.lower()) for name in entry["headers"]
        ):
            return False
        return not (self.path_regex is not None and not self.path_regex.search(entry["path"]))

    @property
    def spent(self) -> bool:
        return self.times is not None and self.applied >= self.times

    def param(self, name: str, default: Any) -> Any:
        return self.spec.get(name, default)

    def describe(self) -> dict[str, Any]:
        return {**self.spec, "applied": self.applied}


class ProxyState:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rules: list[Rule] = []
        self.log: list[dict[str, Any]] = []
        self.rng = random.Random(0)
        self.session: aiohttp.ClientSession | None = None

    def set_rules(self, payload: Any) -> None:
        seed = 0
        if isinstance(payload, dict):
            seed = int(payload.get("seed", 0))
            payload = payload.get("rules", [])
        if not isinstance(payload, list):
            raise TypeError("expected a list of rules or {'rules': [...], 'seed': N}")
        rules = [Rule(i, spec) for i, spec in enumerate(payload)]
        self.rules = rules
        self.rng = random.Random(seed)

    def choose(self, entry: dict[str, Any]) -> Rule | None:
        for rule in self.rules:
            if rule.spent or not rule.matches(entry):
                continue
            if rule.probability < 1.0 and self.rng.random() >= rule.probability:
                continue
            rule.applied += 1
            return rule
        return None


STATE = web.AppKey("state", ProxyState)


# ------------------------------------------------------------------------------ helpers


class BodyTap:
    """Reads the client's request body once, hashing (and maybe corrupting) it on the way."""

    def __init__(self, request: web.Request, entry: dict[str, Any], corrupt: Rule | None) -> None:
        self._content = request.content
        self._entry = entry
        self._crc = 0
        self._md5 = hashlib.md5()
        self._length = 0
        self._keep_text = request.method == "POST"
        self._text = bytearray()
        self._corrupt_at = int(corrupt.param("offset", 0)) if corrupt is not None else -1
        self._xor = int(corrupt.param("xor", 0xFF)) if corrupt is not None else 0
        self.done = False

    def _see(self, chunk: bytes) -> bytes:
        start = self._length
        self._length += len(chunk)
        self._crc = crc32c(chunk, self._crc)
        self._md5.update(chunk)
        if self._keep_text and len(self._text) <= _TEXT_LIMIT:
            self._text += chunk
        if start <= self._corrupt_at < self._length:
            flipped = bytearray(chunk)
            flipped[self._corrupt_at - start] ^= self._xor
            chunk = bytes(flipped)
        return chunk

    def _finish(self) -> None:
        self.done = True
        self._entry["body_length"] = self._length
        self._entry["body_crc32c"] = f"{self._crc:08x}"
        self._entry["body_md5"] = self._md5.hexdigest()
        if self._keep_text and 0 < len(self._text) < _TEXT_LIMIT:
            self._entry["body_text"] = self._text.decode("utf-8", "replace")

    async def chunks(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """Yield the body (its first ``limit`` bytes if given) as it arrives."""
        while limit is None or self._length < limit:
            chunk = await self._content.readany()
            if not chunk:
                self._finish()
                return
            if limit is not None and self._length + len(chunk) > limit:
                chunk = chunk[: limit - self._length]
            yield self._see(chunk)
        self._entry["body_length"] = self._length  # partial: hashes stay null

    async def drain(self, limit: int | None = None) -> None:
        async for _ in self.chunks(limit):
            pass


def _abort_with_rst(request: web.Request) -> None:
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def _response_headers(upstream: aiohttp.ClientResponse) -> list[tuple[str, str]]:
    return [
        (name, value)
        for name, value in upstream.headers.items()
        if name.lower() not in _HOP_BY_HOP and name.lower() not in ("date", "server")
    ]


# ------------------------------------------------------------------------------ handlers


async def health(request: web.Request) -> web.Response:
    return web.json_response({"pid": os.getpid(), "upstream": request.app[STATE].upstream})


async def get_log(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].log)


async def get_rules(request: web.Request) -> web.Response:
    return web.json_response([rule.describe() for rule in request.app[STATE].rules])


async def post_rules(request: web.Request) -> web.Response:
    try:
        request.app[STATE].set_rules(await request.json())
    except (ValueError, TypeError, re.error) as exc:
        return web.json_response({"error": str(exc)}, status=400)
    return web.json_response({"rules": len(request.app[STATE].rules)})


async def post_reset(request: web.Request) -> web.Response:
    state = request.app[STATE]
    state.log.clear()
    state.rules = []
    state.rng = random.Random(0)
    return web.json_response({"ok": True})


async def proxy(request: web.Request) -> web.StreamResponse:
    state = request.app[STATE]
    query = dict(parse_qsl(request.query_string, keep_blank_values=True))
    entry: dict[str, Any] = {
        "id": len(state.log),
        "method": request.method,
        "path": request.path,
        "raw_path": request.raw_path.partition("?")[0],
        "raw_query": request.query_string,
        "query": query,
        "operation": operation_of(request.method, request.path, query),
        "headers": {k.lower(): v for k, v in request.headers.items() if _logged(k)},
        "body_length": None,
        "body_crc32c": None,
        "body_md5": None,
        "body_text": None,
        "status": None,
        "fault": None,
        "rule": None,
        "response_headers": {},
        "response_bytes": 0,
        "started": time.time(),
        "finished": None,
        "error": None,
    }
    state.log.append(entry)
    rule = state.choose(entry)
    if rule is not None:
        entry["fault"] = rule.action
        entry["rule"] = rule.index
    tap = BodyTap(request, entry, rule if rule and rule.action == "corrupt_request" else None)
    try:
        return await _handle(request, state, entry, rule, tap)
    except (ConnectionError, asyncio.CancelledError) as exc:
        entry["error"] = f"client went away: {exc!r}"
        raise
    except Exception as exc:
        entry["error"] = repr(exc)
        raise
    finally:
        if entry["finished"] is None:
            entry["finished"] = time.time()


async def _handle(
    request: web.Request,
    state: ProxyState,
    entry: dict[str, Any],
    rule: Rule | None,
    tap: BodyTap,
) -> web.StreamResponse:
    action = rule.action if rule is not None else None

    if rule is not None and action in ("status", "error_200", "reset_before"):
        if rule.param("forward", False):
            async with _forward(request, state, tap, strip_range=False) as upstream:
                await upstream.read()
        elif action == "reset_before" and rule.param("after_request_bytes", None) is not None:
            await tap.drain(int(rule.param("after_request_bytes", 0)))
        else:
            await tap.drain()
        if action == "reset_before":
            _abort_with_rst(request)
            return web.Response()
        if action == "status":
            status = int(rule.param("status", 503))
            code = str(rule.param("code", "SlowDown"))
        else:
            status, code = 200, str(rule.param("code", "InternalError"))
        message = str(rule.param("message", f"fault injected by the proxy: {code}"))
        entry["status"] = status
        body = b"" if request.method == "HEAD" else s3_error_xml(code, message, request.path)
        return web.Response(status=status, body=body, content_type="application/xml")

    if rule is not None and action == "delay" and rule.param("when", "before") == "before":
        await asyncio.sleep(float(rule.param("seconds", 1.0)))

    strip_range = action == "ignore_range"
    async with _forward(request, state, tap, strip_range=strip_range) as upstream:
        if rule is not None and action == "delay" and rule.param("when", "before") == "after":
            await asyncio.sleep(float(rule.param("seconds", 1.0)))
        entry["status"] = upstream.status
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason)
        for name, value in _response_headers(upstream):
            response.headers.add(name, value)
        if rule is not None and action == "rewrite_header":
            for name, value in dict(rule.param("headers", {})).items():
                if value is None:
                    response.headers.popall(name, None)
                else:
                    response.headers[name] = str(value)
        entry["response_headers"] = {
            k.lower(): v for k, v in response.headers.items() if _logged(k, response=True)
        }
        total = upstream.content_length
        await response.prepare(request)

        cut: int | None = None
        if rule is not None and action in ("reset_mid", "truncate"):
            default = (total or 0) // 2
            cut = int(rule.param("bytes", default))
            if total is not None and total > 0:
                cut = min(cut, total - 1)
        corrupt_at = int(rule.param("offset", 0)) if action == "corrupt_response" and rule else -1
        xor = int(rule.param("xor", 0xFF)) if rule is not None else 0xFF
        chunk_size = int(rule.param("chunk_size", 1024)) if action == "slow" and rule else _CHUNK
        interval = float(rule.param("interval", 0.1)) if action == "slow" and rule else 0.0

        sent = 0
        while True:
            chunk = await upstream.content.read(chunk_size)
            if not chunk:
                break
            if sent <= corrupt_at < sent + len(chunk):
                flipped = bytearray(chunk)
                flipped[corrupt_at - sent] ^= xor
                chunk = bytes(flipped)
            if cut is not None and sent + len(chunk) >= cut:
                chunk = chunk[: cut - sent]
                await response.write(chunk)
                sent += len(chunk)
                entry["response_bytes"] = sent
                await _cut(request, rule, action)
                return response
            await response.write(chunk)
            sent += len(chunk)
            entry["response_bytes"] = sent
            if interval:
                await asyncio.sleep(interval)
        if cut is not None:  # the body was shorter than the cut: cut at its end
            await _cut(request, rule, action)
            return response
        await response.write_eof()
        # Stamped before any other request can be handled: no await since the last byte went.
        entry["finished"] = time.time()
        return response


async def _cut(request: web.Request, rule: Rule | None, action: str | None) -> None:
    """End a response early: RST for reset_mid, FIN for truncate."""
    # Let the client read what was sent before the connection goes away.
    await asyncio.sleep(float(rule.param("linger", 0.05)) if rule is not None else 0.05)
    if action == "reset_mid":
        _abort_with_rst(request)
    elif request.transport is not None:
        request.transport.close()


@contextlib.asynccontextmanager
async def _forward(
    request: web.Request,
    state: ProxyState,
    tap: BodyTap,
    *,
    strip_range: bool,
) -> AsyncIterator[aiohttp.ClientResponse]:
    """Send the request upstream, its body streamed through ``tap``; yield the response."""
    headers = CIMultiDict(
        (name, value)
        for name, value in request.headers.items()
        if name.lower() not in _HOP_BY_HOP and not (strip_range and name.lower() == "range")
    )
    data: AsyncIterator[bytes] | None = None
    if request.body_exists:
        data = tap.chunks()
    else:
        await tap.drain()
    url = URL(state.upstream + request.raw_path, encoded=True)
    assert state.session is not None
    async with state.session.request(
        request.method, url, headers=headers, data=data, allow_redirects=False
    ) as response:
        yield response


# ------------------------------------------------------------------------------ app


def make_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=1024**3)
    app[STATE] = ProxyState(upstream)

    async def session_ctx(app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession(
            auto_decompress=False,
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=300),
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        ) as session:
            app[STATE].session = session
            yield

    app.cleanup_ctx.append(session_ctx)
    app.router.add_get(CONTROL + "health", health)
    app.router.add_get(CONTROL + "log", get_log)
    app.router.add_get(CONTROL + "rules", get_rules)
    app.router.add_post(CONTROL + "rules", post_rules)
    app.router.add_post(CONTROL + "reset", post_reset)
    app.router.add_route("*", "/{tail:.*}", proxy)
    return app


def main(argv: list[str] | None = None, *, run: Callable[..., None] = web.run_app) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--upstream", required=True, help="the S3 server, e.g. http://host:port")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    run(
        make_app(args.upstream),
        host=args.host,
        port=args.port,
        access_log=None,
        print=None,
        shutdown_timeout=1.0,
    )


if __name__ == "__main__":
    main()
