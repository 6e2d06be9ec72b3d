"""obstore (Rust object_store) on asyncio: one request per file under an ``asyncio.Semaphore``.

Up: walk the directory, then ``asyncio.gather`` one coroutine per file, each holding one slot of
``Semaphore(concurrency)``: ``await obstore.put_async(store, key, Path(file),
chunk_size=part, max_concurrency=N)`` (obstore reads the file itself; a file larger than
``chunk_size``, the mix's big one, goes as a multipart upload with N parts in flight).

Down: ``obstore.list(store, prefix)`` streamed (``async for``), then one coroutine per key the
same way: ``get_async`` and ``bytes_async`` (the body whole, in memory), written with
``open(..., "wb")``. obstore has no download-to-file call, so a key larger than the part size
is fetched as the S3 suite's obstore child does it, in parts: ``get_range_async`` of one part
each, N at a time, each written with ``os.pwrite`` at its offset.

The big file holds one slot of the semaphore while its own parts go ``concurrency`` at a time,
so in the mix up to 2 x concurrency - 1 requests can be in flight. Otherwise defaults
(object_store signs the SHA-256 of every body); ``allow_http`` and path-style requests for
the local endpoint. On uvloop (obstore's futures complete on its own Rust runtime). Timed: the
walk or the listing and every transfer. Outside: imports and ``S3Store(...)``.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks.peers import Spec, child_main, write_all
from benchmarks.peers.many_tree import copy_timed, gather_limited, local_path, run_on_uvloop
from benchmarks.peers.obstore_ import s3_store

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def run(spec: Spec) -> dict[str, Any]:
    # Installed in the peers' virtualenv only (not where mypy runs): hence import_module.
    obstore: Any = importlib.import_module("obstore")
    store = s3_store(spec)

    async def put(item: tuple[str, str, int]) -> None:
        relative, path, _ = item
        await obstore.put_async(
            store,
            spec.key + relative,
            Path(path),
            chunk_size=spec.part_size,
            max_concurrency=spec.concurrency,
        )

    async def get_big(key: str, path: str, size: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:

            async def part(start: int) -> None:
                end = min(start + spec.part_size, size)
                data = await obstore.get_range_async(store, key, start=start, end=end)
                write_all(fd, data, start)

            await gather_limited(spec.concurrency, range(0, size, spec.part_size), part)
        finally:
            os.close(fd)

    async def get(item: tuple[str, int]) -> None:
        key, size = item
        path = local_path(spec, key)
        if size > spec.part_size:
            await get_big(key, path, size)
            return
        data = await (await obstore.get_async(store, key)).bytes_async()
        with open(path, "wb") as f:  # noqa: ASYNC230 (as users write it)
            f.write(data)

    async def listing() -> AsyncIterator[tuple[str, int]]:
        async for chunk in obstore.list(store, spec.key.rstrip("/"), chunk_size=1000):
            for meta in chunk:
                yield meta["path"], int(meta["size"])

    async def go() -> int:
        return await copy_timed(spec, put, listing, get)

    files = run_on_uvloop(go)
    return {"loop": "uvloop", "files": files}


if __name__ == "__main__":
    sys.exit(child_main(run))
