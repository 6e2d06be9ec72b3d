"""Resuming interrupted uploads from a checkpoint (rows 13, 14, 16-19 and 28 of the reliability
matrix), against moto: only what the store lacks is sent again, every kept part is verified
against the file, and no multipart upload is left open (the ``bucket`` fixture asserts it)."""

from __future__ import annotations

import json
import os
import stat
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
import pytest

from asynctransfer import RemoteError, SourceChangedError, Transferer, UploadResult
from asynctransfer._checkpoints import checkpoint_dir
from asynctransfer._orphans import list_uploads

from ..conftest import SMALL_PART, with_config, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from ..conftest import Bucket
    from ..proxy import Proxy

PARTS = 12


def _parts_in(checkpoint: Path) -> int:
    try:
        return len(json.loads(checkpoint.read_bytes())["parts"])
    except (OSError, ValueError, KeyError):
        return 0


async def _interrupt(bucket: Bucket, src: Path, checkpoint: Path, after: int = 3) -> None:
    """Start an upload with a checkpoint, and cancel it once ``after`` parts are recorded."""
    config = with_config(bucket, max_bytes_per_second=3 * SMALL_PART, max_concurrency=2)
    async with Transferer(config) as t:
        with anyio.move_on_after(20) as deadline:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: t.upload(src, bucket.url("k"), checkpoint=checkpoint))
                while _parts_in(checkpoint) < after:  # noqa: ASYNC110 (polls a file)
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
        assert not deadline.cancelled_caught, "the upload never got going"


async def _resume(
    bucket: Bucket, src: Path, checkpoint: Path, *, restart: bool = True
) -> UploadResult:
    async with Transferer(bucket.config) as t:
        return await t.upload(src, bucket.url("k"), checkpoint=checkpoint, restart=restart)


async def test_a_cancelled_upload_keeps_its_checkpoint_and_resumes_with_the_missing_parts(
    bucket: Bucket, tmp_path: Path
) -> None:
    src, checkpoint = tmp_path / "src.bin", tmp_path / "up.json"
    data = write_random(src, PARTS * SMALL_PART - 1000)
    await _interrupt(bucket, src, checkpoint)
    uploads = bucket.open_uploads()
    assert len(uploads) == 1, "the upload was not kept for resume"
    assert stat.S_IMODE(checkpoint.stat().st_mode) == 0o600
    stored = checkpoint.read_bytes()
    assert os.environ["AWS_SECRET_ACCESS_KEY"].encode() not in stored
    recorded = _parts_in(checkpoint)
    listed = bucket.client.list_parts(Bucket=bucket.name, Key="k", UploadId=uploads[0]["UploadId"])[
        "Parts"
    ]

    result = await _resume(bucket, src, checkpoint)

    assert bucket.read("k") == data
    assert result.reused_parts >= recorded >= 3
    assert result.reused_parts == len(listed)
    assert result.reused_bytes == result.reused_parts * SMALL_PART
    assert not checkpoint.exists()


async def test_a_part_the_checkpoint_missed_is_kept_when_its_bytes_match(
    bucket: Bucket, tmp_path: Path
) -> None:
    """Row 14: the store acknowledged a part, the process died before recording it."""
    src, checkpoint = tmp_path / "src.bin", tmp_path / "up.json"
    data = write_random(src, PARTS * SMALL_PART)
    await _interrupt(bucket, src, checkpoint)
    doc = json.loads(checkpoint.read_bytes())
    recorded = len(doc["parts"])
    doc["parts"] = {}  # as if no record had reached the disk
    checkpoint.write_bytes(json.dumps(doc).encode())

    result = await _resume(bucket, src, checkpoint)

    assert bucket.read("k") == data
    assert result.reused_parts >= recorded


async def test_a_part_whose_record_disagrees_is_sent_again(bucket: Bucket, tmp_path: Path) -> None:
    src, checkpoint = tmp_path / "src.bin", tmp_path / "up.json"
    data = write_random(src, PARTS * SMALL_PART)
    await _interrupt(bucket, src, checkpoint)
    doc = json.loads(checkpoint.read_bytes())
    upload_id = doc["upload_id"]
    listed = bucket.client.list_parts(Bucket=bucket.name, Key="k", UploadId=upload_id)["Parts"]
    first = next(iter(doc["parts"]))
    doc["parts"][first]["xxh3"] = "0" * 16  # the file's slice no longer matches the record
    checkpoint.write_bytes(json.dumps(doc).encode())

    result = await _resume(bucket, src, checkpoint)

    assert bucket.read("k") == data
    assert result.reused_parts == len(listed) - 1


async def test_a_source_changed_since_the_checkpoint_starts_over_or_fails(
    bucket: Bucket, tmp_path: Path
) -> None:
    """Row 17."""
    src, checkpoint = tmp_path / "src.bin", tmp_path / "up.json"
    write_random(src, PARTS * SMALL_PART)
    await _interrupt(bucket, src, checkpoint)
    old_id = json.loads(checkpoint.read_bytes())["upload_id"]
    data = write_random(src, PARTS * SMALL_PART, seed=1)

    with pytest.raises(SourceChangedError, match="changed since the interrupted upload"):
        await _resume(bucket, src, checkpoint, restart=False)
    assert [u["UploadId"] for u in bucket.open_uploads()] == [old_id], "kept for the user"

    result = await _resume(bucket, src, checkpoint)
    assert result.reused_parts == 0
    assert bucket.read("k") == data
    assert bucket.open_uploads() == [], "the old upload was not aborted"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "other-key"])
async def test_a_corrupt_or_foreign_checkpoint_means_a_fresh_upload(
    bucket: Bucket, tmp_path: Path, damage: str
) -> None:
    """Row 18: a warning, the upload it names aborted when readable, a fresh upload."""
    src, checkpoint = tmp_path / "src.bin", tmp_path / "up.json"
    data = write_random(src, PARTS * SMALL_PART)
    await _interrupt(bucket, src, checkpoint)
    stored = checkpoint.read_bytes()
    if damage == "truncated":
        checkpoint.write_bytes(stored[: len(stored) // 2])
    elif damage == "garbage":
        checkpoint.write_bytes(os.urandom(100))
    else:
        doc = json.loads(stored)
        doc["key"] = "another"
        checkpoint.write_bytes(json.dumps(doc).encode())

    result = await _resume(bucket, src, checkpoint)

    assert result.reused_parts == 0
    assert bucket.read("k") == data
    leftover = bucket.open_uploads()
    if damage == "garbage":
        # Unreadable: the upload it named cannot be known; `uploads abort` finds it.
        for upload in leftover:
            bucket.client.abort_multipart_upload(
                Bucket=bucket.name, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        assert len(leftover) == 1
    else:
        assert leftover == []


async def test_an_upload_gone_from_the_store_means_a_fresh_upload(
    bucket: Bucket, tmp_path: Path
) -> None:
    """Row 19: NoSuchUpload (expired, or aborted elsewhere)."""
    src, checkpoint = tmp_path / "src.bin", tmp_path / "up.json"
    data = write_random(src, PARTS * SMALL_PART)
    await _interrupt(bucket, src, checkpoint)
    upload_id = json.loads(checkpoint.read_bytes())["upload_id"]
    bucket.client.abort_multipart_upload(Bucket=bucket.name, Key="k", UploadId=upload_id)

    result = await _resume(bucket, src, checkpoint)

    assert result.reused_parts == 0
    assert bucket.read("k") == data


async def test_the_default_checkpoint_is_found_again(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    data = write_random(src, PARTS * SMALL_PART)
    config = with_config(bucket, max_bytes_per_second=3 * SMALL_PART, max_concurrency=2)
    async with Transferer(config) as t:
        with anyio.move_on_after(1.5):
            await t.upload(src, bucket.url("k"), checkpoint=True)
    assert len(bucket.open_uploads()) == 1
    async with Transferer(bucket.config) as t:
        result = await t.upload(src, bucket.url("k"), checkpoint=True)
    assert result.reused_parts > 0
    assert bucket.read("k") == data


async def test_a_failed_upload_whose_abort_fails_is_kept_in_a_checkpoint(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    """Row 29: no checkpoint was asked for, the upload fails for good (400), and the abort
    meets resets every time: the upload is recorded in the default checkpoint, so `uploads
    list` marks it and the same command would resume it."""
    bucket = proxied_bucket
    src = tmp_path / "src.bin"
    write_random(src, PARTS * SMALL_PART)
    proxy_server.set_rules(
        [
            {
                "match": {"operation": "UploadPart"},
                "action": "status",
                "status": 400,
                "code": "InvalidArgument",
            },
            {"match": {"operation": "AbortMultipartUpload"}, "action": "reset_before"},
        ]
    )
    config = with_config(bucket, max_attempts=1)
    try:
        async with Transferer(config) as t:
            with pytest.raises(RemoteError, match="InvalidArgument"):
                await t.upload(src, bucket.url("k"))
            listed = await list_uploads(t._require_engine(), f"s3://{bucket.name}")
        assert len(listed) == 1
        assert listed[0].resumable
        assert listed[0].checkpoint is not None
        assert listed[0].checkpoint.startswith(str(checkpoint_dir()))
    finally:
        proxy_server.set_rules([])
        for upload in bucket.open_uploads():
            bucket.client.abort_multipart_upload(
                Bucket=bucket.name, Key=upload["Key"], UploadId=upload["UploadId"]
            )


async def test_a_source_modified_during_the_upload_is_never_completed(
    bucket: Bucket, tmp_path: Path
) -> None:
    """Row 16: even with a checkpoint, a file that changed mid-upload aborts the upload."""
    src, checkpoint = tmp_path / "src.bin", tmp_path / "up.json"
    write_random(src, PARTS * SMALL_PART)
    config = with_config(bucket, max_bytes_per_second=4 * SMALL_PART, max_concurrency=2)
    async with Transferer(config) as t, anyio.create_task_group() as tg:

        async def modify() -> None:
            while _parts_in(checkpoint) < 2:  # noqa: ASYNC110 (polls a file)
                await anyio.sleep(0.02)
            await anyio.to_thread.run_sync(_overwrite_start, src)

        tg.start_soon(modify)
        with pytest.raises(SourceChangedError, match="changed while it was being uploaded"):
            await t.upload(src, bucket.url("k"), checkpoint=checkpoint)
    assert bucket.open_uploads() == []
    assert "Contents" not in bucket.client.list_objects_v2(Bucket=bucket.name)
    assert not checkpoint.exists()


def _overwrite_start(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(b"changed")
