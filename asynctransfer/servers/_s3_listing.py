"""ListBuckets, ListObjectsV2 (and V1), and the pagination they share with
ListMultipartUploads: prefix, delimiter (CommonPrefixes count as one entry each), a page size,
and a marker after which the next page starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar
from xml.sax.saxutils import escape

from ._s3_http import continuation_token, parse_continuation_token, xml_response
from ._s3_xml import Doc, iso8601, quote_etag, url_encoder

if TYPE_CHECKING:
    from collections.abc import Iterable

    from aiohttp import web

    from ._s3_http import Call
    from ._s3_store import ObjectMeta

T = TypeVar("T")
MAX_KEYS = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    entries: list[tuple[str, T | None]]
    """(key, item), or (common prefix, None), in order."""
    truncated: bool

    @property
    def last(self) -> tuple[str, bool]:
        """The last entry, and whether it is a common prefix (for the next page's marker)."""
        name, item = self.entries[-1]
        return name, item is None


def paginate(
    items: Iterable[tuple[str, T]],
    *,
    prefix: str,
    delimiter: str,
    limit: int,
    after: str | None = None,
    after_prefix: bool = False,
) -> Page[T]:
    """One page of ``items`` (sorted by key) under ``prefix``, entries after ``after`` (all the
    keys under it when it was a common prefix)."""
    entries: list[tuple[str, T | None]] = []
    last_prefix = None
    for key, item in items:
        if not key.startswith(prefix):
            continue
        if after is not None and (key <= after or (after_prefix and key.startswith(after))):
            continue
        index = key.find(delimiter, len(prefix)) if delimiter else -1
        common = key[: index + len(delimiter)] if index >= 0 else None
        if common is not None and common == last_prefix:
            continue
        if len(entries) >= limit:  # (max-keys=0: nothing, and not truncated, as S3 says)
            return Page(entries, bool(entries))
        if common is None:
            entries.append((key, item))
        else:
            entries.append((common, None))
            last_prefix = common
    return Page(entries, False)


async def list_buckets(call: Call) -> web.StreamResponse:
    buckets = await call.state.run(call.state.store.list_buckets)
    doc = Doc("ListAllMyBucketsResult").owner("Owner").open("Buckets")
    for name, created in buckets:
        doc.open("Bucket").add("Name", name).add("CreationDate", iso8601(created)).close("Bucket")
    return xml_response(doc.close("Buckets"))


async def _page_of_objects(
    call: Call, after: str | None, after_prefix: bool, limit: int
) -> tuple[Page[str], dict[str, ObjectMeta]]:
    """One page and the metadata of its keys, in one worker-thread call. The store walks the
    keys lazily in order from ``after`` on, so the page stops reading the tree at its end."""
    prefix = call.query.get("prefix", "")
    delimiter = call.query.get("delimiter", "")
    store = call.state.store

    def read() -> tuple[Page[str], dict[str, ObjectMeta]]:
        page = paginate(
            store.iter_keys(call.bucket, prefix, after or ""),
            prefix=prefix,
            delimiter=delimiter,
            limit=limit,
            after=after,
            after_prefix=after_prefix,
        )
        found = {}
        for key, path in page.entries:
            if path is not None and (meta := store.read_meta(path)) is not None:
                found[key] = meta
        return page, found

    return await call.state.run(read)


def _add_entries(call: Call, doc: Doc, page: Page[str], metas: dict[str, ObjectMeta]) -> int:
    encode = url_encoder(call.query)
    count = 0
    parts = doc.parts
    for name, item in page.entries:
        if item is None:
            parts.append(
                f"<CommonPrefixes><Prefix>{escape(encode(name))}</Prefix></CommonPrefixes>"
            )
            count += 1
        elif (meta := metas.get(name)) is not None:
            # One string per entry (what Doc.add would give, element by element): a page has
            # a thousand of them.
            checksum = ""
            if meta.checksum is not None:
                checksum = (
                    f"<ChecksumAlgorithm>{meta.checksum.algorithm}</ChecksumAlgorithm>"
                    f"<ChecksumType>{meta.checksum.type}</ChecksumType>"
                )
            parts.append(
                f"<Contents><Key>{escape(encode(name))}</Key>"
                f"<LastModified>{iso8601(meta.last_modified)}</LastModified>"
                f"<ETag>{escape(quote_etag(meta.etag))}</ETag>{checksum}<Size>{meta.size}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
            count += 1
    return count


def _head(call: Call, doc: Doc, limit: int) -> None:
    encode = url_encoder(call.query)
    doc.add("Name", call.bucket).add("Prefix", encode(call.query.get("prefix", "")))
    if "delimiter" in call.query:
        doc.add("Delimiter", encode(call.query["delimiter"]))
    doc.add("MaxKeys", limit)
    if "encoding-type" in call.query:
        doc.add("EncodingType", call.query["encoding-type"])


async def list_objects_v2(call: Call) -> web.StreamResponse:
    limit = min(call.int_param("max-keys", MAX_KEYS), MAX_KEYS)
    token = call.query.get("continuation-token")
    start_after = call.query.get("start-after")
    after, after_prefix = start_after, False
    if token is not None:
        after, after_prefix = parse_continuation_token(token)
    page, metas = await _page_of_objects(call, after, after_prefix, limit)
    doc = Doc("ListBucketResult")
    _head(call, doc, limit)
    body = Doc("")
    count = _add_entries(call, body, page, metas)
    doc.add("KeyCount", count).add("IsTruncated", page.truncated)
    doc.add("ContinuationToken", token)
    if page.truncated:
        doc.add("NextContinuationToken", continuation_token(*page.last))
    if start_after is not None:
        doc.add("StartAfter", url_encoder(call.query)(start_after))
    doc.parts.extend(body.parts)
    return xml_response(doc)


async def list_objects(call: Call) -> web.StreamResponse:
    """ListObjects (V1): ``marker`` instead of a continuation token."""
    limit = min(call.int_param("max-keys", MAX_KEYS), MAX_KEYS)
    marker = call.query.get("marker") or None
    delimiter = call.query.get("delimiter", "")
    # A NextMarker that is a common prefix stands for every key under it.
    after_prefix = bool(marker and delimiter and marker.endswith(delimiter))
    page, metas = await _page_of_objects(call, marker, after_prefix, limit)
    doc = Doc("ListBucketResult")
    _head(call, doc, limit)
    doc.add("Marker", url_encoder(call.query)(marker or ""))
    doc.add("IsTruncated", page.truncated)
    if page.truncated and "delimiter" in call.query:
        doc.add("NextMarker", url_encoder(call.query)(page.last[0]))
    _add_entries(call, doc, page, metas)
    return xml_response(doc)
