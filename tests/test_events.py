"""The event stream and the progress reporters: what a hook sees of an upload and a download
(bytes acknowledged, retries, the end), the JSON lines of ``--events``, and the bars."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import struct
import subprocess
import sys
import termios
from typing import TYPE_CHECKING

import pytest

import asynctransfer
from asynctransfer import Transferer, TransferError
from asynctransfer.progress import JsonLines, RichProgress, TqdmProgress

from .conftest import SMALL_PART, write_random
from .test_cli import run_cli

if TYPE_CHECKING:
    from pathlib import Path

    from asynctransfer._events import Event, EventHook

    from .conftest import Bucket
    from .proxy import Proxy


def _check_stream(events: list[Event], size: int, parts: int) -> None:
    kinds = [e.kind for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished"
    assert events[0].total == size and events[0].parts == parts
    done = [e for e in events if e.kind == "part"]
    assert sorted(e.part or 0 for e in done) == list(range(1, parts + 1))
    assert sum(e.nbytes or 0 for e in done) == size
    progress = [e.done or 0 for e in done]
    assert progress == sorted(progress)  # never backwards
    assert events[-1].done == size


async def test_a_hook_sees_every_acknowledged_part_and_the_retries(
    proxied_bucket: Bucket, proxy_server: Proxy, tmp_path: Path
) -> None:
    bucket = proxied_bucket
    src, dest = tmp_path / "src.bin", tmp_path / "dest.bin"
    size = 6 * SMALL_PART + 7
    write_random(src, size)
    proxy_server.set_rules(
        [
            {
                "match": {"operation": "UploadPart", "query": {"partNumber": "3"}},
                "times": 1,
                "action": "status",
                "status": 500,
                "code": "InternalError",
            }
        ]
    )
    up: list[Event] = []
    down: list[Event] = []
    async with Transferer(bucket.config) as t:
        await t.upload(src, bucket.url("k"), on_event=up.append)
        await t.download(bucket.url("k"), dest, on_event=down.append)
    _check_stream(up, size, 7)
    retries = [e for e in up if e.kind == "retry"]
    assert len(retries) == 1 and "InternalError" in (retries[0].error or "")
    assert up[-1].retries == 1
    _check_stream(down, size, 7)
    assert {e.direction for e in up} == {"upload"} and {e.direction for e in down} == {"download"}


async def test_a_failure_is_the_last_event(bucket: Bucket, tmp_path: Path) -> None:
    events: list[Event] = []
    with pytest.raises(TransferError):
        await asynctransfer.download(
            bucket.url("missing"), tmp_path / "x", config=bucket.config, on_event=events.append
        )
    assert events[-1].kind == "failed" and "NotFoundError" in (events[-1].error or "")


async def test_a_hook_that_raises_does_not_break_the_transfer(
    bucket: Bucket, tmp_path: Path
) -> None:
    src = tmp_path / "src.bin"
    data = write_random(src, 3 * SMALL_PART)

    def broken(event: Event) -> None:
        raise RuntimeError("a bug in the caller's hook")

    await asynctransfer.upload(src, bucket.url("k"), config=bucket.config, on_event=broken)
    assert bucket.read("k") == data


async def test_reporters_draw_and_write(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    size = 4 * SMALL_PART
    write_random(src, size)
    bar, lines = io.StringIO(), io.StringIO()
    reporters: list[EventHook] = [TqdmProgress(file=bar), JsonLines(lines), RichProgress()]

    def all_of(event: Event) -> None:
        for reporter in reporters:
            reporter(event)

    await asynctransfer.upload(src, bucket.url("k"), config=bucket.config, on_event=all_of)
    assert "100%" in bar.getvalue()
    records = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert records[0]["kind"] == "started" and records[-1]["kind"] == "finished"
    assert records[-1]["done"] == size


def test_cli_events_are_json_lines_on_stderr(bucket: Bucket, tmp_path: Path) -> None:
    assert bucket.config.endpoint_url is not None
    src = tmp_path / "src.bin"
    size = 2 * 5 * 1024 * 1024 + 1
    write_random(src, size)
    done = run_cli(
        "cp",
        str(src),
        bucket.url("k"),
        "--endpoint-url",
        bucket.config.endpoint_url,
        "--part-size",
        "5MiB",
        "--events",
    )
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    assert [r["kind"] for r in records] == ["started", "part", "part", "part", "finished"]
    assert records[-1]["done"] == size
    assert "upload:" in done.stdout  # the report stays on stdout


def _stderr_on_a_terminal(*args: str) -> str:
    """What ``asynctransfer ARGS`` writes to stderr when stderr is a terminal."""
    primary, secondary = pty.openpty()
    # A terminal of 100 columns (a new pty has none, and tqdm would draw nothing).
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        done = subprocess.run(
            [sys.executable, "-m", "asynctransfer", *args],
            stdout=subprocess.PIPE,
            stderr=secondary,
            timeout=60,
            check=False,
            env={**os.environ, "TERM": "xterm"},
        )
        assert done.returncode == 0
        os.close(secondary)
        secondary = -1
        out = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the other side is closed and drained
                break
            if not chunk:
                break
            out += chunk
        return out.decode(errors="replace")
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)


def test_cli_draws_a_bar_on_a_terminal_and_not_with_quiet(bucket: Bucket, tmp_path: Path) -> None:
    assert bucket.config.endpoint_url is not None
    src = tmp_path / "src.bin"
    write_random(src, 2 * 5 * 1024 * 1024)
    args = ("cp", str(src), bucket.url("k"), "--endpoint-url", bucket.config.endpoint_url)
    drawn = _stderr_on_a_terminal(*args, "--part-size", "5MiB")
    assert "100%" in drawn
    assert _stderr_on_a_terminal(*args, "--part-size", "5MiB", "--quiet") == ""


def test_cli_draws_one_bar_for_a_batch(bucket: Bucket, tmp_path: Path) -> None:
    assert bucket.config.endpoint_url is not None
    (tmp_path / "tree").mkdir()
    for i in range(5):
        write_random(tmp_path / "tree" / f"f{i}", 1000 + i)
    drawn = _stderr_on_a_terminal(
        "cp", "-r", str(tmp_path / "tree"), bucket.url("bar/"),
        "--endpoint-url", bucket.config.endpoint_url,
    )  # fmt: skip
    assert "files=5" in drawn and "failed=0" in drawn
