"""Downloads are verified end to end against the store's checksums (reliability matrix row 11):
a flipped byte never reaches the final name."""

from __future__ import annotations

import base64
import itertools
import os
from typing import TYPE_CHECKING

import pytest
from crc32c import crc32c

import asynctransfer
from asynctransfer import IntegrityError, ProtocolViolationError

from ..conftest import SMALL_PART, random_bytes, with_config, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from ..conftest import Bucket
    from ..proxy import Proxy


def b64crc(data: bytes) -> str:
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()


def composite(parts: list[bytes]) -> str:
    inner = b"".join(crc32c(p).to_bytes(4, "big") for p in parts)
    return f"{b64crc(inner)}-{len(parts)}"


async def test_single_put_object_is_verified_against_full_object_crc32c(
    bucket: Bucket, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    data = write_random(src, SMALL_PART // 2)
    await asynctransfer.upload(src, bucket.url("k"), config=bucket.config)
    result = await asynctransfer.download(bucket.url("k"), tmp_path / "out", config=bucket.config)
    assert result.checksums == {"CRC32C": b64crc(data)}


async def test_multipart_object_is_verified_against_composite_crc32c(
    bucket: Bucket, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    data = write_random(src, 5 * SMALL_PART + 3)
    await asynctransfer.upload(src, bucket.url("k"), config=bucket.config)
    # Ranges of another size than the upload's parts: verification follows the upload's layout.
    config = with_config(bucket, part_size=2 * SMALL_PART)
    result = await asynctransfer.download(bucket.url("k"), tmp_path / "out", config=config)
    parts = [data[i : i + SMALL_PART] for i in range(0, len(data), SMALL_PART)]
    assert result.checksums == {"CRC32C": composite(parts)}


async def test_uneven_parts_are_verified_through_their_real_sizes(
    bucket: Bucket, tmp_path: Path
) -> None:
    """An uploader that cut unequal parts: the uniform guess fails, the real sizes are fetched."""
    data = random_bytes(6 * SMALL_PART + 11, seed=2)
    cuts = [0, 3 * SMALL_PART, 4 * SMALL_PART, len(data)]
    parts = [data[a:b] for a, b in itertools.pairwise(cuts)]
    c = bucket.client
    upload_id = c.create_multipart_upload(
        Bucket=bucket.name, Key="uneven", ChecksumAlgorithm="CRC32C"
    )["UploadId"]
    listed = []
    for number, part in enumerate(parts, 1):
        r = c.upload_part(
            Bucket=bucket.name,
            Key="uneven",
            UploadId=upload_id,
            PartNumber=number,
            Body=part,
            ChecksumCRC32C=b64crc(part),
        )
        listed.append({"PartNumber": number, "ETag": r["ETag"], "ChecksumCRC32C": b64crc(part)})
    c.complete_multipart_upload(
        Bucket=bucket.name, Key="uneven", UploadId=upload_id, MultipartUpload={"Parts": listed}
    )
    dest = tmp_path / "out"
    result = await asynctransfer.download(bucket.url("uneven"), dest, config=bucket.config)
    assert dest.read_bytes() == data
    assert result.checksums == {"CRC32C": composite(parts)}


@pytest.mark.parametrize("size", [SMALL_PART // 2, 5 * SMALL_PART + 3], ids=["single", "multi"])
async def test_flipped_byte_in_a_range_is_caught(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path, size: int
) -> None:
    bucket = proxied_bucket
    src = tmp_path / "src"
    write_random(src, size)
    await asynctransfer.upload(src, bucket.url("k"), config=bucket.config)
    dest = tmp_path / "dest"
    dest.write_bytes(b"precious")
    proxy_server.set_rules(
        [
            {
                "match": {"operation": "GetObject"},
                "times": 1,
                "action": "corrupt_response",
                "offset": 1000,
            }
        ]
    )
    with pytest.raises(IntegrityError, match=r"do not match|downloaded bytes have"):
        await asynctransfer.download(bucket.url("k"), dest, config=bucket.config)
    assert [e["fault"] for e in proxy_server.log() if e["fault"]] == ["corrupt_response"]
    assert dest.read_bytes() == b"precious"
    assert sorted(os.listdir(tmp_path)) == ["dest", "src"]


@pytest.mark.parametrize(
    ("rule", "match"),
    [
        (
            {"action": "rewrite_header", "headers": {"Content-Range": "bytes 0-262143/9999999"}},
            "Content-Range",
        ),
        ({"action": "ignore_range"}, "no Content-Range|asked for"),
    ],
    ids=["wrong-content-range", "range-ignored"],
)
async def test_range_answers_are_checked(
    proxied_bucket: Bucket,
    proxy_server: Proxy,
    tmp_path: Path,
    rule: dict[str, object],
    match: str,
) -> None:
    """Reliability matrix rows 8 and 9: a 206 for another range, or a 200 with the whole object,
    is a protocol error; nothing is written under the final name."""
    bucket = proxied_bucket
    data = random_bytes(4 * SMALL_PART, seed=8)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    proxy_server.set_rules([{"match": {"operation": "GetObject"}, "times": 1, **rule}])
    dest = tmp_path / "dest"
    with pytest.raises(ProtocolViolationError, match=match):
        await asynctransfer.download(bucket.url("k"), dest, config=bucket.config)
    assert os.listdir(tmp_path) == []
