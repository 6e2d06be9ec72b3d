"""The local S3 server for tests that drive it with boto3.

boto3 blocks, so the server cannot share its thread: ``threaded_s3`` runs the real application
(``create_app`` + ``running``, what ``local_s3`` runs) on its own event loop in a thread.
Tests of the in-loop helper itself and of the async engine use ``local_s3`` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from asynctransfer.servers.s3 import create_app, running

from ..conftest import SMALL_MIN_PART

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path


async def _cancel_the_rest() -> None:
    rest = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in rest:
        task.cancel()
    await asyncio.gather(*rest, return_exceptions=True)


@contextlib.contextmanager
def threaded_s3(root: Path, **options: Any) -> Iterator[str]:
    """The S3 app on a free port, served from a thread with its own loop; yields its URL."""
    started = threading.Event()
    url: list[str] = []
    errors: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    async def main() -> None:
        async with running(create_app(root, **options)) as endpoint:
            url.append(endpoint)
            started.set()
            await stop.wait()

    def thread_main() -> None:
        try:
            loop.run_until_complete(main())
        except BaseException as exc:  # noqa: BLE001 (raised in the test's thread instead)
            errors.append(exc)
            started.set()
        finally:
            # Like asyncio.run: cancel what is left (an idle keep-alive connection's handler)
            # before closing, so no task is destroyed while pending.
            loop.run_until_complete(_cancel_the_rest())
            loop.close()

    thread = threading.Thread(target=thread_main, name="s3-test-server", daemon=True)
    thread.start()
    started.wait(30)
    if errors or not url:
        raise RuntimeError(f"the S3 test server did not start: {errors}")
    try:
        yield url[0]
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
    if errors:
        raise errors[0]


def client(
    endpoint_url: str, *, key: str | None = None, secret: str | None = None, **config: Any
) -> Any:
    """A boto3 S3 client (no retries; the environment's dummy keys unless given others)."""
    options: dict[str, Any] = {"retries": {"total_max_attempts": 1}}
    options.update(config)
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(**options),
    )


@dataclass(frozen=True)
class S3:
    url: str
    root: Path
    client: Any
    bucket: str
    closing: list[Any] = field(default_factory=list)
    """More clients, closed with the fixture."""

    def put(self, key: str, body: bytes = b"data", **kw: Any) -> dict[str, Any]:
        response: dict[str, Any] = self.client.put_object(
            Bucket=self.bucket, Key=key, Body=body, **kw
        )
        return response

    def read(self, key: str, **kw: Any) -> bytes:
        data: bytes = self.client.get_object(Bucket=self.bucket, Key=key, **kw)["Body"].read()
        return data


@pytest.fixture(scope="session")
def s3_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("s3-root")


@pytest.fixture(scope="session")
def s3_url(s3_root: Path, _aws_environment: None) -> Iterator[str]:
    with threaded_s3(s3_root, min_part_size=SMALL_MIN_PART) as url:
        yield url


@pytest.fixture(scope="session")
def s3_streamed(
    tmp_path_factory: pytest.TempPathFactory, _aws_environment: None
) -> Iterator[tuple[str, Path]]:
    """(URL, root) of a server that streams every body to a file, sends every object with
    sendfile and reads in worker threads only (``small_body=0``, ``loop_reads=False``): the
    paths the default server keeps for bodies over 1 MiB."""
    root = tmp_path_factory.mktemp("s3-root-streamed")
    with threaded_s3(root, min_part_size=SMALL_MIN_PART, small_body=0, loop_reads=False) as url:
        yield url, root


@contextlib.contextmanager
def _fresh_bucket(url: str, root: Path) -> Iterator[S3]:
    name = f"test-{uuid.uuid4().hex[:12]}"
    with contextlib.closing(client(url)) as c:
        c.create_bucket(Bucket=name)
        s3 = S3(url, root, c, name)
        yield s3
        for other in s3.closing:
            other.close()


@pytest.fixture
def s3(request: pytest.FixtureRequest, s3_url: str, s3_root: Path) -> Iterator[S3]:
    """A fresh bucket on the shared server, and a boto3 client (no retries). Under
    ``BOTH_MODES``, also on a server that streams everything (``s3_streamed``)."""
    url, root = s3_url, s3_root
    if getattr(request, "param", "small") == "streamed":
        url, root = request.getfixturevalue("s3_streamed")
    with _fresh_bucket(url, root) as s3:
        yield s3


# Run a test against both servers: small bodies and objects handled in memory and stored inline
# (the default), and everything streamed to files, sent with sendfile, read in threads.
BOTH_MODES = pytest.mark.parametrize("s3", ["small", "streamed"], indirect=True)


def error(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, str]:
    """(HTTP status, S3 error code) of a call that must fail."""
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    response = info.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def error_response(call: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    with pytest.raises(ClientError) as info:
        call(*args, **kwargs)
    response: dict[str, Any] = info.value.response
    return response
