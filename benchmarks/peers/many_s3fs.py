"""s3fs: ``fs.put`` / ``fs.get`` of the whole tree, ``recursive=True``, ``batch_size=N``.

fsspec's sync API over aiobotocore: ``fs.put(DIR/, "bucket/prefix/", recursive=True,
batch_size=N, chunksize=part, max_concurrency=N)`` walks the directory and runs ``_put_file``
for N files at a time (fsspec's ``_run_coros_in_chunks``: a new file starts as soon as one
finishes); ``fs.get("bucket/prefix/", DIR/, ...)`` lists the prefix and runs ``_get_file`` the
same way. ``chunksize`` and ``max_concurrency`` go to each file's call: a file larger than the
part size (the mix's big one) is sent or fetched in parts, N at a time, in batches, while it
holds one of the N file slots, so in the mix up to 2 x N - 1 requests can be in flight. The
work runs on fsspec's IO thread with a default asyncio loop; botocore signs the SHA-256 of
every body over http and adds its CRC32.

Timed: the ``put`` / ``get`` call. Outside: imports, ``S3FileSystem(...)`` and ``fs.connect()``.
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.peers import Spec, child_main, timed
from benchmarks.peers.s3fs_ import filesystem


def run(spec: Spec) -> dict[str, Any]:
    fs = filesystem(spec)
    local = spec.file.rstrip("/") + "/"  # the trailing "/": the contents, not the directory
    remote = f"{spec.bucket}/{spec.key}"
    options = {
        "recursive": True,
        "batch_size": spec.concurrency,
        "chunksize": spec.part_size,
        "max_concurrency": spec.concurrency,
    }
    with timed():
        if spec.direction == "upload":
            fs.put(local, remote, **options)
        else:
            fs.get(remote, local, **options)
    return {"loop": "asyncio (fsspec IO thread)"}


if __name__ == "__main__":
    sys.exit(child_main(run))
