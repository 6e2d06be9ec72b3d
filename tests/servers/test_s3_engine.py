"""asynctransfer's own client against the local S3 server, both in the test's event loop
(``asynctransfer.testing.local_s3``): byte-exact round trips, and verification both ways."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import anyio
import pytest
import xxhash

import asynctransfer
from asynctransfer import AccessDeniedError, IntegrityError, TransferConfig
from asynctransfer.testing import local_s3

from ..conftest import SMALL_MIN_PART, SMALL_PART, write_random
from .conftest import client

if TYPE_CHECKING:
    from pathlib import Path

MiB = 1024 * 1024


async def make_bucket(endpoint_url: str, name: str = "bkt", **keys: str) -> None:
    def create() -> None:
        c = client(endpoint_url, **keys)
        try:
            c.create_bucket(Bucket=name)
        finally:
            c.close()

    await anyio.to_thread.run_sync(create)


def config(endpoint_url: str, **changes: object) -> TransferConfig:
    options: dict[str, object] = {
        "endpoint_url": endpoint_url,
        "part_size": SMALL_PART,
        "min_part_size": SMALL_MIN_PART,
        "max_concurrency": 4,
    }
    options.update(changes)
    return TransferConfig(**options)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, 1, SMALL_PART, 5 * SMALL_PART + 777])
@pytest.mark.parametrize("checksum", ["crc32c", "md5"])
async def test_round_trip(tmp_path: Path, size: int, checksum: str) -> None:
    async with local_s3(tmp_path / "root", min_part_size=SMALL_MIN_PART) as s3:
        await make_bucket(s3.endpoint_url)
        src = tmp_path / "src.bin"
        data = write_random(src, size, seed=size)
        cfg = config(s3.endpoint_url, checksum=checksum)
        up = await asynctransfer.upload(src, "s3://bkt/dir/obj", config=cfg)
        assert up.xxh3_128 == xxhash.xxh3_128_hexdigest(data)
        dest = tmp_path / "dest.bin"
        down = await asynctransfer.download("s3://bkt/dir/obj", dest, config=cfg)
        assert dest.read_bytes() == data
        assert down.etag == up.etag
        if checksum == "crc32c" and size > 0:
            # The store's CRC32C (FULL_OBJECT, or COMPOSITE over the parts) was checked.
            assert down.checksums, "the download verified no store checksum"
            assert up.checksums.get("CRC32C") == next(iter(down.checksums.values()))


async def test_real_5_mib_parts(tmp_path: Path) -> None:
    async with local_s3(tmp_path / "root") as s3:  # S3's own 5 MiB minimum
        await make_bucket(s3.endpoint_url)
        src = tmp_path / "src.bin"
        data = write_random(src, 11 * MiB + 1, seed=11)
        cfg = config(s3.endpoint_url, part_size=5 * MiB, min_part_size=5 * MiB)
        up = await asynctransfer.upload(src, "s3://bkt/big", config=cfg)
        assert (up.parts, up.etag.endswith('-3"')) == (3, True)
        assert up.checksums["CRC32C"].endswith("-3")
        dest = tmp_path / "dest.bin"
        down = await asynctransfer.download("s3://bkt/big", dest, config=cfg)
        assert dest.read_bytes() == data
        assert down.checksums == {"CRC32C": up.checksums["CRC32C"]}


async def test_download_catches_bytes_corrupted_on_the_server(tmp_path: Path) -> None:
    """Flip one byte of a part file on disk: the download's COMPOSITE check must fail."""
    root = tmp_path / "root"
    async with local_s3(root, min_part_size=SMALL_MIN_PART) as s3:
        await make_bucket(s3.endpoint_url)
        src = tmp_path / "src.bin"
        write_random(src, 3 * SMALL_PART, seed=1)
        cfg = config(s3.endpoint_url)
        await asynctransfer.upload(src, "s3://bkt/k", config=cfg)
        (parts,) = (root / "bkt").glob("k@*.parts")
        second = sorted(parts.iterdir())[1]
        raw = bytearray(second.read_bytes())
        raw[100] ^= 1
        second.write_bytes(raw)
        with pytest.raises(IntegrityError):
            await asynctransfer.download("s3://bkt/k", tmp_path / "dest.bin", config=cfg)
        assert not (tmp_path / "dest.bin").exists()


async def test_with_credentials(tmp_path: Path) -> None:
    # The test environment's keys are testing/testing (tests/conftest.py).
    async with local_s3(tmp_path / "root", access_key="testing", secret_key="testing") as s3:
        await make_bucket(s3.endpoint_url)
        src = tmp_path / "src.bin"
        data = write_random(src, 3 * MiB, seed=2)
        cfg = config(s3.endpoint_url, part_size=5 * MiB, min_part_size=5 * MiB)
        await asynctransfer.upload(src, "s3://bkt/k", config=cfg)
        await asynctransfer.download("s3://bkt/k", tmp_path / "dest.bin", config=cfg)
        assert (tmp_path / "dest.bin").read_bytes() == data
    async with local_s3(tmp_path / "root", access_key="other", secret_key="keys") as s3:
        with pytest.raises(AccessDeniedError):
            await asynctransfer.download(
                "s3://bkt/k", tmp_path / "again.bin", config=config(s3.endpoint_url)
            )


async def test_local_s3_refuses_half_a_key_pair(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="together"):
        async with local_s3(tmp_path, access_key="only"):
            pass
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    ("direct_io", "durable", "part_size"),
    [
        (True, True, 8 * MiB),
        (True, False, 8 * MiB),
        (False, True, 8 * MiB),
        (True, True, 5 * MiB + 1),
    ],
)
async def test_large_download_direct_and_buffered(
    tmp_path: Path, direct_io: bool, durable: bool, part_size: int
) -> None:
    """64 MiB and more go through O_DIRECT (where the filesystem has it): the unaligned tail is
    written padded and cut back. A part size that is not a multiple of the block size, or
    direct_io=False, takes the page cache. Every way gives the same bytes and nothing else."""
    size = 64 * MiB + 4097
    async with local_s3(tmp_path / "root") as s3:
        await make_bucket(s3.endpoint_url)
        src = tmp_path / "src.bin"
        data = write_random(src, size, seed=7)
        cfg = TransferConfig(
            endpoint_url=s3.endpoint_url,
            part_size=part_size,
            direct_io=direct_io,
            durable=durable,
            max_concurrency=4,
        )
        await asynctransfer.upload(src, "s3://bkt/big", config=cfg)
        out = tmp_path / "out"
        out.mkdir()
        dest = out / "big.bin"
        down = await asynctransfer.download("s3://bkt/big", dest, config=cfg)
        assert down.xxh3_128 == xxhash.xxh3_128_hexdigest(data)
        assert down.checksums  # verified against the store's checksum
        assert dest.stat().st_size == size
        assert dest.read_bytes() == data
        assert os.listdir(out) == ["big.bin"]


async def test_composite_check_of_unequal_parts_through_o_direct(tmp_path: Path) -> None:
    """A multipart object of unequal parts: the uniform guess fails, the real layout is read
    from the store and the file hashed again; that read-back must not go through O_DIRECT."""
    sizes = [30 * MiB, 10 * MiB, 30 * MiB]
    data = os.urandom(sum(sizes))
    async with local_s3(tmp_path / "root") as s3:
        await make_bucket(s3.endpoint_url)

        def upload() -> None:
            c = client(s3.endpoint_url)
            try:
                mpu = c.create_multipart_upload(Bucket="bkt", Key="odd", ChecksumAlgorithm="CRC32")
                parts, offset = [], 0
                for number, size in enumerate(sizes, 1):
                    r = c.upload_part(
                        Bucket="bkt",
                        Key="odd",
                        UploadId=mpu["UploadId"],
                        PartNumber=number,
                        Body=data[offset : offset + size],
                        ChecksumAlgorithm="CRC32",
                    )
                    parts.append(
                        {
                            "PartNumber": number,
                            "ETag": r["ETag"],
                            "ChecksumCRC32": r["ChecksumCRC32"],
                        }
                    )
                    offset += size
                c.complete_multipart_upload(
                    Bucket="bkt",
                    Key="odd",
                    UploadId=mpu["UploadId"],
                    MultipartUpload={"Parts": parts},
                )
            finally:
                c.close()

        await anyio.to_thread.run_sync(upload)
        dest = tmp_path / "odd.bin"
        cfg = TransferConfig(endpoint_url=s3.endpoint_url)
        down = await asynctransfer.download("s3://bkt/odd", dest, config=cfg)
        assert "CRC32" in down.checksums
        assert dest.read_bytes() == data
