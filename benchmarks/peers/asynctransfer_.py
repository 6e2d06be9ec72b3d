"""asynctransfer: ``Transferer(TransferConfig(...)).upload/download`` on uvloop.

Timed: the ``upload`` / ``download`` call only. Outside it: imports, ``TransferConfig``, and
entering ``Transferer`` (the aiohttp session and the aiobotocore client). A download writes a
temporary file beside the destination and renames it over the destination once verified, so
a preallocated destination does not help it (the rename drops the old file instead).
As ``asynctransfer-nofsync`` it runs with ``durable=False``: no fsync, as the peers do.
The transfer's event stream (``on_event``) is counted by kind into the child's record
(``events``): parts, retries and slowdowns as the engine saw them.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

from benchmarks.peers import Spec, child_main, timed

if TYPE_CHECKING:
    import asynctransfer


def transfer_config(spec: Spec) -> asynctransfer.TransferConfig:
    """The run's settings; ``asynctransfer-nofsync``: no fsync before a download's rename."""
    import asynctransfer

    return asynctransfer.TransferConfig(
        endpoint_url=spec.endpoint_url,
        region=spec.region,
        part_size=spec.part_size,
        max_concurrency=spec.concurrency,
        min_part_size=min(spec.min_part_size, spec.part_size),
        durable=spec.contestant != "asynctransfer-nofsync",
    )


def run(spec: Spec) -> dict[str, Any]:
    import anyio

    import asynctransfer

    config = transfer_config(spec)
    url = f"s3://{spec.bucket}/{spec.key}"

    events: Counter[str] = Counter()

    def count(event: asynctransfer.Event) -> None:
        events[event.kind] += 1

    async def go() -> dict[str, Any]:
        result: asynctransfer.UploadResult | asynctransfer.DownloadResult
        async with asynctransfer.Transferer(config) as transferer:
            with timed():
                if spec.direction == "upload":
                    result = await transferer.upload(spec.file, url, on_event=count)
                else:
                    result = await transferer.download(url, spec.file, on_event=count)
        return dataclasses.asdict(result)

    result: dict[str, Any] = anyio.run(go, backend="asyncio", backend_options={"use_uvloop": True})
    return {"result": result, "loop": "uvloop", "events": dict(events)}


if __name__ == "__main__":
    sys.exit(child_main(run))
