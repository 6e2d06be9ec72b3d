"""Helpers for tests and benchmarks, ours and users': real local S3 servers.

``moto_server()`` starts moto's S3 server (``pip install 'moto[server]'``) as a child process on
a free port of 127.0.0.1, waits until it answers, and stops it on exit. A separate process keeps
the server's CPU out of the client's measurements and its GIL out of the client's way.

``local_s3_process()`` does the same with this package's own S3 endpoint
(``asynctransfer serve``): fast, stores under a directory you give, verifies checksums.
``local_s3()`` runs that endpoint inside the current event loop instead (tests, notebooks): talk
to it with async clients there, since a blocking client (boto3) called on the loop's own thread
would wait for a server that cannot run; call such clients from a worker thread.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._core.units import GiB, MiB

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

__all__ = [
    "LocalS3",
    "LocalS3Process",
    "MotoServer",
    "announced_url",
    "free_port",
    "local_s3",
    "local_s3_process",
    "moto_server",
    "stop_process",
]


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Stop a child this process started: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class MotoServer:
    endpoint_url: str
    pid: int


@contextlib.contextmanager
def moto_server(
    *,
    min_part_size: int | None = None,
    check_credentials: bool = False,
    timeout: float = 30.0,
) -> Iterator[MotoServer]:
    """Run moto's S3 server in a child process; yield its endpoint.

    ``min_part_size`` lowers moto's EntityTooSmall limit (5 MiB) so tests can use small parts.
    ``check_credentials`` makes moto verify access keys (unknown keys get 403).
    """
    env = dict(os.environ)
    if check_credentials:
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "0"
    if min_part_size is not None:
        env["S3_UPLOAD_PART_MIN_SIZE"] = str(min_part_size)
    for _ in range(5):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        ready = False
        while not ready and process.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):
                    ready = True
            except (urllib.error.URLError, OSError):
                time.sleep(0.05)
        if ready:
            break
        # Lost the race for the port (another process took it), or too slow: try again.
        process.kill()
        process.wait()
    else:
        raise RuntimeError(f"moto server did not start within {timeout} s")
    try:
        yield MotoServer(url, process.pid)
    finally:
        stop_process(process)


@dataclass(frozen=True)
class LocalS3:
    endpoint_url: str
    root: Path
    """The directory holding the buckets (``root/<bucket>/...``)."""


@dataclass(frozen=True)
class LocalS3Process:
    endpoint_url: str
    pid: int
    root: Path


def _credentials(access_key: str | None, secret_key: str | None) -> dict[str, str] | None:
    if (access_key is None) != (secret_key is None):
        raise ValueError("access_key and secret_key go together")
    return None if access_key is None or secret_key is None else {access_key: secret_key}


@contextlib.asynccontextmanager
async def local_s3(
    root: str | os.PathLike[str],
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    min_part_size: int = 5 * MiB,
    max_body: int = 5 * GiB,
) -> AsyncIterator[LocalS3]:
    """Run the local S3 endpoint in the current event loop on a free port of 127.0.0.1.

    Objects are stored under ``root``. With ``access_key`` and ``secret_key``, requests must be
    SigV4-signed with them; without, any credentials are accepted. ``min_part_size`` is the
    EntityTooSmall limit of multipart uploads, ``max_body`` the largest PutObject / UploadPart.
    """
    from .servers.s3 import create_app, running

    app = create_app(
        root,
        credentials=_credentials(access_key, secret_key),
        min_part_size=min_part_size,
        max_body=max_body,
    )
    async with running(app) as url:
        yield LocalS3(url, Path(root))


@contextlib.contextmanager
def local_s3_process(
    root: str | os.PathLike[str],
    *,
    access_key: str | None = None,
    secret_key: str | None = None,
    min_part_size: int = 5 * MiB,
    max_body: int = 5 * GiB,
    timeout: float = 30.0,
) -> Iterator[LocalS3Process]:
    """Run ``python -m asynctransfer serve`` in a child process on a free port; yield its
    endpoint. The same options as ``local_s3``."""
    _credentials(access_key, secret_key)
    command = [
        sys.executable,
        "-m",
        "asynctransfer",
        "serve",
        "--root",
        os.fspath(root),
        "--port",
        "0",
        "--min-part-size",
        str(min_part_size),
        "--max-body",
        str(max_body),
    ]
    if access_key is not None and secret_key is not None:
        command += ["--access-key", access_key, "--secret-key", secret_key]
    with (
        tempfile.TemporaryFile() as stderr,
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr) as process,
    ):
        try:
            url = announced_url(process, timeout)
        except BaseException as exc:
            process.kill()
            process.wait()
            if not isinstance(exc, Exception):
                raise
            stderr.seek(0)
            raise RuntimeError(
                f"asynctransfer serve did not start: {stderr.read().decode(errors='replace')}"
            ) from exc
        try:
            yield LocalS3Process(url, process.pid, Path(root))
        finally:
            stop_process(process)


def announced_url(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The URL in a server process's first stdout line, ``listening on http://HOST:PORT`` (as
    ``asynctransfer serve`` and the test servers print it)."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    if not readable:
        raise TimeoutError(f"no 'listening on' line within {timeout} s")
    line = process.stdout.readline().decode().strip()
    if not line.startswith("listening on "):
        raise RuntimeError(f"unexpected first line {line!r}")
    return line.removeprefix("listening on ")
