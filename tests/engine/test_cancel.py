"""Cancellation mid-transfer cleans up: the multipart upload is aborted (the `bucket` fixture
asserts none is left open), no temporary file stays, and the destination is untouched."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import anyio

from asynctransfer import Transferer

from ..conftest import SMALL_PART, with_config, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from ..conftest import Bucket


async def test_cancel_upload_mid_parts_aborts_the_multipart_upload(
    bucket: Bucket, tmp_path: Path
) -> None:
    src = tmp_path / "src.bin"
    write_random(src, 40 * SMALL_PART)
    # A slow rate makes sure the cancel lands between parts, not after the last one.
    config = with_config(bucket, max_bytes_per_second=4 * SMALL_PART, max_concurrency=2)
    async with Transferer(config) as t:
        with anyio.move_on_after(10) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(t.upload, src, bucket.url("k"))
                while t.statistics().bytes_sent < 2 * SMALL_PART:  # noqa: ASYNC110 (polls stats)
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught, "the upload never got going"
        assert t.statistics().memory.in_use == 0, "a part buffer was not returned"
    assert bucket.open_uploads() == []
    assert bucket.client.list_objects_v2(Bucket=bucket.name).get("KeyCount") == 0


async def test_cancel_download_mid_ranges_leaves_nothing(bucket: Bucket, tmp_path: Path) -> None:
    data = os.urandom(40 * SMALL_PART)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    dest = tmp_path / "dest.bin"
    dest.write_bytes(b"precious")
    config = with_config(bucket, max_bytes_per_second=4 * SMALL_PART, max_concurrency=2)
    async with Transferer(config) as t:
        with anyio.move_on_after(10) as scope:
            async with anyio.create_task_group() as tg:
                tg.start_soon(t.download, bucket.url("k"), dest)
                while t.statistics().bytes_received < 2 * SMALL_PART:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
        assert not scope.cancelled_caught, "the download never got going"
        assert t.statistics().memory.in_use == 0
    assert dest.read_bytes() == b"precious"
    assert os.listdir(tmp_path) == ["dest.bin"]


async def test_rate_limit_caps_bytes_per_second(bucket: Bucket, tmp_path: Path) -> None:
    """A correctness bound, not a speed claim: the cap can only make it slower."""
    src = tmp_path / "src.bin"
    data = write_random(src, 12 * SMALL_PART)
    rate = 8 * SMALL_PART  # bytes per second; the bucket's burst is one part
    config = with_config(bucket, max_bytes_per_second=rate)
    async with Transferer(config) as t:
        start = time.monotonic()
        await t.upload(src, bucket.url("k"))
        elapsed = time.monotonic() - start
    assert bucket.read("k") == data
    assert elapsed >= (len(data) - SMALL_PART) / rate * 0.95


async def test_rate_limit_caps_requests_per_second(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    data = write_random(src, 6 * SMALL_PART)
    rate = 4.0  # requests per second; the burst is one second's worth
    config = with_config(bucket, max_requests_per_second=rate)
    async with Transferer(config) as t:
        start = time.monotonic()
        await t.upload(src, bucket.url("k"))  # Create + 6 parts + Complete = 8 requests
        elapsed = time.monotonic() - start
    assert bucket.read("k") == data
    assert elapsed >= (8 - rate) / rate * 0.95
