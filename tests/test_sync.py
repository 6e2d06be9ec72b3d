"""The blocking twin, ``asynctransfer.sync``: the same verbs with the same signatures and docs,
working from a plain script, from a worker thread, and on a thread whose event loop is running
(what a Jupyter cell is); Ctrl-C cancels cleanly."""

from __future__ import annotations

import inspect
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

import asynctransfer
from asynctransfer import sync

from .conftest import SMALL_MIN_PART, SMALL_PART, random_bytes, write_random

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Bucket


def test_the_twin_mirrors_the_async_verbs_name_for_name() -> None:
    for name in ("upload", "download"):
        mine, theirs = getattr(sync, name), getattr(asynctransfer, name)
        assert inspect.signature(mine) == inspect.signature(theirs)
        assert mine.__doc__ == theirs.__doc__
    public = {n for n in dir(asynctransfer.Transferer) if not n.startswith("_")}
    assert public <= {n for n in dir(sync.Transferer) if not n.startswith("_")}
    for name in (
        "upload",
        "download",
        "list_uploads",
        "abort_uploads",
        "copy_tree",
        "sync",
        "copy_many",
        "copy_list",
    ):
        mine, theirs = getattr(sync.Transferer, name), getattr(asynctransfer.Transferer, name)
        assert inspect.signature(mine) == inspect.signature(theirs)
        assert mine.__doc__ == theirs.__doc__
    # An iterator of chunks instead of an async one: the same parameters.
    for name in ("open_read", "tree_jobs"):
        mine, theirs = getattr(sync.Transferer, name), getattr(asynctransfer.Transferer, name)
        assert inspect.signature(mine).parameters == inspect.signature(theirs).parameters


def test_a_session_from_a_plain_thread(bucket: Bucket, tmp_path: Path) -> None:
    src, dest = tmp_path / "src.bin", tmp_path / "dest.bin"
    data = write_random(src, 5 * SMALL_PART + 3)
    with sync.Transferer(bucket.config) as t:
        up = t.upload(src, bucket.url("k"))
        down = t.download(bucket.url("k"), dest)
        stats = t.statistics()
        assert t.list_uploads(f"s3://{bucket.name}") == []
    assert dest.read_bytes() == data
    assert up.xxh3_128 == down.xxh3_128
    assert stats.bytes_sent == len(data) and stats.memory.in_use == 0
    with pytest.raises(RuntimeError, match=r"inside `with sync\.Transferer"):
        t.upload(src, bucket.url("k"))


def test_from_worker_threads_at_once(bucket: Bucket, tmp_path: Path) -> None:
    data = random_bytes(4 * SMALL_PART)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    errors: list[BaseException] = []

    def fetch(i: int) -> None:
        try:
            sync.download(bucket.url("k"), tmp_path / f"{i}.bin", config=bucket.config)
        except BaseException as exc:  # noqa: BLE001  (reported by the assertion below)
            errors.append(exc)

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert all((tmp_path / f"{i}.bin").read_bytes() == data for i in range(3))


async def test_on_a_thread_whose_loop_is_running(bucket: Bucket, tmp_path: Path) -> None:
    """A Jupyter cell: a blocking call on the thread of a running event loop."""
    src, dest = tmp_path / "src.bin", tmp_path / "dest.bin"
    data = write_random(src, 3 * SMALL_PART)
    sync.upload(src, bucket.url("k"), config=bucket.config)
    sync.download(bucket.url("k"), dest, config=bucket.config)
    assert dest.read_bytes() == data


_SCRIPT = """
import json, sys
from asynctransfer import TransferConfig, sync
options = json.loads(sys.argv[1])
config = TransferConfig(**options.pop("config"))
result = sync.upload(options["src"], options["dest"], config=config, checkpoint=options["checkpoint"])
print(json.dumps({"xxh3": result.xxh3_128}))
"""


def _script(
    bucket: Bucket, src: Path, *, checkpoint: Any, rate: int | None
) -> subprocess.Popen[str]:
    options = {
        "src": str(src),
        "dest": bucket.url("k"),
        "checkpoint": checkpoint,
        "config": {
            "endpoint_url": bucket.config.endpoint_url,
            "part_size": SMALL_PART,
            "min_part_size": SMALL_MIN_PART,
            "max_concurrency": 2,
            "max_bytes_per_second": rate,
        },
    }
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, json.dumps(options)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )


def test_from_a_plain_script(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src.bin"
    data = write_random(src, 4 * SMALL_PART + 1)
    child = _script(bucket, src, checkpoint=None, rate=None)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert bucket.read("k") == data
    assert json.loads(out)["xxh3"]


@pytest.mark.parametrize("resume", [False, True], ids=["abort", "keep"])
def test_ctrl_c_cancels_the_transfer_and_cleans_up(
    bucket: Bucket, tmp_path: Path, resume: bool
) -> None:
    src = tmp_path / "src.bin"
    write_random(src, 24 * SMALL_PART)
    checkpoint = str(tmp_path / "up.json") if resume else None
    child = _script(bucket, src, checkpoint=checkpoint, rate=4 * SMALL_PART)
    deadline = time.monotonic() + 30
    while not bucket.open_uploads():
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode != 0
    assert "KeyboardInterrupt" in err
    uploads = bucket.open_uploads()
    if not resume:
        assert uploads == [], "Ctrl-C left the multipart upload open"
        return
    assert len(uploads) == 1, "the upload was not kept for resume"
    assert (tmp_path / "up.json").exists()
    bucket.client.abort_multipart_upload(
        Bucket=bucket.name, Key="k", UploadId=uploads[0]["UploadId"]
    )


def test_batches_from_a_plain_thread(bucket: Bucket, tmp_path: Path) -> None:
    for name in ("a/1", "a/2", "b"):
        path = tmp_path.joinpath("src", *name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())
    with sync.Transferer(bucket.config) as t:
        pairs = list(t.tree_jobs(tmp_path / "src", bucket.url("tw/")))
        early = t.tree_jobs(tmp_path / "src", bucket.url("tw/"))
        assert next(early)[0].endswith("1")
        early.close()  # left early: the listing is closed on the loop
        result = t.copy_tree(tmp_path / "src", bucket.url("tw/"))
        again = t.sync(tmp_path / "src", bucket.url("tw/"))
    assert [dest for _, dest in pairs] == [bucket.url(k) for k in ("tw/a/1", "tw/a/2", "tw/b")]
    assert (result.files, again.files, again.skipped) == (3, 0, 3)
    assert bucket.read("tw/a/2") == b"a/2"
