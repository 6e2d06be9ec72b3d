"""The test servers themselves: every knob of ``tests/http_origin.py`` does what it says, checked
with the stdlib's clients (never the engine under test), plus the two reference servers."""

from __future__ import annotations

import email.utils
import http.client
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from asynctransfer.testing import announced_url, stop_process

from ..conftest import random_bytes
from .conftest import OriginError

if TYPE_CHECKING:
    from email.message import Message

    from .conftest import HttpOrigin, StaticServer

SIZE = 1024 * 1024 + 7  # several of the origin's 256 KiB reads, and an odd tail


def flipped(data: bytes) -> bytes:
    """The content of a resource after ``change_after``: every byte XOR 0x5A."""
    return data.translate(bytes(i ^ 0x5A for i in range(256)))


@dataclass
class Reply:
    status: int
    headers: Message
    body: bytes


def fetch(url: str, method: str = "GET", **headers: str) -> Reply:
    """One request on a fresh connection; headers as keywords (``if_range`` -> ``If-Range``)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        named = {name.replace("_", "-").title(): value for name, value in headers.items()}
        connection.request(method, parts.path, headers=named)
        response = connection.getresponse()
        return Reply(response.status, response.headers, response.read())
    finally:
        connection.close()


def raw_get(url: str) -> tuple[bytes, bytes, OSError | None]:
    """GET on a raw socket until the server ends the connection (a cut response): (head, body,
    error) exactly as the bytes and the close arrived."""
    parts = urlsplit(url)
    received = bytearray()
    error: OSError | None = None
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=5) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: origin\r\n\r\n".encode())
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError as exc:
            error = exc
    head, _, body = bytes(received).partition(b"\r\n\r\n")
    return head, body, error


@pytest.fixture
def data() -> bytes:
    return random_bytes(SIZE, seed=7)


# ------------------------------------------------------------------------------ defaults


def test_get_and_head(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("plain/whole.bin", data)
    got = fetch(url, accept_encoding="gzip, br")
    assert got.status == 200
    assert got.body == data
    assert got.headers["Accept-Ranges"] == "bytes"
    assert got.headers["Content-Length"] == str(SIZE)
    assert got.headers["ETag"].startswith('"') and got.headers["ETag"].endswith('"')
    assert email.utils.parsedate_to_datetime(got.headers["Last-Modified"])
    assert "Content-Encoding" not in got.headers
    head = fetch(url, "HEAD", range="bytes=0-9")
    assert (head.status, head.body) == (200, b"")
    for name in ("ETag", "Last-Modified", "Content-Length", "Accept-Ranges"):
        assert head.headers[name] == got.headers[name]


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=10-19", 10, 19),
        ("bytes=262140-786440", 262140, 786440),
        ("bytes=1000000-", 1000000, SIZE - 1),
        ("bytes=-7", SIZE - 7, SIZE - 1),
        ("bytes=5-99999999", 5, SIZE - 1),
        ("bytes=-99999999", 0, SIZE - 1),
        ("BYTES=0-0", 0, 0),
    ],
)
def test_range(http_origin: HttpOrigin, data: bytes, header: str, first: int, last: int) -> None:
    got = fetch(http_origin.put("plain/range.bin", data), range=header)
    assert got.status == 206
    assert got.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert got.headers["Content-Length"] == str(last - first + 1)
    assert got.body == data[first : last + 1]


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
def test_unsatisfiable_range(http_origin: HttpOrigin, data: bytes, header: str) -> None:
    got = fetch(http_origin.put("plain/416.bin", data), range=header)
    assert (got.status, got.body) == (416, b"")
    assert got.headers["Content-Range"] == f"bytes */{SIZE}"


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=9-2", "items=0-1", "bytes=a-b"])
def test_multi_or_malformed_range_gets_the_whole(
    http_origin: HttpOrigin, data: bytes, header: str
) -> None:
    got = fetch(http_origin.put("plain/multi.bin", data), range=header)
    assert (got.status, got.body) == (200, data)
    assert "Content-Range" not in got.headers


def test_if_range(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("plain/if-range.bin", data)
    head = fetch(url, "HEAD").headers
    etag, modified = head["ETag"], head["Last-Modified"]
    earlier = email.utils.formatdate(email.utils.parsedate_to_datetime(modified).timestamp() - 60)
    for validator, status in [
        (etag, 206),
        (modified, 206),
        ('"not-it"', 200),
        ("W/" + etag, 200),  # If-Range compares strongly: a weak tag never matches
        (earlier, 200),
    ]:
        got = fetch(url, range="bytes=3-5", if_range=validator)
        assert got.status == status, validator
        assert got.body == (data[3:6] if status == 206 else data)


def test_if_match(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("plain/if-match.bin", data)
    etag = fetch(url, "HEAD").headers["ETag"]
    assert fetch(url, if_match=etag, range="bytes=0-3").status == 206
    assert fetch(url, if_match=f'"other", {etag}').status == 200
    assert fetch(url, if_match="*").status == 200
    refused = fetch(url, if_match='"other"', range="bytes=0-3")
    assert (refused.status, refused.body) == (412, b"")


def test_paths_stay_under_the_root(http_origin: HttpOrigin) -> None:
    outside = http_origin.root.parent / "outside.txt"
    outside.write_bytes(b"secret")
    try:
        for path in ("/../outside.txt", "/%2e%2e/outside.txt", "/plain/../../outside.txt"):
            assert fetch(http_origin.url + path).status == 404, path
        assert fetch(http_origin.url + "/plain").status == 404  # a directory
    finally:
        outside.unlink()


# ------------------------------------------------------------------------------ knobs


def test_ignore_range(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/ignore.bin", data)
    http_origin.knobs(ignore_range=True)
    got = fetch(url, range="bytes=10-19")
    assert (got.status, got.body) == (200, data)
    assert http_origin.log()[-1]["fault"] == "ignore_range"


def test_wrong_content_range(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/wrong.bin", data)
    http_origin.knobs(wrong_content_range=True)
    got = fetch(url, range="bytes=10-19")
    assert (got.status, got.headers["Content-Range"]) == (206, f"bytes 11-20/{SIZE}")
    assert got.body == data[11:21]
    tail = fetch(url, range="bytes=-10")  # ends at the last byte: shifted the other way
    assert tail.headers["Content-Range"] == f"bytes {SIZE - 11}-{SIZE - 2}/{SIZE}"
    assert tail.body == data[SIZE - 11 : SIZE - 1]
    http_origin.knobs(wrong_content_range_total=SIZE * 2)
    got = fetch(url, range="bytes=10-19")
    assert (got.headers["Content-Range"], got.body) == (f"bytes 10-19/{SIZE * 2}", data[10:20])


def test_change_after(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/change.bin", data)
    http_origin.knobs(change_after=2)
    first = [fetch(url) for _ in range(2)]
    assert [reply.body for reply in first] == [data, data]
    old_etag, old_modified = first[0].headers["ETag"], first[0].headers["Last-Modified"]
    assert fetch(url, "HEAD").headers["ETag"] == old_etag  # HEADs do not count
    changed = fetch(url)
    assert changed.body == flipped(data)
    new_etag = changed.headers["ETag"]
    assert new_etag != old_etag
    assert email.utils.parsedate_to_datetime(
        changed.headers["Last-Modified"]
    ) > email.utils.parsedate_to_datetime(old_modified)
    assert fetch(url, "HEAD").headers["ETag"] == new_etag
    stale = fetch(url, range="bytes=0-99", if_range=old_etag)
    assert (stale.status, stale.body) == (200, flipped(data))
    stale = fetch(url, range="bytes=0-99", if_range=old_modified)
    assert (stale.status, stale.body) == (200, flipped(data))
    assert fetch(url, range="bytes=0-99", if_match=old_etag).status == 412
    fresh = fetch(url, range="bytes=0-99", if_range=new_etag)
    assert (fresh.status, fresh.body) == (206, flipped(data)[:100])
    assert [e["fault"] for e in http_origin.log() if e["method"] == "GET"] == [None, None] + [
        "change_after"
    ] * 5
    assert (http_origin.root / "knobs/change.bin").read_bytes() == data
    http_origin.knobs()  # new knobs: the resource is itself again
    assert fetch(url).headers["ETag"] == old_etag


def test_truncate(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/truncate.bin", data)
    http_origin.knobs(truncate={"bytes": 1000, "times": 2})
    head, body, error = raw_get(url)
    assert b" 200 " in head.split(b"\r\n")[0] and f"Content-Length: {SIZE}".encode() in head
    assert (body, error) == (data[:1000], None)  # a clean close after 1000 bytes
    with pytest.raises(http.client.IncompleteRead) as excinfo:
        fetch(url, range="bytes=5000-")
    assert excinfo.value.partial == data[5000:6000]
    assert fetch(url).body == data  # spent after two
    assert [e["response_bytes"] for e in http_origin.log()] == [1000, 1000, SIZE]
    assert [e["fault"] for e in http_origin.log()] == ["truncate", "truncate", None]


def test_reset(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/reset.bin", data)
    http_origin.knobs(reset={"bytes": 300_000})
    _, body, error = raw_get(url)
    assert isinstance(error, ConnectionResetError)
    assert body == data[:300_000]
    assert fetch(url).body == data
    assert [e["fault"] for e in http_origin.log()] == ["reset", None]


def test_body_faults_can_be_limited_to_a_path(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/target.bin", data)
    other = http_origin.put("knobs/other.bin", data)
    http_origin.knobs(truncate={"bytes": 10, "path": "/knobs/target.bin", "times": None})
    assert fetch(other).body == data
    for _ in range(2):
        with pytest.raises(http.client.IncompleteRead):
            fetch(url)


def test_slow(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/slow.bin", data)
    http_origin.knobs(slow={"chunk": 1000, "interval": 0.05})
    started = time.monotonic()
    got = fetch(url, range="bytes=0-3999")  # 4 pieces, 3 pauses
    assert time.monotonic() - started >= 0.15
    assert got.body == data[:4000]
    started = time.monotonic()
    assert fetch(url).body == data  # times: 1 by default
    assert time.monotonic() - started < 1


def test_stall(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/stall.bin", data)
    http_origin.knobs(stall={"after": 1000, "seconds": 0.3})
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        started = time.monotonic()
        connection.request("GET", parts.path)
        response = connection.getresponse()
        assert response.read(1000) == data[:1000]
        assert time.monotonic() - started < 0.3  # came before the stall, not after it
        assert response.read() == data[1000:]
        assert time.monotonic() - started >= 0.3
    finally:
        connection.close()


def test_validator_knobs(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/validators.bin", data)
    http_origin.knobs(no_etag=True, no_last_modified=True)
    headers = fetch(url, "HEAD").headers
    assert "ETag" not in headers and "Last-Modified" not in headers
    assert fetch(url, range="bytes=0-1", if_match="*").status == 206
    http_origin.knobs(weak_etag=True)
    etag = fetch(url, "HEAD").headers["ETag"]
    assert etag.startswith('W/"')
    assert fetch(url, range="bytes=0-1", if_range=etag).status == 200
    assert fetch(url, if_match=etag).status == 412


def test_no_content_length(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/chunked.bin", data)
    http_origin.knobs(no_content_length=True)
    got = fetch(url)
    assert got.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in got.headers
    assert got.body == data
    assert "Content-Length" not in fetch(url, "HEAD").headers
    ranged = fetch(url, range="bytes=0-9")
    assert (ranged.status, ranged.headers["Content-Length"]) == (206, "10")


def test_status(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/status.bin", data)
    http_origin.knobs(
        status={
            "/knobs/status.bin": {"status": 503, "times": 1, "method": "GET"},
            "/forbidden": 403,
        }
    )
    assert fetch(url, "HEAD").status == 200
    refused = fetch(url)
    assert (refused.status, refused.body) == (503, b"")
    assert fetch(url).status == 200
    for _ in range(2):
        assert fetch(http_origin.url + "/forbidden").status == 403
    assert fetch(http_origin.url + "/missing").status == 404


def test_redirect(http_origin: HttpOrigin, data: bytes) -> None:
    target = http_origin.put("knobs/target.bin", data)
    http_origin.knobs(
        redirect={"/relative": "/knobs/target.bin", "/absolute": target}, redirect_loop=True
    )
    for path, location in [("/relative", "/knobs/target.bin"), ("/absolute", target)]:
        moved = fetch(http_origin.url + path)
        assert (moved.status, moved.headers["Location"]) == (302, location)
        with urllib.request.urlopen(http_origin.url + path, timeout=5) as response:
            assert response.read() == data
    loop = fetch(http_origin.url + "/loop")
    assert (loop.status, loop.headers["Location"]) == (302, "/loop")


def test_require_header(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/private.bin", data)
    http_origin.knobs(require_header={"authorization": "Bearer secret"})
    assert fetch(url).status == 401
    assert fetch(url, authorization="Bearer other").status == 401
    assert fetch(url, authorization="Bearer secret").body == data
    assert [e["headers"].get("authorization") for e in http_origin.log()] == [
        None,
        "Bearer other",
        "Bearer secret",
    ]


def test_log_and_connections(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/log.bin", data)
    http_origin.knobs(count_connections=True)
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    try:
        for header in ("bytes=0-9", "bytes=10-19"):
            connection.request("GET", parts.path, headers={"Range": header, "Cookie": "c=1"})
            connection.getresponse().read()
    finally:
        connection.close()
    fetch(url, "HEAD")
    log = http_origin.log()
    assert [(e["method"], e["status"], e["response_bytes"]) for e in log] == [
        ("GET", 206, 10),
        ("GET", 206, 10),
        ("HEAD", 200, 0),
    ]
    assert log[0]["connection"] == log[1]["connection"] != log[2]["connection"]
    assert log[1]["path"] == "/knobs/log.bin"
    assert log[1]["headers"] == {
        "range": "bytes=10-19",
        "cookie": "c=1",
        "accept-encoding": "identity",
    }
    assert log[1]["response_headers"]["content-range"] == f"bytes 10-19/{SIZE}"
    assert log[1]["response_headers"]["content-length"] == "10"
    assert log[1]["response_headers"]["etag"] == log[2]["response_headers"]["etag"]
    assert log[0]["started"] <= log[0]["finished"] <= log[1]["started"]
    http_origin.reset()
    assert http_origin.log() == []


def test_unknown_knob_is_refused(http_origin: HttpOrigin) -> None:
    with pytest.raises(OriginError, match="ignore_ranges"):
        http_origin.knobs(ignore_ranges=True)
    with pytest.raises(OriginError, match="truncate"):
        http_origin.knobs(truncate=100)


def test_runs_by_path_and_stops_on_sigterm(tmp_path: Path) -> None:
    # By path (tests/ first on sys.path), as the docstring says it runs.
    (tmp_path / "file.bin").write_bytes(b"abc")
    script = Path(__file__).resolve().parents[1] / "http_origin.py"
    command = [sys.executable, str(script), "--root", str(tmp_path), "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        try:
            url = announced_url(process, timeout=20)
            assert fetch(url + "/file.bin", range="bytes=1-").body == b"bc"
        finally:
            stop_process(process)
        assert process.stderr is not None
        assert (process.returncode, process.stderr.read()) == (0, b"")


# ------------------------------------------------------------------------------ reference servers


def test_simple_http_server_ignores_range(simple_http_server: StaticServer) -> None:
    data = random_bytes(10_000, seed=1)
    got = fetch(simple_http_server.put("simple.bin", data), range="bytes=10-19")
    assert (got.status, got.body) == (200, data)


def test_nginx_serves_ranges(nginx: StaticServer) -> None:
    data = random_bytes(8 * 1024 * 1024 + 3, seed=2)
    url = nginx.put("dir/nginx.bin", data)
    first, last = 1_000_001, 5_999_999
    got = fetch(url, range=f"bytes={first}-{last}")
    assert got.status == 206
    assert got.headers["Content-Range"] == f"bytes {first}-{last}/{len(data)}"
    assert got.body == data[first : last + 1]


def test_cut_connections_leave_no_traceback(http_origin: HttpOrigin, data: bytes) -> None:
    url = http_origin.put("knobs/quiet.bin", data)
    http_origin.knobs(reset={"bytes": 10})
    raw_get(url)
    http_origin.knobs(truncate={"bytes": 10})
    raw_get(url)
    # A client that gives up mid-body, as a cancelled download does.
    http_origin.knobs(slow={"chunk": 1000, "interval": 0.01})
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "", parts.port or 80), timeout=5) as sock:
        sock.sendall(f"GET {parts.path} HTTP/1.1\r\nHost: origin\r\n\r\n".encode())
        sock.recv(100)
    deadline = time.monotonic() + 5
    while http_origin.log()[-1]["finished"] is None and time.monotonic() < deadline:
        time.sleep(0.01)
    gone = http_origin.log()[-1]
    assert gone["response_bytes"] < SIZE
    assert "client went away" in gone["error"]
    assert http_origin.stderr_text() == ""
