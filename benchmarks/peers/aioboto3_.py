"""aioboto3: ``client.upload_file`` / ``client.download_file`` on uvloop.

aioboto3's own asyncio transfer code (not s3transfer), configured with boto3's
``TransferConfig(multipart_chunksize=part, multipart_threshold=part, max_concurrency=N)``: its
helpers read ``max_request_concurrency`` (which ``max_concurrency`` sets) as the number of
uploader tasks and as the semaphore around ranged GETs, so it has a real concurrency knob and
no hand-written multipart is needed. It runs on uvloop, like asynctransfer, so the loop is not
the difference. Everything else is its default: files go through aiofiles (a thread hop per
read or write; uploads read 256 KiB at a time, ``io_chunksize``), and botocore signs the
SHA-256 of every body over http and adds its default CRC32.

Timed: the ``upload_file`` / ``download_file`` await. Outside it: imports and entering
``session.client("s3")``. ``download_file`` opens the destination with ``"wb"``, which truncates
it, so a preallocated destination does not help it.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
from typing import Any

from benchmarks.peers import Spec, child_main, timed


def transfer_config(spec: Spec) -> Any:
    """boto3's TransferConfig with the run's part size and concurrency."""
    from boto3.s3.transfer import TransferConfig

    return TransferConfig(
        multipart_chunksize=spec.part_size,
        multipart_threshold=spec.part_size,
        max_concurrency=spec.concurrency,
    )


def client(spec: Spec) -> Any:
    """``async with client(spec) as c:`` the aioboto3 S3 client every aioboto3 child uses."""
    # Installed in the peers' virtualenv only (not where mypy runs): hence import_module.
    aioboto3: Any = importlib.import_module("aioboto3")
    return aioboto3.Session().client(
        "s3",
        endpoint_url=spec.endpoint_url,
        region_name=spec.region,
        aws_access_key_id=spec.access_key,
        aws_secret_access_key=spec.secret_key,
    )


def run(spec: Spec) -> dict[str, Any]:
    uvloop: Any = importlib.import_module("uvloop")
    config = transfer_config(spec)

    async def go() -> None:
        async with client(spec) as s3:
            with timed():
                if spec.direction == "upload":
                    await s3.upload_file(spec.file, spec.bucket, spec.key, Config=config)
                else:
                    await s3.download_file(spec.bucket, spec.key, spec.file, Config=config)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(go())
    return {"loop": "uvloop"}


if __name__ == "__main__":
    sys.exit(child_main(run))
