"""Helpers for tests and benchmarks, ours and users': a real local S3 server process.

``moto_server()`` starts moto's S3 server (``pip install 'moto[server]'``) as a child process on
a free port of 127.0.0.1, waits until it answers, and stops it on exit. A separate process keeps
the server's CPU out of the client's measurements and its GIL out of the client's way.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MotoServer", "free_port", "moto_server"]


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
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
