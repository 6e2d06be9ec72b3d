"""Round trips through a real S3 server, checked by boto3 as an independent client."""

from __future__ import annotations

import base64
import os
from typing import TYPE_CHECKING

import anyio
import pytest
import xxhash
from boto3.s3.transfer import TransferConfig as Boto3Config
from crc32c import crc32c

import asynctransfer
from asynctransfer import TransferConfig, Transferer

from ..conftest import SMALL_PART, random_bytes, with_config, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from ..conftest import Bucket

SIZES = {
    "empty": 0,
    "one-byte": 1,
    "exactly-one-part": SMALL_PART,
    "one-part-plus-one": SMALL_PART + 1,
    "many-parts": 7 * SMALL_PART + 12345,
}


@pytest.mark.parametrize("size", SIZES.values(), ids=SIZES.keys())
async def test_round_trip_is_byte_exact(bucket: Bucket, tmp_path: Path, size: int) -> None:
    src = tmp_path / "src.bin"
    data = write_random(src, size, seed=size)
    url = bucket.url(f"dir/obj-{size}")

    up = await asynctransfer.upload(src, url, config=bucket.config)
    assert bucket.read(f"dir/obj-{size}") == data
    assert up.size == size
    assert up.parts == (1 if size <= SMALL_PART else -(-size // SMALL_PART))
    assert up.xxh3_128 == xxhash.xxh3_128_hexdigest(data)

    dest = tmp_path / "out.bin"
    down = await asynctransfer.download(url, dest, config=bucket.config)
    assert dest.read_bytes() == data
    assert down.size == size
    assert down.etag == up.etag
    assert down.xxh3_128 == up.xxh3_128
    assert sorted(os.listdir(tmp_path)) == ["out.bin", "src.bin"], "temp files left behind"


@pytest.mark.parametrize("checksum", ["crc32c", "md5", "none"])
async def test_every_checksum_mode_uploads_exactly(
    bucket: Bucket, tmp_path: Path, checksum: str
) -> None:
    src = tmp_path / "src.bin"
    data = write_random(src, 3 * SMALL_PART + 5, seed=7)
    config = with_config(bucket, checksum=checksum)
    result = await asynctransfer.upload(src, bucket.url("k"), config=config)
    assert result.checksum_algorithm == checksum
    assert bucket.read("k") == data


async def test_single_put_checksum_is_stored(bucket: Bucket, tmp_path: Path) -> None:
    """The CRC32C we send with a PutObject is what the store keeps for the object."""
    src = tmp_path / "small.bin"
    data = write_random(src, 1000, seed=3)
    await asynctransfer.upload(src, bucket.url("small"), config=bucket.config)
    head = bucket.client.head_object(Bucket=bucket.name, Key="small", ChecksumMode="ENABLED")
    assert head["ChecksumCRC32C"] == base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()


async def test_real_minimum_part_size(strict_bucket: Bucket, tmp_path: Path) -> None:
    """At S3's real limits (5 MiB minimum part), a 3-part upload and download round trip."""
    src = tmp_path / "src.bin"
    data = write_random(src, 11 * 1024 * 1024 + 1, seed=11)
    config = with_config(strict_bucket, part_size=5 * 1024 * 1024)
    up = await asynctransfer.upload(src, strict_bucket.url("big"), config=config)
    assert up.parts == 3
    assert strict_bucket.read("big") == data
    dest = tmp_path / "out.bin"
    await asynctransfer.download(strict_bucket.url("big"), dest, config=config)
    assert dest.read_bytes() == data


async def test_download_what_boto3_uploaded(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "by-boto3.bin"
    data = write_random(src, 5 * SMALL_PART + 99, seed=5)
    bucket.client.upload_file(
        str(src),
        bucket.name,
        "from-boto3",
        Config=Boto3Config(multipart_threshold=SMALL_PART, multipart_chunksize=SMALL_PART),
    )
    assert "-" in bucket.client.head_object(Bucket=bucket.name, Key="from-boto3")["ETag"]
    dest = tmp_path / "out.bin"
    result = await asynctransfer.download(bucket.url("from-boto3"), dest, config=bucket.config)
    assert dest.read_bytes() == data
    assert result.parts == 6


async def test_download_into_directory_names_file_after_key(bucket: Bucket, tmp_path: Path) -> None:
    data = random_bytes(2 * SMALL_PART, seed=9)
    bucket.client.put_object(Bucket=bucket.name, Key="a/b/name.txt", Body=data)
    result = await asynctransfer.download(
        bucket.url("a/b/name.txt"), tmp_path, config=bucket.config
    )
    assert result.path == str(tmp_path / "name.txt")
    assert (tmp_path / "name.txt").read_bytes() == data


async def test_download_replaces_existing_file(bucket: Bucket, tmp_path: Path) -> None:
    data = random_bytes(3 * SMALL_PART, seed=4)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old contents")
    await asynctransfer.download(bucket.url("k"), dest, config=bucket.config)
    assert dest.read_bytes() == data


async def test_transferer_runs_many_transfers_under_shared_limits(
    bucket: Bucket, tmp_path: Path
) -> None:
    config = with_config(bucket, max_concurrency=3, max_memory=4 * SMALL_PART)
    files = {
        f"f{i}": write_random(tmp_path / f"f{i}", (i + 1) * SMALL_PART + i, i) for i in range(5)
    }
    peak_in_flight = 0
    peak_memory = 0

    async with Transferer(config) as t:

        async def watch() -> None:
            nonlocal peak_in_flight, peak_memory
            while True:
                stats = t.statistics()
                peak_in_flight = max(peak_in_flight, stats.in_flight)
                peak_memory = max(peak_memory, stats.memory.in_use)
                await anyio.sleep(0.001)

        async with anyio.create_task_group() as watcher:
            watcher.start_soon(watch)
            async with anyio.create_task_group() as tg:
                for name in files:
                    tg.start_soon(t.upload, tmp_path / name, bucket.url(name))
            watcher.cancel_scope.cancel()
        assert t.statistics().bytes_sent == sum(len(d) for d in files.values())

    for name, data in files.items():
        assert bucket.read(name) == data
    assert 0 < peak_in_flight <= 3
    assert 0 < peak_memory <= 4 * SMALL_PART


async def test_transferer_lifecycle_errors(bucket: Bucket) -> None:
    t = Transferer(bucket.config)
    with pytest.raises(RuntimeError, match="UNOPENED"):
        t.statistics()
    async with t:
        pass
    with pytest.raises(RuntimeError, match="CLOSED"):
        await t.download(bucket.url("k"), "/tmp/x")
    with pytest.raises(RuntimeError, match="opened once"):
        async with t:
            pass


async def test_default_config_reads_endpoint_from_environment(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert bucket.config.endpoint_url is not None
    monkeypatch.setenv("AWS_ENDPOINT_URL", bucket.config.endpoint_url)
    src = tmp_path / "f"
    data = write_random(src, 100)
    await asynctransfer.upload(src, bucket.url("env"), config=TransferConfig())
    assert bucket.read("env") == data
