"""Row 30's transfer, run inside a network namespace whose loopback drops packets at random and
is capped by a token bucket (set up by ``tests/test_netns.py``): moto on that namespace's
127.0.0.1, an upload and a download, the bytes compared. Prints one JSON line."""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import anyio
import boto3

from asynctransfer import TransferConfig, Transferer
from asynctransfer.testing import moto_server

SIZE = 6 * 1024 * 1024 + 123
PART = 256 * 1024


async def transfer(endpoint: str, src: str, dest: str) -> dict[str, float]:
    config = TransferConfig(
        endpoint_url=endpoint,
        part_size=PART,
        min_part_size=64 * 1024,
        max_concurrency=4,
        read_timeout=10,
        connect_timeout=10,
    )
    async with Transferer(config) as t:
        started = time.monotonic()
        await t.upload(src, "s3://netns/k")
        up = time.monotonic() - started
        started = time.monotonic()
        await t.download("s3://netns/k", dest)
        down = time.monotonic() - started
        stats = t.statistics()
    return {"up_s": up, "down_s": down, "retries": stats.retries}


def main() -> None:
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    with moto_server(min_part_size=64 * 1024, timeout=60) as server:
        boto3.client("s3", endpoint_url=server.endpoint_url, region_name="us-east-1").create_bucket(
            Bucket="netns"
        )
        with tempfile.TemporaryDirectory() as directory:
            src, dest = os.path.join(directory, "src.bin"), os.path.join(directory, "dest.bin")
            data = os.urandom(SIZE)
            Path(src).write_bytes(data)
            result: dict[str, object] = dict(anyio.run(transfer, server.endpoint_url, src, dest))
            result["same"] = Path(dest).read_bytes() == data
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
