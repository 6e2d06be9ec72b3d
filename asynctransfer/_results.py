"""What a finished transfer reports."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, kw_only=True)
class UploadResult:
    source: str
    """The local file that was sent."""
    url: str
    """Where it went, ``s3://bucket/key``."""
    size: int
    """Bytes sent."""
    seconds: float
    """Wall time of the transfer."""
    parts: int
    """Requests that carried data: 1 for a single PutObject."""
    etag: str
    version_id: str | None
    checksum_algorithm: str
    """The per-part checksum the store verified: ``crc32c``, ``md5`` or ``none``."""
    checksums: dict[str, str] = field(default_factory=dict)
    """Checksums the store returned for the object (base64, S3's names: ``CRC32C``...)."""
    xxh3_128: str
    """Hex xxh3-128 of the whole file's bytes, as read while sending."""
    reused_parts: int = 0
    """Parts an interrupted run had sent that this one kept (verified, not sent again)."""
    reused_bytes: int = 0


@dataclass(frozen=True, kw_only=True)
class DownloadResult:
    url: str
    """Where it came from, ``s3://bucket/key``."""
    path: str
    """The local file written (only ever after verification)."""
    size: int
    seconds: float
    parts: int
    """Requests that carried data."""
    etag: str
    """The version that was pinned with If-Match for every range."""
    version_id: str | None
    checksums: dict[str, str] = field(default_factory=dict)
    """Whole-object checksums the store gave and that the downloaded bytes were verified
    against (empty when the store gave none that can be checked)."""
    xxh3_128: str
    """Hex xxh3-128 of the bytes on disk."""
    reused_parts: int = 0
    """Ranges an interrupted run had written that this one kept (verified, not fetched again)."""
    reused_bytes: int = 0
