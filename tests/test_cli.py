"""`asynctransfer cp` as a user runs it: a real process, real exit codes, real output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import xxhash

from .conftest import write_random

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Bucket


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asynctransfer", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=os.environ.copy(),
    )


def common(bucket: Bucket) -> list[str]:
    assert bucket.config.endpoint_url is not None
    return ["--endpoint-url", bucket.config.endpoint_url]


def test_cp_up_and_down_with_json(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    data = write_random(src, 3 * 5 * 1024 * 1024 + 17)
    up = run_cli("cp", str(src), bucket.url("k"), *common(bucket), "--part-size", "5MiB", "--json")
    assert up.returncode == 0, up.stderr
    record = json.loads(up.stdout)
    assert record["bytes"] == len(data)
    assert record["parts"] == 4
    assert record["xxh3_128"] == xxhash.xxh3_128_hexdigest(data)
    assert record["etag"].endswith('-4"')
    assert record["seconds"] > 0

    dest = tmp_path / "back.bin"
    down = run_cli(
        "cp", bucket.url("k"), str(dest), *common(bucket), "--concurrency", "3", "--json"
    )
    assert down.returncode == 0, down.stderr
    assert dest.read_bytes() == data
    assert json.loads(down.stdout)["xxh3_128"] == record["xxh3_128"]


def test_cp_human_output_and_options(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    data = write_random(src, 2 * 5 * 1024 * 1024)
    result = run_cli(
        "cp",
        str(src),
        bucket.url("k"),
        *common(bucket),
        "--checksum",
        "md5",
        "--max-memory",
        "20MiB",
        "--rate-limit",
        "1GB/s",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"upload: {src} -> {bucket.url('k')}")
    assert bucket.read("k") == data


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--part-size", "5XB"], "invalid size '5XB'"),
        (["--rate-limit", "fast"], "invalid rate 'fast'"),
        (["--checksum", "sha1"], "invalid choice: 'sha1'"),
        (["--concurrency", "many"], "invalid int value"),
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    result = run_cli("cp", str(tmp_path / "x"), "s3://b/k", *args)
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    ("make_args", "message"),
    [
        (lambda p, b: [str(p / "missing"), b.url("k")], "missing: cannot open the source file"),
        (lambda p, b: [str(p), b.url("k")], "is a directory"),
        (lambda p, b: [b.url("no/such/key"), str(p / "out")], "no such key 'no/such/key'"),
        (lambda p, b: [str(p / "f"), "gs://bucket/key"], "unsupported URL scheme 'gs'"),
        (lambda p, b: [str(p / "f"), str(p / "g")], "one side must be a local path"),
        (lambda p, b: ["--part-size", "1MiB", str(p / "f"), b.url("k")], "part_size 1048576"),
        (lambda p, b: ["--concurrency", "0", str(p / "f"), b.url("k")], "max_concurrency"),
        (lambda p, b: [str(p / "f"), "s3://no-such-bucket-9/k"], "no-such-bucket-9"),
    ],
    ids=[
        "missing-source",
        "directory-source",
        "missing-key",
        "unknown-scheme",
        "local-to-local",
        "part-too-small",
        "zero-concurrency",
        "missing-bucket",
    ],
)
def test_failures_exit_1_with_one_line(
    bucket: Bucket, tmp_path: Path, make_args: object, message: str
) -> None:
    write_random(tmp_path / "f", 10)
    args = make_args(tmp_path, bucket)  # type: ignore[operator]
    result = run_cli("cp", *args, *common(bucket))
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asynctransfer: error: ")
    assert message in lines[0]
    assert result.stdout == ""


def test_cli_runs_on_uvloop(bucket: Bucket, tmp_path: Path) -> None:
    """The CLI runs on uvloop when installed; a multi-part transfer still round-trips."""
    pytest.importorskip("uvloop")
    src = tmp_path / "src.bin"
    data = write_random(src, 3 * 5 * 1024 * 1024)
    up = run_cli("cp", str(src), bucket.url("k"), *common(bucket), "--part-size", "5MiB", "-v")
    assert up.returncode == 0, up.stderr
    assert "event loop: uvloop" in up.stderr
    assert bucket.read("k") == data
