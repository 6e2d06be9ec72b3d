"""s3fs: ``fs.put_file`` / ``fs.get_file`` (fsspec's sync API over aiobotocore).

``S3FileSystem(max_concurrency=N, default_block_size=part)`` and, per call,
``chunksize=part, max_concurrency=N``. Both directions go in batches: s3fs reads (or fetches)
N parts, waits for the whole batch with ``asyncio.gather``, then starts the next, so there is
no pipelining across batches. Its calls run on fsspec's own IO thread with a default asyncio
loop (not uvloop); botocore signs the SHA-256 of every body over http and adds its CRC32.

Timed: the ``put_file`` / ``get_file`` call. Outside it: imports, ``S3FileSystem(...)`` and
``fs.connect()`` (which creates the aiobotocore client). ``get_file`` opens the destination with
``"wb"`` (then truncates it to the size), so a preallocated destination does not help it.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from benchmarks.peers import Spec, child_main, timed


def filesystem(spec: Spec) -> Any:
    """The S3FileSystem every s3fs child uses, connected (set-up: not timed)."""
    # Installed in the peers' virtualenv only (not where mypy runs): hence import_module.
    s3fs: Any = importlib.import_module("s3fs")
    fs = s3fs.S3FileSystem(
        key=spec.access_key,
        secret=spec.secret_key,
        endpoint_url=spec.endpoint_url,
        client_kwargs={"region_name": spec.region},
        max_concurrency=spec.concurrency,
        default_block_size=spec.part_size,
        use_listings_cache=False,
    )
    fs.connect()
    return fs


def run(spec: Spec) -> dict[str, Any]:
    fs = filesystem(spec)
    path = f"{spec.bucket}/{spec.key}"
    with timed():
        if spec.direction == "upload":
            fs.put_file(spec.file, path, chunksize=spec.part_size, max_concurrency=spec.concurrency)
        else:
            fs.get_file(path, spec.file, chunksize=spec.part_size, max_concurrency=spec.concurrency)
    return {"loop": "asyncio (fsspec IO thread)"}


if __name__ == "__main__":
    sys.exit(child_main(run))
