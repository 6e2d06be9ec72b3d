"""A local S3-compatible endpoint: ``asynctransfer serve``, and ``create_app`` for tests.

Why another S3 server: moto is correct enough for tests but slow (tens of MB/s) and trusts
every checksum; benchmarks need a server faster than the clients it measures, and integrity
tests need one that checks Content-MD5 and ``x-amz-checksum-*`` like S3 does. This one keeps
objects and parts as files under a root directory (see ``_s3_store``), streams bodies to disk
while hashing them in worker threads (``_s3_body``), sends objects with sendfile
(``_s3_objects``), verifies SigV4 when given credentials (``_sigv4``), and answers with S3's
status codes and XML errors (``_s3_xml``). Small objects (up to ``small_body``, 1 MiB) take a
shorter path: the body is read in memory and hashed, verified and stored in one worker-thread
call, in one file; a GET reads it in one go and sends it from memory. Every hop to a thread
and every file created costs server CPU that the clients being measured then lack.

Requests use path-style addressing (``http://HOST:PORT/bucket/key``), which is what boto3 and
aiobotocore do for a custom endpoint. Not supported (answered 405 or 501): versioning, ACLs,
tagging, copies, aws-chunked (streaming SigV4) bodies, FULL_OBJECT multipart checksums,
CRC64NVME.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import secrets
import signal
import sys
import time
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import hdrs, web

from . import _sigv4
from ._s3_body import Expected, read_small
from ._s3_http import (
    DEFAULT_MAX_BODY,
    DEFAULT_MIN_PART_SIZE,
    DEFAULT_SMALL_BODY,
    Call,
    ServerConfig,
    ServerState,
    xml_response,
)
from ._s3_listing import list_buckets, list_objects, list_objects_v2
from ._s3_multipart import (
    abort_multipart_upload,
    complete_multipart_upload,
    create_multipart_upload,
    list_multipart_uploads,
    list_parts,
    upload_part,
)
from ._s3_objects import delete_object, delete_objects, get_object, put_object
from ._s3_xml import Doc, S3Error, error_document

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
    from typing import TypeAlias

    Handler: TypeAlias = Callable[[Call], Awaitable[web.StreamResponse]]

__all__ = ["ServerConfig", "create_app", "running", "serve", "serve_command"]

logger = logging.getLogger("asynctransfer.servers.s3")

STATE = web.AppKey("asynctransfer.s3.state", ServerState)
_CALL = web.RequestKey("asynctransfer.s3.call", Call)
_REQUEST_ID = web.RequestKey("asynctransfer.s3.request_id", str)
# Request IDs: unique per process and cheap (a counter after a random prefix; S3's are 16
# characters too), not a getrandom() call per request.
_ID_PREFIX = secrets.token_hex(4).upper()
_ID_COUNTER = itertools.count()


def _new_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFF:08X}"


# Sub-resources S3 has and this server does not: answered 405 rather than misread as a GET/PUT
# of the object or bucket.
_UNSUPPORTED = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "attributes",
        "cors",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "session",
        "tagging",
        "torrent",
        "versioning",
        "versions",
        "website",
    }
)


# ------------------------------------------------------------------ buckets


async def create_bucket(call: Call) -> web.StreamResponse:
    await _drain(call)
    await call.state.run(call.state.store.create_bucket, call.bucket, time.time())
    return web.Response(headers={"Location": f"/{call.bucket}"})


async def head_bucket(call: Call) -> web.StreamResponse:
    await call.state.run(call.state.store.require_bucket, call.bucket)
    return web.Response(headers={"x-amz-bucket-region": "us-east-1"})


async def delete_bucket(call: Call) -> web.StreamResponse:
    has_uploads = bool(await call.state.run(call.state.uploads.in_bucket, call.bucket))
    await call.state.run(call.state.store.delete_bucket, call.bucket, has_uploads=has_uploads)
    return web.Response(status=204)


async def get_bucket_location(call: Call) -> web.StreamResponse:
    await call.state.run(call.state.store.require_bucket, call.bucket)
    return xml_response(Doc("LocationConstraint"))


async def _drain(call: Call) -> None:
    await read_small(call.request, Expected(sha256_hex=call.payload_sha256), limit=1024 * 1024)


# ------------------------------------------------------------------ dispatch


def _route(method: str, bucket: str, key: str, query: Mapping[str, str]) -> Handler:
    unsupported = _UNSUPPORTED.intersection(query)
    if unsupported:
        raise S3Error(
            "MethodNotAllowed",
            f"{'/'.join(sorted(unsupported))} is not supported by this server",
            Method=method,
            ResourceType="SUBRESOURCE",
        )
    table: dict[str, Handler] = {}
    if not bucket:
        table = {"GET": list_buckets}
    elif not key:
        if "uploads" in query:
            table = {"GET": list_multipart_uploads}
        elif "location" in query:
            table = {"GET": get_bucket_location}
        elif "delete" in query:
            table = {"POST": delete_objects}
        else:
            lister = list_objects_v2 if query.get("list-type") == "2" else list_objects
            table = {
                "GET": lister,
                "PUT": create_bucket,
                "HEAD": head_bucket,
                "DELETE": delete_bucket,
            }
    elif "uploadId" in query:
        table = {
            "GET": list_parts,
            "POST": complete_multipart_upload,
            "DELETE": abort_multipart_upload,
        }
        if "partNumber" in query:
            table["PUT"] = upload_part
    elif "uploads" in query:
        table = {"POST": create_multipart_upload}
    else:
        table = {"GET": get_object, "HEAD": get_object, "PUT": put_object, "DELETE": delete_object}
    handler = table.get(method)
    if handler is None:
        raise S3Error(
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
            Method=method,
            ResourceType="OBJECT" if key else "BUCKET" if bucket else "SERVICE",
        )
    return handler


def _split_path(raw_path: str) -> tuple[str, str]:
    path = raw_path.split("?", 1)[0]
    if not path.startswith("/"):
        raise S3Error("InvalidRequest", "the request target must be an absolute path")
    bucket, _, key = path[1:].partition("/")
    try:
        return (
            urllib.parse.unquote(bucket, errors="strict"),
            urllib.parse.unquote(key, errors="strict"),
        )
    except UnicodeDecodeError:
        raise S3Error("InvalidArgument", "the key is not valid UTF-8") from None


def _prepare(request: web.Request) -> Call:
    """Parse and authenticate a request (headers only: the body is checked as it streams)."""
    state = request.app[STATE]
    raw_path, _, raw_query = request.raw_path.partition("?")
    content_sha256 = request.headers.get("x-amz-content-sha256", "")
    encoding = request.headers.get(hdrs.CONTENT_ENCODING, "")
    if content_sha256.startswith("STREAMING-") or "aws-chunked" in encoding.lower():
        raise S3Error(
            "NotImplemented",
            "aws-chunked (streaming SigV4) bodies are not supported by this server: send the "
            "body as it is, with UNSIGNED-PAYLOAD or its SHA-256 (botocore does so over http)",
        )
    payload_sha256 = None
    credentials = state.config.credentials
    if credentials is not None:
        verified = _sigv4.verify(
            request.method, raw_path, raw_query, request.headers, credentials, time.time()
        )
        payload_sha256 = verified.payload_sha256
    bucket, key = _split_path(raw_path)
    query = dict(_sigv4.query_pairs(raw_query))
    handler = _route(request.method, bucket, key, query)
    return Call(request, state, bucket, key, query, payload_sha256, handler)


def _error_response(request: web.Request, error: S3Error) -> web.Response:
    body = None
    if request.method != "HEAD":
        body = error_document(error, request.path, request.get(_REQUEST_ID, ""))
    # A body left unread is read and dropped by aiohttp after the answer (for at most 10 s):
    # closing instead would cut a client still sending it off from the answer.
    return web.Response(
        status=error.status, body=body, content_type="application/xml", headers=error.headers
    )


def _as_s3_error(exc: Exception) -> S3Error:
    if isinstance(exc, S3Error):
        return exc
    if isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG:
        return S3Error("KeyTooLongError", "Your key is too long")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return S3Error("InternalError", "the server's disk is full")
    logger.exception("internal error")
    return S3Error("InternalError", f"We encountered an internal error: {exc}")


def _stamp(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
    request_id = request.get(_REQUEST_ID, "")
    response.headers["x-amz-request-id"] = request_id
    response.headers["x-amz-id-2"] = request_id
    response.headers["Server"] = "asynctransfer"
    return response


async def _handle(request: web.Request) -> web.StreamResponse:
    if _REQUEST_ID not in request:
        request[_REQUEST_ID] = _new_request_id()
    try:
        call = request.get(_CALL) or _prepare(request)
        response = await call.handler(call)
    except Exception as exc:  # noqa: BLE001 (every failure becomes an S3 error answer)
        response = _error_response(request, _as_s3_error(exc))
    return _stamp(request, response)


async def _expect(request: web.Request) -> web.StreamResponse | None:
    """Expect: 100-continue: refuse before the body is sent when the headers already fail."""
    request[_REQUEST_ID] = _new_request_id()
    if request.headers.get(hdrs.EXPECT, "").lower() != "100-continue":
        return web.Response(status=417)
    try:
        call = _prepare(request)
        limit = request.app[STATE].config.max_body
        if call.key and (request.content_length or 0) > limit:
            raise S3Error(
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
                ProposedSize=request.content_length or 0,
                MaxSizeAllowed=limit,
            )
    except Exception as exc:  # noqa: BLE001 (every failure becomes an S3 error answer)
        response = _error_response(request, _as_s3_error(exc))
        response.force_close()  # the client sends no body after a final answer
        return _stamp(request, response)
    request[_CALL] = call
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


def create_app(
    root: str | os.PathLike[str],
    *,
    credentials: Mapping[str, str] | None = None,
    min_part_size: int = DEFAULT_MIN_PART_SIZE,
    max_body: int = DEFAULT_MAX_BODY,
    fsync: bool = True,
    small_body: int = DEFAULT_SMALL_BODY,
    loop_reads: bool = True,
) -> web.Application:
    """The S3 endpoint as an aiohttp application storing under ``root``.

    ``credentials`` maps access keys to secret keys: requests must then be SigV4-signed by one
    of them (403 otherwise); None accepts any request. ``min_part_size`` is the EntityTooSmall
    limit for every part but the last; ``max_body`` bounds a PutObject / UploadPart body.
    ``fsync=False`` skips the fsync of each object's metadata (benchmarks: it is most of a
    small PutObject's time; the store stays consistent if the server dies, not if the machine
    does). Bodies and objects up to ``small_body`` bytes are handled in memory (fewer thread
    hops; see ``ServerConfig.small_body``); ``loop_reads`` reads small objects and metadata on
    the event loop (see ``ServerConfig.loop_reads``).
    """
    config = ServerConfig(
        root=Path(root),
        credentials=dict(credentials) if credentials is not None else None,
        min_part_size=min_part_size,
        max_body=max_body,
        fsync=fsync,
        small_body=small_body,
        loop_reads=loop_reads,
    )
    app = web.Application(client_max_size=1024 * 1024)
    app.router.add_route("*", "/{path:.*}", _handle, expect_handler=_expect)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        app[STATE] = ServerState(config)
        yield
        app[STATE].close()

    app.cleanup_ctx.append(lifecycle)
    return app


@contextlib.asynccontextmanager
async def running(
    app: web.Application,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    access_log: logging.Logger | None = None,
) -> AsyncIterator[str]:
    """Serve ``app`` on ``host:port`` (0: a free port) in the running event loop; yield its URL.
    No access log unless given a logger (it costs a formatted line per request)."""
    runner = web.AppRunner(app, access_log=access_log, handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, reuse_address=True)
        await site.start()
        bound = runner.addresses[0][1]
        shown = f"[{host}]" if ":" in host else host
        yield f"http://{shown}:{bound}"
    finally:
        await runner.cleanup()


async def serve(
    root: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 9000,
    credentials: Mapping[str, str] | None = None,
    min_part_size: int = DEFAULT_MIN_PART_SIZE,
    max_body: int = DEFAULT_MAX_BODY,
    fsync: bool = True,
    ready: Callable[[str], None] | None = None,
    access_log: logging.Logger | None = None,
) -> None:
    """Run the endpoint until SIGINT or SIGTERM; ``ready`` gets its URL once it listens."""
    app = create_app(
        root,
        credentials=credentials,
        min_part_size=min_part_size,
        max_body=max_body,
        fsync=fsync,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with running(app, host, port, access_log=access_log) as url:
            if ready is not None:
                ready(url)
            await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def serve_command(
    root: str | os.PathLike[str],
    *,
    host: str = "127.0.0.1",
    port: int = 9000,
    access_key: str | None = None,
    secret_key: str | None = None,
    min_part_size: int = DEFAULT_MIN_PART_SIZE,
    max_body: int = DEFAULT_MAX_BODY,
    fsync: bool = True,
    verbose: bool = False,
) -> int:
    """``asynctransfer serve``: one ``listening on URL`` line on stdout when ready, then serve
    until SIGINT / SIGTERM; exit status 0 (1 if it cannot start). ``verbose``: log requests;
    ``fsync=False``: ``--no-fsync`` (see ``create_app``)."""
    credentials = None
    if access_key is not None and secret_key is not None:
        credentials = {access_key: secret_key}
    else:
        sys.stderr.write(
            "asynctransfer serve: no --access-key/--secret-key given: accepting requests with "
            "any credentials, or none\n"
        )

    def ready(url: str) -> None:
        sys.stdout.write(f"listening on {url}\n")
        sys.stdout.flush()

    try:
        asyncio.run(
            serve(
                root,
                host=host,
                port=port,
                credentials=credentials,
                min_part_size=min_part_size,
                max_body=max_body,
                fsync=fsync,
                ready=ready,
                access_log=logging.getLogger("aiohttp.access") if verbose else None,
            )
        )
    except OSError as exc:  # the root is unusable, the port taken...
        sys.stderr.write(f"asynctransfer serve: error: {exc}\n")
        return 1
    return 0
