"""boto3: ``client.upload_file`` / ``client.download_file`` (s3transfer, threads).

Configured with ``boto3.s3.transfer.TransferConfig(multipart_chunksize=part,
multipart_threshold=part, max_concurrency=N)``; everything else is boto3's default (over http
that includes SigV4 over the SHA-256 of every body, and botocore's default CRC32 checksum).

Timed: the ``upload_file`` / ``download_file`` call, which creates s3transfer's
``TransferManager`` and its thread pools. Outside it: imports and ``boto3.client(...)``.
``download_file`` writes ``DEST.<random>`` and renames it over the destination, so a
preallocated destination does not help it.
"""

from __future__ import annotations

import sys
from typing import Any

from benchmarks.peers import Spec, child_main, timed


def run(spec: Spec) -> dict[str, Any]:
    import boto3
    from boto3.s3.transfer import TransferConfig

    client = boto3.client(
        "s3",
        endpoint_url=spec.endpoint_url,
        region_name=spec.region,
        aws_access_key_id=spec.access_key,
        aws_secret_access_key=spec.secret_key,
    )
    config = TransferConfig(
        multipart_chunksize=spec.part_size,
        multipart_threshold=spec.part_size,
        max_concurrency=spec.concurrency,
    )
    with timed():
        if spec.direction == "upload":
            client.upload_file(spec.file, spec.bucket, spec.key, Config=config)
        else:
            client.download_file(spec.bucket, spec.key, spec.file, Config=config)
    return {}


if __name__ == "__main__":
    sys.exit(child_main(run))
