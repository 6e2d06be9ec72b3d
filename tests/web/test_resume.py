"""Resuming an interrupted URL download (row 15 of the reliability matrix, HTTP side): the
version is checked through the first response's validator, only missing ranges are fetched, and
a resource that changed meanwhile is fetched from the start."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import anyio

from asynctransfer import TransferConfig, Transferer

from ..conftest import SMALL_MIN_PART, random_bytes

if TYPE_CHECKING:
    from pathlib import Path

    from .conftest import HttpOrigin

PART = 128 * 1024
SIZE = 24 * PART + 99


def _config(**changes: Any) -> TransferConfig:
    fields: dict[str, Any] = {
        "part_size": PART,
        "min_part_size": SMALL_MIN_PART,
        "max_concurrency": 2,
        **changes,
    }
    return TransferConfig(**fields)


def _ranges_in(checkpoint: Path) -> int:
    try:
        return len(json.loads(checkpoint.read_bytes())["ranges"])
    except (OSError, ValueError, KeyError):
        return 0


async def _interrupt(url: str, dest: Path, checkpoint: Path) -> None:
    async with Transferer(_config(max_bytes_per_second=6 * PART)) as t:
        with anyio.move_on_after(20) as deadline:
            async with anyio.create_task_group() as tg:
                tg.start_soon(lambda: t.download(url, dest, checkpoint=checkpoint))
                while _ranges_in(checkpoint) < 5:  # noqa: ASYNC110 (polls a file)
                    await anyio.sleep(0.02)
                tg.cancel_scope.cancel()
        assert not deadline.cancelled_caught, "the download never got going"
    assert dest.name not in os.listdir(dest.parent)


async def test_an_interrupted_url_download_fetches_only_the_missing_ranges(
    http_origin: HttpOrigin, tmp_path: Path
) -> None:
    data = random_bytes(SIZE, seed=5)
    url = http_origin.put("resume.bin", data)
    dest, checkpoint = tmp_path / "out.bin", tmp_path / "down.json"
    await _interrupt(url, dest, checkpoint)
    recorded = _ranges_in(checkpoint)
    http_origin.reset()

    async with Transferer(_config()) as t:
        result = await t.download(url, dest, checkpoint=checkpoint)

    assert dest.read_bytes() == data
    assert result.reused_parts >= recorded - 1  # range 1 comes again with the first response
    gets = [e for e in http_origin.log() if e["method"] == "GET"]
    # The first response (range 1), then every range of 2..25 not reused.
    assert len(gets) == 1 + 24 - result.reused_parts
    assert not checkpoint.exists()
    assert os.listdir(tmp_path) == ["out.bin"]


async def test_a_url_that_changed_meanwhile_is_fetched_from_the_start(
    http_origin: HttpOrigin, tmp_path: Path
) -> None:
    url = http_origin.put("changing.bin", random_bytes(SIZE, seed=6))
    dest, checkpoint = tmp_path / "out.bin", tmp_path / "down.json"
    await _interrupt(url, dest, checkpoint)
    data = random_bytes(SIZE, seed=7)
    http_origin.put("changing.bin", data)

    async with Transferer(_config()) as t:
        result = await t.download(url, dest, checkpoint=checkpoint)

    assert dest.read_bytes() == data
    assert result.reused_parts == 0
    assert os.listdir(tmp_path) == ["out.bin"]
