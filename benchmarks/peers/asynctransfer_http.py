"""asynctransfer over plain HTTP: ``Transferer(TransferConfig(...)).download(url, dest)`` on
uvloop.

Timed: the ``download`` call only. Outside it: imports, ``TransferConfig``, entering
``Transferer``, and opening ``/dev/null``. Into a file, the engine writes a temporary file beside
the destination and renames it over the destination once complete, so a preallocated
destination does not help it (the rename drops the old file instead); with ``durable=True``
(its default) it fsyncs before the rename. As ``asynctransfer-nofsync`` it runs with
``durable=False``, as curl and aria2c do. To /dev/null, ``dest`` is ``open(os.devnull, "wb")``:
the engine streams the bytes in order to the object's ``write()``, and the ``xxh3_128`` of its
result is what the suite checks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
from typing import TYPE_CHECKING, Any

from benchmarks.peers.http_child import HttpSpec, child_main, timed

if TYPE_CHECKING:
    import io

_MIN_PART = 5 * 1024 * 1024


def run(spec: HttpSpec) -> dict[str, Any]:
    import anyio

    import asynctransfer

    config = asynctransfer.TransferConfig(
        part_size=spec.part_size,
        max_concurrency=spec.concurrency,
        min_part_size=min(_MIN_PART, spec.part_size),
        durable=spec.contestant != "asynctransfer-nofsync",
    )

    async def go(dest: str | io.BufferedWriter) -> dict[str, Any]:
        async with asynctransfer.Transferer(config) as transferer:
            with timed():
                result = await transferer.download(spec.url, dest)
        return dataclasses.asdict(result)

    with contextlib.ExitStack() as stack:
        dest: str | io.BufferedWriter = spec.dest
        if spec.case == "devnull":
            dest = stack.enter_context(open(os.devnull, "wb"))
        result = anyio.run(go, dest, backend="asyncio", backend_options={"use_uvloop": True})
    return {"result": result, "loop": "uvloop"}


if __name__ == "__main__":
    sys.exit(child_main(run))
