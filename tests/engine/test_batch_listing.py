"""Walks and listings are streamed: memory does not grow with the number of files, and a
listing of several pages (1,000 keys each) comes whole and in order."""

from __future__ import annotations

import tracemalloc
from typing import TYPE_CHECKING

import pytest

from asynctransfer import TransferConfig, Transferer
from asynctransfer.testing import local_s3_process

from ..conftest import s3_client

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from asynctransfer.testing import LocalS3Process

    from ..conftest import Bucket


def _touch_tree(root: Path, count: int) -> None:
    for i in range(count):
        directory = root / f"d{i // 500:03d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{i:05d}").touch()


async def test_walking_a_tree_holds_no_more_for_more_files(bucket: Bucket, tmp_path: Path) -> None:
    counts = {"small": 2_000, "large": 10_000}
    for name, count in counts.items():
        _touch_tree(tmp_path / name, count)
    peaks = {}
    async with Transferer(bucket.config) as t:
        for name, count in counts.items():
            tracemalloc.start()
            try:
                seen = 0
                async for _ in t.tree_jobs(tmp_path / name, bucket.url(f"{name}/")):
                    seen += 1
                peaks[name] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert seen == count
    # Holding 8,000 more (src, dest) pairs would add well over 1 MB to the peak.
    assert peaks["large"] < peaks["small"] + 256 * 1024, peaks


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalS3Process]:
    with local_s3_process(tmp_path_factory.mktemp("s3")) as process:
        yield process


async def test_a_listing_of_several_pages_syncs_whole(
    server: LocalS3Process, tmp_path: Path
) -> None:
    count = 1_050  # two pages
    _touch_tree(tmp_path / "src", count)
    s3_client(server.endpoint_url).create_bucket(Bucket="pages")
    config = TransferConfig(endpoint_url=server.endpoint_url, max_concurrency=16)
    async with Transferer(config) as t:
        up = await t.copy_tree(tmp_path / "src", "s3://pages/p/")
        assert (up.files, up.failures) == (count, [])
        listed = [src async for src, _ in t.tree_jobs("s3://pages/p/", tmp_path / "back")]
        assert listed == sorted(listed) and len(listed) == count
        down = await t.sync("s3://pages/p/", tmp_path / "back")
        again = await t.sync(tmp_path / "src", "s3://pages/p/")
    assert (down.files, again.files, again.skipped) == (count, 0, count)
