"""Real servers for the tests: moto's S3 server in child processes, and boto3 as an independent
client to check what the engine did."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from asynctransfer import TransferConfig
from asynctransfer._core.units import KiB
from asynctransfer.testing import MotoServer, moto_server

from .proxy import proxied_bucket, proxy_server  # noqa: F401

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# Small parts keep the suite fast; moto is told to accept them. One test runs at the real 5 MiB.
SMALL_MIN_PART = 64 * KiB
SMALL_PART = 256 * KiB


@pytest.fixture(scope="session", autouse=True)
def _aws_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Dummy credentials for the local servers, no user AWS config leaking in, and default
    checkpoints in a directory of the test run, not the user's cache."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("AWS_"):
            del os.environ[name]
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        ASYNCTRANSFER_CACHE_DIR=str(tmp_path_factory.mktemp("cache")),
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="session")
def anyio_backend() -> tuple[str, dict[str, Any]]:
    return ("asyncio", {"debug": True})


@pytest.fixture(scope="session")
def moto(_aws_environment: None) -> Iterator[MotoServer]:
    with moto_server(min_part_size=SMALL_MIN_PART) as server:
        yield server


@pytest.fixture(scope="session")
def moto_strict(_aws_environment: None) -> Iterator[MotoServer]:
    """moto with S3's real 5 MiB minimum part size."""
    with moto_server() as server:
        yield server


def s3_client(endpoint_url: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint_url, region_name="us-east-1")


@dataclass(frozen=True)
class Bucket:
    name: str
    client: Any
    config: TransferConfig

    def url(self, key: str) -> str:
        return f"s3://{self.name}/{key}"

    def read(self, key: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return data

    def open_uploads(self) -> list[dict[str, Any]]:
        uploads: list[dict[str, Any]] = self.client.list_multipart_uploads(Bucket=self.name).get(
            "Uploads", []
        )
        return uploads


def _make_bucket(server: MotoServer, config: TransferConfig) -> Iterator[Bucket]:
    client = s3_client(server.endpoint_url)
    name = f"test-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    bucket = Bucket(name, client, config)
    yield bucket
    # Every test must leave no multipart upload behind, whatever it did.
    leftover = bucket.open_uploads()
    for upload in leftover:
        client.abort_multipart_upload(Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"])
    assert leftover == [], f"orphaned multipart uploads: {leftover}"


@pytest.fixture
def bucket(moto: MotoServer) -> Iterator[Bucket]:
    config = TransferConfig(
        endpoint_url=moto.endpoint_url,
        part_size=SMALL_PART,
        min_part_size=SMALL_MIN_PART,
        max_concurrency=4,
    )
    yield from _make_bucket(moto, config)


@pytest.fixture
def strict_bucket(moto_strict: MotoServer) -> Iterator[Bucket]:
    yield from _make_bucket(moto_strict, TransferConfig(endpoint_url=moto_strict.endpoint_url))


def write_random(path: Path, size: int, seed: int = 0) -> bytes:
    data = random_bytes(size, seed)
    path.write_bytes(data)
    return data


def random_bytes(size: int, seed: int = 0) -> bytes:
    import random

    return random.Random(seed).randbytes(size)


def with_config(bucket: Bucket, **changes: Any) -> TransferConfig:
    return replace(bucket.config, **changes)
