"""SigV4 on the local S3 server started with credentials: what S3 accepts, and what it refuses."""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import botocore.auth
import pytest
from botocore import UNSIGNED
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from .conftest import client, error, threaded_s3
from .test_s3_server import raw_request

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

KEY, SECRET = "AKIDLOCALTEST", "local-secret-key"


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory, _aws_environment: None) -> Iterator[str]:
    root = tmp_path_factory.mktemp("s3-auth")
    with threaded_s3(root, credentials={KEY: SECRET}) as endpoint:
        with contextlib.closing(signed(endpoint)) as c:
            c.create_bucket(Bucket="bkt")
        yield endpoint


def signed(url: str, key: str = KEY, secret: str = SECRET, **config: Any) -> Any:
    return client(url, key=key, secret=secret, **config)


@pytest.fixture
def good(url: str) -> Iterator[Any]:
    with contextlib.closing(signed(url)) as c:
        yield c


def test_right_keys_work_with_signed_and_unsigned_payloads(
    url: str, good: Any, tmp_path: Path
) -> None:
    data = os.urandom(100_000)
    good.put_object(Bucket="bkt", Key="k", Body=data)  # over http: SHA-256 of the body signed
    assert good.get_object(Bucket="bkt", Key="k")["Body"].read() == data
    path = tmp_path / "f"
    path.write_bytes(data)
    with open(path, "rb") as body:  # a file: Expect: 100-continue, checked before the body
        good.put_object(Bucket="bkt", Key="file", Body=body)
    with contextlib.closing(signed(url, s3={"payload_signing_enabled": False})) as unsigned:
        unsigned.put_object(Bucket="bkt", Key="unsigned", Body=data)
        assert unsigned.get_object(Bucket="bkt", Key="unsigned")["Body"].read() == data
    assert [o["Key"] for o in good.list_objects_v2(Bucket="bkt", Prefix="")["Contents"]] == [
        "file",
        "k",
        "unsigned",
    ]
    upload = good.create_multipart_upload(Bucket="bkt", Key="mp")["UploadId"]
    part = good.upload_part(Bucket="bkt", Key="mp", UploadId=upload, PartNumber=1, Body=data)
    good.complete_multipart_upload(
        Bucket="bkt",
        Key="mp",
        UploadId=upload,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    assert good.get_object(Bucket="bkt", Key="mp", Range="bytes=0-9")["Body"].read() == data[:10]


def test_wrong_secret(url: str) -> None:
    with contextlib.closing(signed(url, secret="wrong")) as c:
        assert error(c.list_objects_v2, Bucket="bkt") == (403, "SignatureDoesNotMatch")
        assert error(c.put_object, Bucket="bkt", Key="k2", Body=b"x") == (
            403,
            "SignatureDoesNotMatch",
        )
        assert error(c.head_object, Bucket="bkt", Key="k") == (403, "403")


def test_unknown_access_key(url: str) -> None:
    with contextlib.closing(signed(url, key="AKIDUNKNOWN")) as c:
        assert error(c.list_buckets) == (403, "InvalidAccessKeyId")


def test_no_credentials(url: str) -> None:
    with contextlib.closing(client(url, signature_version=UNSIGNED)) as c:
        assert error(c.get_object, Bucket="bkt", Key="k") == (403, "AccessDenied")
        assert error(c.list_buckets) == (403, "AccessDenied")
    status, _, body = raw_request(url, "GET", "/bkt/k", headers={"Authorization": "AWS k:sig"})
    assert (status, b"AccessDenied" in body) == (403, True)


def test_presigned_urls(url: str, good: Any) -> None:
    good.put_object(Bucket="bkt", Key="shared", Body=b"presigned bytes")
    with contextlib.closing(signed(url, signature_version="s3v4")) as c:
        link = c.generate_presigned_url(
            "get_object", Params={"Bucket": "bkt", "Key": "shared"}, ExpiresIn=60
        )
        put_link = c.generate_presigned_url(
            "put_object", Params={"Bucket": "bkt", "Key": "up"}, ExpiresIn=60
        )
    with urllib.request.urlopen(link) as response:
        assert response.read() == b"presigned bytes"
    request = urllib.request.Request(put_link, data=b"via presigned PUT", method="PUT")
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    assert good.get_object(Bucket="bkt", Key="up")["Body"].read() == b"via presigned PUT"
    tampered = link.replace("shared", "other")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(tampered)
    assert info.value.code == 403
    assert b"SignatureDoesNotMatch" in info.value.read()
    info.value.close()


def test_expired_presigned_url(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    an_hour_ago = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(
        hours=1
    )
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: an_hour_ago)
    with contextlib.closing(signed(url, signature_version="s3v4")) as c:
        link = c.generate_presigned_url(
            "get_object", Params={"Bucket": "bkt", "Key": "shared"}, ExpiresIn=60
        )
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(link)
    assert (info.value.code, b"Request has expired" in info.value.read()) == (403, True)
    info.value.close()


def test_clock_skew(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    skewed = datetime.datetime.now(datetime.UTC).replace(tzinfo=None) - datetime.timedelta(
        minutes=20
    )
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: skewed)
    with contextlib.closing(signed(url)) as c:
        assert error(c.list_buckets) == (403, "RequestTimeTooSkewed")


def test_body_must_match_the_signed_payload_hash(url: str, good: Any) -> None:
    request = AWSRequest(method="PUT", url=f"{url}/bkt/tampered", data=b"signed body")
    request.headers["X-Amz-Content-SHA256"] = hashlib.sha256(b"signed body").hexdigest()
    botocore.auth.S3SigV4Auth(Credentials(KEY, SECRET), "s3", "us-east-1").add_auth(request)
    headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
    path = "/bkt/tampered"
    status, _, body = raw_request(url, "PUT", path, b"signed body", headers)
    assert status == 200, body
    status, _, body = raw_request(url, "PUT", path, b"other body!", headers)
    assert (status, b"XAmzContentSHA256Mismatch" in body) == (400, True)
    assert good.get_object(Bucket="bkt", Key="tampered")["Body"].read() == b"signed body"
