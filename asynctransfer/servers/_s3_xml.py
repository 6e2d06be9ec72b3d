"""S3's wire formats: the ``<Error>`` document with its status codes, result documents, and the
one request document we parse (CompleteMultipartUpload).

Clients branch on the error *code* (``NoSuchKey``, ``EntityTooSmall``...) and on the status, so
both are S3's own. A HEAD answer has no body: clients see only the status there.
"""

from __future__ import annotations

import functools
import time
import urllib.parse
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

XMLNS = "http://s3.amazonaws.com/doc/2006-03-01/"
_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'

# S3's status code for each error code this server gives.
STATUS = {
    "AccessDenied": 403,
    "BadDigest": 400,
    "BucketAlreadyOwnedByYou": 409,
    "BucketNotEmpty": 409,
    "EntityTooLarge": 400,
    "EntityTooSmall": 400,
    "IncompleteBody": 400,
    "InternalError": 500,
    "InvalidAccessKeyId": 403,
    "InvalidArgument": 400,
    "InvalidBucketName": 400,
    "InvalidDigest": 400,
    "InvalidPart": 400,
    "InvalidPartNumber": 416,
    "InvalidPartOrder": 400,
    "InvalidRange": 416,
    "InvalidRequest": 400,
    "KeyTooLongError": 400,
    "MalformedXML": 400,
    "MethodNotAllowed": 405,
    "MissingContentLength": 411,
    "NoSuchBucket": 404,
    "NoSuchKey": 404,
    "NoSuchUpload": 404,
    "NoSuchVersion": 404,
    "NotImplemented": 501,
    "PreconditionFailed": 412,
    "RequestTimeTooSkewed": 403,
    "SignatureDoesNotMatch": 403,
    "XAmzContentSHA256Mismatch": 400,
}


class S3Error(Exception):
    """An S3 error answer: ``code`` (S3's), a message, and extra ``<Error>`` fields."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        **fields: str | int,
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = STATUS[code]
        self.headers = dict(headers or {})
        self.fields = fields


def error_document(error: S3Error, resource: str, request_id: str) -> bytes:
    extra = "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in error.fields.items())
    return (
        f"{_DECLARATION}<Error><Code>{error.code}</Code><Message>{escape(error.message)}</Message>"
        f"{extra}<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId></Error>"
    ).encode()


def iso8601(timestamp: float) -> str:
    """S3's timestamps in XML: ``2024-05-01T12:00:00.000Z``."""
    millis = int(timestamp * 1000) % 1000
    return f"{_iso_seconds(int(timestamp))}.{millis:03d}Z"


@functools.lru_cache(maxsize=4096)
def _iso_seconds(seconds: int) -> str:  # (a listing's objects share a few seconds)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))


def quote_etag(md5_hex: str) -> str:
    return f'"{md5_hex}"'


@dataclass
class Doc:
    """A result document built element by element; text is escaped, ``None`` values skipped."""

    root: str
    parts: list[str] = field(default_factory=list)

    def add(self, name: str, value: object) -> Doc:
        if value is not None:
            text = str(value).lower() if isinstance(value, bool) else str(value)
            self.parts.append(f"<{name}>{escape(text)}</{name}>")
        return self

    def open(self, name: str) -> Doc:
        self.parts.append(f"<{name}>")
        return self

    def close(self, name: str) -> Doc:
        self.parts.append(f"</{name}>")
        return self

    def owner(self, *names: str) -> Doc:
        for name in names:
            self.open(name).add("ID", "local").add("DisplayName", "local").close(name)
        return self

    def render(self) -> bytes:
        return f'{_DECLARATION}<{self.root} xmlns="{XMLNS}">{"".join(self.parts)}</{self.root}>'.encode()


def url_encoder(query: Mapping[str, str]) -> Callable[[str], str]:
    """With ``encoding-type=url`` keys go out percent-encoded (boto3 asks for it and decodes)."""
    if query.get("encoding-type") == "url":
        return lambda text: urllib.parse.quote(text, safe="/")
    return lambda text: text


@dataclass(frozen=True)
class CompletedPart:
    number: int
    etag: str
    checksums: dict[str, str]
    """``CRC32C`` -> base64, as the client listed them."""


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


_MALFORMED = (
    "The XML you provided was not well-formed or did not validate against our published schema"
)


def _parse(body: bytes) -> ET.Element:
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise S3Error("MalformedXML", "DTDs are not accepted")
    try:
        return ET.fromstring(body)
    except ET.ParseError:
        raise S3Error("MalformedXML", _MALFORMED) from None


def parse_delete(body: bytes) -> tuple[list[str], bool]:
    """The keys of a DeleteObjects request, and whether it is Quiet."""
    root = _parse(body)
    keys: list[str] = []
    quiet = False
    for element in root:
        if _local(element.tag) == "Quiet":
            quiet = (element.text or "").strip().lower() == "true"
        elif _local(element.tag) == "Object":
            keys.extend(child.text or "" for child in element if _local(child.tag) == "Key")
    if not 1 <= len(keys) <= 1000:
        raise S3Error("MalformedXML", _MALFORMED)
    return keys, quiet


def parse_complete(body: bytes) -> list[CompletedPart]:
    """The parts a CompleteMultipartUpload lists, in the order given."""
    root = _parse(body)
    parts = []
    for element in root:
        if _local(element.tag) != "Part":
            continue
        fields = {_local(child.tag): (child.text or "").strip() for child in element}
        try:
            number = int(fields["PartNumber"])
            etag = fields["ETag"]
        except (KeyError, ValueError):
            raise S3Error("MalformedXML", "every Part needs a PartNumber and an ETag") from None
        checksums = {
            name[len("Checksum") :]: value
            for name, value in fields.items()
            if name.startswith("Checksum") and name != "ChecksumType" and value
        }
        parts.append(CompletedPart(number, etag.strip('"'), checksums))
    if not parts:
        raise S3Error("MalformedXML", _MALFORMED)
    return parts
