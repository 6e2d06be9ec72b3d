"""What the engine puts on the wire, read from the fault proxy's request log.

The engine talks to moto through the proxy (``proxied_bucket.config``); the checks that the
store holds the right bytes go to moto directly (``proxied_bucket.client``).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import re
import time
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any

import pytest
from crc32c import crc32c

import asynctransfer
from asynctransfer import AccessDeniedError, NotFoundError, TransferError

from ..conftest import SMALL_PART, random_bytes, with_config, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from ..conftest import Bucket
    from ..proxy import Proxy

pytestmark = pytest.mark.timeout(60)

# Failing "fast": far below what retries with backoff would take.
FAST = 3.0
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"
_RANGE = re.compile(r"^bytes=(\d+)-(\d+)$")


def b64_of_hex(digest_hex: str) -> str:
    return base64.b64encode(bytes.fromhex(digest_hex)).decode()


def b64_crc32c(data: bytes) -> str:
    return base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()


def checksum_headers(entry: dict[str, Any]) -> dict[str, str]:
    return {
        k: v
        for k, v in entry["headers"].items()
        if k.startswith("x-amz-checksum-") and k != "x-amz-checksum-mode"
    }


def part_slices(data: bytes, part_size: int) -> dict[int, bytes]:
    return {
        i // part_size + 1: data[i : i + part_size] for i in range(0, max(len(data), 1), part_size)
    }


def complete_parts(entry: dict[str, Any]) -> list[dict[str, str]]:
    """The parts listed in a CompleteMultipartUpload body, in document order."""
    assert entry["body_text"], f"CompleteMultipartUpload body not logged: {entry}"
    root = ET.fromstring(entry["body_text"])
    parts = []
    for part in root:
        assert part.tag.removeprefix(_S3_NS) == "Part"
        parts.append({child.tag.removeprefix(_S3_NS): child.text or "" for child in part})
    return parts


# -------------------------------------------------------------------------- uploads


@pytest.mark.parametrize("checksum", ["crc32c", "md5", "none"])
async def test_upload_bodies_carry_exactly_their_checksum(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path, checksum: str
) -> None:
    """Each UploadPart and PutObject: the declared checksum is the checksum of exactly the bytes
    the proxy received, over an unsigned payload, never aws-chunked; nothing else is declared."""
    bucket, proxy = proxied_bucket, proxy_server
    config = with_config(bucket, checksum=checksum)
    big, small = tmp_path / "big.bin", tmp_path / "small.bin"
    big_data = write_random(big, 3 * SMALL_PART + 5, seed=1)
    small_data = write_random(small, 1000, seed=2)
    await asynctransfer.upload(big, bucket.url("big"), config=config)
    await asynctransfer.upload(small, bucket.url("small"), config=config)
    assert bucket.read("big") == big_data
    assert bucket.read("small") == small_data

    log = proxy.log()
    parts = [e for e in log if e["operation"] == "UploadPart"]
    puts = [e for e in log if e["operation"] == "PutObject"]
    assert sorted(int(e["query"]["partNumber"]) for e in parts) == [1, 2, 3, 4]
    assert len(puts) == 1
    expected = {int(e["query"]["partNumber"]): e for e in parts}
    slices = part_slices(big_data, SMALL_PART)
    bodies = [(e, slices[n]) for n, e in expected.items()] + [(puts[0], small_data)]

    for entry, data in bodies:
        headers = entry["headers"]
        where = f"{entry['operation']} {entry['query']}"
        assert entry["status"] == 200, where
        # The proxy received exactly the file's bytes for that part.
        assert entry["body_length"] == len(data), where
        assert entry["body_crc32c"] == f"{crc32c(data):08x}", where
        assert headers.get("content-length") == str(len(data)), where
        assert headers.get("x-amz-content-sha256") == "UNSIGNED-PAYLOAD", where
        assert "aws-chunked" not in headers.get("content-encoding", ""), where
        assert "x-amz-decoded-content-length" not in headers, where
        assert "x-amz-trailer" not in headers, where
        if checksum == "crc32c":
            assert checksum_headers(entry) == {
                "x-amz-checksum-crc32c": b64_of_hex(entry["body_crc32c"])
            }, where
            assert checksum_headers(entry)["x-amz-checksum-crc32c"] == b64_crc32c(data), where
            assert "content-md5" not in headers, where
        elif checksum == "md5":
            assert headers.get("content-md5") == b64_of_hex(entry["body_md5"]), where
            assert headers["content-md5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
            assert checksum_headers(entry) == {}, where
            assert "x-amz-sdk-checksum-algorithm" not in headers, where
        else:
            assert "content-md5" not in headers, where
            assert checksum_headers(entry) == {}, where
            assert "x-amz-sdk-checksum-algorithm" not in headers, where


@pytest.mark.parametrize("checksum", ["crc32c", "md5", "none"])
async def test_create_multipart_declares_the_checksum_algorithm(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path, checksum: str
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    src = tmp_path / "src.bin"
    write_random(src, 2 * SMALL_PART + 1, seed=3)
    await asynctransfer.upload(src, bucket.url("k"), config=with_config(bucket, checksum=checksum))
    [create] = proxy.requests("CreateMultipartUpload")
    declared = create["headers"].get("x-amz-checksum-algorithm")
    assert declared == ("CRC32C" if checksum == "crc32c" else None)
    assert create["status"] == 200


async def test_complete_lists_parts_in_order_when_they_finish_out_of_order(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    src = tmp_path / "src.bin"
    data = write_random(src, 5 * SMALL_PART - 3, seed=4)
    # Part 1 is held back for a second, so every other part finishes before it.
    proxy.set_rules(
        [
            {
                "match": {"operation": "UploadPart", "query": {"partNumber": "1"}},
                "action": "delay",
                "seconds": 1.0,
                "times": 1,
            }
        ]
    )
    result = await asynctransfer.upload(src, bucket.url("k"), config=bucket.config)
    assert bucket.read("k") == data
    assert result.parts == 5

    log = proxy.log()
    uploads = {int(e["query"]["partNumber"]): e for e in log if e["operation"] == "UploadPart"}
    assert sorted(uploads) == [1, 2, 3, 4, 5]
    assert uploads[1]["fault"] == "delay"
    # The scenario happened: part 1 finished last.
    assert all(uploads[1]["finished"] > uploads[n]["finished"] for n in range(2, 6))

    [complete] = [e for e in log if e["operation"] == "CompleteMultipartUpload"]
    listed = complete_parts(complete)
    assert [int(p["PartNumber"]) for p in listed] == [1, 2, 3, 4, 5]
    for part in listed:
        sent = uploads[int(part["PartNumber"])]
        assert part["ETag"] == sent["response_headers"]["etag"]
        assert part["ChecksumCRC32C"] == sent["headers"]["x-amz-checksum-crc32c"]
    # The Complete came after every part was in.
    assert complete["started"] >= max(e["finished"] for e in uploads.values())


# ------------------------------------------------------------------------ downloads


@pytest.mark.parametrize(
    "size", [1000, SMALL_PART, 5 * SMALL_PART + 7], ids=["small", "one-part", "many-parts"]
)
async def test_download_ranges_tile_the_object_pinned_by_if_match(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path, size: int
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    data = random_bytes(size, seed=size)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    etag = bucket.client.head_object(Bucket=bucket.name, Key="k")["ETag"]
    dest = tmp_path / "out.bin"
    await asynctransfer.download(bucket.url("k"), dest, config=bucket.config)
    assert dest.read_bytes() == data

    log = proxy.log()
    assert [e["operation"] for e in log if e["operation"] != "GetObject"] == ["HeadObject"]
    gets = [e for e in log if e["operation"] == "GetObject"]
    assert len(gets) == -(-size // SMALL_PART)
    covered: list[tuple[int, int]] = []
    for entry in gets:
        assert entry["headers"].get("if-match") == etag
        assert entry["status"] in (200, 206)
        header = entry["headers"].get("range")
        if header is None:  # a whole-object GET
            covered.append((0, size))
            assert entry["status"] == 200
        else:
            match = _RANGE.match(header)
            assert match, header
            covered.append((int(match[1]), int(match[2]) + 1))
            assert entry["status"] == 206
        assert entry["response_bytes"] == covered[-1][1] - covered[-1][0]
    covered.sort()
    assert covered[0][0] == 0
    assert covered[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(covered)), covered


async def test_download_of_a_multipart_object_is_pinned_to_its_etag(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    src = tmp_path / "src.bin"
    data = write_random(src, 3 * SMALL_PART + 11, seed=5)
    up = await asynctransfer.upload(src, bucket.url("k"), config=bucket.config)
    proxy.reset()
    dest = tmp_path / "out.bin"
    await asynctransfer.download(bucket.url("k"), dest, config=bucket.config)
    assert dest.read_bytes() == data
    gets = proxy.requests("GetObject")
    assert len(gets) == 4
    assert {e["headers"].get("if-match") for e in gets} == {up.etag}


# -------------------------------------------------------- bad answers fail fast


def _keys(bucket: Bucket) -> list[str]:
    return [o["Key"] for o in bucket.client.list_objects_v2(Bucket=bucket.name).get("Contents", [])]


def _deny(operation: str) -> list[dict[str, Any]]:
    return [
        {
            "match": {"operation": operation},
            "action": "status",
            "status": 403,
            "code": "AccessDenied",
            "times": None,
        }
    ]


async def test_access_denied_on_put_object_is_not_retried(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    src = tmp_path / "small.bin"
    write_random(src, 1000)
    proxy.set_rules(_deny("PutObject"))
    started = time.monotonic()
    with pytest.raises(AccessDeniedError) as caught:
        await asynctransfer.upload(src, bucket.url("k"), config=bucket.config)
    assert time.monotonic() - started < FAST
    assert caught.value.status == 403
    assert caught.value.code == "AccessDenied"
    puts = proxy.requests("PutObject")
    assert [(e["status"], e["fault"]) for e in puts] == [(403, "status")]
    assert _keys(bucket) == []


async def test_access_denied_on_create_multipart_is_not_retried(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    src = tmp_path / "big.bin"
    write_random(src, 3 * SMALL_PART)
    proxy.set_rules(_deny("CreateMultipartUpload"))
    with pytest.raises(AccessDeniedError):
        await asynctransfer.upload(src, bucket.url("k"), config=bucket.config)
    assert [e["operation"] for e in proxy.log()] == ["CreateMultipartUpload"]


async def test_access_denied_on_upload_part_is_not_retried_and_aborts(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    src = tmp_path / "big.bin"
    write_random(src, 6 * SMALL_PART + 1)
    proxy.set_rules(_deny("UploadPart"))
    started = time.monotonic()
    with pytest.raises(AccessDeniedError) as caught:
        await asynctransfer.upload(src, bucket.url("k"), config=bucket.config)
    assert time.monotonic() - started < FAST
    assert caught.value.code == "AccessDenied"

    log = proxy.log()
    parts = [e for e in log if e["operation"] == "UploadPart"]
    numbers = [e["query"]["partNumber"] for e in parts]
    # Parts already in flight when the first 403 came may have been sent; none was sent twice.
    assert len(numbers) == len(set(numbers)), f"a part was retried: {numbers}"
    assert any(e["status"] == 403 for e in parts)
    assert [e["operation"] for e in log].count("CompleteMultipartUpload") == 0
    aborts = [e for e in log if e["operation"] == "AbortMultipartUpload"]
    assert [e["status"] for e in aborts] == [204]
    [create] = [e for e in log if e["operation"] == "CreateMultipartUpload"]
    # The abort answered the first 403.
    assert aborts[0]["started"] >= min(e["finished"] for e in parts if e["status"] == 403)
    assert aborts[0]["query"]["uploadId"] == parts[0]["query"]["uploadId"]
    assert create["id"] < aborts[0]["id"]
    assert bucket.open_uploads() == []
    assert _keys(bucket) == []


async def test_missing_key_download_is_not_retried(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    dest = tmp_path / "out.bin"
    started = time.monotonic()
    with pytest.raises(NotFoundError, match="no such key") as caught:
        await asynctransfer.download(bucket.url("missing/key"), dest, config=bucket.config)
    assert time.monotonic() - started < FAST
    assert caught.value.status == 404
    log = proxy.log()
    heads = [e for e in log if e["operation"] == "HeadObject"]
    assert [(e["path"], e["status"]) for e in heads] == [(f"/{bucket.name}/missing/key", 404)]
    # At most one HeadBucket follows, to say which of the two is missing; no GET at all.
    assert [e["operation"] for e in log] in (["HeadObject"], ["HeadObject", "HeadBucket"])
    assert os.listdir(tmp_path) == []


# ----------------------------------------- CompleteMultipartUpload: 200 with <Error>


def _error_200_on_complete(times: int | None, forward: bool = False) -> list[dict[str, Any]]:
    return [
        {
            "match": {"operation": "CompleteMultipartUpload"},
            "action": "error_200",
            "code": "InternalError",
            "times": times,
            "forward": forward,
        }
    ]


@pytest.mark.parametrize(
    "forward", [False, True], ids=["store-never-saw-it", "store-completed-answer-lost"]
)
async def test_complete_answering_200_with_error_once_is_retried(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path, forward: bool
) -> None:
    """Never a silent success: either a retried Complete really completed the upload and the
    object is the file, or a TransferError is raised and there is no object.

    With ``forward`` the store did complete the upload and only its answer was replaced by the
    <Error>: the retried Complete then meets an already completed upload."""
    bucket, proxy = proxied_bucket, proxy_server
    src = tmp_path / "src.bin"
    data = write_random(src, 3 * SMALL_PART + 1, seed=6)
    proxy.set_rules(_error_200_on_complete(times=1, forward=forward))
    try:
        result = await asynctransfer.upload(src, bucket.url("k"), config=bucket.config)
    except TransferError:
        completes = proxy.requests("CompleteMultipartUpload")
        assert completes[0]["fault"] == "error_200"
        if forward:  # the store has the object: it must be the file's bytes
            assert bucket.read("k") == data
        else:
            assert _keys(bucket) == []
    else:
        assert bucket.read("k") == data
        assert result.etag == bucket.client.head_object(Bucket=bucket.name, Key="k")["ETag"]
        completes = proxy.requests("CompleteMultipartUpload")
        # The success came from a retry that the store really answered.
        assert [(e["status"], e["fault"]) for e in completes] == [
            (200, "error_200"),
            (200, None),
        ]
        # The retry sent the same part list.
        assert completes[0]["body_text"] == completes[1]["body_text"]
    assert bucket.open_uploads() == []


async def test_complete_answering_200_with_error_always_fails_and_aborts(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    src = tmp_path / "src.bin"
    write_random(src, 2 * SMALL_PART + 1, seed=7)
    proxy.set_rules(_error_200_on_complete(times=None))
    with pytest.raises(TransferError):
        await asynctransfer.upload(src, bucket.url("k"), config=bucket.config)
    assert _keys(bucket) == []
    log = proxy.log()
    completes = [e for e in log if e["operation"] == "CompleteMultipartUpload"]
    # The engine retries it (as a 5xx) up to max_attempts; each attempt was our <Error>.
    assert len(completes) == bucket.config.max_attempts
    assert all(e["fault"] == "error_200" for e in completes)
    aborts = [e for e in log if e["operation"] == "AbortMultipartUpload"]
    assert [e["status"] for e in aborts] == [204]
    assert bucket.open_uploads() == []


async def test_checksum_none_works_with_a_store_that_rejects_checksum_headers(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    """Reliability matrix row 31: a store that answers 400 to any x-amz-checksum-* header."""
    bucket = proxied_bucket
    proxy_server.set_rules(
        [
            {
                "match": {"header_prefix": "x-amz-checksum-"},
                "action": "status",
                "status": 400,
                "code": "InvalidArgument",
                "message": "x-amz-checksum-* headers are not supported",
            }
        ]
    )
    src = tmp_path / "src"
    data = write_random(src, 3 * SMALL_PART + 1)
    with pytest.raises(asynctransfer.RemoteError, match="InvalidArgument") as info:
        await asynctransfer.upload(src, bucket.url("k"), config=bucket.config)
    assert info.value.status == 400
    assert bucket.open_uploads() == []

    config = with_config(bucket, checksum="none")
    await asynctransfer.upload(src, bucket.url("k"), config=config)
    assert bucket.read("k") == data
    assert proxy_server.log()[-1]["operation"] == "CompleteMultipartUpload"
