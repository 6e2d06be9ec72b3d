"""HTTP/1.1 framing for the ranged-GET client (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asynctransfer._core.http1 import (
    HeadError,
    find_head_end,
    parse_response_head,
    request_head,
)


def test_request_head_bytes() -> None:
    head = request_head("GET", "/b/k?x=1", "h:9", [("Range", "bytes=0-9"), ("If-Match", '"e"')])
    assert head == (
        b'GET /b/k?x=1 HTTP/1.1\r\nHost: h:9\r\nRange: bytes=0-9\r\nIf-Match: "e"\r\n\r\n'
    )


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb"])
def test_request_head_refuses_line_breaks(value: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        request_head("GET", "/", "h", [("X", value)])


def test_parse_response_head() -> None:
    head = parse_response_head(
        b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n"
        b"Content-Range: bytes 0-9/100\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    )
    assert head.status == 206
    assert head.reason == "Partial Content"
    assert head.content_length == 10
    assert head.headers["content-range"] == "bytes 0-9/100"
    assert head.headers["x-a"] == "1, 2"
    assert head.keep_alive


@pytest.mark.parametrize(
    ("extra", "keep_alive", "length"),
    [
        (b"Connection: close\r\nContent-Length: 5\r\n", False, 5),
        (b"Connection: keep-alive, Upgrade\r\nContent-Length: 5\r\n", True, 5),
        (b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n", True, None),
        (b"", True, None),
    ],
)
def test_keep_alive_and_length(extra: bytes, keep_alive: bool, length: int | None) -> None:
    head = parse_response_head(b"HTTP/1.1 200 OK\r\n" + extra + b"\r\n")
    assert head.keep_alive is keep_alive
    assert head.content_length == length


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
    ],
)
def test_malformed_heads(data: bytes) -> None:
    with pytest.raises(HeadError):
        parse_response_head(data)


def test_invalid_content_length() -> None:
    head = parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n")
    with pytest.raises(HeadError, match="Content-Length"):
        _ = head.content_length


@given(st.binary(max_size=200), st.integers(0, 200))
def test_find_head_end_matches_a_plain_search(data: bytes, start: int) -> None:
    buf = bytearray(data + b"\r\n\r\n" + data)
    end = len(buf)
    start = min(start, end)
    found = find_head_end(buf, end, start)
    whole = bytes(buf).find(b"\r\n\r\n", max(0, start - 3))
    assert found == (whole + 4 if whole >= 0 else -1)


def test_find_head_end_across_chunks() -> None:
    buf = bytearray(b"HTTP/1.1 200 OK\r\n\r")
    assert find_head_end(buf, len(buf)) == -1
    buf += b"\nbody"
    assert find_head_end(buf, len(buf), start=len(buf) - 5) == len(b"HTTP/1.1 200 OK\r\n\r\n")
