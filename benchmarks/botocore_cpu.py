"""Where botocore spends client CPU per UploadPart, and what our configuration saves.

Each variant uploads the same parts from one reused buffer through aiobotocore to a local S3
server (by default ``benchmarks.s3_sink``, which discards bodies at full speed), in a fresh
child process, and reports client CPU seconds per GiB (process_time):

- ``botocore-default``: botocore's defaults over http: SigV4 SHA-256 of every body and its
  default CRC32 (``request_checksum_calculation=when_supported``, botocore >= 1.36);
- ``unsigned+default-crc32``: payload signing off, botocore's default CRC32 left on;
- ``unsigned+own-crc32c``: payload signing off, no default checksum, our CRC32C computed in a
  worker thread and sent precomputed, the body handed to aiohttp as a bytearray;
- ``asynctransfer``: asynctransfer's own S3 driver: as above, plus the zero-copy body
  (``BufferPayload``: memoryview slices instead of aiohttp's two copies per request).

    python -m benchmarks.botocore_cpu [--size 256MiB] [--part-size 8MiB] [--endpoint-url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import textwrap

import boto3

from asynctransfer._core.units import parse_size
from asynctransfer.testing import moto_server

from .s3_sink import sink_server

CHILD = textwrap.dedent(
    """
    import base64, contextlib, json, sys, time
    import anyio, anyio.to_thread
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session
    from crc32c import crc32c
    from asynctransfer import TransferConfig
    from asynctransfer._io.s3 import S3Driver

    endpoint, variant, size, part = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    s3 = {"addressing_style": "path"}
    kwargs = {}
    if variant != "botocore-default":
        s3["payload_signing_enabled"] = False
    if variant == "unsigned+own-crc32c":
        kwargs = dict(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
    config = AioConfig(s3=s3, region_name="us-east-1", **kwargs)
    body = bytearray(part)
    for i in range(0, part, 4096):
        body[i] = i % 251

    async def main():
        async with contextlib.AsyncExitStack() as stack:
            if variant == "asynctransfer":
                driver = await S3Driver.open(
                    TransferConfig(endpoint_url=endpoint, region="us-east-1"), stack
                )
                c = driver._client
            else:
                c = await stack.enter_async_context(
                    get_session().create_client("s3", endpoint_url=endpoint, config=config)
                )
            own = variant in ("asynctransfer", "unsigned+own-crc32c")
            extra = {"ChecksumAlgorithm": "CRC32C"} if own else {}
            r = await c.create_multipart_upload(Bucket="bench", Key=variant, **extra)
            uid = r["UploadId"]
            cpu0, t0 = time.process_time(), time.perf_counter()
            for n in range(1, size // part + 1):
                checksum = {}
                if own:
                    digest = await anyio.to_thread.run_sync(crc32c, body)
                    checksum = {
                        "ChecksumAlgorithm": "CRC32C",
                        "ChecksumCRC32C": base64.b64encode(digest.to_bytes(4, "big")).decode(),
                    }
                await c.upload_part(
                    Bucket="bench", Key=variant, UploadId=uid, PartNumber=n, Body=body,
                    **checksum,
                )
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
            await c.abort_multipart_upload(Bucket="bench", Key=variant, UploadId=uid)
        print(json.dumps({"variant": variant, "cpu": cpu, "wall": wall}))

    anyio.run(main)
    """
)

VARIANTS = ("botocore-default", "unsigned+default-crc32", "unsigned+own-crc32c", "asynctransfer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=parse_size, default=parse_size("256MiB"))
    parser.add_argument("--part-size", type=parse_size, default=parse_size("8MiB"))
    parser.add_argument("--endpoint-url")
    parser.add_argument(
        "--server",
        choices=["sink", "moto"],
        default="sink",
        help="sink: benchmarks.s3_sink, which discards bodies at full speed (default); moto",
    )
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    os.environ.update(env)

    def run(endpoint: str) -> list[dict[str, float | str]]:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
            Bucket="bench"
        )
        rows = []
        for variant in VARIANTS:
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    endpoint,
                    variant,
                    str(args.size),
                    str(args.part_size),
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=600,
                check=True,
            )
            rows.append(json.loads(out.stdout))
        return rows

    if args.endpoint_url:
        rows = run(args.endpoint_url)
    elif args.server == "sink":
        with sink_server() as endpoint:
            rows = run(endpoint)
    else:
        with moto_server() as server:
            rows = run(server.endpoint_url)
    gib = args.size / 2**30
    base = float(rows[0]["cpu"])
    print(f"{args.size / 2**20:.0f} MiB in {args.part_size / 2**20:.0f} MiB parts, client CPU:")
    print(f"{'variant':<26}{'CPU s':>8}{'CPU s/GiB':>11}{'vs default':>12}")
    for row in rows:
        cpu = float(row["cpu"])
        print(f"{row['variant']!s:<26}{cpu:>8.2f}{cpu / gib:>11.2f}{cpu / base:>11.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"size": args.size, "part_size": args.part_size, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
