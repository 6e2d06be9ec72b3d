"""PutObject, GetObject / HeadObject and DeleteObject.

GET sends the bytes with ``loop.sendfile`` (the kernel copies from the page cache to the
socket), except for objects of at most ``ServerConfig.small_body`` bytes (and inline ones):
those are read with their metadata in one go (on the loop, see ``ServerConfig.loop_reads``)
and sent from memory, which costs less CPU than a hop to a thread to open the file plus
sendfile's setup (pause reading, wait for the buffer to drain, add and remove a writer).
Range, the conditional headers and ``partNumber`` are decided here with S3's rules (suffix and
open-ended ranges, 416 with ``Content-Range: bytes */SIZE``, If-Match 412 before If-None-Match
304), not aiohttp's FileResponse rules (its ETag is not S3's).

A PutObject body of at most ``small_body`` bytes is stored inline (see ``_s3_store``), in the
same worker-thread call that hashes and verifies it (``_s3_body.receive_then``).
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from aiohttp import web

from ._s3_body import checksum_header, expected_digests, read_small, receive_then
from ._s3_http import (
    MAX_PARTS,
    RESPONSE_OVERRIDES,
    b64,
    etag_list,
    object_headers,
    parse_http_date,
    stored_headers,
    xml_response,
)
from ._s3_store import Checksum, ObjectMeta, etag_matches, precondition_failed
from ._s3_xml import Doc, S3Error, parse_delete

if TYPE_CHECKING:
    from aiohttp.abc import AbstractStreamWriter

    from ._s3_body import Received
    from ._s3_http import Call

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")
_FALLBACK_CHUNK = 1024 * 1024
_NOT_MODIFIED = ("ETag", "Last-Modified")


class FileSlices(web.StreamResponse):
    """Slices of open files, one after the other, sent with sendfile; closes the files."""

    def __init__(
        self,
        pieces: list[tuple[BinaryIO, int, int]],
        *,
        status: int,
        headers: dict[str, str],
    ) -> None:
        super().__init__(status=status, headers=headers)
        self._pieces = pieces
        self.content_length = sum(count for _, _, count in pieces)

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            writer = await super().prepare(request)
            if writer is None or request.method == "HEAD" or not self._pieces:
                return writer
            transport = request.transport
            if transport is None:
                raise ConnectionResetError("connection lost")
            loop = asyncio.get_running_loop()
            for file, offset, count in self._pieces:
                try:
                    await loop.sendfile(transport, file, offset, count)
                except NotImplementedError:  # a transport without sendfile (TLS, some loops)
                    await _copy(writer, loop, file, offset, count)
            await super().write_eof()
            return writer
        finally:
            for file, _, _ in self._pieces:
                file.close()


async def _copy(
    writer: AbstractStreamWriter,
    loop: asyncio.AbstractEventLoop,
    file: BinaryIO,
    offset: int,
    count: int,
) -> None:
    end = offset + count
    while offset < end:
        chunk = await loop.run_in_executor(
            None, os.pread, file.fileno(), min(_FALLBACK_CHUNK, end - offset), offset
        )
        if not chunk:
            raise ConnectionResetError("object file ended early")
        await writer.write(chunk)
        offset += len(chunk)


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a Range header, S3's way: None means the whole object (no,
    several or unparsable ranges, or first > last); a range past the end is InvalidRange."""
    if not value:
        return None
    match = _RANGE.fullmatch(value.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    last = size - 1
    first_text, last_text = match.groups()
    if first_text:
        first = int(first_text)
        end = min(int(last_text), last) if last_text else last
        if first > last:
            raise _invalid_range(value, size)
        return (first, end) if first <= end else None
    suffix = int(last_text)
    if suffix == 0:
        raise _invalid_range(value, size)
    first = size - min(suffix, size)
    return (first, last) if first <= last else None


def _invalid_range(value: str, size: int) -> S3Error:
    return S3Error(
        "InvalidRange",
        "The requested range is not satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
        RangeRequested=value,
        ActualObjectSize=size,
    )


def check_conditions(call: Call, meta: ObjectMeta) -> bool:
    """Raise 412 for a failed If-Match / If-Unmodified-Since; True when the answer is 304."""
    headers = call.headers
    modified = int(meta.last_modified)
    if_match = headers.get("If-Match")
    if if_match is not None:
        if not etag_matches(meta.etag, etag_list(if_match)):
            raise precondition_failed("If-Match")
    else:
        since = parse_http_date(headers.get("If-Unmodified-Since"))
        if since is not None and modified > since:
            raise precondition_failed("If-Unmodified-Since")
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        return etag_matches(meta.etag, etag_list(if_none_match))
    since = parse_http_date(headers.get("If-Modified-Since"))
    return since is not None and modified <= since


def _check_version(call: Call) -> None:
    version = call.query.get("versionId")
    if version is not None and version != "null":
        raise S3Error("NoSuchVersion", "The specified version does not exist.", VersionId=version)


async def get_object(call: Call) -> web.StreamResponse:
    """GetObject and HeadObject."""
    _check_version(call)
    part_number = 0
    if "partNumber" in call.query:
        part_number = call.int_param("partNumber", 0, low=1, high=MAX_PARTS)
    store = call.state.store
    head = call.request.method == "HEAD"
    for _ in range(10):
        data = None
        if head:
            meta = await call.state.read(store.head, call.bucket, call.key)
        else:
            try:
                meta, data = await call.state.read(
                    store.read_object, call.bucket, call.key, call.state.config.small_body
                )
            except FileNotFoundError:
                continue  # replaced between reading the metadata and the bytes: again
        headers = object_headers(meta)
        if check_conditions(call, meta):
            return web.Response(status=304, headers={k: headers[k] for k in _NOT_MODIFIED})
        status, first, last = _selection(call, meta, part_number, headers)
        count = max(last - first + 1, 0)
        if head:
            response = web.StreamResponse(status=status, headers=headers)
            response.content_length = count
            return response
        if data is not None:
            body = data if count == len(data) else data[first : first + count]
            return web.Response(status=status, headers=headers, body=body)
        try:
            pieces = await call.state.run(store.open_range, call.bucket, meta, first, count)
        except FileNotFoundError:
            continue  # replaced between the two reads: read the new metadata
        return FileSlices(pieces, status=status, headers=headers)
    raise S3Error("InternalError", "the object keeps changing; try again")


def _selection(
    call: Call, meta: ObjectMeta, part_number: int, headers: dict[str, str]
) -> tuple[int, int, int]:
    """(status, first byte, last byte) to send; adds the headers that go with them."""
    status, first, last = 200, 0, meta.size - 1
    checksum = meta.checksum if call.headers.get("x-amz-checksum-mode") == "ENABLED" else None
    if part_number:
        sizes = [part.size for part in meta.parts] if meta.parts else [meta.size]
        if part_number > len(sizes):
            raise S3Error(
                "InvalidPartNumber",
                "The requested partnumber is not satisfiable",
                PartNumberRequested=part_number,
                ActualPartCount=len(sizes),
            )
        first = sum(sizes[: part_number - 1])
        last = first + sizes[part_number - 1] - 1
        status = 206
        if meta.parts:
            headers["x-amz-mp-parts-count"] = str(len(meta.parts))
            part_checksum = meta.parts[part_number - 1].checksum
            if checksum is not None and part_checksum is not None:
                checksum = replace(checksum, value=part_checksum, type="FULL_OBJECT")
    else:
        span = parse_range(call.headers.get("Range"), meta.size)
        if span is not None:
            status, (first, last) = 206, span
            if span != (0, meta.size - 1):
                checksum = None  # S3 gives no checksum for part of an object
    if status == 206:
        headers["Content-Range"] = f"bytes {first}-{last}/{meta.size}"
    if checksum is not None:
        headers[checksum_header(checksum.algorithm)] = checksum.value
        headers["x-amz-checksum-type"] = checksum.type
    for param, header in RESPONSE_OVERRIDES.items():
        if param in call.query:
            headers[header] = call.query[param]
    return status, first, last


async def put_object(call: Call) -> web.StreamResponse:
    if "x-amz-copy-source" in call.headers:
        raise S3Error("NotImplemented", "CopyObject is not supported by this server")
    store = call.state.store
    if_none_match = call.headers.get("If-None-Match")
    if if_none_match is not None and if_none_match.strip() != "*":
        raise S3Error("NotImplemented", "If-None-Match on PUT takes only '*'")
    if_match = call.headers.get("If-Match")
    expected = expected_digests(call.headers, sha256_hex=call.payload_sha256)
    content_type, kept = stored_headers(call.headers)
    algorithm = expected.algorithm

    def commit(received: Received) -> ObjectMeta:  # in a worker thread
        checksum = None
        if algorithm is not None and received.checksum is not None:
            checksum = Checksum(
                algorithm=algorithm, value=b64(received.checksum), type="FULL_OBJECT"
            )
        meta = ObjectMeta(
            key=call.key,
            size=received.size,
            etag=received.md5.hex(),
            last_modified=time.time(),
            content_type=content_type,
            headers=kept,
            checksum=checksum,
        )
        conditions: dict[str, Any] = {
            "if_match": etag_list(if_match) if if_match is not None else None,
            "if_none_match": if_none_match is not None,
        }
        if received.body is not None:
            return store.commit_inline(call.bucket, call.key, received.body, meta, **conditions)
        return store.commit_object(call.bucket, call.key, Path(received.path), meta, **conditions)

    config = call.state.config
    meta = await receive_then(
        call.request,
        store,
        call.state.executor,
        expected,
        commit,
        limit=config.max_body,
        small=config.small_body,
        check=functools.partial(store.check_object_name, call.bucket, call.key),
    )
    checksum = meta.checksum
    headers: dict[str, Any] = {"ETag": f'"{meta.etag}"'}
    if checksum is not None:
        headers[checksum_header(checksum.algorithm)] = checksum.value
        headers["x-amz-checksum-type"] = checksum.type
    return web.Response(headers=headers)


async def delete_object(call: Call) -> web.StreamResponse:
    _check_version(call)
    await call.state.run(call.state.store.delete, call.bucket, call.key)
    return web.Response(status=204)


async def delete_objects(call: Call) -> web.StreamResponse:
    """DeleteObjects: up to 1000 keys in one request; every key is reported, deleted or not."""
    store = call.state.store
    await call.state.run(store.require_bucket, call.bucket)
    expected = expected_digests(call.headers, sha256_hex=call.payload_sha256)
    keys, quiet = parse_delete(await read_small(call.request, expected))

    def delete_all() -> list[tuple[str, S3Error | None]]:
        outcomes: list[tuple[str, S3Error | None]] = []
        for key in keys:
            try:
                store.delete(call.bucket, key)
                outcomes.append((key, None))
            except S3Error as exc:
                outcomes.append((key, exc))
        return outcomes

    doc = Doc("DeleteResult")
    for key, failure in await call.state.run(delete_all):
        if failure is None:
            if not quiet:
                doc.open("Deleted").add("Key", key).close("Deleted")
        else:
            doc.open("Error").add("Key", key).add("Code", failure.code)
            doc.add("Message", failure.message).close("Error")
    return xml_response(doc)
