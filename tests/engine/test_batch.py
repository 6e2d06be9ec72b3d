"""Many files in one Transferer against a real S3 server: trees, sync, lists, failures."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import TYPE_CHECKING

import anyio
import pytest

from asynctransfer import Event, Transferer

from ..conftest import SMALL_PART, random_bytes

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from ..conftest import Bucket

# Nested, empty, unicode, spaces, one multipart file, names that sort differently as keys
# than as paths ("a-b" < "a/" in key order).
TREE = {
    "top.txt": 100,
    "empty.bin": 0,
    "a/b/c/deep.dat": 3000,
    "a-b": 10,
    "a/x": 20,
    "naïve café/日本語.txt": 777,
    "with space/file name.txt": 5,
    "big/multipart.bin": 3 * SMALL_PART + 123,
}


def make_tree(root: Path, files: dict[str, int] = TREE, seed: int = 0) -> dict[str, bytes]:
    contents = {}
    for i, (name, size) in enumerate(sorted(files.items())):
        path = root.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        data = random_bytes(size, seed=seed + i)
        path.write_bytes(data)
        contents[name] = data
    return contents


def read_tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.endswith(".part")
    }


def keys(bucket: Bucket, prefix: str) -> dict[str, int]:
    pages = bucket.client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket.name, Prefix=prefix
    )
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


async def test_tree_round_trip_is_byte_exact(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src"
    contents = make_tree(src)
    async with Transferer(bucket.config) as t:
        up = await t.copy_tree(src, bucket.url("data/"))
        assert up.ok, up.failures
        assert (up.files, up.bytes) == (len(TREE), sum(TREE.values()))
        assert keys(bucket, "data/") == {f"data/{k}": v for k, v in TREE.items()}
        assert bucket.read("data/big/multipart.bin") == contents["big/multipart.bin"]

        # The prefix without its slash means the same; the destination does not exist yet.
        down = await t.copy_tree(f"s3://{bucket.name}/data", tmp_path / "back")
    assert down.ok, down.failures
    assert down.files == len(TREE)
    assert read_tree(tmp_path / "back") == contents


async def test_filters_last_match_wins(bucket: Bucket, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    filters = [("exclude", "*"), ("include", "*.txt"), ("exclude", "with space/*")]
    async with Transferer(bucket.config) as t:
        result = await t.copy_tree(tmp_path / "src", bucket.url("f/"), filters=filters)
        listed = await _collect(t.tree_jobs(tmp_path / "src", bucket.url("f/"), filters=filters))
    assert result.ok
    assert set(keys(bucket, "f/")) == {"f/top.txt", "f/naïve café/日本語.txt"}
    assert sorted(dest for _, dest in listed) == sorted(
        [bucket.url("f/top.txt"), bucket.url("f/naïve café/日本語.txt")]
    )


async def _collect(pairs: object) -> list[tuple[str, str]]:
    return [pair async for pair in pairs]  # type: ignore[attr-defined]


async def test_sync_up_sends_only_what_differs(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src"
    make_tree(src)
    async with Transferer(bucket.config) as t:
        first = await t.sync(src, bucket.url("s/"))
        assert (first.files, first.skipped) == (len(TREE), 0)
        again = await t.sync(src, bucket.url("s/"))
        assert (again.files, again.skipped, again.bytes) == (0, len(TREE), 0)

        # Same size, other bytes, mtime in the past: only the MD5 can tell (the ETag is one).
        changed = src / "a" / "x"
        old = changed.stat().st_mtime
        changed.write_bytes(random_bytes(20, seed=99))
        os.utime(changed, (old - 3600, old - 3600))
        # And a multipart one: its ETag is an MD5 of parts of this session's part size.
        big = src / "big" / "multipart.bin"
        data = bytearray(big.read_bytes())
        data[-1] ^= 1
        big.write_bytes(bytes(data))
        (src / "new.txt").write_bytes(b"new")
        (src / "top.txt").unlink()
        third = await t.sync(src, bucket.url("s/"), delete=True)
    assert third.ok, third.failures
    assert (third.files, third.deleted, third.skipped) == (3, 1, len(TREE) - 3)
    assert bucket.read("s/a/x") == changed.read_bytes()
    assert bucket.read("s/big/multipart.bin") == bytes(data)
    assert "s/top.txt" not in keys(bucket, "s/")


async def test_sync_down_is_idempotent_and_deletes_only_when_asked(
    bucket: Bucket, tmp_path: Path
) -> None:
    contents = make_tree(tmp_path / "src")
    dest = tmp_path / "dest"
    async with Transferer(bucket.config) as t:
        await t.copy_tree(tmp_path / "src", bucket.url("d/"))
        first = await t.sync(bucket.url("d/"), dest)
        assert (first.files, first.skipped) == (len(TREE), 0)
        assert read_tree(dest) == contents
        again = await t.sync(bucket.url("d/"), dest)
        assert (again.files, again.skipped) == (0, len(TREE))

        (dest / "stray.txt").write_bytes(b"x")
        kept = await t.sync(bucket.url("d/"), dest)
        assert kept.deleted == 0 and (dest / "stray.txt").exists()
        # Excluded files are not deleted either.
        spared = await t.sync(bucket.url("d/"), dest, delete=True, filters=[("exclude", "s*")])
        assert spared.deleted == 0 and (dest / "stray.txt").exists()
        gone = await t.sync(bucket.url("d/"), dest, delete=True)
    assert gone.deleted == 1 and not (dest / "stray.txt").exists()
    assert read_tree(dest) == contents


async def test_failures_are_reported_and_the_rest_go_on(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src"
    contents = make_tree(src, {"ok/1": 10, "ok/2": 20})
    # A name that cannot be a key (not UTF-8).
    fd = os.open(os.path.join(os.fsencode(src), b"bad\xff.txt"), os.O_WRONLY | os.O_CREAT)
    os.write(fd, b"x")
    os.close(fd)
    # Keys that cannot be files under the destination.
    bucket.client.put_object(Bucket=bucket.name, Key="m/../escape", Body=b"evil")
    bucket.client.put_object(Bucket=bucket.name, Key="m//double", Body=b"evil")
    async with Transferer(bucket.config) as t:
        up = await t.copy_tree(src, bucket.url("m/"))
        down = await t.copy_tree(bucket.url("m/"), tmp_path / "back")
        many = await t.copy_many(
            [
                (src / "ok" / "1", bucket.url("many/1")),
                (tmp_path / "missing", bucket.url("many/2")),
                (bucket.url("no/such/key"), tmp_path / "many" / "3"),
                (bucket.url("m/ok/2"), tmp_path / "many" / "4"),
            ]
        )
    assert up.files == 2 and [f.error_type for f in up.failures] == ["InvalidRequestError"]
    assert "UTF-8" in up.failures[0].error
    assert down.files == 2 and read_tree(tmp_path / "back") == contents
    assert sorted(f.src for f in down.failures) == sorted(
        [bucket.url("m//double"), bucket.url("m/../escape")]
    )
    assert not (tmp_path / "escape").exists()
    pairs = [pair async for pair in t2_jobs(bucket, tmp_path)]
    assert sorted(src for src, _ in pairs) == [bucket.url("m/ok/1"), bucket.url("m/ok/2")]
    assert many.files == 2
    assert {f.error_type for f in many.failures} == {"LocalFileError", "NotFoundError"}
    assert all(f.src in f.error or f.dest in f.error for f in many.failures)
    assert (tmp_path / "many" / "4").read_bytes() == contents["ok/2"]
    assert not (tmp_path / "many" / "3").exists()
    assert many.to_dict()["failed"] == 2


async def t2_jobs(bucket: Bucket, tmp_path: Path) -> AsyncIterator[tuple[str, str]]:
    async with Transferer(bucket.config) as t:
        async for pair in t.tree_jobs(bucket.url("m/"), tmp_path / "back2"):
            yield pair


async def test_fail_fast_stops_the_batch(bucket: Bucket, tmp_path: Path) -> None:
    jobs = [(tmp_path / "missing", bucket.url("ff/0"))]
    jobs += [(tmp_path / f"f{i}", bucket.url(f"ff/{i}")) for i in range(1, 200)]
    for i in range(1, 200):
        (tmp_path / f"f{i}").write_bytes(b"x" * 100)
    async with Transferer(bucket.config) as t:
        result = await t.copy_many(jobs, fail_fast=True)
    assert len(result.failures) == 1 and result.files < 199


async def test_list_file_downloads_with_names(bucket: Bucket, tmp_path: Path) -> None:
    bucket.client.put_object(Bucket=bucket.name, Key="l/one.bin", Body=b"1" * 10)
    bucket.client.put_object(Bucket=bucket.name, Key="l/two.bin", Body=b"2" * 20)
    listing = tmp_path / "urls.txt"
    listing.write_text(
        "# datasets\n"
        f"{bucket.url('l/one.bin')}\n"
        "\n"
        f"{bucket.url('l/two.bin')} sub dir/renamed.bin\n"
        f"{bucket.url('l/one.bin')}\n"
        "ftp://example.invalid/x\n"
        f"{bucket.url('l/two.bin')} ../escape\n",
        encoding="utf-8",
    )
    async with Transferer(bucket.config) as t:
        result = await t.copy_list(listing, tmp_path / "out")
    assert result.files == 2
    assert (tmp_path / "out" / "one.bin").read_bytes() == b"1" * 10
    assert (tmp_path / "out" / "sub dir" / "renamed.bin").read_bytes() == b"2" * 20
    errors = sorted(f.error for f in result.failures)
    assert len(errors) == 3
    assert any(":5: an earlier line writes" in e for e in errors)
    assert any(":6: 'ftp://example.invalid/x' is not" in e for e in errors)
    assert any(":7: cannot name a file '../escape'" in e for e in errors)
    assert not (tmp_path / "escape").exists()


async def test_downloaded_files_keep_the_objects_time(bucket: Bucket, tmp_path: Path) -> None:
    bucket.client.put_object(Bucket=bucket.name, Key="t/x", Body=b"x")
    modified = bucket.client.head_object(Bucket=bucket.name, Key="t/x")["LastModified"]
    async with Transferer(bucket.config) as t:
        await t.copy_tree(bucket.url("t/"), tmp_path)
    assert abs((tmp_path / "x").stat().st_mtime - modified.timestamp()) < 1
    assert abs(time.time() - modified.timestamp()) < 600


async def test_missing_source_directory_is_an_error(bucket: Bucket, tmp_path: Path) -> None:
    async with Transferer(bucket.config) as t:
        with pytest.raises(Exception, match="no-such-dir"):
            await t.copy_tree(tmp_path / "no-such-dir", bucket.url("x/"))
        with pytest.raises(Exception, match="one side must be a local directory"):
            await t.copy_tree(bucket.url("x/"), bucket.url("y/"))


async def test_a_big_file_and_small_ones_share_the_limits_side_by_side(
    bucket: Bucket, tmp_path: Path
) -> None:
    sizes = {"big.bin": 12 * SMALL_PART} | {f"small/{i:02d}": 1000 + i for i in range(40)}
    make_tree(tmp_path / "src", sizes)
    finished: dict[str, float] = {}
    peaks = {"in_flight": 0, "memory": 0}
    config = bucket.config
    async with Transferer(config) as t:

        def on_event(event: Event) -> None:
            stats = t.statistics()
            peaks["in_flight"] = max(peaks["in_flight"], stats.in_flight)
            peaks["memory"] = max(peaks["memory"], stats.memory.in_use)
            if event.kind == "finished":
                finished[event.url.rsplit("/", 1)[-1]] = time.monotonic()

        result = await t.copy_tree(tmp_path / "src", bucket.url("side/"), on_event=on_event)
    assert result.ok and result.files == len(sizes)
    small_first = sum(
        1 for name, at in finished.items() if name != "big.bin" and at < finished["big.bin"]
    )
    assert small_first >= 20, small_first  # they did not wait for the big one
    assert peaks["in_flight"] <= config.max_concurrency
    assert peaks["memory"] <= config.memory_budget


async def test_an_interrupted_batch_resumes_each_file_from_its_checkpoint(
    bucket: Bucket, tmp_path: Path
) -> None:
    sizes = {"big.bin": 16 * SMALL_PART + 5, "small.txt": 10}
    contents = make_tree(tmp_path / "src", sizes)
    config = replace(bucket.config, max_concurrency=2)
    async with Transferer(config) as t:
        with anyio.CancelScope() as scope:

            def stop_after_some_parts(event: Event) -> None:
                big = event.kind == "part" and event.url.endswith("big.bin")
                if big and (event.done or 0) >= 4 * SMALL_PART:
                    scope.cancel()

            await t.copy_tree(
                tmp_path / "src",
                bucket.url("resume/"),
                checkpoint=True,
                on_event=stop_after_some_parts,
            )
        assert scope.cancelled_caught
        kept = await t.list_uploads(bucket.url("resume/"))
        assert [(u.key, u.resumable) for u in kept] == [("resume/big.bin", True)]
    async with Transferer(config) as t:
        again = await t.copy_tree(tmp_path / "src", bucket.url("resume/"), checkpoint=True)
        sent = t.statistics().bytes_sent
        assert await t.list_uploads(bucket.url("resume/")) == []
    assert again.ok and again.files == 2
    assert sent <= sizes["big.bin"] - 4 * SMALL_PART + sizes["small.txt"]  # kept parts not resent
    assert bucket.read("resume/big.bin") == contents["big.bin"]
