"""``asynctransfer cp -r``, ``sync`` and ``cp --from-list`` as a user runs them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .engine.test_batch import TREE, make_tree, read_tree
from .test_cli import common, run_cli

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import Bucket


def test_cp_recursive_round_trip_with_filters(bucket: Bucket, tmp_path: Path) -> None:
    contents = make_tree(tmp_path / "src")
    up = run_cli("cp", "-r", str(tmp_path / "src"), bucket.url("r/"), *common(bucket), "--json")
    assert up.returncode == 0, up.stderr
    record = json.loads(up.stdout)
    assert (record["files"], record["failed"], record["ok"]) == (len(TREE), 0, True)

    down = run_cli(
        "cp", "-r", bucket.url("r"), str(tmp_path / "back"), *common(bucket),
        "--exclude", "*", "--include", "a/*", "--exclude", "a/b/*",
    )  # fmt: skip
    assert down.returncode == 0, down.stderr
    assert "copied 1 file(s)" in down.stdout and "failed 0" in down.stdout
    assert read_tree(tmp_path / "back") == {"a/x": contents["a/x"]}


def test_sync_twice_sends_nothing_the_second_time(bucket: Bucket, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    args = ("sync", str(tmp_path / "src"), bucket.url("s/"), *common(bucket), "--json")
    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["files"] == len(TREE)
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    record = json.loads(second.stdout)
    assert (record["files"], record["skipped"], record["bytes"]) == (0, len(TREE), 0)


def test_failures_are_listed_and_exit_1(bucket: Bucket, tmp_path: Path) -> None:
    bucket.client.put_object(Bucket=bucket.name, Key="f/good", Body=b"good")
    listing = tmp_path / "list.txt"
    listing.write_text(f"{bucket.url('f/good')}\n{bucket.url('f/missing')}\n", encoding="utf-8")
    done = run_cli("cp", "--from-list", str(listing), str(tmp_path / "out"), *common(bucket))
    assert done.returncode == 1
    assert "copied 1 file(s)" in done.stdout and "failed 1" in done.stdout
    assert f"failed: {bucket.url('f/missing')}" in done.stderr
    assert (tmp_path / "out" / "good").read_bytes() == b"good"

    as_json = run_cli(
        "cp", "--from-list", str(listing), str(tmp_path / "out2"), *common(bucket), "--json"
    )
    record = json.loads(as_json.stdout)
    assert as_json.returncode == 1
    assert [f["error_type"] for f in record["failures"]] == ["NotFoundError"]


def test_batch_usage_errors(bucket: Bucket, tmp_path: Path) -> None:
    for args, message in (
        (["cp", str(tmp_path), bucket.url("k"), "--include", "*"], "go with -r"),
        (["cp", "-r", str(tmp_path), bucket.url("k/"), "--checkpoint", "x"], "applies to one"),
        (["cp", "--from-list", "l.txt", "a", "b"], "give only the directory"),
        (["sync", bucket.url("a/"), bucket.url("b/")], "one side must be a local directory"),
    ):
        done = run_cli(*args, *common(bucket))
        assert done.returncode == 1, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
