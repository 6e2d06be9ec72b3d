"""asynctransfer: ``Transferer.copy_tree`` on uvloop, up (directory -> prefix) or down.

``TransferConfig(endpoint_url, region, part_size, max_concurrency=N)``, otherwise the defaults:
``max_concurrency`` bounds the requests in flight of every file of the batch together (the big
file's parts included), downloads are fsynced before their rename (``durable=True``). As
``asynctransfer-nofsync`` (downloads only) with ``durable=False``, as the peers write.

Timed: the ``copy_tree`` call (the walk or the listing, every transfer). Outside: imports,
``TransferConfig`` and entering ``Transferer``. The record carries the ``BatchResult``
(``to_dict()``, failures cut to the first few): a batch with failures is a failed run.
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.peers import Spec, child_main, timed
from benchmarks.peers.asynctransfer_ import transfer_config

_FAILURES_KEPT = 5


def run(spec: Spec) -> dict[str, Any]:
    import anyio

    import asynctransfer

    config = transfer_config(spec)
    remote = f"s3://{spec.bucket}/{spec.key}"
    src, dest = (spec.file, remote) if spec.direction == "upload" else (remote, spec.file)

    async def go() -> dict[str, Any]:
        async with asynctransfer.Transferer(config) as transferer:
            with timed():
                result = await transferer.copy_tree(src, dest)
        return result.to_dict()

    result = anyio.run(go, backend="asyncio", backend_options={"use_uvloop": True})
    failures = result.get("failures")
    if isinstance(failures, list):
        result["failures"] = failures[:_FAILURES_KEPT]
    return {"result": result, "loop": "uvloop", "call": "Transferer.copy_tree"}


if __name__ == "__main__":
    sys.exit(child_main(run))
