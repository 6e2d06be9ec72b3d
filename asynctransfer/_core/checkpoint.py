"""Checkpoints: what a transfer must remember to resume after the process dies.

An upload checkpoint names the multipart upload (bucket, key, upload id), the plan, the identity
of the source file, and every part known to have landed with its ETag, checksum and the xxh3 of
the local slice. A download checkpoint names the source, the version it pinned, the temporary
file, and every range written with its xxh3. Both are versioned JSON; a checkpoint that does not
parse, or that describes another transfer, is refused with ``CheckpointError`` (the caller warns
and starts fresh). No credential is ever stored: URLs are kept without userinfo or query, and
identified by a digest.

Deciding which uploaded parts to keep (``Reconciliation``) is here too: it needs the checkpoint,
what ListParts said, and digests of the local slices, and nothing else.
"""

from __future__ import annotations

import hashlib
import json
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: corrupt, truncated, of another version, or foreign."""


@dataclass(frozen=True, slots=True)
class SourceIdentity:
    """What says a local file is still the one a checkpoint was made from."""

    size: int
    mtime_ns: int
    device: int
    inode: int


@dataclass(frozen=True, slots=True)
class PartRecord:
    """A part the store acknowledged."""

    etag: str
    xxh3: str
    """Hex xxh3-64 of the local slice that was sent."""
    checksum: str | None = None
    """The part's checksum as the store verified it (base64 CRC32C), when there was one."""


@dataclass(slots=True)
class UploadCheckpoint:
    bucket: str
    key: str
    upload_id: str
    source_path: str
    source: SourceIdentity
    size: int
    part_size: int
    checksum_algorithm: str
    parts: dict[int, PartRecord] = field(default_factory=dict)

    def to_json(self) -> bytes:
        doc = {
            "version": VERSION,
            "kind": "upload",
            "bucket": self.bucket,
            "key": self.key,
            "upload_id": self.upload_id,
            "source_path": self.source_path,
            "source": _identity_doc(self.source),
            "size": self.size,
            "part_size": self.part_size,
            "checksum_algorithm": self.checksum_algorithm,
            "parts": {
                str(n): {"etag": p.etag, "xxh3": p.xxh3, "checksum": p.checksum}
                for n, p in sorted(self.parts.items())
            },
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> UploadCheckpoint:
        doc = _load(data, "upload")
        try:
            parts = {
                _part_number(n): PartRecord(
                    _str(p["etag"]), _str(p["xxh3"]), _opt_str(p.get("checksum"))
                )
                for n, p in _dict(doc["parts"]).items()
            }
            return cls(
                bucket=_str(doc["bucket"]),
                key=_str(doc["key"]),
                upload_id=_str(doc["upload_id"]),
                source_path=_str(doc["source_path"]),
                source=_identity(doc["source"]),
                size=_int(doc["size"]),
                part_size=_int(doc["part_size"]),
                checksum_algorithm=_str(doc["checksum_algorithm"]),
                parts=parts,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed upload checkpoint: {exc}") from None


def peek_upload(data: bytes) -> tuple[str, str, str] | None:
    """``(bucket, key, upload_id)`` of a checkpoint otherwise unusable, when they can be read:
    the upload it names can then still be aborted."""
    try:
        doc = json.loads(data)
        return _str(doc["bucket"]), _str(doc["key"]), _str(doc["upload_id"])
    except (ValueError, KeyError, TypeError):
        pass
    # Truncated: the names come first in the file, and may have survived.
    text = data.decode("utf-8", "replace")
    found = []
    for name in ("bucket", "key", "upload_id"):
        match = re.search(rf'"{name}":\s*("(?:[^"\\]|\\.)*")', text)
        if match is None:
            return None
        try:
            found.append(_str(json.loads(match.group(1))))
        except (ValueError, TypeError):
            return None
    return found[0], found[1], found[2]


@dataclass(slots=True)
class DownloadCheckpoint:
    source: str
    """Where the bytes come from, without credentials (``s3://b/k`` or a redacted URL)."""
    source_digest: str
    """sha256 of the full source URL (query included, userinfo not): tells sources apart
    without storing a signature."""
    dest: str
    temp: str
    size: int
    part_size: int
    validator: str
    """The version pinned: an S3 ETag, or an HTTP strong ETag or Last-Modified."""
    version_id: str | None = None
    ranges: dict[int, str] = field(default_factory=dict)
    """Range number (from 1) -> hex xxh3-64 of its bytes as written."""

    def to_json(self) -> bytes:
        doc = {
            "version": VERSION,
            "kind": "download",
            "source": self.source,
            "source_digest": self.source_digest,
            "dest": self.dest,
            "temp": self.temp,
            "size": self.size,
            "part_size": self.part_size,
            "validator": self.validator,
            "version_id": self.version_id,
            "ranges": {str(n): h for n, h in sorted(self.ranges.items())},
        }
        return json.dumps(doc, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> DownloadCheckpoint:
        doc = _load(data, "download")
        try:
            return cls(
                source=_str(doc["source"]),
                source_digest=_str(doc["source_digest"]),
                dest=_str(doc["dest"]),
                temp=_str(doc["temp"]),
                size=_int(doc["size"]),
                part_size=_int(doc["part_size"]),
                validator=_str(doc["validator"]),
                version_id=_opt_str(doc.get("version_id")),
                ranges={_part_number(n): _str(h) for n, h in _dict(doc["ranges"]).items()},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"malformed download checkpoint: {exc}") from None


def source_digest(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    bare = parts._replace(netloc=parts.netloc.rpartition("@")[2])
    return hashlib.sha256(bare.geturl().encode()).hexdigest()


def shown_source(url: str) -> str:
    """The URL as a checkpoint may hold it: no userinfo, no query (a presigned URL's query is
    a credential), no fragment."""
    parts = urllib.parse.urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2], query="", fragment="").geturl()


def default_name(kind: Literal["upload", "download"], source: str, dest: str) -> str:
    """File name of the default checkpoint of a transfer: the same command finds it again."""
    digest = hashlib.sha256(f"{kind}\0{source}\0{dest}".encode()).hexdigest()[:32]
    return f"{kind}-{digest}.json"


# ------------------------------------------------------------ reconciling uploads


@dataclass(frozen=True, slots=True)
class ListedPart:
    """A part as ListParts reports it."""

    number: int
    etag: str
    size: int
    checksum: str | None = None


@dataclass(frozen=True, slots=True)
class LocalSlice:
    """Digests of the local slice a part would be made of."""

    xxh3: str
    md5: str | None = None
    """Hex; computed only for parts the store has but the checkpoint does not know."""
    crc32c: str | None = None
    """Base64, when the upload uses CRC32C."""


class Reconciliation:
    """Which parts an interrupted upload can keep.

    A part is kept only when the store and the local file agree on its bytes:
    - recorded in the checkpoint and listed with the same ETag (and checksum), and the local
      slice still hashes to the recorded xxh3;
    - listed but not recorded (the process died between the store's answer and the checkpoint
      write): the local slice's MD5 equals the listed ETag, or its CRC32C the listed checksum.
    Everything else is sent again.
    """

    def __init__(
        self,
        checkpoint: UploadCheckpoint,
        listed: dict[int, ListedPart],
        lengths: dict[int, int],
    ) -> None:
        """``lengths``: part number -> its length in the plan."""
        self._recorded = checkpoint.parts
        self._listed = {n: p for n, p in listed.items() if n in lengths and p.size == lengths[n]}

    def candidates(self) -> set[int]:
        """Parts worth reading back to decide: those the store has in the planned size."""
        return set(self._listed)

    def needs_md5(self, number: int) -> bool:
        return number in self._listed and number not in self._recorded

    def keep(self, number: int, local: LocalSlice) -> PartRecord | None:
        """The record of a part to keep, or None to send it again."""
        listed = self._listed.get(number)
        if listed is None:
            return None
        recorded = self._recorded.get(number)
        if recorded is not None:
            if recorded.etag != listed.etag or recorded.xxh3 != local.xxh3:
                return None
            if listed.checksum is not None and recorded.checksum not in (None, listed.checksum):
                return None
            return PartRecord(listed.etag, local.xxh3, listed.checksum or recorded.checksum)
        if listed.checksum is not None and local.crc32c is not None:
            if listed.checksum == local.crc32c:
                return PartRecord(listed.etag, local.xxh3, listed.checksum)
            return None
        if local.md5 is not None and listed.etag.strip('"').lower() == local.md5:
            return PartRecord(listed.etag, local.xxh3, listed.checksum)
        return None


# ------------------------------------------------------------------ parsing


def _load(data: bytes, kind: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"not a checkpoint (not JSON: {exc})") from None
    if not isinstance(doc, dict):
        raise CheckpointError("not a checkpoint (not a JSON object)")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"checkpoint version {doc.get('version')!r}, expected {VERSION}")
    if doc.get("kind") != kind:
        raise CheckpointError(f"a {doc.get('kind')!r} checkpoint, expected {kind!r}")
    return doc


def _identity_doc(identity: SourceIdentity) -> dict[str, int]:
    return {
        "size": identity.size,
        "mtime_ns": identity.mtime_ns,
        "device": identity.device,
        "inode": identity.inode,
    }


def _identity(value: Any) -> SourceIdentity:
    doc = _dict(value)
    return SourceIdentity(
        _int(doc["size"]), _int(doc["mtime_ns"]), _int(doc["device"]), _int(doc["inode"])
    )


def _dict(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"expected a non-negative integer, got {value!r}")
    return value


def _part_number(text: str) -> int:
    number = int(text)
    if not 1 <= number <= 10_000_000:
        raise ValueError(f"part number {text!r} out of range")
    return number
