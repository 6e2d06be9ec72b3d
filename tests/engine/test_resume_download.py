"""Resuming interrupted downloads (row 15 of the reliability matrix), from S3 (moto) and from
HTTP (the knob origin): the temporary file and its checkpoint survive a cancellation, the
next run fetches only the ranges missing or no longer matching their record, and a changed
object starts from zero. Nothing appears under the final name before verification."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

import anyio

from asynctransfer import DownloadResult, Transferer

from ..conftest import SMALL_PART, random_bytes, with_config

if TYPE_CHECKING:
    from pathlib import Path

    from ..conftest import Bucket

RANGES = 16


def _ranges_in(checkpoint: Path) -> dict[str, str]:
    try:
        ranges: dict[str, str] = json.loads(checkpoint.read_bytes())["ranges"]
    except (OSError, ValueError, KeyError):
        return {}
    return ranges


async def _interrupt(bucket: Bucket, src: str, dest: Path, checkpoint: Path) -> None:
    config = with_config(bucket, max_bytes_per_second=4 * SMALL_PART, max_concurrency=2)
    async with Transferer(config) as t:
        with anyio.move_on_after(20) as deadline:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: t.download(src, dest, checkpoint=checkpoint))
                while len(_ranges_in(checkpoint)) < 4:  # noqa: ASYNC110 (polls a file)
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
        assert not deadline.cancelled_caught, "the download never got going"
    assert dest.name not in os.listdir(dest.parent), "a file appeared under the final name"


async def _resume(bucket: Bucket, src: str, dest: Path, checkpoint: Path) -> DownloadResult:
    async with Transferer(bucket.config) as t:
        return await t.download(src, dest, checkpoint=checkpoint)


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _temps(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if name.endswith(".part")]


async def test_a_cancelled_s3_download_resumes_with_the_missing_ranges(
    bucket: Bucket, tmp_path: Path
) -> None:
    data = random_bytes(RANGES * SMALL_PART - 77)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    dest, checkpoint = tmp_path / "dest.bin", tmp_path / "down.json"
    await _interrupt(bucket, bucket.url("k"), dest, checkpoint)
    recorded = _ranges_in(checkpoint)
    assert len(_temps(tmp_path)) == 1, "the temporary file was not kept"

    result = await _resume(bucket, bucket.url("k"), dest, checkpoint)

    assert dest.read_bytes() == data
    assert result.reused_parts >= len(recorded)
    assert result.reused_bytes <= result.reused_parts * SMALL_PART
    assert _temps(tmp_path) == [] and not checkpoint.exists()


async def test_a_damaged_range_in_the_temporary_file_is_fetched_again(
    bucket: Bucket, tmp_path: Path
) -> None:
    data = random_bytes(RANGES * SMALL_PART, seed=3)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    dest, checkpoint = tmp_path / "dest.bin", tmp_path / "down.json"
    await _interrupt(bucket, bucket.url("k"), dest, checkpoint)
    recorded = _ranges_in(checkpoint)
    number = int(next(iter(recorded)))
    (temp,) = _temps(tmp_path)
    _overwrite(tmp_path / temp, (number - 1) * SMALL_PART + 5, b"\x00garbage\x00")

    result = await _resume(bucket, bucket.url("k"), dest, checkpoint)

    assert dest.read_bytes() == data
    assert result.reused_parts == len(recorded) - 1


async def test_a_changed_object_is_downloaded_from_the_start(
    bucket: Bucket, tmp_path: Path
) -> None:
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=random_bytes(RANGES * SMALL_PART))
    dest, checkpoint = tmp_path / "dest.bin", tmp_path / "down.json"
    await _interrupt(bucket, bucket.url("k"), dest, checkpoint)
    (old_temp,) = _temps(tmp_path)
    data = random_bytes(RANGES * SMALL_PART, seed=9)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)

    result = await _resume(bucket, bucket.url("k"), dest, checkpoint)

    assert dest.read_bytes() == data
    assert result.reused_parts == 0
    assert old_temp not in os.listdir(tmp_path)
    assert _temps(tmp_path) == []


async def test_without_a_checkpoint_a_cancelled_download_leaves_nothing(
    bucket: Bucket, tmp_path: Path
) -> None:
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=random_bytes(RANGES * SMALL_PART))
    config = with_config(bucket, max_bytes_per_second=4 * SMALL_PART, max_concurrency=2)
    async with Transferer(config) as t:
        with anyio.move_on_after(1.0):
            await t.download(bucket.url("k"), tmp_path / "dest.bin")
    assert os.listdir(tmp_path) == []
