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


@dataclass(frozen=True, kw_only=True)
class FileFailure:
    """One file of a batch that could not be copied (the rest went on)."""

    src: str
    dest: str
    error: str
    """The error's message: it names the file or key and the cause."""
    error_type: str
    """The exception's class name, e.g. ``NotFoundError``."""


@dataclass(kw_only=True)
class BatchResult:
    """What a batch (``copy_tree``, ``sync``, ``copy_many``) did, file by file counted."""

    files: int = 0
    """Files copied."""
    bytes: int = 0
    """Bytes of the files copied."""
    skipped: int = 0
    """Files left alone because the destination already had them (``sync``)."""
    deleted: int = 0
    """Destination files removed because the source has no such file (``sync(delete=True)``)."""
    failures: list[FileFailure] = field(default_factory=list)
    seconds: float = 0.0
    """Wall time of the batch."""

    @property
    def ok(self) -> bool:
        return not self.failures

    def merge(self, other: BatchResult) -> BatchResult:
        """The sum of two batches that ran side by side (wall time: the longer)."""
        return BatchResult(
            files=self.files + other.files,
            bytes=self.bytes + other.bytes,
            skipped=self.skipped + other.skipped,
            deleted=self.deleted + other.deleted,
            failures=[*self.failures, *other.failures],
            seconds=max(self.seconds, other.seconds),
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-ready: the counts and one object per failure."""
        return {
            "ok": self.ok,
            "files": self.files,
            "bytes": self.bytes,
            "skipped": self.skipped,
            "deleted": self.deleted,
            "failed": len(self.failures),
            "seconds": round(self.seconds, 6),
            "failures": [
                {"src": f.src, "dest": f.dest, "error": f.error, "error_type": f.error_type}
                for f in self.failures
            ],
        }
