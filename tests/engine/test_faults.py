"""The fault suite: an upload or a download through the fault proxy in front of moto, with the
faults of rows 1-3, 5-7, 10, 12, 26, 27 and 32 of the reliability matrix (rows 4, 8, 9, 11,
21-25 and 31 are in test_wire, test_integrity and test_bad_input; 13-20 in the resume and kill
tests; 30 in test_netns), and hedging. Each test asserts the invariants:
I1 byte-exact success or one typed error; I2 nothing under the final name unless verified;
I3 no multipart upload left open (the ``proxied_bucket`` fixture asserts it); I4 bounded time
(the timeout mark) and every part buffer given back."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread
import pytest

from asynctransfer import (
    EngineStatistics,
    ObjectChangedError,
    ObjectExistsError,
    RetryBudgetError,
    SlowDownError,
    TransferConfig,
    Transferer,
)

from ..conftest import SMALL_PART, random_bytes, with_config, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from ..conftest import Bucket
    from ..proxy import Proxy

pytestmark = pytest.mark.timeout(90)

PARTS = 12


def _faulted(proxy: Proxy, operation: str) -> list[dict[str, Any]]:
    return [e for e in proxy.requests(operation) if e["fault"]]


async def _upload(
    bucket: Bucket, src: Path, config: TransferConfig | None = None
) -> EngineStatistics:
    """Upload ``src`` to k; the statistics after it."""
    async with Transferer(config or bucket.config) as t:
        await t.upload(src, bucket.url("k"))
        stats = t.statistics()
    assert stats.memory.in_use == 0
    return stats


def _no_file(directory: Path) -> None:
    assert os.listdir(directory) == [], f"left behind: {os.listdir(directory)}"


# ---------------------------------------------------------------- row 1: a SlowDown storm


async def test_a_slowdown_storm_lowers_concurrency_and_the_upload_completes(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket = proxied_bucket
    src = tmp_path / "src.bin"
    data = write_random(src, PARTS * SMALL_PART + 5)
    slowdown = {
        "match": {"operation": "UploadPart"},
        "probability": 0.3,
        "times": 8,
        "action": "status",
        "status": 503,
        "code": "SlowDown",
    }
    proxy_server.set_rules([slowdown], seed=1)
    config = with_config(bucket, max_concurrency=8)
    async with Transferer(config) as t:
        await t.upload(src, bucket.url("k"))
        storm = t.statistics()
        proxy_server.set_rules([])
        # The storm is over: successes bring the limit back up.
        await t.upload(src, bucket.url("k2"))
        after = t.statistics()
    assert bucket.read("k") == data and bucket.read("k2") == data
    assert storm.throttled == len(_faulted(proxy_server, "UploadPart")) > 0
    assert storm.concurrency_decreases >= 1
    assert storm.retries >= storm.throttled
    assert storm.max_in_flight < 8
    assert after.max_in_flight == 8
    assert after.memory.in_use == 0


# ---------------------------------------------------------------- row 2: 503 forever


async def test_slowdown_forever_fails_in_bounded_time_and_aborts(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket = proxied_bucket
    src = tmp_path / "src.bin"
    write_random(src, 4 * SMALL_PART)
    proxy_server.set_rules(
        [
            {
                "match": {"operation": "UploadPart"},
                "action": "status",
                "status": 503,
                "code": "SlowDown",
            }
        ]
    )
    started = time.monotonic()
    with pytest.raises((SlowDownError, RetryBudgetError)):
        await _upload(bucket, src, with_config(bucket, max_attempts=4))
    assert time.monotonic() - started < 30
    assert "Contents" not in bucket.client.list_objects_v2(Bucket=bucket.name)


# ---------------------------------------------------------------- row 3: 500 on a part, on Complete


async def test_internal_errors_on_a_part_and_on_complete_are_retried(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket = proxied_bucket
    src = tmp_path / "src.bin"
    data = write_random(src, 4 * SMALL_PART + 3)
    proxy_server.set_rules(
        [
            {
                "match": {"operation": "UploadPart", "query": {"partNumber": "2"}},
                "times": 2,
                "action": "status",
                "status": 500,
                "code": "InternalError",
            },
            {
                "match": {"operation": "CompleteMultipartUpload"},
                "times": 1,
                "action": "status",
                "status": 500,
                "code": "InternalError",
            },
        ]
    )
    stats = await _upload(bucket, src)
    assert bucket.read("k") == data
    completes = proxy_server.requests("CompleteMultipartUpload")
    assert [e["status"] for e in completes] == [500, 200]
    assert completes[0]["body_text"] == completes[1]["body_text"]  # the same part list
    assert stats.retries == 3


# ---------------------------------------------------------------- row 5: resets on UploadPart


@pytest.mark.parametrize("action", ["reset_before", "reset_mid_request"])
async def test_a_reset_part_is_sent_again_with_the_same_checksum(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path, action: str
) -> None:
    bucket = proxied_bucket
    src = tmp_path / "src.bin"
    data = write_random(src, 4 * SMALL_PART + 3)
    rule: dict[str, Any] = {
        "match": {"operation": "UploadPart", "query": {"partNumber": "3"}},
        "times": 1,
        "action": "reset_before",
    }
    if action == "reset_mid_request":
        rule["after_request_bytes"] = SMALL_PART // 2
    proxy_server.set_rules([rule])
    await _upload(bucket, src)
    assert bucket.read("k") == data
    third = [e for e in proxy_server.requests("UploadPart") if e["query"]["partNumber"] == "3"]
    assert third[0]["fault"] == "reset_before"
    assert third[-1]["status"] == 200
    checksums = {e["headers"].get("x-amz-checksum-crc32c") for e in third}
    assert len(checksums) == 1 and None not in checksums


# ---------------------------------------------------------------- rows 6 and 7: broken GET bodies


@pytest.mark.parametrize(
    "rule",
    [
        {"action": "reset_mid", "bytes": SMALL_PART // 3},
        {"action": "truncate", "bytes": SMALL_PART // 2},
        {"action": "delay", "seconds": 3.0, "when": "after"},
    ],
    ids=["reset-mid-body", "truncated-body", "stall"],
)
async def test_a_broken_range_is_fetched_again_and_the_file_is_exact(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path, rule: dict[str, Any]
) -> None:
    bucket = proxied_bucket
    data = random_bytes(PARTS * SMALL_PART - 9)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    proxy_server.set_rules(
        [{"match": {"operation": "GetObject", "header_prefix": "range"}, "times": 2, **rule}]
    )
    dest = tmp_path / "out.bin"
    async with Transferer(with_config(bucket, read_timeout=1.0)) as t:
        await t.download(bucket.url("k"), dest)
        stats = t.statistics()
    assert dest.read_bytes() == data
    assert stats.retries >= 1 and stats.memory.in_use == 0
    assert os.listdir(tmp_path) == ["out.bin"]
    assert len(_faulted(proxy_server, "GetObject")) == 2


# ---------------------------------------------------------------- row 12: BadDigest


async def test_bad_digest_is_sent_again_from_a_fresh_read_once(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket = proxied_bucket
    src = tmp_path / "src.bin"
    data = write_random(src, 3 * SMALL_PART)
    proxy_server.set_rules(
        [
            {
                "match": {"operation": "UploadPart", "query": {"partNumber": "2"}},
                "times": 1,
                "action": "status",
                "status": 400,
                "code": "BadDigest",
            }
        ]
    )
    await _upload(bucket, src)
    assert bucket.read("k") == data

    proxy_server.set_rules(
        [
            {
                "match": {"operation": "UploadPart", "query": {"partNumber": "2"}},
                "action": "status",
                "status": 400,
                "code": "BadDigest",
            }
        ]
    )
    with pytest.raises(Exception, match="BadDigest"):
        await _upload(bucket, src)
    second = [e for e in proxy_server.requests("UploadPart") if e["query"]["partNumber"] == "2"]
    assert len(second) == 2 + 2  # each run: the BadDigest, then the part read again


# ---------------------------------------------------------------- row 27: one destination, twice


async def test_two_downloads_to_one_destination_never_interleave(
    bucket: Bucket, tmp_path: Path
) -> None:
    data = random_bytes(PARTS * SMALL_PART)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    dest = tmp_path / "out.bin"
    async with Transferer(bucket.config) as t, anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(t.download, bucket.url("k"), dest)
    assert dest.read_bytes() == data
    assert os.listdir(tmp_path) == ["out.bin"]


# ---------------------------------------------------------------- row 32: the retry budget


async def test_a_failing_store_trips_the_retry_budget_with_one_clear_error(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket = proxied_bucket
    src = tmp_path / "src.bin"
    write_random(src, 40 * SMALL_PART)
    proxy_server.set_rules([{"match": {"operation": "UploadPart"}, "action": "reset_before"}])
    started = time.monotonic()
    async with Transferer(with_config(bucket, max_attempts=30, max_concurrency=16)) as t:
        with pytest.raises(RetryBudgetError, match="retry budget of this session is spent"):
            await t.upload(src, bucket.url("k"))
        stats = t.statistics()
    assert time.monotonic() - started < 60
    # 500 tokens at 5 a retry: 100 retries in all, not 40 parts x 29.
    assert stats.retries == 100
    assert stats.retry_budget is not None and stats.retry_budget.open
    # aiohttp itself sends an idempotent request once more when its connection breaks.
    assert len(proxy_server.requests("UploadPart")) <= 2 * (16 + 100)


# ---------------------------------------------------------------- hedging a late first byte


async def _one_late_range(
    bucket: Bucket, proxy: Proxy, dest: Path, data: bytes, *, delay: float, hedge: bool
) -> tuple[float, EngineStatistics]:
    """Download ``data`` from k; once 24 ranges are in (a basis for the p90), one GET is held
    back ``delay`` seconds by the proxy. The time from then to the end, and the statistics."""
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    async with Transferer(with_config(bucket, max_concurrency=2, hedge=hedge)) as t:
        async with anyio.create_task_group() as tg:
            tg.start_soon(t.download, bucket.url("k"), dest)
            while t.statistics().bytes_received < 24 * SMALL_PART:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            late = {"operation": "GetObject"}
            proxy.set_rules([{"match": late, "times": 1, "action": "delay", "seconds": delay}])
            started = time.monotonic()
        return time.monotonic() - started, t.statistics()


async def test_a_range_whose_first_byte_is_late_is_hedged(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    data = random_bytes(48 * SMALL_PART)
    dest = tmp_path / "out.bin"
    elapsed, stats = await _one_late_range(
        proxied_bucket, proxy_server, dest, data, delay=20.0, hedge=True
    )
    assert dest.read_bytes() == data
    assert elapsed < 10, "the download waited for the held-back range"
    assert stats.hedges >= 1 and stats.hedges_won >= 1
    assert stats.retries == 0
    assert stats.memory.in_use == 0


async def test_without_hedging_the_late_range_is_waited_for(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    data = random_bytes(40 * SMALL_PART)
    dest = tmp_path / "out.bin"
    elapsed, stats = await _one_late_range(
        proxied_bucket, proxy_server, dest, data, delay=2.0, hedge=False
    )
    assert dest.read_bytes() == data
    assert elapsed >= 1.5
    assert stats.hedges == 0


async def test_an_attempt_longer_than_part_timeout_is_retried(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    """A body that trickles without stalling: only the per-attempt timeout catches it."""
    bucket = proxied_bucket
    data = random_bytes(4 * SMALL_PART)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    proxy_server.set_rules(
        [
            {
                "match": {"operation": "GetObject", "header_prefix": "range"},
                "times": 1,
                "action": "slow",
                "chunk_size": 4096,
                "interval": 0.2,
            }
        ]
    )
    dest = tmp_path / "out.bin"
    config = with_config(bucket, part_timeout=1.5, read_timeout=5.0, hedge=False)
    started = time.monotonic()
    async with Transferer(config) as t:
        await t.download(bucket.url("k"), dest)
        stats = t.statistics()
    assert dest.read_bytes() == data
    assert stats.retries == 1
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------- row 26: do not overwrite


@pytest.mark.parametrize("parts", [1, 6])
async def test_an_existing_key_is_not_overwritten_and_nothing_is_sent(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path, parts: int
) -> None:
    bucket = proxied_bucket
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=b"theirs")
    src = tmp_path / "src.bin"
    write_random(src, parts * SMALL_PART)
    async with Transferer(bucket.config) as t:
        with pytest.raises(ObjectExistsError, match="already exists"):
            await t.upload(src, bucket.url("k"), overwrite=False)
    assert bucket.read("k") == b"theirs"
    sent = proxy_server.requests("CreateMultipartUpload", "UploadPart", "PutObject")
    assert sent == []


async def test_a_key_created_during_the_upload_is_not_overwritten(
    proxied_bucket: Bucket, tmp_path: Path
) -> None:
    """The check before the upload passed; another writer wins the race; If-None-Match on
    Complete refuses ours, and the multipart upload is aborted."""
    bucket = proxied_bucket
    src = tmp_path / "src.bin"
    write_random(src, PARTS * SMALL_PART)
    config = with_config(bucket, max_bytes_per_second=6 * SMALL_PART, max_concurrency=2)
    async with Transferer(config) as t, anyio.create_task_group() as tg:

        async def other_writer() -> None:
            while t.statistics().bytes_sent < 2 * SMALL_PART:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            await anyio.to_thread.run_sync(
                lambda: bucket.client.put_object(Bucket=bucket.name, Key="k", Body=b"theirs")
            )

        tg.start_soon(other_writer)
        with pytest.raises(ObjectExistsError):
            await t.upload(src, bucket.url("k"), overwrite=False)
    assert bucket.read("k") == b"theirs"
    assert bucket.open_uploads() == []


# ---------------------------------------------------------------- row 10: the object changes


@pytest.mark.parametrize("restart", [True, False], ids=["restart", "fail"])
async def test_an_object_overwritten_mid_download_is_never_mixed(
    bucket: Bucket, tmp_path: Path, restart: bool
) -> None:
    """If-Match on every range: a 412 says the object changed. By default the download
    starts over once from the new version; with restart_on_change=False it fails. Never a
    file made of both."""
    old, new = random_bytes(PARTS * SMALL_PART, seed=1), random_bytes(PARTS * SMALL_PART, seed=2)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=old)
    dest = tmp_path / "out.bin"
    config = with_config(
        bucket, max_bytes_per_second=6 * SMALL_PART, max_concurrency=2, restart_on_change=restart
    )
    async with Transferer(config) as t, anyio.create_task_group() as tg:

        async def overwrite() -> None:
            while t.statistics().bytes_received < 2 * SMALL_PART:  # noqa: ASYNC110
                await anyio.sleep(0.01)
            await anyio.to_thread.run_sync(
                lambda: bucket.client.put_object(Bucket=bucket.name, Key="k", Body=new)
            )

        tg.start_soon(overwrite)
        if restart:
            result = await t.download(bucket.url("k"), dest)
            assert dest.read_bytes() == new
            assert result.etag == bucket.client.head_object(Bucket=bucket.name, Key="k")["ETag"]
        else:
            with pytest.raises(ObjectChangedError, match="changed during the download"):
                await t.download(bucket.url("k"), dest)
            _no_file(tmp_path)
