"""The typed, frozen configuration of transfers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from ._core.plan import MAX_OBJECT_SIZE, MAX_PART_SIZE, MIN_PART_SIZE
from ._core.units import MiB
from ._errors import InvalidRequestError

ChecksumAlgorithm = Literal["crc32c", "md5", "none"]


@dataclass(frozen=True, kw_only=True)
class TransferConfig:
    """How transfers run. Every limit is shared by all transfers of one ``Transferer``.

    Sizes are in bytes, rates per second, times in seconds.
    """

    part_size: int = 8 * MiB
    """Bytes per part (upload) or range (download). Default 8 MiB. Upload parts must lie in
    [``min_part_size``, 5 GiB]; the planner grows it when an object would need > 10,000 parts."""

    max_concurrency: int = 10
    """Requests in flight at once (parts being sent or fetched). Default 10."""

    max_memory: int | None = None
    """Bytes of part buffers alive at once, the memory bound of the engine. Default
    (``max_concurrency`` + 2) x ``part_size``: every request busy plus two parts read ahead.
    Peak memory is this plus a fixed baseline, never the file size."""

    max_bytes_per_second: int | None = None
    """Cap on payload bytes per second across all transfers. Default None: no cap."""

    max_requests_per_second: float | None = None
    """Cap on requests per second across all transfers (every request but an abort, which is
    cleanup). Default None: no cap."""

    checksum: ChecksumAlgorithm = "crc32c"
    """Per-part checksum the store verifies: ``"crc32c"`` (default, x-amz-checksum-crc32c),
    ``"md5"`` (Content-MD5, for stores without the newer checksums), or ``"none"`` (for stores
    that reject checksum headers; TCP is then the only guard on the wire)."""

    multipart_threshold: int | None = None
    """Objects up to this many bytes go in one PutObject. Default None: ``part_size``."""

    endpoint_url: str | None = None
    """S3 endpoint, e.g. ``http://127.0.0.1:9000``. Default None: ``AWS_ENDPOINT_URL`` or AWS."""

    region: str | None = None
    """Region to sign for. Default None: the AWS config chain, else ``us-east-1``."""

    max_object_size: int = MAX_OBJECT_SIZE
    """Refuse, before any request, an upload larger than this. Default 5 TiB (S3's limit)."""

    min_part_size: int = MIN_PART_SIZE
    """The store's minimum size of a non-last part. Default 5 MiB (S3 and its kin). Lower it
    only for test servers configured to accept smaller parts."""

    connect_timeout: float = 10.0
    """Seconds to wait for a connection. Default 10."""

    read_timeout: float = 60.0
    """Seconds a read may stall before the request fails. Default 60."""

    max_attempts: int = 5
    """Attempts per request or part for retryable failures (5xx, throttling, resets, stalls,
    truncated bodies), with exponential backoff and full jitter between them. The engine does
    these retries itself (botocore's own are off), so each is seen and counted. One exception:
    aiohttp (under aiobotocore) sends an idempotent request (an UploadPart PUT) once more at
    once when a reused keep-alive connection breaks before any answer; that resend is neither
    counted nor charged to the retry budget. Default 5."""

    part_timeout: float | None = None
    """Seconds one attempt at a request or part may take in all (a body that trickles in
    without ever stalling long enough for ``read_timeout``); then it is retried. None: no
    limit. Default None."""

    retry_deadline: float | None = 300.0
    """Seconds one request or part may spend on retries: after that its last error is raised,
    whatever attempts are left. None: no limit. Default 300."""

    retry_budget: bool = True
    """Share one retry quota among all transfers of a Transferer (500 tokens, 5 per retry, 10
    per timeout, 1 back per success, as the AWS SDKs do): when failures outrun successes, the
    transfers stop with one RetryBudgetError instead of each part retrying to the end. It
    recovers after 30 s. Default True."""

    adaptive_concurrency: bool = True
    """Halve the in-flight limit when the store throttles (503 SlowDown, 429), at most once a
    second, and raise it by one per round of successes back to ``max_concurrency`` (AIMD).
    Default True."""

    stream_range_size: int = 2 * MiB
    """Largest range of a download to a stream (stdout): ranges wait, holding their buffers,
    to go out in order, and small buffers stay in the CPU caches. Measured here in an ad-hoc A/B
    (1 GiB from nginx to /dev/null, 3 rounds): 2 MiB ranges 1.6 GB/s at 0.71 CPU-s, 8 MiB
    ranges 1.2 GB/s at 0.98. Default 2 MiB."""

    direct_io: bool = True
    """Write downloads of 64 MiB and more with O_DIRECT where the filesystem supports it: the
    disk reads the part buffers, with no copy into the page cache (which the fsync would then
    write out again). Measured here, with or without the fsync, the page-cache copy cost 3x the
    CPU (``python -m benchmarks s3``: 3.1 vs 0.7 CPU-s per GiB without fsync). The downloaded
    file is then not in the page cache. Default True."""

    durable: bool = True
    """fsync a download before it is renamed into place, and its directory after, so a crash
    never leaves a partly written file under the final name. Default True. On this project's
    test machine that flush is the slowest step of a download (the disk takes ~430 MB/s
    durably); False skips it, as most download tools do."""

    restart_on_change: bool = True
    """When the object or URL changes during a download (another ETag, a failed If-Range or
    If-Match), start over once from the new version; False: fail with ObjectChangedError. A
    download to a stream never restarts (its bytes are already out)."""

    hedge: bool = True
    """Send a ranged GET again on another connection when its first byte is late (4x the
    recent 90th percentile, at least 0.5 s), and keep whichever answers first, as the AWS CRT
    client does: one slow connection then costs one request, not a stalled download. Needs 16
    ranges of history and spare room in the memory budget. Default True."""

    lean_requests: bool = True
    """Send the PutObject of every one-request upload, and the GetObject of a batch's
    one-request downloads, through the engine's own SigV4-signed HTTP/1.1 client instead of
    botocore: the same requests at a tenth of the client CPU (see ``_io/s3lean.py``). Never
    when a proxy applies. False: botocore for every request (for a store or a credential
    source the lean client cannot serve). Default True."""

    use_uvloop: bool = True
    """Run the CLI and the blocking entry points on uvloop when it is installed. Default True."""

    def __post_init__(self) -> None:
        def bad(message: str) -> InvalidRequestError:
            return InvalidRequestError(f"invalid TransferConfig: {message}")

        if self.stream_range_size < 64 * 1024:
            raise bad(f"stream_range_size {self.stream_range_size} must be at least 64 KiB")
        if not 0 < self.min_part_size <= MAX_PART_SIZE:
            raise bad(f"min_part_size {self.min_part_size} must be in (0, {MAX_PART_SIZE}]")
        if not self.min_part_size <= self.part_size <= MAX_PART_SIZE:
            raise bad(
                f"part_size {self.part_size} is outside [{self.min_part_size}, {MAX_PART_SIZE}] "
                "bytes (S3 allows parts of 5 MiB to 5 GiB)"
            )
        if self.max_concurrency < 1:
            raise bad(f"max_concurrency must be at least 1, got {self.max_concurrency}")
        if self.max_memory is not None and self.max_memory < self.part_size:
            raise bad(
                f"max_memory {self.max_memory} must hold at least one part ({self.part_size})"
            )
        for name in ("max_bytes_per_second", "max_requests_per_second"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise bad(f"{name} must be positive or None, got {value}")
        if self.checksum not in get_args(ChecksumAlgorithm):
            raise bad(
                f"checksum must be one of {get_args(ChecksumAlgorithm)}, got {self.checksum!r}"
            )
        if self.multipart_threshold is not None and self.multipart_threshold < 0:
            raise bad(f"multipart_threshold must be >= 0, got {self.multipart_threshold}")
        if not 0 <= self.max_object_size <= MAX_OBJECT_SIZE:
            raise bad(f"max_object_size must be in [0, {MAX_OBJECT_SIZE}]")
        if not (self.connect_timeout > 0 and self.read_timeout > 0):
            raise bad("timeouts must be positive")
        if self.max_attempts < 1:
            raise bad(f"max_attempts must be at least 1, got {self.max_attempts}")
        for name in ("part_timeout", "retry_deadline"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise bad(f"{name} must be positive or None, got {value}")

    @property
    def memory_budget(self) -> int:
        """The effective ``max_memory``."""
        if self.max_memory is not None:
            return self.max_memory
        return (self.max_concurrency + 2) * self.part_size
