"""Streams for services: an upload from bytes as they come (an async iterable, or an object
with an async read), of unknown length, within the memory budget; a download as an async
iterator of chunks in order (and its blocking twin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest
import xxhash

from asynctransfer import NotFoundError, Transferer, sync

from ..conftest import SMALL_PART, random_bytes, with_config

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from ..conftest import Bucket


async def _pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        await anyio.lowlevel.checkpoint()
        yield data[i : i + size]


class _Reader:
    """An async ``read(n)`` that returns short reads, as sockets do."""

    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)

    async def read(self, n: int = -1) -> bytes:
        await anyio.lowlevel.checkpoint()
        chunk = bytes(self._data[: min(n, 50_000)])
        self._data = self._data[len(chunk) :]
        return chunk


@pytest.mark.parametrize(
    ("size", "piece", "parts"),
    [
        (0, 1000, 1),
        (SMALL_PART - 1, 70_001, 1),
        (5 * SMALL_PART + 3, 70_001, 6),
        (4 * SMALL_PART, SMALL_PART, 4),
    ],
    ids=["empty", "one-put", "multipart", "exact-parts"],
)
async def test_an_async_iterable_of_unknown_length(
    bucket: Bucket, size: int, piece: int, parts: int
) -> None:
    data = random_bytes(size)
    async with Transferer(bucket.config) as t:
        result = await t.upload(_pieces(data, piece), bucket.url("k"))
        assert t.statistics().memory.in_use == 0
    assert bucket.read("k") == data
    assert result.size == size and result.parts == parts
    assert result.xxh3_128 == xxhash.xxh3_128_hexdigest(data)


async def test_an_async_reader(bucket: Bucket) -> None:
    data = random_bytes(3 * SMALL_PART + 11)
    result = await sync_free_upload(bucket, _Reader(data))
    assert bucket.read("k") == data
    assert result == xxhash.xxh3_128_hexdigest(data)


async def sync_free_upload(bucket: Bucket, source: _Reader) -> str:
    async with Transferer(bucket.config) as t:
        return (await t.upload(source, bucket.url("k"))).xxh3_128


async def test_a_stream_that_fails_midway_leaves_no_upload(bucket: Bucket) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield random_bytes(3 * SMALL_PART)
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        async with Transferer(bucket.config) as t:
            await t.upload(broken(), bucket.url("k"))
    assert bucket.open_uploads() == []
    assert "Contents" not in bucket.client.list_objects_v2(Bucket=bucket.name)


async def test_memory_stays_within_the_budget_for_a_long_stream(bucket: Bucket) -> None:
    config = with_config(bucket, max_concurrency=2, max_memory=4 * SMALL_PART)
    data = random_bytes(24 * SMALL_PART)
    peak = 0
    async with Transferer(config) as t:

        async def watched() -> AsyncIterator[bytes]:
            nonlocal peak
            async for piece in _pieces(data, 100_000):
                peak = max(peak, t.statistics().memory.in_use)
                yield piece

        await t.upload(watched(), bucket.url("k"))
    assert bucket.read("k") == data
    assert 0 < peak <= 4 * SMALL_PART


async def test_open_read_yields_the_bytes_in_order(bucket: Bucket) -> None:
    data = random_bytes(9 * SMALL_PART + 5)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    async with Transferer(bucket.config) as t:
        got = bytearray()
        async for chunk in t.open_read(bucket.url("k")):
            got += chunk
        assert bytes(got) == data
        # Leaving early cancels the rest and gives every buffer back.
        async for _chunk in t.open_read(bucket.url("k")):
            break
        await anyio.sleep(0.2)
        assert t.statistics().memory.in_use == 0
        with pytest.raises(NotFoundError):
            async for _chunk in t.open_read(bucket.url("missing")):
                pass


def test_the_blocking_twin_of_open_read(bucket: Bucket) -> None:
    data = random_bytes(6 * SMALL_PART + 1)
    bucket.client.put_object(Bucket=bucket.name, Key="k", Body=data)
    with sync.Transferer(bucket.config) as t:
        assert b"".join(t.open_read(bucket.url("k"))) == data
        for _chunk in t.open_read(bucket.url("k")):
            break
        with pytest.raises(NotFoundError):
            b"".join(t.open_read(bucket.url("missing")))
