"""The local S3 server, driven by boto3: buckets, objects, ranges, conditions, checksums,
listings, keys, limits. Multipart uploads: test_s3_multipart.py; SigV4: test_s3_sigv4.py."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import datetime
import hashlib
import http.client
import os
import urllib.parse
import zlib
from typing import TYPE_CHECKING, Any

import pytest
from crc32c import crc32c

from .conftest import BOTH_MODES, client, error, error_response, threaded_s3

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import S3


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def raw_request(
    url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A request exactly as given (no client-side path normalisation, no signing)."""
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname or "", parsed.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if "Transfer-Encoding" not in (headers or {}):
            connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


# ------------------------------------------------------------------ buckets


def test_bucket_lifecycle(s3: S3) -> None:
    c = s3.client
    assert c.head_bucket(Bucket=s3.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert s3.bucket in [b["Name"] for b in c.list_buckets()["Buckets"]]
    assert error(c.create_bucket, Bucket=s3.bucket) == (409, "BucketAlreadyOwnedByYou")
    s3.put("k")
    assert error(c.delete_bucket, Bucket=s3.bucket) == (409, "BucketNotEmpty")
    c.delete_object(Bucket=s3.bucket, Key="k")
    assert c.delete_bucket(Bucket=s3.bucket)["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error(c.head_bucket, Bucket=s3.bucket) == (404, "404")
    assert error(c.list_objects_v2, Bucket=s3.bucket) == (404, "NoSuchBucket")
    assert error(c.put_object, Bucket=s3.bucket, Key="k", Body=b"x") == (404, "NoSuchBucket")
    assert error(c.get_object, Bucket=s3.bucket, Key="k") == (404, "NoSuchBucket")
    assert error(c.create_bucket, Bucket="Not_Valid") == (400, "InvalidBucketName")


def test_bucket_with_open_upload_is_not_empty(s3: S3) -> None:
    upload = s3.client.create_multipart_upload(Bucket=s3.bucket, Key="k")["UploadId"]
    assert error(s3.client.delete_bucket, Bucket=s3.bucket) == (409, "BucketNotEmpty")
    s3.client.abort_multipart_upload(Bucket=s3.bucket, Key="k", UploadId=upload)
    s3.client.delete_bucket(Bucket=s3.bucket)


# ------------------------------------------------------------------ objects


@BOTH_MODES
def test_put_get_head_delete(s3: S3) -> None:
    data = os.urandom(1000)
    put = s3.put(
        "dir/k",
        data,
        ContentType="text/plain",
        Metadata={"colour": "blue"},
        CacheControl="max-age=60",
    )
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    got = s3.client.get_object(Bucket=s3.bucket, Key="dir/k")
    assert got["Body"].read() == data
    assert got["ETag"] == put["ETag"]
    assert got["ContentType"] == "text/plain"
    assert got["Metadata"] == {"colour": "blue"}
    assert got["CacheControl"] == "max-age=60"
    assert "ContentRange" not in got
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    head = s3.client.head_object(Bucket=s3.bucket, Key="dir/k")
    assert head["ContentLength"] == 1000
    assert head["ETag"] == put["ETag"]
    age = datetime.datetime.now(datetime.UTC) - head["LastModified"]
    assert abs(age.total_seconds()) < 60
    deleted = s3.client.delete_object(Bucket=s3.bucket, Key="dir/k")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert error(s3.client.get_object, Bucket=s3.bucket, Key="dir/k") == (404, "NoSuchKey")
    assert error(s3.client.head_object, Bucket=s3.bucket, Key="dir/k") == (404, "404")
    again = s3.client.delete_object(Bucket=s3.bucket, Key="dir/k")
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert not (s3.root / s3.bucket / "dir").exists(), "empty directories are pruned"


def test_error_document_is_s3s(s3: S3) -> None:
    status, headers, body = raw_request(s3.url, "GET", f"/{s3.bucket}/missing")
    assert status == 404
    assert headers["Content-Type"] == "application/xml"
    assert headers["x-amz-request-id"]
    assert body.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>NoSuchKey</Code>')
    assert f"<Resource>/{s3.bucket}/missing</Resource>".encode() in body
    assert b"<RequestId>" in body
    status, _, body = raw_request(s3.url, "HEAD", f"/{s3.bucket}/missing")
    assert (status, body) == (404, b"")


def test_overwrite_replaces_and_frees_the_old_bytes(tmp_path: Path) -> None:
    """A small object lives inline in its metadata file, a larger one in a file beside it;
    every overwrite, from either kind to either kind, leaves only the new version's files."""
    with threaded_s3(tmp_path, small_body=1000) as url, contextlib.closing(client(url)) as c:
        c.create_bucket(Bucket="bkt")
        for body in (b"x" * 3000, b"small", b"y" * 2000, b"z" * 3000, b"tiny", b""):
            c.put_object(Bucket="bkt", Key="k", Body=body)
            assert c.get_object(Bucket="bkt", Key="k")["Body"].read() == body
            files = {p.name for p in (tmp_path / "bkt").iterdir() if p.name.startswith("k@")}
            assert "k@meta.json" in files
            data_files = files - {"k@meta.json"}
            if len(body) > 1000:
                assert len(data_files) == 1, files  # the new bytes
                assert data_files.pop().endswith(".data")
            else:
                assert not data_files, files  # inline


@BOTH_MODES
def test_readers_never_see_a_half_written_object(s3: S3) -> None:
    versions = [bytes([i]) * 300_000 for i in range(4)]
    s3.put("k", versions[0])

    def write() -> None:
        for i in range(12):
            s3.put("k", versions[i % 4])

    def read() -> set[bytes]:
        return {s3.read("k") for _ in range(20)}

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        writer = pool.submit(write)
        readers = [pool.submit(read) for _ in range(3)]
        writer.result()
        seen = set().union(*(r.result() for r in readers))
    assert seen <= set(versions)


KEYS = [
    "a",
    "a/b",
    "a/b/c",
    "a/",
    "a//b",
    "sp ace+plus%25&?#=",
    "ünïcødé/ключ/キー",
    "x" * 300,
    "é" * 400 + "/leaf",
    ".hidden/.x",
    "~tilde@at",
]


@BOTH_MODES
def test_keys_round_trip_and_list_in_utf8_order(s3: S3) -> None:
    for i, key in enumerate(KEYS):
        s3.put(key, str(i).encode())
    for i, key in enumerate(KEYS):
        assert s3.read(key) == str(i).encode(), key
    listed = [o["Key"] for o in s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]]
    assert listed == sorted(KEYS, key=lambda k: k.encode())
    for path in (s3.root / s3.bucket).rglob("*"):
        assert len(path.name) <= 255


def test_key_too_long(s3: S3) -> None:
    assert error(s3.put, "k" * 1025) == (400, "KeyTooLongError")


@pytest.mark.parametrize(
    "path", ["/{b}/../escape", "/{b}/%2e%2e/escape", "/{b}/a/./b", "/{b}/a/%2E%2E/%2E%2E/x"]
)
def test_key_escapes_are_refused(s3: S3, path: str) -> None:
    status, _, body = raw_request(s3.url, "PUT", path.format(b=s3.bucket), b"x")
    assert status == 400
    assert b"<Code>InvalidArgument</Code>" in body
    assert not (s3.root / "escape").exists()
    assert not (s3.root.parent / "escape").exists()
    assert files_under(s3.root / s3.bucket) == {"@bucket.json"}


def test_boto3_dot_segments_are_refused(s3: S3) -> None:
    assert error(s3.put, "../x") == (400, "InvalidArgument")


# ------------------------------------------------------------------ ranges

DATA = bytes(range(256)) * 4  # 1024 bytes


@pytest.mark.parametrize(
    ("range_", "first", "last"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=1000-", 1000, 1023),
        ("bytes=-10", 1014, 1023),
        ("bytes=-5000", 0, 1023),
        ("bytes=10-99999", 10, 1023),
        ("bytes=1023-1023", 1023, 1023),
    ],
)
@BOTH_MODES
def test_range(s3: S3, range_: str, first: int, last: int) -> None:
    s3.put("k", DATA)
    got = s3.client.get_object(Bucket=s3.bucket, Key="k", Range=range_)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["ContentRange"] == f"bytes {first}-{last}/1024"
    assert got["Body"].read() == DATA[first : last + 1]
    head = s3.client.head_object(Bucket=s3.bucket, Key="k", Range=range_)
    assert head["ContentLength"] == last - first + 1


@pytest.mark.parametrize("range_", ["bytes=1024-", "bytes=5000-6000", "bytes=-0"])
@BOTH_MODES
def test_unsatisfiable_range(s3: S3, range_: str) -> None:
    s3.put("k", DATA)
    response = error_response(s3.client.get_object, Bucket=s3.bucket, Key="k", Range=range_)
    assert response["Error"]["Code"] == "InvalidRange"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 416
    assert response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == "bytes */1024"


@pytest.mark.parametrize("range_", ["bytes=0-1,5-6", "bytes=9-2", "items=0-1", "bytes=x-y"])
def test_ranges_s3_ignores_give_the_whole_object(s3: S3, range_: str) -> None:
    s3.put("k", DATA)
    got = s3.client.get_object(Bucket=s3.bucket, Key="k", Range=range_)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "ContentRange" not in got
    assert got["Body"].read() == DATA


@BOTH_MODES
def test_range_of_empty_object(s3: S3) -> None:
    s3.put("empty", b"")
    assert s3.read("empty") == b""
    assert error(s3.client.get_object, Bucket=s3.bucket, Key="empty", Range="bytes=0-") == (
        416,
        "InvalidRange",
    )


# ------------------------------------------------------------------ conditions


@BOTH_MODES
def test_conditional_get_and_head(s3: S3) -> None:
    etag = s3.put("k", b"abc")["ETag"]
    get, head = s3.client.get_object, s3.client.head_object
    k = {"Bucket": s3.bucket, "Key": "k"}
    assert get(**k, IfMatch=etag)["Body"].read() == b"abc"
    assert get(**k, IfMatch=f'"nope", {etag}')["Body"].read() == b"abc"
    assert error(get, **k, IfMatch='"nope"') == (412, "PreconditionFailed")
    assert error(head, **k, IfMatch='"nope"') == (412, "412")
    assert error(get, **k, IfNoneMatch=etag) == (304, "304")
    assert get(**k, IfNoneMatch='"other"')["Body"].read() == b"abc"
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
    past = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
    assert error(get, **k, IfModifiedSince=future) == (304, "304")
    assert get(**k, IfModifiedSince=past)["Body"].read() == b"abc"
    assert error(get, **k, IfUnmodifiedSince=past) == (412, "PreconditionFailed")
    # If-Match wins over If-Unmodified-Since, If-None-Match over If-Modified-Since (RFC 9110).
    assert get(**k, IfMatch=etag, IfUnmodifiedSince=past)["Body"].read() == b"abc"
    assert get(**k, IfNoneMatch='"other"', IfModifiedSince=future)["Body"].read() == b"abc"


@BOTH_MODES
def test_conditional_put(s3: S3) -> None:
    etag = s3.put("k", b"one")["ETag"]
    assert error(s3.put, "k", b"two", IfNoneMatch="*") == (412, "PreconditionFailed")
    assert error(s3.put, "k", b"two", IfMatch='"nope"') == (412, "PreconditionFailed")
    assert error(s3.put, "new", b"two", IfMatch=etag) == (404, "NoSuchKey")
    assert s3.read("k") == b"one"
    s3.put("k", b"two", IfMatch=etag)
    s3.put("fresh", b"x", IfNoneMatch="*")
    assert s3.read("k") == b"two"


# ------------------------------------------------------------------ checksums

CHECKSUMS = {
    "CRC32C": lambda d: crc32c(d).to_bytes(4, "big"),
    "CRC32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    "SHA256": lambda d: hashlib.sha256(d).digest(),
    "SHA1": lambda d: hashlib.sha1(d).digest(),
}


@pytest.mark.parametrize("algorithm", CHECKSUMS)
@BOTH_MODES
def test_checksum_is_verified_stored_and_returned(s3: S3, algorithm: str) -> None:
    data = os.urandom(3000)
    right = b64(CHECKSUMS[algorithm](data))
    wrong = b64(CHECKSUMS[algorithm](data + b"x"))
    assert error(s3.put, "k", data, **{f"Checksum{algorithm}": wrong}) == (400, "BadDigest")
    assert error(s3.client.head_object, Bucket=s3.bucket, Key="k") == (404, "404")
    assert files_under(s3.root / s3.bucket) == {"@bucket.json"}
    put = s3.put("k", data, **{f"Checksum{algorithm}": right})
    assert put[f"Checksum{algorithm}"] == right
    head = s3.client.head_object(Bucket=s3.bucket, Key="k", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == right
    assert head["ChecksumType"] == "FULL_OBJECT"
    # botocore checks the body against the checksum it is given here.
    got = s3.client.get_object(Bucket=s3.bucket, Key="k", ChecksumMode="ENABLED")
    assert got[f"Checksum{algorithm}"] == right
    assert got["Body"].read() == data
    assert f"Checksum{algorithm}" not in s3.client.head_object(Bucket=s3.bucket, Key="k")
    ranged = s3.client.get_object(
        Bucket=s3.bucket, Key="k", Range="bytes=0-9", ChecksumMode="ENABLED"
    )
    assert f"Checksum{algorithm}" not in ranged
    assert ranged["Body"].read() == data[:10]


@BOTH_MODES
def test_content_md5_is_verified(s3: S3) -> None:
    data = b"payload"
    wrong = b64(hashlib.md5(b"other").digest())
    assert error(s3.put, "k", data, ContentMD5=wrong) == (400, "BadDigest")
    assert error(s3.put, "k", data, ContentMD5="not base64!") == (400, "InvalidDigest")
    assert error(s3.client.head_object, Bucket=s3.bucket, Key="k") == (404, "404")
    s3.put("k", data, ContentMD5=b64(hashlib.md5(data).digest()))
    assert s3.read("k") == data


def test_malformed_and_unsupported_checksums(s3: S3) -> None:
    assert error(s3.put, "k", b"x", ChecksumCRC32C="AAAA") == (400, "InvalidRequest")
    status, _, body = raw_request(
        s3.url,
        "PUT",
        f"/{s3.bucket}/k",
        b"x",
        {"x-amz-checksum-crc32c": "AAAAAA==", "x-amz-checksum-crc32": "AAAAAA=="},
    )
    assert status == 400
    assert b"Multiple checksum Types" in body
    status, _, body = raw_request(
        s3.url, "PUT", f"/{s3.bucket}/k", b"x", {"x-amz-checksum-crc64nvme": "AAAAAAAAAAA="}
    )
    assert (status, b"CRC64NVME" in body) == (400, True)


@pytest.mark.parametrize("small_body", [1024 * 1024, 0], ids=["small", "streamed"])
def test_a_body_that_fails_its_digest_stores_nothing(tmp_path: Path, small_body: int) -> None:
    """Content-MD5 and x-amz-checksum-* are checked on the in-memory path as on the streamed
    one: BadDigest, no new file anywhere (not even in the temp directory), the old version
    intact."""
    with (
        threaded_s3(tmp_path, small_body=small_body) as url,
        contextlib.closing(client(url)) as c,
    ):
        c.create_bucket(Bucket="bkt")
        c.put_object(Bucket="bkt", Key="k", Body=b"kept")
        before = files_under(tmp_path)
        data = os.urandom(64 * 1024)
        wrong_md5 = b64(hashlib.md5(data + b"x").digest())
        wrong_crc = b64(crc32c(data + b"x").to_bytes(4, "big"))
        for key in ("k", "new"):
            assert error(c.put_object, Bucket="bkt", Key=key, Body=data, ContentMD5=wrong_md5) == (
                400,
                "BadDigest",
            )
            assert error(
                c.put_object, Bucket="bkt", Key=key, Body=data, ChecksumCRC32C=wrong_crc
            ) == (400, "BadDigest")
        assert files_under(tmp_path) == before
        assert c.get_object(Bucket="bkt", Key="k")["Body"].read() == b"kept"
        assert error(c.head_object, Bucket="bkt", Key="new") == (404, "404")
        right = b64(crc32c(data).to_bytes(4, "big"))
        put = c.put_object(Bucket="bkt", Key="new", Body=data, ChecksumCRC32C=right)
        assert put["ChecksumCRC32C"] == right


@BOTH_MODES
def test_concurrent_conditional_puts_are_atomic(s3: S3) -> None:
    """Of concurrent PUTs with If-None-Match: * to one key, exactly one wins and its body is
    what is stored; the same for If-Match on one ETag."""
    bodies = [os.urandom(16 * 1024) for _ in range(8)]

    def put_all(key: str, headers: dict[str, str]) -> list[int]:
        def put(body: bytes) -> int:
            return raw_request(s3.url, "PUT", f"/{s3.bucket}/{key}", body, headers)[0]

        with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
            return list(pool.map(put, bodies))

    for round_ in range(3):
        statuses = put_all(f"k{round_}", {"If-None-Match": "*"})
        assert sorted(statuses) == [200] + [412] * (len(bodies) - 1)
        assert s3.read(f"k{round_}") == bodies[statuses.index(200)]
    etag = s3.put("m", b"base")["ETag"]
    statuses = put_all("m", {"If-Match": etag})
    assert sorted(statuses) == [200] + [412] * (len(bodies) - 1)
    assert s3.read("m") == bodies[statuses.index(200)]


@pytest.mark.parametrize("fsync", [True, False])
def test_metadata_fsync_can_be_turned_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fsync: bool
) -> None:
    calls: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    with threaded_s3(tmp_path, fsync=fsync) as url, contextlib.closing(client(url)) as c:
        c.create_bucket(Bucket="bkt")
        calls.clear()
        c.put_object(Bucket="bkt", Key="small", Body=b"x")
        c.put_object(Bucket="bkt", Key="large", Body=b"x" * (2 * 1024 * 1024))
        assert c.get_object(Bucket="bkt", Key="large")["Body"].read() == b"x" * (2 * 1024 * 1024)
    assert len(calls) == (2 if fsync else 0)


# ------------------------------------------------------------------ listing


def test_list_objects_v2_paginates_in_order(s3: S3) -> None:
    keys = [*sorted(f"k/{i:03d}" for i in range(23)), "z"]
    for key in keys:
        s3.put(key, b"")
    pages = list(
        s3.client.get_paginator("list_objects_v2").paginate(
            Bucket=s3.bucket, PaginationConfig={"PageSize": 5}
        )
    )
    assert [len(p.get("Contents", [])) for p in pages] == [5, 5, 5, 5, 4]
    assert [p["KeyCount"] for p in pages] == [5, 5, 5, 5, 4]
    assert [o["Key"] for p in pages for o in p["Contents"]] == keys
    assert [p["IsTruncated"] for p in pages] == [True] * 4 + [False]
    first = pages[0]["Contents"][0]
    assert first["Size"] == 0
    assert first["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'
    after = s3.client.list_objects_v2(Bucket=s3.bucket, StartAfter="k/020")
    assert [o["Key"] for o in after["Contents"]] == ["k/021", "k/022", "z"]
    assert s3.client.list_objects_v2(Bucket=s3.bucket, Prefix="k/01")["KeyCount"] == 10
    assert s3.client.list_objects_v2(Bucket=s3.bucket, Prefix="nothing")["KeyCount"] == 0
    none = s3.client.list_objects_v2(Bucket=s3.bucket, MaxKeys=0)
    assert (none["KeyCount"], none["IsTruncated"]) == (0, False)


def test_list_with_delimiter(s3: S3) -> None:
    for key in ["a/1", "a/2", "b/x/1", "b/y", "c", "d/"]:
        s3.put(key, b"")
    top = s3.client.list_objects_v2(Bucket=s3.bucket, Delimiter="/")
    assert [p["Prefix"] for p in top["CommonPrefixes"]] == ["a/", "b/", "d/"]
    assert [o["Key"] for o in top["Contents"]] == ["c"]
    assert top["KeyCount"] == 4
    under_b = s3.client.list_objects_v2(Bucket=s3.bucket, Delimiter="/", Prefix="b/")
    assert [p["Prefix"] for p in under_b["CommonPrefixes"]] == ["b/x/"]
    assert [o["Key"] for o in under_b["Contents"]] == ["b/y"]
    # A common prefix counts as one entry, and the next page starts after all its keys.
    pages = list(
        s3.client.get_paginator("list_objects_v2").paginate(
            Bucket=s3.bucket, Delimiter="/", PaginationConfig={"PageSize": 1}
        )
    )
    entries = [
        p.get("CommonPrefixes", [{}])[0].get("Prefix") or p["Contents"][0]["Key"] for p in pages
    ]
    assert entries == ["a/", "b/", "c", "d/"]
    v1 = list(
        s3.client.get_paginator("list_objects").paginate(
            Bucket=s3.bucket, Delimiter="/", PaginationConfig={"PageSize": 1}
        )
    )
    assert len(v1) == 4


def test_delete_objects(s3: S3) -> None:
    for key in ("a", "b/c", "d"):
        s3.put(key)
    objects = [{"Key": k} for k in ("a", "b/c", "missing", "../x")]
    result = s3.client.delete_objects(Bucket=s3.bucket, Delete={"Objects": objects})
    assert sorted(d["Key"] for d in result["Deleted"]) == ["a", "b/c", "missing"]
    assert [(e["Key"], e["Code"]) for e in result["Errors"]] == [("../x", "InvalidArgument")]
    quiet = s3.client.delete_objects(
        Bucket=s3.bucket, Delete={"Objects": [{"Key": "d"}], "Quiet": True}
    )
    assert "Deleted" not in quiet
    assert s3.client.list_objects_v2(Bucket=s3.bucket)["KeyCount"] == 0


def test_bad_list_arguments(s3: S3) -> None:
    assert error(s3.client.list_objects_v2, Bucket=s3.bucket, ContinuationToken="bogus") == (
        400,
        "InvalidArgument",
    )
    status, _, _ = raw_request(s3.url, "GET", f"/{s3.bucket}?list-type=2&max-keys=-1")
    assert status == 400


# ------------------------------------------------------------------ limits and refusals


def test_body_bound(tmp_path: Path) -> None:
    with threaded_s3(tmp_path, max_body=1024 * 1024) as url, contextlib.closing(client(url)) as c:
        c.create_bucket(Bucket="bkt")
        c.put_object(Bucket="bkt", Key="fits", Body=b"x" * 1024 * 1024)
        # bytes: sent without Expect: 100-continue; a file: with it (refused before the body).
        assert error(c.put_object, Bucket="bkt", Key="big", Body=b"x" * (1024 * 1024 + 1)) == (
            400,
            "EntityTooLarge",
        )
        path = tmp_path / "big.bin"
        path.write_bytes(b"x" * (3 * 1024 * 1024))
        with open(path, "rb") as body:
            assert error(c.put_object, Bucket="bkt", Key="big", Body=body) == (
                400,
                "EntityTooLarge",
            )
        assert [o["Key"] for o in c.list_objects_v2(Bucket="bkt")["Contents"]] == ["fits"]


def test_missing_content_length(s3: S3) -> None:
    status, _, body = raw_request(
        s3.url,
        "PUT",
        f"/{s3.bucket}/k",
        b"3\r\nabc\r\n0\r\n\r\n",
        {"Transfer-Encoding": "chunked"},
    )
    assert (status, b"MissingContentLength" in body) == (411, True)


def test_aws_chunked_bodies_are_refused(s3: S3) -> None:
    status, _, body = raw_request(
        s3.url,
        "PUT",
        f"/{s3.bucket}/k",
        b"x",
        {"x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER"},
    )
    assert (status, b"NotImplemented" in body) == (501, True)


def test_unsupported_operations(s3: S3) -> None:
    s3.put("k")
    assert error(s3.client.get_object_tagging, Bucket=s3.bucket, Key="k") == (
        405,
        "MethodNotAllowed",
    )
    assert error(s3.client.get_bucket_versioning, Bucket=s3.bucket) == (405, "MethodNotAllowed")
    copy: dict[str, Any] = {"Bucket": s3.bucket, "Key": "k2"}
    assert error(s3.client.copy_object, CopySource={"Bucket": s3.bucket, "Key": "k"}, **copy) == (
        501,
        "NotImplemented",
    )
    assert error(s3.client.get_object, Bucket=s3.bucket, Key="k", VersionId="v1") == (
        404,
        "NoSuchVersion",
    )


def test_location_and_response_overrides(s3: S3) -> None:
    assert s3.client.get_bucket_location(Bucket=s3.bucket).get("LocationConstraint") is None
    s3.put("k", b"x")
    got = s3.client.get_object(
        Bucket=s3.bucket, Key="k", ResponseContentType="text/csv", ResponseContentDisposition="a"
    )
    assert (got["ContentType"], got["ContentDisposition"]) == ("text/csv", "a")
