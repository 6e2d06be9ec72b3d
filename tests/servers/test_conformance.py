"""The same scripted boto3 session against moto and against the local S3 server: status codes,
error codes, bytes and the fields clients read must be the same.

moto stands in for S3 here. Where moto is known to differ from S3, the step still runs on both
servers but is left out of the comparison, with the reason next to it (each such step is
checked against S3's documented behaviour in test_s3_server.py / test_s3_multipart.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from ..conftest import SMALL_MIN_PART
from .conftest import client

if TYPE_CHECKING:
    from collections.abc import Callable

    from asynctransfer.testing import MotoServer

PART = SMALL_MIN_PART
DATA = bytes(range(256)) * 4  # 1024 bytes


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@dataclass
class Session:
    """Runs steps against one server and records what a client sees of each."""

    client: Any
    bucket: str
    results: dict[str, Any] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)

    def step(self, name: str, call: Callable[[], Any], *, compare: bool = True) -> Any:
        assert name not in self.results, f"step names must be unique: {name}"
        try:
            response = call()
        except ClientError as exc:
            meta = exc.response["ResponseMetadata"]
            self.results[name] = ("error", meta["HTTPStatusCode"], exc.response["Error"]["Code"])
            value = None
        else:
            self.results[name] = ("ok", *summary(response))
            value = response
        if not compare:
            self.skipped.add(name)
        return value


def summary(response: Any) -> tuple[Any, ...]:
    """What a client reads of a response: status, then the fields that matter, bodies hashed."""
    if not isinstance(response, dict):
        return (response,)
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    fields: dict[str, Any] = {}
    for name in (
        "ETag",
        "ContentLength",
        "ContentRange",
        "ContentType",
        "Metadata",
        "KeyCount",
        "IsTruncated",
        "PartsCount",
    ):
        if name in response:
            fields[name] = response[name]
    if "Body" in response:
        fields["Body"] = digest(response["Body"].read())
    if "Contents" in response:
        fields["Keys"] = [(o["Key"], o["Size"], o["ETag"]) for o in response["Contents"]]
    if "CommonPrefixes" in response:
        fields["CommonPrefixes"] = [p["Prefix"] for p in response["CommonPrefixes"]]
    if "Parts" in response:
        fields["Parts"] = [(p["PartNumber"], p["Size"], p["ETag"]) for p in response["Parts"]]
    if "Uploads" in response:
        fields["Uploads"] = [u["Key"] for u in response["Uploads"]]
    return (status, fields)


def deleted(response: dict[str, Any]) -> tuple[list[str], list[Any]]:
    return sorted(d["Key"] for d in response.get("Deleted", [])), response.get("Errors", [])


def scenario(s: Session) -> None:
    c, b = s.client, s.bucket
    obj = {"Bucket": b, "Key": "k1"}
    s.step("CreateBucket", lambda: c.create_bucket(Bucket=b))
    # S3 in us-east-1 (and moto) answers 200 to re-creating your own bucket; elsewhere, and
    # here, 409 BucketAlreadyOwnedByYou.
    s.step("CreateBucket again", lambda: c.create_bucket(Bucket=b), compare=False)
    s.step("HeadBucket", lambda: c.head_bucket(Bucket=b))
    s.step("HeadBucket missing", lambda: c.head_bucket(Bucket=f"{b}-missing"))
    s.step("PutObject", lambda: c.put_object(**obj, Body=DATA, ContentType="text/plain"))
    s.step(
        "PutObject metadata",
        lambda: c.put_object(Bucket=b, Key="m", Body=b"m", Metadata={"a": "1"}),
    )
    s.step("GetObject metadata", lambda: c.get_object(Bucket=b, Key="m"))
    s.step("GetObject", lambda: c.get_object(**obj))
    for r in ("bytes=0-9", "bytes=-10", "bytes=1000-", "bytes=0-99999", "bytes=1023-1023"):
        s.step(f"GetObject Range {r}", lambda r=r: c.get_object(**obj, Range=r))  # type: ignore[misc]
    for r in ("bytes=1024-", "bytes=2000-3000", "bytes=0-1,5-6", "bytes=9-2"):
        s.step(f"GetObject Range {r}", lambda r=r: c.get_object(**obj, Range=r))  # type: ignore[misc]
    s.step("HeadObject", lambda: c.head_object(**obj))
    s.step("HeadObject Range", lambda: c.head_object(**obj, Range="bytes=0-9"))
    s.step("HeadObject missing", lambda: c.head_object(Bucket=b, Key="missing"))
    s.step("GetObject missing key", lambda: c.get_object(Bucket=b, Key="missing"))
    s.step("GetObject missing bucket", lambda: c.get_object(Bucket=f"{b}-missing", Key="k"))
    s.step(
        "PutObject missing bucket", lambda: c.put_object(Bucket=f"{b}-missing", Key="k", Body=b"x")
    )
    etag = c.head_object(**obj)["ETag"]
    s.step("GetObject If-Match wrong", lambda: c.get_object(**obj, IfMatch='"0000"'))
    s.step("GetObject If-Match right", lambda: c.get_object(**obj, IfMatch=etag))
    s.step("GetObject If-None-Match", lambda: c.get_object(**obj, IfNoneMatch=etag))
    s.step("HeadObject If-Match wrong", lambda: c.head_object(**obj, IfMatch='"0000"'))
    s.step("PutObject If-None-Match *", lambda: c.put_object(**obj, Body=b"x", IfNoneMatch="*"))
    s.step("GetObject after refused put", lambda: c.get_object(**obj))
    # moto stores a body whose x-amz-checksum-crc32c is wrong; S3 (and this server) refuse
    # it with 400 BadDigest.
    s.step(
        "PutObject wrong CRC32C",
        lambda: c.put_object(Bucket=b, Key="bad", Body=b"x", ChecksumCRC32C="AAAAAA=="),
        compare=False,
    )
    c.delete_object(Bucket=b, Key="bad")

    for key in ("a/1", "a/2", "b/x/1", "c", "d/"):
        c.put_object(Bucket=b, Key=key, Body=key.encode())
    s.step("ListObjectsV2", lambda: c.list_objects_v2(Bucket=b))
    first = s.step("ListObjectsV2 page 1", lambda: c.list_objects_v2(Bucket=b, MaxKeys=3))
    token = first["NextContinuationToken"] if first else ""
    s.step(
        "ListObjectsV2 page 2",
        lambda: c.list_objects_v2(Bucket=b, MaxKeys=3, ContinuationToken=token),
    )
    s.step("ListObjectsV2 delimiter", lambda: c.list_objects_v2(Bucket=b, Delimiter="/"))
    s.step("ListObjectsV2 prefix", lambda: c.list_objects_v2(Bucket=b, Prefix="a/"))
    s.step(
        "ListObjectsV2 prefix+delimiter",
        lambda: c.list_objects_v2(Bucket=b, Prefix="b/", Delimiter="/"),
    )
    s.step("ListObjectsV2 start-after", lambda: c.list_objects_v2(Bucket=b, StartAfter="a/2"))
    s.step("ListObjects v1", lambda: c.list_objects(Bucket=b, Delimiter="/"))
    s.step("ListObjectsV2 max-keys 0", lambda: c.list_objects_v2(Bucket=b, MaxKeys=0))

    mp = {"Bucket": b, "Key": "multi"}
    upload = c.create_multipart_upload(**mp)["UploadId"]
    chunks = [bytes([1]) * PART, bytes([2]) * PART, b"tail" * 25]
    parts = []
    for number, chunk in enumerate(chunks, 1):
        r = s.step(
            f"UploadPart {number}",
            lambda number=number, chunk=chunk: c.upload_part(  # type: ignore[misc]
                **mp, UploadId=upload, PartNumber=number, Body=chunk
            ),
        )
        parts.append({"PartNumber": number, "ETag": r["ETag"] if r else ""})
    s.step("ListParts", lambda: c.list_parts(**mp, UploadId=upload))
    s.step("ListParts page", lambda: c.list_parts(**mp, UploadId=upload, MaxParts=2))
    s.step("ListMultipartUploads", lambda: c.list_multipart_uploads(Bucket=b))
    s.step(
        "Complete InvalidPart",
        lambda: c.complete_multipart_upload(
            **mp,
            UploadId=upload,
            MultipartUpload={"Parts": [parts[0], {"PartNumber": 2, "ETag": '"0123"'}]},
        ),
    )
    s.step(
        "Complete InvalidPart missing",
        lambda: c.complete_multipart_upload(
            **mp,
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 9, "ETag": parts[0]["ETag"]}]},
        ),
    )
    s.step(
        "Complete",
        lambda: c.complete_multipart_upload(
            **mp, UploadId=upload, MultipartUpload={"Parts": parts}
        ),
    )
    s.step("GetObject multipart", lambda: c.get_object(**mp))
    s.step("HeadObject multipart", lambda: c.head_object(**mp))
    s.step(
        "GetObject multipart range",
        lambda: c.get_object(**mp, Range=f"bytes={PART - 2}-{PART + 1}"),
    )
    # moto does not implement partNumber reads of multipart objects (its code says TODO).
    s.step("GetObject partNumber", lambda: c.get_object(**mp, PartNumber=2), compare=False)
    s.step("ListParts after Complete", lambda: c.list_parts(**mp, UploadId=upload))

    small = c.create_multipart_upload(Bucket=b, Key="small")["UploadId"]
    small_parts = []
    for number in (1, 2):
        r = c.upload_part(Bucket=b, Key="small", UploadId=small, PartNumber=number, Body=b"s" * 100)
        small_parts.append({"PartNumber": number, "ETag": r["ETag"]})
    s.step(
        "Complete EntityTooSmall",
        lambda: c.complete_multipart_upload(
            Bucket=b, Key="small", UploadId=small, MultipartUpload={"Parts": small_parts}
        ),
    )
    # moto completes parts listed out of order; S3 (and this server) refuse: InvalidPartOrder.
    order = c.create_multipart_upload(Bucket=b, Key="order")["UploadId"]
    order_parts = [
        {
            "PartNumber": n,
            "ETag": c.upload_part(
                Bucket=b, Key="order", UploadId=order, PartNumber=n, Body=chunks[n - 1]
            )["ETag"],
        }
        for n in (1, 2)
    ]
    s.step(
        "Complete InvalidPartOrder",
        lambda: c.complete_multipart_upload(
            Bucket=b, Key="order", UploadId=order, MultipartUpload={"Parts": order_parts[::-1]}
        ),
        compare=False,
    )
    with contextlib.suppress(ClientError):  # (moto completed it)
        c.abort_multipart_upload(Bucket=b, Key="order", UploadId=order)
    c.delete_object(Bucket=b, Key="order")
    s.step(
        "UploadPart 10001",
        lambda: c.upload_part(Bucket=b, Key="small", UploadId=small, PartNumber=10001, Body=b"x"),
    )
    s.step(
        "AbortMultipartUpload",
        lambda: c.abort_multipart_upload(Bucket=b, Key="small", UploadId=small),
    )
    bogus = {"Bucket": b, "Key": "small", "UploadId": small}
    s.step("ListParts NoSuchUpload", lambda: c.list_parts(**bogus))
    # moto answers 500 to a part for an aborted upload; S3 (and this server): 404 NoSuchUpload.
    s.step(
        "UploadPart NoSuchUpload",
        lambda: c.upload_part(**bogus, PartNumber=1, Body=b"x"),
        compare=False,
    )
    s.step("Abort NoSuchUpload", lambda: c.abort_multipart_upload(**bogus))
    s.step("ListMultipartUploads empty", lambda: c.list_multipart_uploads(Bucket=b))

    s.step("DeleteBucket not empty", lambda: c.delete_bucket(Bucket=b))
    s.step("DeleteObject", lambda: c.delete_object(**obj))
    s.step("DeleteObject missing", lambda: c.delete_object(**obj))
    s.step("GetObject deleted", lambda: c.get_object(**obj))
    keys = [{"Key": k} for k in ("m", "a/1", "a/2", "b/x/1", "c", "d/", "multi", "gone")]
    s.step("DeleteObjects", lambda: deleted(c.delete_objects(Bucket=b, Delete={"Objects": keys})))
    s.step("DeleteBucket", lambda: c.delete_bucket(Bucket=b))
    s.step("ListObjectsV2 deleted bucket", lambda: c.list_objects_v2(Bucket=b))


def run(endpoint_url: str) -> Session:
    with contextlib.closing(client(endpoint_url)) as c:
        session = Session(c, f"conformance-{uuid.uuid4().hex[:10]}")
        scenario(session)
    return session


def test_local_s3_answers_like_moto(moto: MotoServer, s3_url: str) -> None:
    theirs, ours = run(moto.endpoint_url), run(s3_url)
    assert theirs.results.keys() == ours.results.keys()
    assert len(ours.results) > 50
    differences = {
        name: {"moto": theirs.results[name], "local": ours.results[name]}
        for name in ours.results
        if name not in ours.skipped and theirs.results[name] != ours.results[name]
    }
    assert differences == {}
    # The steps left out do differ, as the comments say (else they should be compared).
    assert {n for n in ours.skipped if theirs.results[n] != ours.results[n]} == ours.skipped
