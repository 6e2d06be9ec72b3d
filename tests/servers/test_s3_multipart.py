"""Multipart uploads on the local S3 server (minimum part size lowered to SMALL_MIN_PART)."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest
from boto3.s3.transfer import TransferConfig as Boto3Config
from crc32c import crc32c

from ..conftest import SMALL_MIN_PART
from .conftest import client, error, error_response

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import S3

PART = SMALL_MIN_PART


def plain_client(s3: S3) -> Any:
    """A client that adds no checksum of its own (botocore adds CRC32 by default)."""
    c = client(s3.url, request_checksum_calculation="when_required")
    s3.closing.append(c)
    return c


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def crc(data: bytes) -> bytes:
    return crc32c(data).to_bytes(4, "big")


class Upload:
    """One multipart upload through boto3, with its parts' bytes kept for checks."""

    def __init__(self, s3: S3, key: str, **create: Any) -> None:
        self.s3, self.key = s3, key
        self.id: str = s3.client.create_multipart_upload(Bucket=s3.bucket, Key=key, **create)[
            "UploadId"
        ]
        self.parts: dict[int, dict[str, Any]] = {}
        self.data: dict[int, bytes] = {}

    def part(self, number: int, data: bytes, **extra: Any) -> dict[str, Any]:
        response: dict[str, Any] = self.s3.client.upload_part(
            Bucket=self.s3.bucket,
            Key=self.key,
            UploadId=self.id,
            PartNumber=number,
            Body=data,
            **extra,
        )
        entry = {"PartNumber": number, "ETag": response["ETag"]}
        entry.update({k: v for k, v in response.items() if k.startswith("Checksum")})
        self.parts[number], self.data[number] = entry, data
        return response

    def complete(self, parts: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
        listed = parts if parts is not None else [self.parts[n] for n in sorted(self.parts)]
        response: dict[str, Any] = self.s3.client.complete_multipart_upload(
            Bucket=self.s3.bucket,
            Key=self.key,
            UploadId=self.id,
            MultipartUpload={"Parts": listed},
            **extra,
        )
        return response

    def list_parts(self, **extra: Any) -> dict[str, Any]:
        response: dict[str, Any] = self.s3.client.list_parts(
            Bucket=self.s3.bucket, Key=self.key, UploadId=self.id, **extra
        )
        return response

    def abort(self) -> None:
        self.s3.client.abort_multipart_upload(Bucket=self.s3.bucket, Key=self.key, UploadId=self.id)


def test_multipart_with_composite_crc32c(s3: S3) -> None:
    upload = Upload(s3, "big", ChecksumAlgorithm="CRC32C", ContentType="video/mp4")
    chunks = [os.urandom(PART), os.urandom(PART + 17), os.urandom(1000)]
    for number, chunk in enumerate(chunks, 1):
        response = upload.part(number, chunk, ChecksumCRC32C=b64(crc(chunk)))
        assert response["ChecksumCRC32C"] == b64(crc(chunk))
        assert response["ETag"] == f'"{hashlib.md5(chunk).hexdigest()}"'
    result = upload.complete()
    md5s = b"".join(hashlib.md5(c).digest() for c in chunks)
    assert result["ETag"] == f'"{hashlib.md5(md5s).hexdigest()}-3"'
    composite = f"{b64(crc32c(b''.join(crc(c) for c in chunks)).to_bytes(4, 'big'))}-3"
    assert result["ChecksumCRC32C"] == composite
    assert result.get("ChecksumType") == "COMPOSITE"

    data = b"".join(chunks)
    head = s3.client.head_object(Bucket=s3.bucket, Key="big", ChecksumMode="ENABLED")
    assert (head["ContentLength"], head["ETag"]) == (len(data), result["ETag"])
    assert (head["ChecksumCRC32C"], head["ChecksumType"]) == (composite, "COMPOSITE")
    assert head["ContentType"] == "video/mp4"
    assert s3.read("big", ChecksumMode="ENABLED") == data
    assert s3.read("big", Range=f"bytes={PART - 5}-{PART + 5}") == data[PART - 5 : PART + 6]
    assert s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []

    offset = 0
    for number, chunk in enumerate(chunks, 1):
        part = s3.client.get_object(Bucket=s3.bucket, Key="big", PartNumber=number)
        assert part["ResponseMetadata"]["HTTPStatusCode"] == 206
        assert part["PartsCount"] == 3
        assert part["ContentRange"] == f"bytes {offset}-{offset + len(chunk) - 1}/{len(data)}"
        assert part["Body"].read() == chunk
        head = s3.client.head_object(Bucket=s3.bucket, Key="big", PartNumber=number)
        assert (head["ContentLength"], head["PartsCount"]) == (len(chunk), 3)
        offset += len(chunk)
    assert error(s3.client.head_object, Bucket=s3.bucket, Key="big", PartNumber=4) == (416, "416")


def test_part_number_of_a_single_put_object(s3: S3) -> None:
    s3.put("small", b"hello")
    part = s3.client.get_object(Bucket=s3.bucket, Key="small", PartNumber=1)
    assert (part["ContentRange"], part["Body"].read()) == ("bytes 0-4/5", b"hello")
    assert "PartsCount" not in part
    response = error_response(s3.client.get_object, Bucket=s3.bucket, Key="small", PartNumber=2)
    assert response["Error"]["Code"] == "InvalidPartNumber"


def test_parts_without_checksums_get_the_uploads_algorithm(s3: S3) -> None:
    """A part sent without a checksum in an upload that declared one: the server computes it."""
    upload = Upload(replace(s3, client=plain_client(s3)), "k", ChecksumAlgorithm="CRC32C")
    chunks = [os.urandom(PART), os.urandom(10)]
    for number, chunk in enumerate(chunks, 1):
        assert "ChecksumCRC32C" in upload.part(number, chunk)
    listed = upload.list_parts()["Parts"]
    assert [p["ChecksumCRC32C"] for p in listed] == [b64(crc(c)) for c in chunks]
    result = upload.complete([{"PartNumber": n, "ETag": upload.parts[n]["ETag"]} for n in (1, 2)])
    assert result["ChecksumCRC32C"].endswith("-2")


def test_wrong_part_checksum_is_refused_and_not_kept(s3: S3) -> None:
    upload = Upload(replace(s3, client=plain_client(s3)), "k", ChecksumAlgorithm="CRC32C")
    chunk = os.urandom(1000)
    assert error(upload.part, 1, chunk, ChecksumCRC32C=b64(crc(chunk + b"!"))) == (
        400,
        "BadDigest",
    )
    assert error(upload.part, 1, chunk, ContentMD5=b64(hashlib.md5(b"x").digest())) == (
        400,
        "BadDigest",
    )
    assert error(
        upload.part, 1, chunk, ChecksumCRC32=b64(zlib.crc32(chunk).to_bytes(4, "big"))
    ) == (
        400,
        "InvalidRequest",
    )
    assert upload.list_parts().get("Parts", []) == []
    upload.abort()


def test_complete_refuses_what_s3_refuses(s3: S3) -> None:
    upload = Upload(s3, "k", ChecksumAlgorithm="CRC32C")
    small, full, last = os.urandom(PART - 1), os.urandom(PART), os.urandom(5)
    upload.part(1, full, ChecksumCRC32C=b64(crc(full)))
    upload.part(2, small, ChecksumCRC32C=b64(crc(small)))
    upload.part(3, last, ChecksumCRC32C=b64(crc(last)))
    p1, p2, p3 = upload.parts[1], upload.parts[2], upload.parts[3]
    too_small = error_response(upload.complete)
    assert too_small["Error"]["Code"] == "EntityTooSmall"
    assert too_small["Error"]["ProposedSize"] == str(PART - 1)
    assert error(upload.complete, [p1, {**p3, "ETag": '"0123"'}]) == (400, "InvalidPart")
    assert error(upload.complete, [p1, {**p3, "PartNumber": 4}]) == (400, "InvalidPart")
    assert error(upload.complete, [p1, {**p3, "ChecksumCRC32C": p1["ChecksumCRC32C"]}]) == (
        400,
        "InvalidPart",
    )
    assert error(upload.complete, [p3, p1]) == (400, "InvalidPartOrder")
    assert error(upload.complete, [p1, p1]) == (400, "InvalidPartOrder")
    # Nothing was completed: the upload is still there and completes with valid parts.
    assert len(upload.list_parts()["Parts"]) == 3
    result = upload.complete([p1, p3])
    assert result["ETag"].endswith('-2"')
    assert s3.read("k") == full + last, "unlisted parts are not part of the object"
    assert p2  # (uploaded, never listed)
    assert error(upload.list_parts) == (404, "NoSuchUpload")


def test_no_such_upload(s3: S3) -> None:
    c = s3.client
    bogus = {"Bucket": s3.bucket, "Key": "k", "UploadId": "0" * 32}
    assert error(c.list_parts, **bogus) == (404, "NoSuchUpload")
    assert error(c.abort_multipart_upload, **bogus) == (404, "NoSuchUpload")
    assert error(c.upload_part, **bogus, PartNumber=1, Body=b"x") == (404, "NoSuchUpload")
    parts = {"Parts": [{"PartNumber": 1, "ETag": '"x"'}]}
    assert error(c.complete_multipart_upload, **bogus, MultipartUpload=parts) == (
        404,
        "NoSuchUpload",
    )
    assert error(c.list_parts, **{**bogus, "UploadId": "../../etc"}) == (404, "NoSuchUpload")
    upload = Upload(s3, "k")
    assert error(c.list_parts, Bucket=s3.bucket, Key="other", UploadId=upload.id) == (
        404,
        "NoSuchUpload",
    )
    upload.abort()
    assert error(upload.list_parts) == (404, "NoSuchUpload")
    assert error(upload.part, 1, b"x") == (404, "NoSuchUpload")


@pytest.mark.parametrize("number", [0, 10001])
def test_part_number_bounds(s3: S3, number: int) -> None:
    upload = Upload(s3, "k")
    assert error(upload.part, number, b"x") == (400, "InvalidArgument")
    upload.abort()


def test_reuploaded_part_replaces_the_old_one(s3: S3) -> None:
    upload = Upload(s3, "k")
    upload.part(1, b"first version")
    upload.part(1, b"second")
    assert [p["Size"] for p in upload.list_parts()["Parts"]] == [6]
    upload.complete()
    assert s3.read("k") == b"second"


def test_complete_with_if_none_match(s3: S3) -> None:
    s3.put("k", b"existing")
    upload = Upload(s3, "k")
    upload.part(1, b"new")
    assert error(upload.complete, IfNoneMatch="*") == (412, "PreconditionFailed")
    assert s3.read("k") == b"existing"
    assert len(upload.list_parts()["Parts"]) == 1, "the upload survives a failed Complete"
    upload.complete()
    assert s3.read("k") == b"new"


def test_list_parts_paginates(s3: S3) -> None:
    upload = Upload(s3, "k")
    for number in (1, 2, 3, 5, 8):
        upload.part(number, bytes([number]) * number)
    pages = list(
        s3.client.get_paginator("list_parts").paginate(
            Bucket=s3.bucket, Key="k", UploadId=upload.id, PaginationConfig={"PageSize": 2}
        )
    )
    assert [[p["PartNumber"] for p in page["Parts"]] for page in pages] == [[1, 2], [3, 5], [8]]
    assert [page["IsTruncated"] for page in pages] == [True, True, False]
    assert pages[0]["NextPartNumberMarker"] == 2
    assert [p["Size"] for page in pages for p in page["Parts"]] == [1, 2, 3, 5, 8]
    upload.abort()


def test_list_multipart_uploads_paginates(s3: S3) -> None:
    uploads = [Upload(s3, key) for key in ("a/1", "a/2", "b", "b", "c")]
    pages = list(
        s3.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=s3.bucket, PaginationConfig={"PageSize": 2}
        )
    )
    listed = [(u["Key"], u["UploadId"]) for page in pages for u in page["Uploads"]]
    assert listed == sorted((u.key, u.id) for u in uploads)
    assert [len(page["Uploads"]) for page in pages] == [2, 2, 1]
    nested = s3.client.list_multipart_uploads(Bucket=s3.bucket, Delimiter="/")
    assert [p["Prefix"] for p in nested["CommonPrefixes"]] == ["a/"]
    assert [u["Key"] for u in nested["Uploads"]] == ["b", "b", "c"]
    prefixed = s3.client.list_multipart_uploads(Bucket=s3.bucket, Prefix="a/")
    assert [u["Key"] for u in prefixed["Uploads"]] == ["a/1", "a/2"]
    for upload in uploads:
        upload.abort()
    assert s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", []) == []


def test_boto3_transfer_manager_round_trip(s3: S3, tmp_path: Path) -> None:
    """s3transfer's defaults (CRC32 per part and a COMPOSITE CRC32) through upload_file and
    download_file."""
    src = tmp_path / "src.bin"
    data = os.urandom(11 * 1024 * 1024)
    src.write_bytes(data)
    config = Boto3Config(multipart_threshold=PART, multipart_chunksize=5 * 1024 * 1024)
    s3.client.upload_file(str(src), s3.bucket, "obj", Config=config)
    head = s3.client.head_object(Bucket=s3.bucket, Key="obj", ChecksumMode="ENABLED")
    assert head["ETag"].endswith('-3"')
    assert head["ChecksumCRC32"].endswith("-3")
    dest = tmp_path / "dest.bin"
    s3.client.download_file(s3.bucket, "obj", str(dest), Config=config)
    assert dest.read_bytes() == data


def test_upload_survives_in_the_store_layout(s3: S3) -> None:
    """Parts are plain files: after Complete, the object's directory holds exactly its parts,
    which concatenate to the object."""
    upload = Upload(s3, "dir/obj")
    for number in (1, 2):
        upload.part(number, bytes([number]) * PART)
    upload.complete()
    (parts_dir,) = (s3.root / s3.bucket / "dir").glob("obj@*.parts")
    files = sorted(parts_dir.iterdir())
    assert [f.name.split("@")[0] for f in files] == ["00001", "00002"]
    assert b"".join(f.read_bytes() for f in files) == s3.read("dir/obj")
