"""aioboto3, the way a user copies a tree: one request per file under an ``asyncio.Semaphore``.

Up: walk the directory, then ``asyncio.gather`` one coroutine per file, each holding one slot of
``Semaphore(concurrency)``: a small file is read whole (``open().read()``) and sent with
``put_object(Bucket, Key, Body=bytes)``; a file larger than the part size (the mix's big one)
with ``client.upload_file`` and boto3's ``TransferConfig(multipart_chunksize=part,
multipart_threshold=part, max_concurrency=N)``, aioboto3's own multipart uploader.

Down: the ``list_objects_v2`` paginator over the prefix, then one coroutine per key the same
way: ``get_object`` and the body read whole (``await body.read()``) and written with
``open(..., "wb")``; a key larger than the part size with ``client.download_file`` (ranged GETs,
``max_concurrency`` of them).

The big file holds one slot of the semaphore while its own parts go ``concurrency`` at a
time, so in the mix up to 2 x concurrency - 1 requests can be in flight. Everything else is
aioboto3's default (botocore signs the SHA-256 of every body over http and adds a CRC32). On
uvloop. Timed: the walk or the listing and every transfer. Outside: imports and entering
``session.client("s3")``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from benchmarks.peers import Spec, child_main
from benchmarks.peers.aioboto3_ import client as aioboto3_client
from benchmarks.peers.aioboto3_ import transfer_config
from benchmarks.peers.many_tree import copy_timed, local_path, run_on_uvloop

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


def run(spec: Spec) -> dict[str, Any]:
    config = transfer_config(spec)

    async def go() -> int:
        async with aioboto3_client(spec) as client:

            async def put(item: tuple[str, str, int]) -> None:
                relative, path, size = item
                key = spec.key + relative
                if size > spec.part_size:
                    await client.upload_file(path, spec.bucket, key, Config=config)
                    return
                with open(path, "rb") as f:  # noqa: ASYNC230 (a 64 KiB read, as users write it)
                    body = f.read()
                await client.put_object(Bucket=spec.bucket, Key=key, Body=body)

            async def get(item: tuple[str, int]) -> None:
                key, size = item
                path = local_path(spec, key)
                if size > spec.part_size:
                    await client.download_file(spec.bucket, key, path, Config=config)
                    return
                response = await client.get_object(Bucket=spec.bucket, Key=key)
                async with response["Body"] as body:
                    data = await body.read()
                with open(path, "wb") as f:  # noqa: ASYNC230 (as users write it)
                    f.write(data)

            async def listing() -> AsyncIterator[tuple[str, int]]:
                paginator = client.get_paginator("list_objects_v2")
                async for page in paginator.paginate(Bucket=spec.bucket, Prefix=spec.key):
                    for o in page.get("Contents", []):
                        yield o["Key"], int(o["Size"])

            return await copy_timed(spec, put, listing, get)

    files = run_on_uvloop(go)
    return {"loop": "uvloop", "files": files}


if __name__ == "__main__":
    sys.exit(child_main(run))
