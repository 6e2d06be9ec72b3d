"""What every handler of the local S3 server shares: the server's state, the parsed request
(``Call``), and small HTTP helpers (dates, ETag lists, stored headers, XML responses)."""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import email.utils
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web

from .._core.units import GiB, MiB
from ._s3_store import Store
from ._s3_uploads import Uploads
from ._s3_xml import Doc, S3Error

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping
    from pathlib import Path

    from ._s3_store import ObjectMeta

T = TypeVar("T")

DEFAULT_MIN_PART_SIZE = 5 * MiB
DEFAULT_MAX_BODY = 5 * GiB
DEFAULT_SMALL_BODY = 1 * MiB
MAX_PARTS = 10_000
# Object headers S3 stores with an object and returns on GET/HEAD.
STORED_HEADERS = (
    "Cache-Control",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Expires",
)
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    root: Path
    credentials: Mapping[str, str] | None = None
    """Access key -> secret key. None: any credentials (or none) are accepted."""
    min_part_size: int = DEFAULT_MIN_PART_SIZE
    """Smallest part but the last that CompleteMultipartUpload accepts (EntityTooSmall)."""
    max_body: int = DEFAULT_MAX_BODY
    """Largest PutObject / UploadPart body (EntityTooLarge)."""
    fsync: bool = True
    """fsync metadata files before they replace the old ones (off: benchmarks, where the fsync
    is most of a small PutObject's time)."""
    small_body: int = DEFAULT_SMALL_BODY
    """Bodies and objects up to this size are handled in memory: a PutObject / UploadPart body
    is read whole, then hashed, written and committed in one worker-thread call (and stored
    inline, in the object's metadata file); a GetObject reads the bytes with the metadata and
    sends them from memory instead of with sendfile."""
    loop_reads: bool = True
    """HeadObject and GetObject read the metadata (and a small object's bytes) on the event
    loop: a page-cache read of a few KiB costs ~20 us, the hop to a worker thread and back ~100
    us of CPU (measured: GET of 64 KiB 0.37 -> 0.27 ms of server CPU). Turn it off for a store
    on a slow or network disk, where a read could stall every connection."""


class ServerState:
    """The store and the worker threads that touch it, for one application."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.store = Store(config.root, fsync=config.fsync)
        self.uploads = Uploads(self.store)
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=16, thread_name_prefix="asynctransfer-s3"
        )

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking file work in a worker thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a small read (no lock, a few KiB to 1 MiB from the page cache): on the event loop
        when ``ServerConfig.loop_reads`` (see there), else in a worker thread."""
        if self.config.loop_reads:
            return fn(*args)
        return await self.run(fn, *args)

    def close(self) -> None:
        self.executor.shutdown(wait=True)
        self.store.close()


@dataclass(frozen=True)
class Call:
    """One parsed, authenticated request."""

    request: web.Request
    state: ServerState
    bucket: str
    key: str
    query: dict[str, str]
    payload_sha256: str | None
    """The hex SHA-256 the body must have (SigV4 signed payload); None: not checked."""
    handler: Callable[[Call], Awaitable[web.StreamResponse]]

    @property
    def headers(self) -> Mapping[str, str]:
        return self.request.headers

    def int_param(self, name: str, default: int, *, low: int = 0, high: int = 2**31 - 1) -> int:
        value = self.query.get(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            number = low - 1
        if not low <= number <= high:
            raise S3Error(
                "InvalidArgument",
                f"{name} must be an integer between {low} and {high}",
                ArgumentName=name,
                ArgumentValue=value,
            )
        return number


def http_date(timestamp: float) -> str:
    return _http_date(int(timestamp))


@functools.lru_cache(maxsize=4096)
def _http_date(seconds: int) -> str:  # (objects written in the same second share it)
    return email.utils.formatdate(seconds, usegmt=True)


def parse_http_date(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


def etag_list(value: str) -> list[str]:
    """The ETags of an If-Match / If-None-Match header, unquoted (``*`` kept)."""
    tags = (item.strip().removeprefix("W/").strip('"') for item in value.split(","))
    return [tag for tag in tags if tag]


def stored_headers(headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """(Content-Type, other headers to keep) of a PutObject / CreateMultipartUpload."""
    content_type = headers.get("Content-Type") or "binary/octet-stream"
    kept = {name: headers[name] for name in STORED_HEADERS if name in headers}
    for name, value in headers.items():
        if name.lower().startswith("x-amz-meta-"):
            kept[name.lower()] = value
    return content_type, kept


def object_headers(meta: ObjectMeta) -> dict[str, str]:
    return {
        "ETag": f'"{meta.etag}"',
        "Last-Modified": http_date(meta.last_modified),
        "Content-Type": meta.content_type,
        "Accept-Ranges": "bytes",
        **meta.headers,
    }


def xml_response(doc: Doc, *, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=doc.render(), content_type="application/xml", headers=headers)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def continuation_token(last: str, is_prefix: bool) -> str:
    return base64.urlsafe_b64encode(("P" if is_prefix else "K").encode() + last.encode()).decode()


def parse_continuation_token(token: str) -> tuple[str, bool]:
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        raw = ""
    if raw[:1] not in ("P", "K"):
        raise S3Error(
            "InvalidArgument",
            "The continuation token provided is incorrect",
            ArgumentName="continuation-token",
        )
    return raw[1:], raw[0] == "P"
