"""The S3 driver: aiobotocore calls, nothing more, and one place where their errors are mapped.

botocore is configured so that it does no work we do better or do not want:
- no SHA-256 of every body for SigV4 (``payload_signing_enabled=False``: UNSIGNED-PAYLOAD; the
  per-part CRC32C or Content-MD5 that we compute off the event loop is what the store verifies);
- no default CRC32 on every request and no response checksum wrapper
  (``when_required``, since botocore 1.36 added them; they also broke several S3-compatible
  stores: boto/boto3#4392, #4435). The checksum we chose is sent as a precomputed header.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import aiohttp.payload
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore import exceptions as bexc

from .._core.checkpoint import ListedPart
from .._core.ranges import RangeMismatchError, check_content_range, range_header
from .._errors import (
    AccessDeniedError,
    InvalidRequestError,
    NetworkError,
    NotFoundError,
    PreconditionFailedError,
    ProtocolViolationError,
    RemoteError,
    ServerError,
    SlowDownError,
    TransferError,
    TransferTimeoutError,
)

if TYPE_CHECKING:
    import datetime
    from collections.abc import AsyncIterator, Iterator
    from contextlib import AsyncExitStack

    from .._options import TransferConfig


class BufferPayload(aiohttp.payload.Payload):
    """A part buffer sent in memoryview slices, without a copy.

    Measured (benchmarks/botocore_cpu.py): handed a bytearray, aiohttp copies the body twice
    per request (a bytearray slice in BytesPayload, then ``b"".join`` with the headers on
    Python < 3.12.9), about half of the client's CPU per GiB. A file object instead costs an
    executor round trip per 64 KiB. Slices of a memoryview go to the transport as they are; the
    writer drains between them, so at most the unsent tail of one slice is ever copied.
    """

    _SLICE = 256 * 1024

    def __init__(self, value: bytearray) -> None:
        super().__init__(value, content_type="application/octet-stream")
        self._size = len(value)

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        return bytes(self._value).decode(encoding, errors)

    async def write(self, writer: Any) -> None:
        await self.write_with_length(writer, None)

    async def write_with_length(self, writer: Any, content_length: int | None) -> None:
        view = memoryview(self._value)
        if content_length is not None:
            view = view[:content_length]
        for start in range(0, len(view), self._SLICE):
            await writer.write(view[start : start + self._SLICE])


def _send_buffers_without_copy(request: Any, **_: Any) -> None:
    # botocore validates and signs the bytearray Body (it accepts no memoryview); this
    # before-send hook, botocore's own extension point, swaps in the zero-copy payload just
    # before aiobotocore hands the body to aiohttp. Retries reuse it: writing has no state.
    if type(request.body) is bytearray:
        request.body = BufferPayload(request.body)


_shared_loader: Any = None

_NOT_FOUND = {"NoSuchKey", "NoSuchBucket", "NoSuchUpload", "NotFound", "404"}
_DENIED = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "AllAccessDisabled",
    "403",
    "401",
}
_SLOW_DOWN = {"SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "429"}
# S3 checksum names, as they appear in response fields (ChecksumCRC32C, ...).
CHECKSUM_FIELDS = ("CRC32C", "CRC32", "SHA256", "SHA1", "CRC64NVME")


def _client_error(exc: bexc.ClientError, url: str) -> TransferError:
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    return remote_error(
        url,
        status=meta.get("HTTPStatusCode"),
        code=str(error.get("Code", "")),
        message=error.get("Message"),
        request_id=meta.get("RequestId"),
    )


def error_document(body: bytes) -> tuple[str, str | None]:
    """(Code, Message) of an S3 XML error body; empty when it is not one."""
    code = re.search(rb"<Code>([^<]*)</Code>", body)
    message = re.search(rb"<Message>([^<]*)</Message>", body)
    return (
        code.group(1).decode("utf-8", "replace") if code else "",
        message.group(1).decode("utf-8", "replace") if message else None,
    )


def remote_error(
    url: str,
    *,
    status: int | None,
    code: str,
    message: str | None,
    request_id: str | None = None,
) -> TransferError:
    """The typed error for an S3 error answer."""
    message = message or code or f"HTTP {status}"
    kwargs: dict[str, Any] = {"url": url, "status": status, "code": code, "request_id": request_id}
    text = f"{url}: {message} ({code or status})"
    if code in _NOT_FOUND or status == 404:
        return NotFoundError(text, **kwargs)
    if code in _DENIED or status in (401, 403):
        return AccessDeniedError(
            f"{text}: check the credentials (AWS_ACCESS_KEY_ID / AWS_PROFILE) and their "
            "permissions",
            **kwargs,
        )
    if code == "PreconditionFailed" or status == 412:
        return PreconditionFailedError(f"{text}: the object changed during the transfer", **kwargs)
    if code in _SLOW_DOWN or status in (429, 503):
        return SlowDownError(text, **kwargs)
    if status is not None and status >= 500:
        return ServerError(text, **kwargs)
    return RemoteError(text, **kwargs)


def error_answer(url: str, status: int, body: bytes, request_id: str | None) -> TransferError:
    """The typed error for a non-2xx answer our own clients received: the S3 XML error
    document in ``body`` (if it is one) read for its Code and Message."""
    code, message = error_document(body)
    return remote_error(url, status=status, code=code, message=message, request_id=request_id)


@contextlib.contextmanager
def map_errors(url: str) -> Iterator[None]:
    """Convert botocore/aiohttp errors raised inside into this library's tree."""
    try:
        yield
    except TransferError:
        raise
    except bexc.ClientError as exc:
        raise _client_error(exc, url) from exc
    except bexc.NoCredentialsError as exc:
        raise AccessDeniedError(
            f"{url}: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or AWS_PROFILE",
            url=url,
        ) from exc
    except bexc.ParamValidationError as exc:
        raise InvalidRequestError(f"{url}: {exc}", url=url) from exc
    except (bexc.ConnectTimeoutError, bexc.ReadTimeoutError, TimeoutError) as exc:
        raise TransferTimeoutError(f"{url}: timed out: {exc}", url=url) from exc
    except (bexc.EndpointConnectionError, bexc.ConnectionClosedError) as exc:
        raise NetworkError(f"{url}: connection failed: {exc}", url=url) from exc
    except bexc.ResponseStreamingError as exc:
        raise NetworkError(f"{url}: response body broke: {exc}", url=url) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as exc:
        raise NetworkError(f"{url}: connection broke mid-body: {exc}", url=url) from exc
    except bexc.BotoCoreError as exc:
        raise NetworkError(f"{url}: {exc}", url=url) from exc


@dataclass(frozen=True)
class ListedObject:
    key: str
    size: int
    etag: str
    last_modified: float
    """Seconds since the epoch."""


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    version_id: str | None
    checksums: dict[str, str]
    """S3 checksums the store returned, by name (``CRC32C``: base64, maybe ``-N`` suffixed)."""
    checksum_type: str | None
    """``FULL_OBJECT`` or ``COMPOSITE`` when the store says; None otherwise."""


@dataclass(frozen=True)
class OpenUpload:
    """A multipart upload that was created and neither completed nor aborted."""

    bucket: str
    key: str
    upload_id: str
    initiated: datetime.datetime | None


@dataclass(frozen=True)
class PutResult:
    etag: str
    version_id: str | None
    checksums: dict[str, str]


def _checksums(response: dict[str, Any]) -> dict[str, str]:
    return {
        name: response[f"Checksum{name}"]
        for name in CHECKSUM_FIELDS
        if response.get(f"Checksum{name}")
    }


def _require_etag(response: dict[str, Any], url: str, what: str) -> str:
    etag = response.get("ETag")
    if not etag:
        raise ProtocolViolationError(f"{url}: {what} answered without an ETag", url=url)
    return str(etag)


class S3Driver:
    """One aiobotocore client, opened on an exit stack owned by the Transferer."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    async def open(cls, config: TransferConfig, stack: AsyncExitStack) -> S3Driver:
        session = get_session()
        # One loader for the process: it caches the parsed S3 service model, which otherwise
        # costs ~0.2 s of CPU and ~12 MiB for every client (every one-off upload/download).
        global _shared_loader
        if _shared_loader is None:
            _shared_loader = session.get_component("data_loader")
        else:
            session.register_component("data_loader", _shared_loader)
        endpoint = config.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None
        region = config.region or session.get_config_variable("region") or "us-east-1"
        aio_config = AioConfig(
            region_name=region,
            signature_version="s3v4",
            s3={
                "payload_signing_enabled": False,
                "addressing_style": "path" if endpoint else "auto",
            },
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            # Connections beyond the in-flight limit: HEAD, Complete and Abort never wait.
            max_pool_connections=config.max_concurrency + 4,
            connect_timeout=config.connect_timeout,
            read_timeout=config.read_timeout,
            # One attempt: the engine retries (see _engine.Engine.retrying), so every failure
            # is classified, counted and charged to the retry budget once.
            retries={"total_max_attempts": 1, "mode": "standard"},
            tcp_keepalive=True,
        )
        client = await stack.enter_async_context(
            session.create_client("s3", endpoint_url=endpoint, config=aio_config)
        )
        client.meta.events.register("before-send.s3.UploadPart", _send_buffers_without_copy)
        client.meta.events.register("before-send.s3.PutObject", _send_buffers_without_copy)
        return cls(client)

    @property
    def client(self) -> Any:
        """The aiobotocore client (the lean client takes its credentials and addressing)."""
        return self._client

    async def head_object(self, bucket: str, key: str, url: str) -> ObjectInfo:
        try:
            with map_errors(url):
                r = await self._client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        except NotFoundError as exc:
            # HEAD has no error body: say whether the bucket or the key is missing.
            raise NotFoundError(
                await self._which_is_missing(bucket, key, url),
                url=url,
                status=exc.status,
                code=exc.code,
                request_id=exc.request_id,
            ) from exc
        return ObjectInfo(
            size=int(r["ContentLength"]),
            etag=_require_etag(r, url, "HeadObject"),
            version_id=r.get("VersionId"),
            checksums=_checksums(r),
            checksum_type=r.get("ChecksumType"),
        )

    async def head_part(
        self, bucket: str, key: str, number: int, *, version_id: str | None, url: str
    ) -> tuple[int, int | None]:
        """HeadObject of one part of a multipart object: (its length, the object's part count).

        No If-Match: some stores (moto) compare it with the part's ETag, not the object's. The
        data itself is pinned by If-Match on every GET; a layout from another version can only
        make verification fail, never pass wrongly.
        """
        extra = {"VersionId": version_id} if version_id else {}
        with map_errors(url):
            r = await self._client.head_object(Bucket=bucket, Key=key, PartNumber=number, **extra)
        count = r.get("PartsCount")
        return int(r["ContentLength"]), (int(count) if count is not None else None)

    async def _which_is_missing(self, bucket: str, key: str, url: str) -> str:
        try:
            with map_errors(url):
                await self._client.head_bucket(Bucket=bucket)
        except NotFoundError:
            return f"{url}: no such bucket {bucket!r}"
        except TransferError:
            pass
        return f"{url}: no such key {key!r} in bucket {bucket!r}"

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: bytearray,
        checksum: dict[str, str],
        url: str,
        *,
        if_none_match: bool = False,
    ) -> PutResult:
        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        with map_errors(url):
            r = await self._client.put_object(
                Bucket=bucket, Key=key, Body=body, **checksum, **extra
            )
        return PutResult(_require_etag(r, url, "PutObject"), r.get("VersionId"), _checksums(r))

    async def create_multipart_upload(
        self, bucket: str, key: str, checksum_algorithm: str | None, url: str
    ) -> str:
        extra = {"ChecksumAlgorithm": checksum_algorithm} if checksum_algorithm else {}
        with map_errors(url):
            r = await self._client.create_multipart_upload(Bucket=bucket, Key=key, **extra)
        upload_id = r.get("UploadId")
        if not upload_id:
            raise ProtocolViolationError(f"{url}: CreateMultipartUpload gave no UploadId", url=url)
        return str(upload_id)

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        number: int,
        body: bytearray,
        checksum: dict[str, str],
        url: str,
    ) -> PutResult:
        with map_errors(f"{url} part {number}"):
            r = await self._client.upload_part(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=body,
                **checksum,
            )
        return PutResult(_require_etag(r, url, f"UploadPart {number}"), None, _checksums(r))

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[dict[str, Any]],
        url: str,
        *,
        if_none_match: bool = False,
    ) -> PutResult:
        extra = {"IfNoneMatch": "*"} if if_none_match else {}
        with map_errors(url):
            r = await self._client.complete_multipart_upload(
                Bucket=bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                **extra,
            )
        # A 200 whose body is an <Error> document parses into a dict without an ETag: that is a
        # failure, never a success.
        if not r.get("ETag"):
            raise ServerError(
                f"{url}: CompleteMultipartUpload answered 200 without a result", url=url
            )
        return PutResult(str(r["ETag"]), r.get("VersionId"), _checksums(r))

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str, url: str) -> None:
        with map_errors(url):
            await self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, url: str
    ) -> dict[int, ListedPart]:
        """Every part of an open multipart upload, page by page (1,000 per page)."""
        parts: dict[int, ListedPart] = {}
        marker = 0
        while True:
            with map_errors(url):
                r = await self._client.list_parts(
                    Bucket=bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            for p in r.get("Parts", []):
                number = int(p["PartNumber"])
                parts[number] = ListedPart(
                    number, str(p["ETag"]), int(p["Size"]), p.get("ChecksumCRC32C")
                )
            next_marker = int(r.get("NextPartNumberMarker") or 0)
            if not r.get("IsTruncated") or next_marker <= marker:
                return parts
            marker = next_marker

    async def list_multipart_uploads(
        self, bucket: str, prefix: str, url: str
    ) -> AsyncIterator[OpenUpload]:
        """The open multipart uploads under ``prefix``, page by page."""
        markers: dict[str, str] = {}
        while True:
            with map_errors(url):
                r = await self._client.list_multipart_uploads(
                    Bucket=bucket, Prefix=prefix, **markers
                )
            for u in r.get("Uploads", []):
                yield OpenUpload(bucket, str(u["Key"]), str(u["UploadId"]), u.get("Initiated"))
            key_marker, id_marker = r.get("NextKeyMarker"), r.get("NextUploadIdMarker")
            if not r.get("IsTruncated") or not (key_marker or id_marker):
                return
            new = {"KeyMarker": key_marker or "", "UploadIdMarker": id_marker or ""}
            if new == markers:
                return
            markers = new

    async def list_objects_page(
        self, bucket: str, prefix: str, token: str | None, url: str
    ) -> tuple[list[ListedObject], str | None]:
        """One page (up to 1,000) of the keys under ``prefix`` in key order, and the token of
        the next page (None after the last). One page at a time, so that a listing of a
        million keys never sits in memory whole."""
        kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            kwargs["ContinuationToken"] = token
        with map_errors(url):
            r = await self._client.list_objects_v2(**kwargs)
        listed = [
            ListedObject(
                str(o["Key"]), int(o["Size"]), str(o.get("ETag", "")), o["LastModified"].timestamp()
            )
            for o in r.get("Contents", [])
        ]
        following = r.get("NextContinuationToken")
        return listed, (str(following) if r.get("IsTruncated") and following else None)

    async def delete_objects(self, bucket: str, keys: list[str], url: str) -> dict[str, str]:
        """Delete up to 1,000 keys in one request; the keys that failed, with S3's reason."""
        with map_errors(url):
            r = await self._client.delete_objects(
                Bucket=bucket,
                Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True},
            )
        return {
            str(e.get("Key")): f"{e.get('Message') or ''} ({e.get('Code') or 'error'})"
            for e in r.get("Errors", [])
        }

    async def presign_get(
        self, bucket: str, key: str, version_id: str | None, url: str, expires: int = 3600
    ) -> str:
        """A presigned GetObject URL: botocore signs, the engine's own client fetches."""
        params = {"Bucket": bucket, "Key": key}
        if version_id:
            params["VersionId"] = version_id
        with map_errors(url):
            presigned: str = await self._client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=expires
            )
        return presigned

    @property
    def endpoint_url(self) -> str:
        return str(self._client.meta.endpoint_url)

    @contextlib.asynccontextmanager
    async def get_range(
        self,
        bucket: str,
        key: str,
        offset: int,
        length: int,
        *,
        total: int,
        etag: str,
        version_id: str | None,
        url: str,
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """GetObject of bytes [offset, offset+length), pinned to ``etag``; yields the body stream.

        A whole-object request (offset 0, length == total) sends no Range header, so servers
        that do not support ranges work for small objects too.
        """
        extra: dict[str, Any] = {"IfMatch": etag}
        ranged = not (offset == 0 and length == total)
        if ranged:
            extra["Range"] = range_header(offset, length)
        if version_id:
            extra["VersionId"] = version_id
        with map_errors(url):
            r = await self._client.get_object(Bucket=bucket, Key=key, **extra)
        body = r["Body"]
        try:
            if ranged:
                try:
                    check_content_range(r.get("ContentRange"), offset, length, total)
                except RangeMismatchError as exc:
                    raise ProtocolViolationError(f"{url}: {exc}", url=url) from exc
            if int(r.get("ContentLength", -1)) != length:
                raise ProtocolViolationError(
                    f"{url}: asked for {length} bytes at {offset}, "
                    f"Content-Length says {r.get('ContentLength')}",
                    url=url,
                )
            with map_errors(url):
                yield body.raw_stream.content
        finally:
            body.close()
