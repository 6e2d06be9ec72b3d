"""`asynctransfer uploads list|abort` as a user runs it: a real process against moto, real exit
codes and output, every abort checked with boto3."""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING

import pytest

from asynctransfer._checkpoints import checkpoint_dir
from asynctransfer._cli_uploads import format_age, parse_duration

from .test_cli import run_cli

if TYPE_CHECKING:
    import subprocess

    from .conftest import Bucket


def uploads(bucket: Bucket, action: str, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    assert bucket.config.endpoint_url is not None
    return run_cli("uploads", action, url, "--endpoint-url", bucket.config.endpoint_url, *args)


def open_upload(bucket: Bucket, key: str) -> str:
    upload_id: str = bucket.client.create_multipart_upload(Bucket=bucket.name, Key=key)["UploadId"]
    return upload_id


def open_ids(bucket: Bucket) -> set[str]:
    return {u["UploadId"] for u in bucket.open_uploads()}


def test_list_in_json_and_text_marks_the_resumable_one(bucket: Bucket) -> None:
    kept, other = open_upload(bucket, "dir/kept"), open_upload(bucket, "dir/other")
    open_upload(bucket, "elsewhere")
    checkpoint = checkpoint_dir() / f"upload-{uuid.uuid4().hex}.json"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    doc = {"bucket": bucket.name, "key": "dir/kept", "upload_id": kept}
    checkpoint.write_text(json.dumps(doc))
    try:
        result = uploads(bucket, "list", f"s3://{bucket.name}/dir/", "--json")
        assert result.returncode == 0, result.stderr
        records = {r["key"]: r for r in json.loads(result.stdout)}
        assert set(records) == {"dir/kept", "dir/other"}
        assert records["dir/kept"]["upload_id"] == kept
        assert records["dir/kept"]["resumable"] is True
        assert records["dir/kept"]["checkpoint"] == str(checkpoint)
        assert records["dir/other"]["resumable"] is False
        assert records["dir/other"]["initiated"] is not None
        assert records["dir/other"]["age_seconds"] is not None

        text = uploads(bucket, "list", f"s3://{bucket.name}/dir/")
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        assert len(lines) == 2
        line = next(line for line in lines if line.startswith("dir/kept  "))
        assert kept in line and line.endswith(f"resumable: {checkpoint}")
        assert any(other in line and "resumable" not in line for line in lines)

        young = uploads(bucket, "list", f"s3://{bucket.name}", "--older-than", "100000d")
        assert young.returncode == 0, young.stderr
        assert young.stdout == f"no open multipart uploads under s3://{bucket.name}\n"

        aborted = uploads(bucket, "abort", f"s3://{bucket.name}", "--all")
        assert aborted.returncode == 0, aborted.stderr
        keys = sorted(line.split("  ")[0] for line in aborted.stdout.splitlines())
        assert keys == ["aborted dir/kept", "aborted dir/other", "aborted elsewhere"]
        assert open_ids(bucket) == set()
        assert not checkpoint.exists()
    finally:
        checkpoint.unlink(missing_ok=True)


def test_abort_by_key_and_upload_id_in_json(bucket: Bucket) -> None:
    target, spared = open_upload(bucket, "k"), open_upload(bucket, "k")
    result = uploads(
        bucket, "abort", f"s3://{bucket.name}", "--key", "k", "--upload-id", target, "--json"
    )
    assert result.returncode == 0, result.stderr
    assert [(r["key"], r["upload_id"]) for r in json.loads(result.stdout)] == [("k", target)]
    assert open_ids(bucket) == {spared}

    young = uploads(bucket, "abort", f"s3://{bucket.name}", "--older-than", "100000d", "--json")
    assert (young.returncode, young.stdout) == (0, "[]\n")
    assert open_ids(bucket) == {spared}
    bucket.client.abort_multipart_upload(Bucket=bucket.name, Key="k", UploadId=spared)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "pass --older-than AGE (e.g. 24h), --key K --upload-id ID, or --all"),
        (["--key", "k"], "--key and --upload-id go together"),
        (["--all", "--older-than", "1h"], "--all takes no other filter"),
    ],
)
def test_abort_without_a_proper_filter_is_refused(
    bucket: Bucket, args: list[str], message: str
) -> None:
    upload_id = open_upload(bucket, "k")
    result = uploads(bucket, "abort", f"s3://{bucket.name}", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert open_ids(bucket) == {upload_id}
    bucket.client.abort_multipart_upload(Bucket=bucket.name, Key="k", UploadId=upload_id)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("/tmp/bucket", "is not an s3:// URL"),
        ("https://host/bucket", "is not an s3:// URL"),
        ("s3://", "names no bucket"),
        ("s3://a/", "'a' is not a valid bucket name"),
    ],
)
def test_a_bad_url_is_a_usage_error(url: str, message: str) -> None:
    result = run_cli("uploads", "list", url)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_bad_duration_is_a_usage_error() -> None:
    result = run_cli("uploads", "abort", "s3://bucket", "--older-than", "5y")
    assert result.returncode == 2
    assert "invalid duration '5y'" in result.stderr


def test_a_missing_bucket_fails_with_one_line(bucket: Bucket) -> None:
    result = uploads(bucket, "list", f"s3://no-{bucket.name}")
    assert result.returncode == 1
    assert result.stderr.startswith("asynctransfer: error: ")
    assert "NoSuchBucket" in result.stderr
    assert len(result.stderr.splitlines()) == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("1.5h", 5400), ("600", 600)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "h", "5y", "-1h", "1h30m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.4, "0s"), (59, "59s"), (750, "12m30s"), (7500, "2h5m"), (273600, "3d4h")],
)
def test_format_age(seconds: float | None, text: str) -> None:
    assert format_age(seconds) == text
