"""obstore (Rust object_store): ``obstore.put`` up; N threads of ``obstore.get_range`` down.

Upload: ``obstore.put(store, key, Path(file), chunk_size=part, max_concurrency=N)``, obstore's
own multipart upload (it reads the file itself).

Download: obstore has no download-to-file call. Its documented way is one ``obstore.get``
streamed into a file, one connection; ``get_ranges`` coalesces adjacent ranges into one request
and returns them all in memory. So, to give it the same part size and concurrency as the
others: a pool of N threads, each fetching one part with ``obstore.get_range`` (which releases
the GIL while Rust does the request) and writing it with ``os.pwrite`` at its offset. The
destination is opened without ``O_TRUNC``, so a preallocated file is overwritten in place: of
the five contestants this is the one that can use it.

Defaults otherwise: object_store signs the SHA-256 of every body (``unsigned_payload`` off) and
sends no extra checksum. ``allow_http`` is needed for the local endpoint, path-style requests,
and a generous ``timeout`` (its default of 30 s would cut a slow server's ranged GET).

Timed: the ``put`` call; or the HEAD, the thread pool and all ranged GETs and writes. Outside
it: imports and ``S3Store(...)`` (which connects lazily).
"""

from __future__ import annotations

import importlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.peers import Spec, child_main, timed, write_all


def s3_store(spec: Spec) -> Any:
    """The S3Store every obstore child uses (set-up: not timed)."""
    # Installed in the peers' virtualenv only (not where mypy runs): hence import_module.
    store_module: Any = importlib.import_module("obstore.store")
    return store_module.S3Store(
        spec.bucket,
        endpoint=spec.endpoint_url,
        region=spec.region,
        access_key_id=spec.access_key,
        secret_access_key=spec.secret_key,
        virtual_hosted_style_request=False,
        client_options={"allow_http": True, "timeout": "600s"},
    )


def run(spec: Spec) -> dict[str, Any]:
    obstore: Any = importlib.import_module("obstore")
    store = s3_store(spec)
    if spec.direction == "upload":
        with timed():
            obstore.put(
                store,
                spec.key,
                Path(spec.file),
                chunk_size=spec.part_size,
                max_concurrency=spec.concurrency,
            )
        return {"download": None}

    fd = os.open(spec.file, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with timed():
            size = int(obstore.head(store, spec.key)["size"])

            def fetch(start: int) -> None:
                end = min(start + spec.part_size, size)
                write_all(fd, obstore.get_range(store, spec.key, start=start, end=end), start)

            with ThreadPoolExecutor(max_workers=spec.concurrency) as pool:
                for _ in pool.map(fetch, range(0, size, spec.part_size)):
                    pass
            if os.fstat(fd).st_size != size:
                os.ftruncate(fd, size)
    finally:
        os.close(fd)
    return {"download": f"{spec.concurrency} threads of get_range + pwrite"}


if __name__ == "__main__":
    sys.exit(child_main(run))
