"""URL downloads against real HTTP servers: nginx, Python's http.server (ignores Range) and the
fault-knob origin (``tests/http_origin.py``). Every test checks the bytes, or that nothing was
left behind."""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

import pytest
import xxhash

import asynctransfer
from asynctransfer import (
    AccessDeniedError,
    IntegrityError,
    InvalidRequestError,
    LocalFileError,
    NetworkError,
    NotFoundError,
    ObjectChangedError,
    ProtocolViolationError,
    TransferConfig,
)

from ..conftest import SMALL_MIN_PART

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import HttpOrigin, StaticServer

PART = 128 * 1024
SIZE = 5 * PART + 1234  # six ranges, the last one short


def config(**changes: Any) -> TransferConfig:
    options: dict[str, Any] = {
        "part_size": PART,
        "min_part_size": SMALL_MIN_PART,
        "max_concurrency": 4,
    }
    options.update(changes)
    return TransferConfig(**options)


def only(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def gets(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in log if e["method"] == "GET"]


# ------------------------------------------------------------------ correct servers


async def test_nginx_multi_part_byte_exact(nginx: StaticServer, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    url = nginx.put("multi.bin", data)
    result = await asynctransfer.download(url, tmp_path, config=config(part_size=256 * 1024))
    assert (tmp_path / "multi.bin").read_bytes() == data
    assert result.parts == 13
    assert result.xxh3_128 == xxhash.xxh3_128_hexdigest(data)
    assert result.etag  # the version the ranges were pinned to
    assert only(tmp_path) == ["multi.bin"]


async def test_nginx_large_file_through_o_direct(nginx: StaticServer, tmp_path: Path) -> None:
    data = os.urandom(64 * 1024 * 1024 + 4097)  # O_DIRECT from 64 MiB; an unaligned tail
    url = nginx.put("large.bin", data)
    dest = tmp_path / "large.bin"
    await asynctransfer.download(url, dest, expected_sha256=hashlib.sha256(data).hexdigest())
    assert dest.stat().st_size == len(data)
    assert dest.read_bytes() == data


async def test_stream_gets_the_bytes_in_order(nginx: StaticServer) -> None:
    data = os.urandom(SIZE)
    url = nginx.put("stream.bin", data)
    out = io.BytesIO()
    result = await asynctransfer.download(url, out, config=config())
    assert out.getvalue() == data
    assert (result.path, result.parts) == ("-", 6)


async def test_empty_resource(nginx: StaticServer, tmp_path: Path) -> None:
    url = nginx.put("empty.bin", b"")  # nginx answers a Range on it with 416 bytes */0
    dest = tmp_path / "empty.bin"
    result = await asynctransfer.download(url, dest, config=config())
    assert dest.read_bytes() == b""
    assert result.size == 0


async def test_server_that_ignores_range_gets_one_stream(
    simple_http_server: StaticServer, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    url = simple_http_server.put("whole.bin", data)
    dest = tmp_path / "whole.bin"
    result = await asynctransfer.download(url, dest, config=config())
    assert dest.read_bytes() == data
    assert result.parts == 1


async def test_ranges_are_pinned_with_if_range(http_origin: HttpOrigin, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    url = http_origin.put("pinned.bin", data)
    result = await asynctransfer.download(url, tmp_path / "out.bin", config=config())
    assert (tmp_path / "out.bin").read_bytes() == data
    log = gets(http_origin.log())
    assert len(log) == 6  # the first range gave the size: no HEAD, no extra request
    assert log[0]["headers"]["range"] == f"bytes=0-{PART - 1}"
    assert "if-range" not in log[0]["headers"]
    assert {e["headers"].get("if-range") for e in log[1:]} == {result.etag}
    assert all(e["headers"]["accept-encoding"] == "identity" for e in log)
    assert sorted(e["headers"]["range"] for e in log) == sorted(
        f"bytes={o}-{min(o + PART, SIZE) - 1}" for o in range(0, SIZE, PART)
    )


async def test_weak_etag_pins_with_last_modified(http_origin: HttpOrigin, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    url = http_origin.put("weak.bin", data)
    http_origin.knobs(weak_etag=True)
    await asynctransfer.download(url, tmp_path / "out.bin", config=config())
    assert (tmp_path / "out.bin").read_bytes() == data
    later = gets(http_origin.log())[1:]
    last_modified = later[0]["response_headers"]["last-modified"]
    assert {e["headers"]["if-range"] for e in later} == {last_modified}


async def test_redirect_is_followed(http_origin: HttpOrigin, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    http_origin.put("target.bin", data)
    http_origin.knobs(redirect={"/moved.bin": "/target.bin"})
    dest = tmp_path / "out.bin"
    await asynctransfer.download(http_origin.url_for("moved.bin"), dest, config=config())
    assert dest.read_bytes() == data
    paths = [e["path"] for e in gets(http_origin.log())]
    assert paths.count("/moved.bin") == 1  # later ranges go straight to the final URL


async def test_headers_are_sent_with_every_request(http_origin: HttpOrigin, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    url = http_origin.put("private.bin", data)
    http_origin.knobs(require_header={"authorization": "Bearer s3cret"})
    with pytest.raises(AccessDeniedError, match="401"):
        await asynctransfer.download(url, tmp_path / "denied.bin", config=config())
    dest = tmp_path / "out.bin"
    headers = {"Authorization": "Bearer s3cret"}
    await asynctransfer.download(url, dest, config=config(), headers=headers)
    assert dest.read_bytes() == data
    assert only(tmp_path) == ["out.bin"]


# ------------------------------------------------------------------ faulty servers


async def test_ignored_range_on_a_lying_server(http_origin: HttpOrigin, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    url = http_origin.put("liar.bin", data)
    http_origin.knobs(ignore_range=True, no_content_length=True)
    dest = tmp_path / "out.bin"
    result = await asynctransfer.download(url, dest, config=config())
    assert dest.read_bytes() == data
    assert result.parts == 1
    assert len(gets(http_origin.log())) == 1  # the body of the first answer, not a second GET


async def test_no_validator_means_one_stream(http_origin: HttpOrigin, tmp_path: Path) -> None:
    """Ranges that cannot be pinned to one version could mix two: one stream instead."""
    data = os.urandom(SIZE)
    url = http_origin.put("unpinned.bin", data)
    http_origin.knobs(no_etag=True, no_last_modified=True)
    dest = tmp_path / "out.bin"
    await asynctransfer.download(url, dest, config=config())
    assert dest.read_bytes() == data
    log = gets(http_origin.log())
    assert [("range" in e["headers"]) for e in log] == [True, False]


async def test_wrong_content_range_is_a_protocol_error(
    http_origin: HttpOrigin, tmp_path: Path
) -> None:
    url = http_origin.put("wrong.bin", os.urandom(SIZE))
    http_origin.knobs(wrong_content_range=True)
    with pytest.raises(ProtocolViolationError, match="Content-Range"):
        await asynctransfer.download(url, tmp_path / "out.bin", config=config())
    assert only(tmp_path) == []


async def test_wrong_total_in_a_later_range(http_origin: HttpOrigin, tmp_path: Path) -> None:
    url = http_origin.put("total.bin", os.urandom(SIZE))
    http_origin.knobs(wrong_content_range_total=SIZE + 1)
    with pytest.raises(ProtocolViolationError):
        await asynctransfer.download(url, tmp_path / "out.bin", config=config())
    assert only(tmp_path) == []


@pytest.mark.parametrize("fault", ["truncate", "reset"])
async def test_broken_body_is_resumed_from_where_it_broke(
    http_origin: HttpOrigin, tmp_path: Path, fault: str
) -> None:
    data = os.urandom(SIZE)
    url = http_origin.put(f"broken-{fault}.bin", data)
    path = f"/broken-{fault}.bin"
    http_origin.knobs(**{fault: {"bytes": 1000, "times": 1, "path": path}})
    dest = tmp_path / "out.bin"
    await asynctransfer.download(url, dest, config=config())
    assert dest.read_bytes() == data
    log = gets(http_origin.log())
    broken = next(e for e in log if e["fault"])
    start = int(broken["headers"]["range"].removeprefix("bytes=").split("-")[0])
    end = broken["headers"]["range"].split("-")[1]
    assert f"bytes={start + 1000}-{end}" in [e["headers"].get("range") for e in log]


async def test_slow_and_stalled_bodies_complete(http_origin: HttpOrigin, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    url = http_origin.put("slow.bin", data)
    http_origin.knobs(
        slow={"chunk": 16384, "interval": 0.01, "times": 2},
        stall={"after": 5000, "seconds": 0.5, "times": 1},
    )
    dest = tmp_path / "out.bin"
    await asynctransfer.download(url, dest, config=config())
    assert dest.read_bytes() == data


async def test_stall_longer_than_the_read_timeout_is_retried(
    http_origin: HttpOrigin, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    url = http_origin.put("stall.bin", data)
    http_origin.knobs(stall={"after": 5000, "seconds": 3, "times": 1})
    dest = tmp_path / "out.bin"
    started = time.monotonic()
    await asynctransfer.download(url, dest, config=config(read_timeout=0.5))
    assert dest.read_bytes() == data
    assert time.monotonic() - started < 2.5  # did not wait the stall out


async def test_change_mid_download_restarts_once(http_origin: HttpOrigin, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    url = http_origin.put("changing.bin", data)
    http_origin.knobs(change_after=3)
    dest = tmp_path / "out.bin"
    result = await asynctransfer.download(url, dest, config=config(max_concurrency=1))
    changed = bytes(b ^ 0x5A for b in data)
    assert dest.read_bytes() == changed  # all of the new version, none of the old
    assert result.etag.endswith('-x5a"')
    assert only(tmp_path) == ["out.bin"]


async def test_change_mid_download_fails_when_asked(
    http_origin: HttpOrigin, tmp_path: Path
) -> None:
    url = http_origin.put("changing2.bin", os.urandom(SIZE))
    http_origin.knobs(change_after=3)
    cfg = config(max_concurrency=1, restart_on_change=False)
    with pytest.raises(ObjectChangedError, match="changed during the download"):
        await asynctransfer.download(url, tmp_path / "out.bin", config=cfg)
    assert only(tmp_path) == []


async def test_server_errors_are_retried(http_origin: HttpOrigin, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    url = http_origin.put("flaky.bin", data)
    http_origin.knobs(status={"/flaky.bin": {"status": 503, "times": 2}})
    dest = tmp_path / "out.bin"
    await asynctransfer.download(url, dest, config=config(max_attempts=4))
    assert dest.read_bytes() == data


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("status", "error"), [(404, NotFoundError), (403, AccessDeniedError), (410, NotFoundError)]
)
async def test_error_statuses_fail_fast(
    http_origin: HttpOrigin, tmp_path: Path, status: int, error: type[Exception]
) -> None:
    url = http_origin.put(f"status-{status}.bin", b"x")
    http_origin.knobs(status={f"/status-{status}.bin": status})
    started = time.monotonic()
    with pytest.raises(error, match=str(status)):
        await asynctransfer.download(url, tmp_path / "out.bin", config=config())
    assert time.monotonic() - started < 2
    assert len(gets(http_origin.log())) == 1  # no retries
    assert only(tmp_path) == []


async def test_redirect_loop(http_origin: HttpOrigin, tmp_path: Path) -> None:
    http_origin.knobs(redirect_loop=True)
    with pytest.raises(ProtocolViolationError, match="redirects"):
        await asynctransfer.download(http_origin.url_for("loop"), tmp_path / "x", config=config())
    assert only(tmp_path) == []


async def test_host_that_does_not_resolve(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(NetworkError, match="cannot resolve host") as caught:
        await asynctransfer.download("http://no-such-host.invalid/x", tmp_path / "x")
    assert not caught.value.retryable
    assert time.monotonic() - started < 10
    assert only(tmp_path) == []


async def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match="unsupported URL scheme 'ftp'"):
        await asynctransfer.download("ftp://127.0.0.1/x", tmp_path / "x")


async def test_destination_in_a_missing_directory(http_origin: HttpOrigin, tmp_path: Path) -> None:
    url = http_origin.put("fine.bin", os.urandom(SIZE))
    with pytest.raises(LocalFileError, match="No such file or directory"):
        await asynctransfer.download(url, tmp_path / "missing" / "x", config=config())
    assert only(tmp_path) == []


async def test_expected_digests(http_origin: HttpOrigin, tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    url = http_origin.put("digest.bin", data)
    dest = tmp_path / "out.bin"
    with pytest.raises(IntegrityError, match="sha256"):
        await asynctransfer.download(url, dest, config=config(), expected_sha256="0" * 64)
    assert only(tmp_path) == []
    with pytest.raises(InvalidRequestError, match="hex"):
        await asynctransfer.download(url, dest, config=config(), expected_xxh3="xyz")
    await asynctransfer.download(
        url,
        dest,
        config=config(),
        expected_sha256=hashlib.sha256(data).hexdigest(),
        expected_xxh3=xxhash.xxh3_128_hexdigest(data),
    )
    assert dest.read_bytes() == data


# ------------------------------------------------------------------ the command line


def test_cli_streams_to_stdout(http_origin: HttpOrigin) -> None:
    data = os.urandom(SIZE)
    url = http_origin.put("cli.bin", data)
    http_origin.knobs(require_header={"authorization": "Bearer t"})
    done = subprocess.run(
        [
            *(sys.executable, "-m", "asynctransfer", "cp", url, "-"),
            *("--header", "Authorization: Bearer t"),
            *("--expected-sha256", hashlib.sha256(data).hexdigest()),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout == data
    assert b"download:" in done.stderr  # the report goes to stderr when stdout has the bytes


def test_cli_bad_header(http_origin: HttpOrigin) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "asynctransfer", "cp", http_origin.url_for("x"), "-", "-H", "x"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert b"expected 'Name: value'" in done.stderr


# ------------------------------------------------------------------ found in review


async def test_stream_is_never_sent_bytes_twice(http_origin: HttpOrigin) -> None:
    """A one-stream body that breaks cannot be retried from zero into a stream: the bytes
    already given are out. It fails, and the stream holds a prefix, not a repeat."""
    data = os.urandom(SIZE)
    url = http_origin.put("stream-break.bin", data)
    http_origin.knobs(ignore_range=True, truncate={"bytes": 3 * PART + 10})
    out = io.BytesIO()
    with pytest.raises(NetworkError):
        await asynctransfer.download(url, out, config=config())
    assert data.startswith(out.getvalue())


async def test_unchecked_bytes_of_a_broken_range_are_not_kept(
    http_origin: HttpOrigin, tmp_path: Path
) -> None:
    """A range answered with the wrong Content-Range and then broken: its bytes must not be
    kept and resumed after (they were never the bytes asked for)."""
    url = http_origin.put("shifted-broken.bin", os.urandom(SIZE))
    http_origin.knobs(wrong_content_range=True, truncate={"bytes": 1000, "times": None})
    with pytest.raises(ProtocolViolationError, match="Content-Range"):
        await asynctransfer.download(url, tmp_path / "out.bin", config=config())
    assert only(tmp_path) == []


async def test_empty_resource_with_wrong_digest_leaves_nothing(
    nginx: StaticServer, tmp_path: Path
) -> None:
    url = nginx.put("empty-digest.bin", b"")
    with pytest.raises(IntegrityError):
        await asynctransfer.download(
            url, tmp_path / "e.bin", config=config(), expected_sha256="0" * 64
        )
    assert only(tmp_path) == []


async def test_failed_rename_leaves_nothing(http_origin: HttpOrigin, tmp_path: Path) -> None:
    url = http_origin.put("blocked.bin", os.urandom(SIZE))
    (tmp_path / "blocked.bin").mkdir()  # the final name is taken by a directory
    (tmp_path / "blocked.bin" / "keep").write_bytes(b"x")
    with pytest.raises(LocalFileError, match="publish"):
        await asynctransfer.download(url, tmp_path, config=config())
    assert only(tmp_path) == ["blocked.bin"]
    assert only(tmp_path / "blocked.bin") == ["keep"]


@pytest.mark.parametrize("name", ["..%2Fescaped.bin", "..", "%2E%2E"])
async def test_url_cannot_name_a_file_outside_the_directory(
    http_origin: HttpOrigin, tmp_path: Path, name: str
) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    with pytest.raises(InvalidRequestError, match="cannot name a file after it"):
        await asynctransfer.download(f"{http_origin.url}/sub/{name}", inner, config=config())
    assert only(tmp_path) == ["inner"]
    assert only(inner) == []


async def test_userinfo_credentials_reach_every_range(
    http_origin: HttpOrigin, tmp_path: Path
) -> None:
    data = os.urandom(SIZE)
    http_origin.put("userinfo.bin", data)
    http_origin.knobs(require_header={"authorization": "Basic dTpw"})  # u:p
    url = http_origin.url.replace("http://", "http://u:p@") + "/userinfo.bin"
    dest = tmp_path / "out.bin"
    result = await asynctransfer.download(url, dest, config=config())
    assert dest.read_bytes() == data
    assert "u:p@" not in result.url  # no password in results and messages
    assert len(gets(http_origin.log())) == 6
