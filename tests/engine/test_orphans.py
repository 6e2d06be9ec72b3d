"""Open multipart uploads, listed and aborted against moto (row 29 of the reliability matrix
through the fault proxy). Every abort is checked with boto3 talking to moto directly.

moto reports the same Initiated time for every upload, so the age filter is tested with an
injected ``now`` relative to it, not by telling uploads of different ages apart.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from asynctransfer import NetworkError, NotFoundError, Transferer
from asynctransfer._checkpoints import checkpoint_dir
from asynctransfer._core.checkpoint import SourceIdentity, UploadCheckpoint
from asynctransfer._orphans import abort_upload, abort_uploads, list_uploads

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from datetime import datetime
    from pathlib import Path

    from asynctransfer import TransferConfig
    from asynctransfer._engine import Engine

    from ..conftest import Bucket
    from ..proxy import Proxy

pytestmark = pytest.mark.timeout(60)


def open_upload(bucket: Bucket, key: str) -> str:
    """A multipart upload with one part stored, left open."""
    upload_id: str = bucket.client.create_multipart_upload(Bucket=bucket.name, Key=key)["UploadId"]
    bucket.client.upload_part(
        Bucket=bucket.name, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1000
    )
    return upload_id


def open_ids(bucket: Bucket) -> set[str]:
    return {u["UploadId"] for u in bucket.open_uploads()}


def write_checkpoint(bucket: Bucket, key: str, upload_id: str, *, truncated: bool = False) -> Path:
    data = UploadCheckpoint(
        bucket=bucket.name,
        key=key,
        upload_id=upload_id,
        source_path="/nowhere/src.bin",
        source=SourceIdentity(size=1000, mtime_ns=1, device=1, inode=1),
        size=1000,
        part_size=1000,
        checksum_algorithm="crc32c",
    ).to_json()
    if truncated:  # what a crash mid-write of a non-atomic writer would leave
        data = data[: data.index(b'"source_path"')]
    path = checkpoint_dir() / f"upload-{uuid.uuid4().hex}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@contextlib.asynccontextmanager
async def engine_of(config: TransferConfig) -> AsyncIterator[Engine]:
    async with Transferer(config) as t:
        yield t._require_engine()


async def initiated_of(engine: Engine, bucket: Bucket) -> datetime:
    listed = await list_uploads(engine, f"s3://{bucket.name}")
    assert listed[0].initiated is not None
    return listed[0].initiated


async def test_lists_the_open_uploads_under_a_prefix_with_their_age(bucket: Bucket) -> None:
    ids = {key: open_upload(bucket, key) for key in ("a/one", "a/two", "b/three")}
    async with engine_of(bucket.config) as engine:
        everything = await list_uploads(engine, f"s3://{bucket.name}")
        under_a = await list_uploads(engine, f"s3://{bucket.name}/a/")
        assert {(u.key, u.upload_id) for u in everything} == set(ids.items())
        assert {u.key for u in under_a} == {"a/one", "a/two"}
        assert all(u.bucket == bucket.name and not u.resumable for u in everything)

        now = await initiated_of(engine, bucket) + timedelta(seconds=100)
        dated = await list_uploads(engine, f"s3://{bucket.name}/a/", now=now)
        assert [u.age_seconds for u in dated] == [100.0, 100.0]
        assert len(await list_uploads(engine, f"s3://{bucket.name}", 99, now=now)) == 3
        assert await list_uploads(engine, f"s3://{bucket.name}", 100, now=now) == []

        aborted = await abort_uploads(engine, f"s3://{bucket.name}")
    assert {u.upload_id for u in aborted} == set(ids.values())
    assert open_ids(bucket) == set()


async def test_aborts_by_key_and_id_then_by_age_and_each_is_gone(bucket: Bucket) -> None:
    first, second = open_upload(bucket, "k"), open_upload(bucket, "k")
    other = open_upload(bucket, "other")
    url = f"s3://{bucket.name}"
    async with engine_of(bucket.config) as engine:
        aborted = await abort_uploads(engine, url, key="k", upload_id=first)
        assert [(u.key, u.upload_id) for u in aborted] == [("k", first)]
        assert open_ids(bucket) == {second, other}

        now = await initiated_of(engine, bucket) + timedelta(hours=2)
        assert await abort_uploads(engine, url, older_than=3 * 3600, now=now) == []
        assert open_ids(bucket) == {second, other}
        aborted = await abort_uploads(engine, url, older_than=3600, now=now)
    assert {u.upload_id for u in aborted} == {second, other}
    assert open_ids(bucket) == set()


async def test_an_upload_a_checkpoint_names_is_resumable_and_its_checkpoint_goes_with_it(
    bucket: Bucket,
) -> None:
    whole, damaged, plain = (open_upload(bucket, key) for key in ("whole", "damaged", "plain"))
    whole_path = write_checkpoint(bucket, "whole", whole)
    damaged_path = write_checkpoint(bucket, "damaged", damaged, truncated=True)
    # Same key, another upload id: it resumes nothing listed here and must stay.
    foreign_path = write_checkpoint(bucket, "plain", "not-" + plain)
    try:
        async with engine_of(bucket.config) as engine:
            listed = {u.key: u for u in await list_uploads(engine, f"s3://{bucket.name}")}
            assert listed["whole"].resumable and listed["whole"].checkpoint == str(whole_path)
            assert listed["damaged"].checkpoint == str(damaged_path)
            assert not listed["plain"].resumable and listed["plain"].checkpoint is None

            await abort_uploads(engine, f"s3://{bucket.name}")
        assert open_ids(bucket) == set()
        assert not whole_path.exists() and not damaged_path.exists()
        assert foreign_path.exists()
    finally:
        for path in (whole_path, damaged_path, foreign_path):
            path.unlink(missing_ok=True)


async def test_aborting_an_upload_already_gone_succeeds_but_a_missing_bucket_fails(
    bucket: Bucket,
) -> None:
    upload_id = open_upload(bucket, "k")
    bucket.client.abort_multipart_upload(Bucket=bucket.name, Key="k", UploadId=upload_id)
    async with engine_of(bucket.config) as engine:
        await abort_upload(engine, bucket.name, "k", upload_id)
        url = f"s3://{bucket.name}"
        assert await abort_uploads(engine, url, key="k", upload_id=upload_id) == []
        with pytest.raises(NotFoundError) as caught:
            await abort_upload(engine, f"gone-{bucket.name}", "k", upload_id)
    assert caught.value.code == "NoSuchBucket"


async def test_an_abort_reset_twice_is_retried_and_confirmed(
    proxied_bucket: Bucket, proxy_server: Proxy
) -> None:
    """Row 29. botocore's own retries are off (max_attempts=1). aiohttp resends an idempotent
    request once on a broken connection, and one attempt still fails on two resets: the
    abort's own retry is what succeeds here."""
    bucket = proxied_bucket
    upload_id = open_upload(bucket, "k")
    proxy_server.set_rules(
        [{"match": {"operation": "AbortMultipartUpload"}, "times": 2, "action": "reset_before"}]
    )
    async with engine_of(replace(bucket.config, max_attempts=1)) as engine:
        await abort_upload(engine, bucket.name, "k", upload_id, attempts=3)
    aborts = proxy_server.requests("AbortMultipartUpload")
    assert [e["fault"] for e in aborts] == ["reset_before", "reset_before", None]
    assert [e["status"] for e in proxy_server.requests("ListParts")] == [404]
    assert open_ids(bucket) == set()


async def test_an_abort_that_keeps_failing_names_the_upload_and_keeps_its_checkpoint(
    proxied_bucket: Bucket, proxy_server: Proxy
) -> None:
    bucket = proxied_bucket
    upload_id = open_upload(bucket, "k")
    checkpoint = write_checkpoint(bucket, "k", upload_id)
    proxy_server.set_rules(
        [{"match": {"operation": "AbortMultipartUpload"}, "action": "reset_before"}]
    )
    try:
        async with engine_of(replace(bucket.config, max_attempts=1)) as engine:
            with pytest.raises(NetworkError) as caught:
                await abort_uploads(engine, f"s3://{bucket.name}", key="k", upload_id=upload_id)
            still = await list_uploads(engine, f"s3://{bucket.name}")
        message = str(caught.value)
        assert upload_id in message
        assert f"--key 'k' --upload-id '{upload_id}'" in message
        # One attempt (max_attempts=1), which aiohttp may send twice: it resends an idempotent
        # request once when the connection breaks.
        assert 1 <= len(proxy_server.requests("AbortMultipartUpload")) <= 2
        assert open_ids(bucket) == {upload_id}
        assert [(u.upload_id, u.checkpoint) for u in still] == [(upload_id, str(checkpoint))]
        assert json.loads(checkpoint.read_bytes())["upload_id"] == upload_id
    finally:
        bucket.client.abort_multipart_upload(Bucket=bucket.name, Key="k", UploadId=upload_id)
        checkpoint.unlink(missing_ok=True)


async def test_the_transferer_lists_and_aborts_them(bucket: Bucket) -> None:
    first, second = open_upload(bucket, "a/1"), open_upload(bucket, "b/2")
    async with Transferer(bucket.config) as t:
        assert [u.upload_id for u in await t.list_uploads(f"s3://{bucket.name}/a/")] == [first]
        aborted = await t.abort_uploads(f"s3://{bucket.name}", key="b/2", upload_id=second)
    assert [u.upload_id for u in aborted] == [second]
    assert open_ids(bucket) == {first}
    bucket.client.abort_multipart_upload(Bucket=bucket.name, Key="a/1", UploadId=first)
