"""The fault proxy itself works, so that a broken proxy cannot make a fault test pass vacuously.

Clients here are boto3 (through the proxy) and raw, SigV4-signed ``http.client`` connections,
which see exactly what the proxy sends.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, FlexibleChecksumError
from crc32c import crc32c

from .conftest import random_bytes
from .proxy import ProxyError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .conftest import Bucket
    from .proxy import Proxy

pytestmark = pytest.mark.timeout(60)


def client_via(proxy: Proxy, **config: Any) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=proxy.endpoint_url,
        region_name="us-east-1",
        config=Config(retries={"mode": "standard", "total_max_attempts": 1}, **config),
    )


@contextlib.contextmanager
def raw(
    proxy: Proxy, method: str, path: str, body: bytes | None = None, **headers: str
) -> Iterator[http.client.HTTPResponse]:
    """Send one raw, SigV4-signed request through the proxy; yield the unread response."""
    request = AWSRequest(
        method,
        proxy.endpoint_url + path,
        data=body,
        headers={"x-amz-content-sha256": "UNSIGNED-PAYLOAD", **headers},
    )
    SigV4Auth(Credentials("testing", "testing"), "s3", "us-east-1").add_auth(request)
    conn = http.client.HTTPConnection(urlsplit(proxy.endpoint_url).netloc, timeout=10)
    try:
        conn.request(method, path, body=body, headers=dict(request.headers.items()))
        yield conn.getresponse()
    finally:
        conn.close()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def fetch(proxy: Proxy, method: str, path: str, body: bytes | None = None, **headers: str) -> Reply:
    with raw(proxy, method, path, body, **headers) as response:
        return Reply(
            response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        )


def put(bucket: Bucket, key: str, data: bytes) -> None:
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=data)


def test_forwards_and_logs(proxied_bucket: Bucket, proxy_server: Proxy) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    client = client_via(proxy)
    data = random_bytes(100_000, seed=1)
    key = "dir/a key+with %special/é"
    client.put_object(Bucket=bucket.name, Key=key, Body=data, ContentMD5=_b64md5(data))
    # The object reached moto under the exact key, byte-exact (read directly, not via the proxy).
    assert bucket.read(key) == data
    assert client.get_object(Bucket=bucket.name, Key=key)["Body"].read() == data
    ranged = client.get_object(Bucket=bucket.name, Key=key, Range="bytes=10-19")
    assert ranged["Body"].read() == data[10:20]
    assert ranged["ContentRange"] == f"bytes 10-19/{len(data)}"
    assert client.head_object(Bucket=bucket.name, Key=key)["ContentLength"] == len(data)

    log = proxy.log()
    assert [e["operation"] for e in log] == ["PutObject", "GetObject", "GetObject", "HeadObject"]
    assert all(e["fault"] is None and e["error"] is None for e in log)
    assert [e["status"] for e in log] == [200, 200, 206, 200]
    put_entry = log[0]
    assert put_entry["path"] == f"/{bucket.name}/{key}"
    assert put_entry["raw_path"] == f"/{bucket.name}/{quote(key, safe='/~')}"
    assert put_entry["body_length"] == len(data)
    assert put_entry["body_crc32c"] == f"{crc32c(data):08x}"
    assert put_entry["body_md5"] == hashlib.md5(data).hexdigest()
    assert put_entry["body_text"] is None  # only POST bodies are kept
    assert put_entry["headers"]["content-md5"] == _b64md5(data)
    assert put_entry["headers"]["content-length"] == str(len(data))
    assert put_entry["response_headers"]["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert log[1]["response_bytes"] == len(data)
    assert log[2]["headers"]["range"] == "bytes=10-19"
    assert log[2]["response_bytes"] == 10
    assert log[3]["response_bytes"] == 0
    assert log[3]["response_headers"]["content-length"] == str(len(data))
    assert all(e["started"] <= e["finished"] for e in log)


def test_logs_multipart_operations_and_complete_xml(
    proxied_bucket: Bucket, proxy_server: Proxy
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    client = client_via(proxy)
    upload_id = client.create_multipart_upload(Bucket=bucket.name, Key="mp")["UploadId"]
    etag = client.upload_part(
        Bucket=bucket.name, Key="mp", UploadId=upload_id, PartNumber=1, Body=b"x" * 1000
    )["ETag"]
    client.list_parts(Bucket=bucket.name, Key="mp", UploadId=upload_id)
    client.complete_multipart_upload(
        Bucket=bucket.name,
        Key="mp",
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    client.delete_object(Bucket=bucket.name, Key="mp")
    log = proxy.log()
    assert [e["operation"] for e in log] == [
        "CreateMultipartUpload",
        "UploadPart",
        "ListParts",
        "CompleteMultipartUpload",
        "DeleteObject",
    ]
    assert log[1]["query"] == {"partNumber": "1", "uploadId": upload_id}
    root = ET.fromstring(log[3]["body_text"])
    assert [el.text for el in root.iter() if el.tag.endswith("ETag")] == [etag]


def test_status_rule_applies_times_then_forwards(
    proxied_bucket: Bucket, proxy_server: Proxy
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    put(bucket, "k", b"abc")
    proxy.set_rules(
        [
            {
                "match": {"operation": "GetObject"},
                "action": "status",
                "status": 503,
                "code": "SlowDown",
                "times": 2,
            }
        ]
    )
    client = client_via(proxy)
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            client.get_object(Bucket=bucket.name, Key="k")
        assert caught.value.response["Error"]["Code"] == "SlowDown"
        assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert client.get_object(Bucket=bucket.name, Key="k")["Body"].read() == b"abc"
    # Other operations do not match.
    client.head_object(Bucket=bucket.name, Key="k")
    log = proxy.log()
    assert [(e["operation"], e["status"], e["fault"]) for e in log] == [
        ("GetObject", 503, "status"),
        ("GetObject", 503, "status"),
        ("GetObject", 200, None),
        ("HeadObject", 200, None),
    ]
    assert proxy.rules()[0]["applied"] == 2


def test_status_rule_on_put_does_not_reach_the_store(
    proxied_bucket: Bucket, proxy_server: Proxy
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    proxy.set_rules(
        [{"match": {"method": "PUT"}, "action": "status", "status": 403, "code": "AccessDenied"}]
    )
    with pytest.raises(ClientError) as caught:
        client_via(proxy).put_object(Bucket=bucket.name, Key="k", Body=b"data")
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    assert "Contents" not in bucket.client.list_objects_v2(Bucket=bucket.name)
    [entry] = proxy.log()
    assert entry["body_length"] == 4  # the body was read (and logged) before the answer


def test_match_fields(proxied_bucket: Bucket, proxy_server: Proxy) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    put(bucket, "a/1", b"1")
    put(bucket, "b/2", b"2")
    proxy.set_rules(
        [
            {
                "match": {"method": "GET", "path_regex": r"/b/\d$", "query_has": ["x-id"]},
                "action": "status",
                "status": 500,
                "code": "InternalError",
            },
            {"match": {"query": {"x-test": "v1"}}, "action": "status", "status": 404},
        ]
    )
    assert fetch(proxy, "GET", f"/{bucket.name}/b/2").status == 200  # no x-id
    assert fetch(proxy, "GET", f"/{bucket.name}/a/1?x-id=GetObject").status == 200
    assert fetch(proxy, "GET", f"/{bucket.name}/b/2?x-id=GetObject").status == 500
    assert fetch(proxy, "GET", f"/{bucket.name}/a/1?x-test=v1").status == 404
    assert fetch(proxy, "GET", f"/{bucket.name}/a/1?x-test=v2").status == 200


def test_probability_is_seeded(proxied_bucket: Bucket, proxy_server: Proxy) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    put(bucket, "k", b"abc")

    def statuses() -> list[int]:
        proxy.reset()
        proxy.set_rules(
            [{"action": "status", "status": 503, "probability": 0.5, "times": None}], seed=42
        )
        return [fetch(proxy, "GET", f"/{bucket.name}/k").status for _ in range(40)]

    first = statuses()
    assert first == statuses()
    assert 5 < first.count(503) < 35
    assert set(first) == {200, 503}


def test_reset_before_gives_a_connection_reset(proxied_bucket: Bucket, proxy_server: Proxy) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    proxy.set_rules([{"match": {"operation": "PutObject"}, "action": "reset_before", "times": 1}])
    with pytest.raises(ConnectionResetError), raw(proxy, "PUT", f"/{bucket.name}/k", b"payload"):
        pass
    # Not forwarded: nothing stored. The rule is spent: the next request goes through.
    assert "Contents" not in bucket.client.list_objects_v2(Bucket=bucket.name)
    assert fetch(proxy, "PUT", f"/{bucket.name}/k", body=b"payload").status == 200
    assert bucket.read("k") == b"payload"
    log = proxy.log()
    assert [e["fault"] for e in log] == ["reset_before", None]
    assert log[0]["body_length"] == 7


def test_reset_before_with_forward_stores_but_loses_the_answer(
    proxied_bucket: Bucket, proxy_server: Proxy
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    proxy.set_rules([{"action": "reset_before", "forward": True}])
    with pytest.raises(ConnectionResetError), raw(proxy, "PUT", f"/{bucket.name}/k", b"payload"):
        pass
    assert bucket.read("k") == b"payload"


def test_boto3_sees_reset_before_as_a_connection_error(
    proxied_bucket: Bucket, proxy_server: Proxy
) -> None:
    from botocore.exceptions import ConnectionClosedError, EndpointConnectionError

    bucket, proxy = proxied_bucket, proxy_server
    put(bucket, "k", b"abc")
    proxy.set_rules([{"match": {"operation": "HeadObject"}, "action": "reset_before"}])
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
        client_via(proxy).head_object(Bucket=bucket.name, Key="k")


def test_reset_mid_sends_part_of_the_body_then_rst(
    proxied_bucket: Bucket, proxy_server: Proxy
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    data = random_bytes(200_000, seed=2)
    put(bucket, "k", data)
    proxy.set_rules([{"action": "reset_mid", "bytes": 5000}])
    received = bytearray()
    with raw(proxy, "GET", f"/{bucket.name}/k") as response:
        assert response.status == 200
        assert response.getheader("Content-Length") == str(len(data))
        with pytest.raises(ConnectionResetError):
            while chunk := response.read1(65536):
                received += chunk
    assert bytes(received) == data[:5000]
    assert proxy.log()[0]["response_bytes"] == 5000


def test_truncate_sends_part_of_the_body_then_fin(
    proxied_bucket: Bucket, proxy_server: Proxy
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    data = random_bytes(200_000, seed=3)
    put(bucket, "k", data)
    proxy.set_rules([{"match": {"operation": "GetObject"}, "action": "truncate", "bytes": 70_000}])
    with raw(proxy, "GET", f"/{bucket.name}/k") as response:
        assert response.getheader("Content-Length") == str(len(data))
        with pytest.raises(http.client.IncompleteRead) as caught:
            response.read()
    assert caught.value.partial == data[:70_000]
    # boto3 sees it too (the engine's bottom layer is the same botocore).
    with pytest.raises(Exception, match=r"(?i)incomplete|connection|read"):
        client_via(proxy).get_object(Bucket=bucket.name, Key="k")["Body"].read()


def test_corrupt_response_flips_one_byte(proxied_bucket: Bucket, proxy_server: Proxy) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    data = random_bytes(150_000, seed=4)
    client_via(proxy).put_object(Bucket=bucket.name, Key="k", Body=data)
    proxy.reset()
    proxy.set_rules([{"action": "corrupt_response", "offset": 100_001, "times": 2}])
    got = fetch(proxy, "GET", f"/{bucket.name}/k").body
    assert len(got) == len(data)
    assert [i for i in range(len(data)) if got[i] != data[i]] == [100_001]
    assert got[100_001] == data[100_001] ^ 0xFF
    # boto3 (which stored a CRC32 with the object) notices.
    with pytest.raises(FlexibleChecksumError):
        client_via(proxy).get_object(Bucket=bucket.name, Key="k")["Body"].read()
    assert fetch(proxy, "GET", f"/{bucket.name}/k").body == data


def test_corrupt_request_flips_one_byte_upstream(
    proxied_bucket: Bucket, proxy_server: Proxy
) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    data = random_bytes(100_000, seed=5)
    proxy.set_rules([{"action": "corrupt_request", "offset": 7}])
    assert fetch(proxy, "PUT", f"/{bucket.name}/k", body=data).status == 200
    stored = bucket.read("k")  # moto verifies nothing: it keeps the flipped byte
    assert [i for i in range(len(data)) if stored[i] != data[i]] == [7]
    # The log describes the body as the client sent it.
    assert proxy.log()[0]["body_crc32c"] == f"{crc32c(data):08x}"


def test_ignore_range_and_rewrite_header(proxied_bucket: Bucket, proxy_server: Proxy) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    data = random_bytes(1000, seed=6)
    put(bucket, "k", data)
    proxy.set_rules([{"action": "ignore_range", "times": 1}])
    reply = fetch(proxy, "GET", f"/{bucket.name}/k", Range="bytes=0-9")
    assert (reply.status, reply.headers.get("content-range"), reply.body) == (200, None, data)
    proxy.set_rules([{"action": "rewrite_header", "headers": {"Content-Range": "bytes 1-10/1000"}}])
    reply = fetch(proxy, "GET", f"/{bucket.name}/k", Range="bytes=0-9")
    assert reply.status == 206
    assert reply.headers["content-range"] == "bytes 1-10/1000"
    assert reply.body == data[:10]
    assert proxy.log()[-1]["response_headers"]["content-range"] == "bytes 1-10/1000"


def test_delay_and_slow(proxied_bucket: Bucket, proxy_server: Proxy) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    data = random_bytes(10_000, seed=7)
    put(bucket, "k", data)
    proxy.set_rules([{"action": "delay", "seconds": 0.5, "times": 1}])
    started = time.monotonic()
    assert fetch(proxy, "GET", f"/{bucket.name}/k").body == data
    assert time.monotonic() - started >= 0.5
    proxy.set_rules([{"action": "slow", "chunk_size": 2000, "interval": 0.1, "times": 1}])
    started = time.monotonic()
    assert fetch(proxy, "GET", f"/{bucket.name}/k").body == data
    assert time.monotonic() - started >= 0.4  # 5 chunks, a pause after each


def test_error_200(proxied_bucket: Bucket, proxy_server: Proxy) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    proxy.set_rules([{"match": {"method": "POST"}, "action": "error_200"}])
    reply = fetch(proxy, "POST", f"/{bucket.name}/k?uploadId=x", b"<x/>")
    assert reply.status == 200
    root = ET.fromstring(reply.body)
    assert (root.tag, root.findtext("Code")) == ("Error", "InternalError")
    assert proxy.log()[0]["body_text"] == "<x/>"


def test_reset_clears_log_and_rules(proxied_bucket: Bucket, proxy_server: Proxy) -> None:
    bucket, proxy = proxied_bucket, proxy_server
    put(bucket, "k", b"abc")
    proxy.set_rules([{"action": "status", "status": 500}])
    assert fetch(proxy, "GET", f"/{bucket.name}/k").status == 500
    assert len(proxy.log()) == 1
    proxy.reset()
    assert proxy.log() == []
    assert proxy.rules() == []
    assert fetch(proxy, "GET", f"/{bucket.name}/k").status == 200


def test_bad_rules_are_refused(proxy_server: Proxy) -> None:
    with pytest.raises(ProxyError, match="unknown action"):
        proxy_server.set_rules([{"action": "explode"}])
    with pytest.raises(ProxyError, match="unknown match keys"):
        proxy_server.set_rules([{"match": {"verb": "GET"}, "action": "delay"}])


def _b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()
