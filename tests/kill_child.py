"""A transfer with a checkpoint in its own process, for the tests that SIGKILL it.

    python tests/kill_child.py upload|download SRC DEST CHECKPOINT ENDPOINT PART MIN_PART RATE

RATE 0: no rate limit. Prints the result as JSON on stdout when it finishes.
"""

from __future__ import annotations

import dataclasses
import json
import sys

import anyio

import asynctransfer


async def main(argv: list[str]) -> None:
    direction, src, dest, checkpoint, endpoint, part, min_part, rate = argv
    config = asynctransfer.TransferConfig(
        endpoint_url=endpoint,
        part_size=int(part),
        min_part_size=int(min_part),
        max_concurrency=2,
        max_bytes_per_second=int(rate) or None,
    )
    result: asynctransfer.UploadResult | asynctransfer.DownloadResult
    if direction == "upload":
        result = await asynctransfer.upload(src, dest, config=config, checkpoint=checkpoint)
    else:
        result = await asynctransfer.download(src, dest, config=config, checkpoint=checkpoint)
    sys.stdout.write(json.dumps(dataclasses.asdict(result)) + "\n")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1:])
