"""asynctransfer: ``Transferer(TransferConfig(...)).upload/download`` on uvloop.

Timed: the ``upload`` / ``download`` call only. Outside it: imports, ``TransferConfig``, and
entering ``Transferer`` (the aiohttp session and the aiobotocore client). A download writes a
temporary file beside the destination and renames it over the destination once verified, so
a preallocated destination does not help it (the rename drops the old file instead).
As ``asynctransfer-nofsync`` it runs with ``durable=False``: no fsync, as the peers do.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from benchmarks.peers import Spec, child_main, timed


def run(spec: Spec) -> dict[str, Any]:
    import anyio

    import asynctransfer

    config = asynctransfer.TransferConfig(
        endpoint_url=spec.endpoint_url,
        region=spec.region,
        part_size=spec.part_size,
        max_concurrency=spec.concurrency,
        min_part_size=min(spec.min_part_size, spec.part_size),
        durable=spec.contestant != "asynctransfer-nofsync",
    )
    url = f"s3://{spec.bucket}/{spec.key}"

    async def go() -> dict[str, Any]:
        result: asynctransfer.UploadResult | asynctransfer.DownloadResult
        async with asynctransfer.Transferer(config) as transferer:
            with timed():
                if spec.direction == "upload":
                    result = await transferer.upload(spec.file, url)
                else:
                    result = await transferer.download(url, spec.file)
        return dataclasses.asdict(result)

    result: dict[str, Any] = anyio.run(go, backend="asyncio", backend_options={"use_uvloop": True})
    return {"result": result, "loop": "uvloop"}


if __name__ == "__main__":
    sys.exit(child_main(run))
