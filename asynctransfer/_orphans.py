"""Multipart uploads that were started and never completed or aborted: list them, abort them.

The store keeps (and bills) the parts of an open upload until it is completed or aborted. An
upload is left open when a process dies, when a transfer keeps it for a resume, or when the
abort after a failure itself fails (row 29 of the reliability matrix). Whether one is still
wanted is known only on the client: an upload checkpoint naming it means a later run can
resume it, so the listing says so, and aborting one removes that checkpoint too.

An abort is confirmed with ListParts: S3 documents that parts still being uploaded may survive
an abort, so only NoSuchUpload proves the upload is gone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from ._checkpoints import checkpoint_dir
from ._core.checkpoint import peek_upload
from ._core.urls import AddressError, parse_s3_url, scheme_of
from ._errors import InvalidRequestError, NetworkError, NotFoundError, ServerError, TransferError

if TYPE_CHECKING:
    from ._engine import Engine

logger = logging.getLogger("asynctransfer")

_Index = dict[tuple[str, str, str], str]
"""(bucket, key, upload id) -> path of the upload checkpoint that names it."""


@dataclass(frozen=True)
class UploadInfo:
    """An open multipart upload, as listed."""

    bucket: str
    key: str
    upload_id: str
    initiated: datetime | None
    """When the store says it was created; None if it does not say."""
    age_seconds: float | None
    """Seconds between ``initiated`` and the time of the listing (the store's clock vs ours)."""
    resumable: bool
    """An upload checkpoint in the default checkpoint directory names it: a resume can use it."""
    checkpoint: str | None
    """That checkpoint's path."""

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_location(url: str) -> tuple[str, str]:
    """``s3://bucket`` or ``s3://bucket/prefix`` -> (bucket, prefix)."""
    if scheme_of(url) != "s3":
        raise InvalidRequestError(
            f"{url!r} is not an s3:// URL: expected s3://bucket or s3://bucket/prefix", url=url
        )
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise InvalidRequestError(f"{url!r} names no bucket: expected s3://bucket[/prefix]")
    try:
        # The bucket naming rules live in parse_s3_url, which wants a key: give it one.
        parse_s3_url(f"s3://{bucket}/-")
    except AddressError:
        raise InvalidRequestError(
            f"{url!r}: {bucket!r} is not a valid bucket name (3-63 characters: letters, "
            "digits, '.', '-', '_')",
            url=url,
        ) from None
    return bucket, prefix


def _checkpoint_index(directory: Path) -> _Index:
    index: _Index = {}
    try:
        paths = sorted(directory.glob("upload-*.json"))
    except OSError:
        return index
    for path in paths:
        try:
            names = peek_upload(path.read_bytes())
        except OSError:
            continue
        if names is not None:
            index[names] = str(path)
    return index


def retry_command(bucket: str, key: str, upload_id: str) -> str:
    return f"asynctransfer uploads abort s3://{bucket} --key {key!r} --upload-id {upload_id!r}"


async def list_uploads(
    engine: Engine, url: str, older_than: float | None = None, *, now: datetime | None = None
) -> list[UploadInfo]:
    """The open multipart uploads under ``url`` (``s3://bucket[/prefix]``), in listing order.

    ``older_than``: only those initiated more than this many seconds before ``now`` (default:
    the current time); an upload whose store gives no creation time is then left out, since
    nothing says it is old.
    """
    bucket, prefix = parse_location(url)
    return await _list(engine, bucket, prefix, older_than, now)


async def _list(
    engine: Engine, bucket: str, prefix: str, older_than: float | None, now: datetime | None
) -> list[UploadInfo]:
    now = now or datetime.now(UTC)
    index = await anyio.to_thread.run_sync(_checkpoint_index, checkpoint_dir())
    found: list[UploadInfo] = []
    await engine.throttle(0)
    async for upload in engine.s3.list_multipart_uploads(bucket, prefix, f"s3://{bucket}/{prefix}"):
        age = (now - upload.initiated).total_seconds() if upload.initiated else None
        if older_than is not None and (age is None or age <= older_than):
            continue
        checkpoint = index.get((upload.bucket, upload.key, upload.upload_id))
        found.append(
            UploadInfo(
                upload.bucket,
                upload.key,
                upload.upload_id,
                upload.initiated,
                age,
                checkpoint is not None,
                checkpoint,
            )
        )
    return found


def _gone(exc: NotFoundError) -> bool:
    # NoSuchBucket is also a 404: that must not read as "aborted".
    return exc.code in ("NoSuchUpload", "", None)


async def abort_upload(
    engine: Engine, bucket: str, key: str, upload_id: str, *, attempts: int | None = None
) -> None:
    """Abort one multipart upload and make sure it is gone (an upload already gone counts).

    Each attempt sends AbortMultipartUpload, then ListParts; only NoSuchUpload from ListParts
    ends it. Network, 5xx and throttling failures, and an upload that still answers, use up
    ``attempts`` (default ``config.max_attempts``), with backoff in between; other errors
    (access denied, no such bucket) are raised at once.
    """
    url = f"s3://{bucket}/{key}"
    budget = attempts if attempts is not None else engine.config.max_attempts
    last: TransferError | None = None
    for attempt in range(1, budget + 1):
        if attempt > 1:
            await anyio.sleep(engine.backoff(attempt - 1))
        try:
            try:
                await engine.s3.abort_multipart_upload(bucket, key, upload_id, url)
            except NotFoundError as exc:
                if not _gone(exc):
                    raise
            await engine.throttle(0)
            await engine.s3.list_parts(bucket, key, upload_id, url)
        except NotFoundError as exc:
            if not _gone(exc):
                raise
            logger.info("aborted multipart upload %s of %s", upload_id, url)
            return
        except TransferError as exc:
            if not exc.retryable:
                raise
            last = exc
            logger.info(
                "%s: abort of upload %s failed (%s), attempt %d", url, upload_id, exc, attempt
            )
            continue
        last = None
        logger.info(
            "%s: upload %s still answers after the abort, attempt %d", url, upload_id, attempt
        )
    why = f"last error: {last}" if last is not None else "it still answers after the abort"
    message = (
        f"{url}: multipart upload {upload_id} could not be aborted in {budget} attempt(s) "
        f"({why}); its parts are still stored. Retry with: {retry_command(bucket, key, upload_id)}"
    )
    # The class follows the cause, so callers can still tell a network failure from the store's.
    if isinstance(last, NetworkError):
        raise NetworkError(message, url=url) from last
    raise ServerError(message, url=url) from last


def _forget_checkpoint(path: str, upload: UploadInfo) -> None:
    """Remove the checkpoint of an aborted upload, unless it names another upload by now (a new
    run of the same transfer rewrote it)."""
    try:
        file = Path(path)
        if peek_upload(file.read_bytes()) == (upload.bucket, upload.key, upload.upload_id):
            file.unlink()
    except FileNotFoundError:
        pass
    except OSError as exc:
        logger.warning("%s: cannot remove the checkpoint of an aborted upload: %s", path, exc)


async def abort_uploads(
    engine: Engine,
    url: str,
    *,
    older_than: float | None = None,
    key: str | None = None,
    upload_id: str | None = None,
    now: datetime | None = None,
) -> list[UploadInfo]:
    """Abort the open multipart uploads under ``url`` that match every filter given; return
    those aborted. With no filter, every one under ``url``.

    All are tried, ``config.max_concurrency`` at a time; if any fails, one error at the end
    names each failure (its upload id and the command to retry it).
    """
    bucket, prefix = parse_location(url)
    if key is not None:
        if not key.startswith(prefix):
            return []
        prefix = key  # list only what can match
    listed = await _list(engine, bucket, prefix, older_than, now)
    targets = [
        u
        for u in listed
        if (key is None or u.key == key) and (upload_id is None or u.upload_id == upload_id)
    ]
    aborted: list[UploadInfo] = []
    failed: list[tuple[UploadInfo, TransferError]] = []

    async def abort_one(upload: UploadInfo) -> None:
        try:
            async with engine.limiter:
                await abort_upload(engine, upload.bucket, upload.key, upload.upload_id)
        except TransferError as exc:
            failed.append((upload, exc))
            return
        if upload.checkpoint is not None:
            await anyio.to_thread.run_sync(_forget_checkpoint, upload.checkpoint, upload)
        aborted.append(upload)

    async with anyio.create_task_group() as tg:
        for upload in targets:
            tg.start_soon(abort_one, upload)
    if failed:
        lines = "\n".join(f"  {u.url} upload {u.upload_id}: {exc}" for u, exc in failed)
        message = (
            f"{url}: {len(failed)} of {len(targets)} multipart upload(s) could not be aborted "
            f"({len(aborted)} were):\n{lines}"
        )
        kinds = {type(exc) for _, exc in failed}
        cls = kinds.pop() if len(kinds) == 1 else TransferError
        raise cls(message, url=url) from failed[0][1]
    order = {u.upload_id: i for i, u in enumerate(targets)}
    return sorted(aborted, key=lambda u: order[u.upload_id])
