"""``asynctransfer serve`` as a process: its one ready line, signals, exit codes, and a store
that survives a restart."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from asynctransfer.testing import local_s3_process

from ..conftest import SMALL_MIN_PART
from .conftest import client, error, threaded_s3

if TYPE_CHECKING:
    from pathlib import Path


def test_store_survives_a_restart(tmp_path: Path) -> None:
    root = tmp_path / "root"
    part = os.urandom(SMALL_MIN_PART)
    with (
        threaded_s3(root, min_part_size=SMALL_MIN_PART) as url,
        contextlib.closing(client(url)) as c,
    ):
        c.create_bucket(Bucket="bkt")
        c.put_object(Bucket="bkt", Key="a/single", Body=b"single", Metadata={"m": "1"})
        done = c.create_multipart_upload(Bucket="bkt", Key="multi")["UploadId"]
        etags = [
            c.upload_part(Bucket="bkt", Key="multi", UploadId=done, PartNumber=n, Body=part)["ETag"]
            for n in (1, 2)
        ]
        c.complete_multipart_upload(
            Bucket="bkt",
            Key="multi",
            UploadId=done,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in zip((1, 2), etags, strict=True)]
            },
        )
        open_id = c.create_multipart_upload(Bucket="bkt", Key="pending")["UploadId"]
        pending = c.upload_part(
            Bucket="bkt", Key="pending", UploadId=open_id, PartNumber=1, Body=b"half"
        )["ETag"]
    assert not list((root / ".tmp").iterdir()), "the server cleans its temp directory"

    with (
        local_s3_process(root, min_part_size=SMALL_MIN_PART) as server,
        contextlib.closing(client(server.endpoint_url)) as c,
    ):
        assert [b["Name"] for b in c.list_buckets()["Buckets"]] == ["bkt"]
        single = c.get_object(Bucket="bkt", Key="a/single")
        assert (single["Body"].read(), single["Metadata"]) == (b"single", {"m": "1"})
        multi = c.get_object(Bucket="bkt", Key="multi", PartNumber=2)
        assert (multi["PartsCount"], multi["Body"].read()) == (2, part)
        uploads = c.list_multipart_uploads(Bucket="bkt")["Uploads"]
        assert [(u["Key"], u["UploadId"]) for u in uploads] == [("pending", open_id)]
        parts = c.list_parts(Bucket="bkt", Key="pending", UploadId=open_id)["Parts"]
        assert [(p["PartNumber"], p["ETag"]) for p in parts] == [(1, pending)]
        c.complete_multipart_upload(
            Bucket="bkt",
            Key="pending",
            UploadId=open_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": pending}]},
        )
        assert c.get_object(Bucket="bkt", Key="pending")["Body"].read() == b"half"


def test_serve_announces_itself_and_stops_on_signals(tmp_path: Path) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "asynctransfer",
                "serve",
                "--root",
                str(tmp_path),
                "--port",
                "0",
                *(["--no-fsync"] if signum == signal.SIGTERM else []),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        assert int(line.rsplit(":", 1)[1]) > 0
        process.send_signal(signum)
        out, err = process.communicate(timeout=20)
        assert process.returncode == 0, err
        assert out == ""
        assert "accepting requests with any credentials" in err


def test_serve_usage_errors(tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "asynctransfer", "serve", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    half = run("--root", str(tmp_path), "--access-key", "k")
    assert half.returncode == 2
    assert "go together" in half.stderr
    assert run("--root", str(tmp_path), "--max-body", "lots").returncode == 2
    assert run().returncode == 2  # --root is required


def test_process_with_credentials(tmp_path: Path) -> None:
    with local_s3_process(tmp_path, access_key="k1", secret_key="s1") as server:
        with contextlib.closing(client(server.endpoint_url)) as anyone:
            assert error(anyone.list_buckets) == (403, "InvalidAccessKeyId")
        with contextlib.closing(client(server.endpoint_url, key="k1", secret="s1")) as owner:
            assert owner.list_buckets()["Buckets"] == []


def test_process_that_cannot_start(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RuntimeError, match="did not start"), local_s3_process(blocker):
        pass
