"""The S3 endpoint under test, in its own process, plus the harness's own plain-HTTP calls to it.

* :func:`start_server` runs the project's local S3 server (``python -m asynctransfer serve
  --root DIR --port 0``; its first stdout line is ``listening on http://HOST:PORT``) or moto's
  (``asynctransfer.testing.moto_server()``), on 127.0.0.1, once for the whole benchmark, and stops
  it by its PID at the end.
* :meth:`Server.cpu_seconds` reads the server's user+sys CPU (``/proc/PID/stat``, the process and
  its live descendants, plus the children it reaped) so the harness can charge each run its
  delta.
* :class:`Store` is the harness's own trusted client: path-style HTTP/1.1 with ``http.client``,
  signed with SigV4 and ``UNSIGNED-PAYLOAD`` (moto refuses anonymous GETs of private objects;
  the dummy credentials are the children's). It creates the bucket, puts the object every
  download starts from, and reads each uploaded object back, hashing it as it streams, outside
  any timing. No SDK, so that the check does not share code with any contestant.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import hmac
import http.client
import importlib.metadata
import os
import re
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO, Literal

import xxhash

from asynctransfer.testing import stop_process

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = [
    "Server",
    "ServerKind",
    "Store",
    "StoreError",
    "local_server_available",
    "sigv4_headers",
    "start_server",
]

ServerKind = Literal["local", "moto"]
DEFAULT_MIN_PART = 5 * 1024 * 1024
_CHUNK = 8 * 1024 * 1024
_LISTENING = re.compile(r"listening on (http://(\S+?):(\d+))/?\s*$")
_LOOPBACK = re.compile(r"^(127\.\d+\.\d+\.\d+|localhost|\[::1\])$")
_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Server:
    kind: ServerKind
    endpoint_url: str
    pid: int
    description: str
    version: str
    root: str | None = None
    """Where the local server keeps its files (None for moto, which keeps them in memory)."""

    def cpu_seconds(self) -> float:
        """User+sys CPU seconds the server has used so far (its process tree)."""
        return _tree_cpu_seconds(self.pid)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    return text[text.rindex(")") + 2 :].split()


def _tree_cpu_seconds(root: int) -> float:
    """utime+stime of ``root`` and its live descendants, plus cutime+cstime of ``root``."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None:
            continue
        stats[int(entry)] = fields
        children.setdefault(int(fields[1]), []).append(int(entry))  # fields[1]: ppid
    total = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        fields = stats.get(pid)
        if fields is None:
            continue
        # After "(comm) ": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
        # utime stime cutime cstime: indexes 11..14 here.
        total += int(fields[11]) + int(fields[12])
        if pid == root:
            total += int(fields[13]) + int(fields[14])
        pending.extend(children.get(pid, []))
    return total / _TICKS


def local_server_available() -> bool:
    """Whether this checkout's ``asynctransfer`` has the ``serve`` command."""
    try:
        done = subprocess.run(
            [sys.executable, "-m", "asynctransfer", "serve", "--help"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


@contextlib.contextmanager
def _local(root: str, min_part_size: int, log_path: str, timeout: float) -> Iterator[Server]:
    command = [sys.executable, "-m", "asynctransfer", "serve", "--root", root, "--port", "0"]
    if min_part_size < DEFAULT_MIN_PART:
        command += ["--min-part-size", str(min_part_size)]
    # stdout and stderr go to files, not pipes: a server that keeps printing (access logs) must
    # never block on a pipe that nobody reads. Its first stdout line says where it listens.
    err_path = log_path + ".stderr"
    with open(log_path, "wb") as log, open(err_path, "wb") as err:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=err)
    try:
        deadline = time.monotonic() + timeout
        endpoint = None
        while endpoint is None:
            with open(log_path, encoding="utf-8", errors="replace") as f:
                first = f.readline()
            match = _LISTENING.search(first) if first.endswith("\n") else None
            if match is not None:
                if not _LOOPBACK.match(match.group(2)):
                    raise RuntimeError(f"local server listens on {match.group(1)}, not loopback")
                endpoint = match.group(1)
            elif process.poll() is not None or time.monotonic() > deadline:
                with open(err_path, encoding="utf-8", errors="replace") as f:
                    tail = first + f.read()[-2000:]
                raise RuntimeError(
                    f"`{' '.join(command)}` did not print 'listening on http://HOST:PORT' "
                    f"(exit status {process.poll()}):\n{tail}"
                )
            else:
                time.sleep(0.05)
        yield Server(
            kind="local",
            endpoint_url=endpoint,
            pid=process.pid,
            description="local (python -m asynctransfer serve)",
            version=importlib.metadata.version("asynctransfer"),
            root=root,
        )
    finally:
        stop_process(process)


@contextlib.contextmanager
def start_server(
    kind: ServerKind, *, root: str, min_part_size: int, log_path: str, timeout: float = 60.0
) -> Iterator[Server]:
    """Run the endpoint in its own process on 127.0.0.1; yield it; stop it (by PID) on exit."""
    if kind == "local":
        with _local(root, min_part_size, log_path, timeout) as server:
            yield server
        return
    from asynctransfer.testing import moto_server

    lowered = min_part_size if min_part_size < DEFAULT_MIN_PART else None
    with moto_server(min_part_size=lowered, timeout=timeout) as moto:
        yield Server(
            kind="moto",
            endpoint_url=moto.endpoint_url,
            pid=moto.pid,
            description="moto (correct, slow: the bottleneck)",
            version=importlib.metadata.version("moto"),
        )


def sigv4_headers(
    method: str,
    host: str,
    path: str,
    *,
    access_key: str,
    secret_key: str,
    region: str,
    now: datetime.datetime | None = None,
) -> dict[str, str]:
    """Headers that sign a path-style S3 request without a query, payload unsigned (SigV4)."""
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%dT%H%M%SZ")
    headers = {"host": host, "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "x-amz-date": stamp}
    signed = ";".join(sorted(headers))
    canonical = "\n".join(
        [
            method,
            path,
            "",
            *(f"{k}:{headers[k]}" for k in sorted(headers)),
            "",
            signed,
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = f"{stamp[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret_key).encode()
    for part in (stamp[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return {
        "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
        "x-amz-date": stamp,
        "Authorization": f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}",
    }


class StoreError(RuntimeError):
    """The server answered the harness's own request with an unexpected status."""


class Store:
    """Signed path-style S3 calls over one keep-alive HTTP/1.1 connection (the harness's)."""

    def __init__(
        self,
        endpoint_url: str,
        bucket: str,
        *,
        timeout: float = 120.0,
        access_key: str = "testing",
        secret_key: str = "testing",
        region: str = "us-east-1",
    ) -> None:
        parsed = urllib.parse.urlsplit(endpoint_url)
        if parsed.scheme != "http" or parsed.hostname is None:
            raise ValueError(f"expected http://HOST:PORT, got {endpoint_url!r}")
        self._host, self._port = parsed.hostname, parsed.port or 80
        self._netloc = parsed.netloc
        self._access_key, self._secret_key, self._region = access_key, secret_key, region
        self._timeout = timeout
        self.bucket = bucket
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _path(self, key: str) -> str:
        return (
            "/" + urllib.parse.quote(self.bucket) + ("/" + urllib.parse.quote(key) if key else "")
        )

    def _sign(self, method: str, path: str) -> dict[str, str]:
        return sigv4_headers(
            method,
            self._netloc,
            path,
            access_key=self._access_key,
            secret_key=self._secret_key,
            region=self._region,
        )

    def ping(self, key: str, timeout: float = 10.0) -> bool:
        """Whether the server answers a HEAD of ``key`` with 200 within ``timeout`` seconds."""
        conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        path = self._path(key)
        try:
            conn.request("HEAD", path, headers=self._sign("HEAD", path))
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def _request(
        self,
        method: str,
        key: str,
        *,
        body: bytes | BinaryIO | None = None,
        headers: dict[str, str] | None = None,
        read: Callable[[http.client.HTTPResponse], None] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> int:
        path = self._path(key)
        for attempt in (1, 2):  # once more on a fresh connection if the kept-alive one was closed
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout, blocksize=_CHUNK
                )
            try:
                signed = self._sign(method, path)
                self._conn.request(method, path, body=body, headers={**(headers or {}), **signed})
                response = self._conn.getresponse()
                if read is not None and response.status in ok:
                    read(response)
                else:
                    detail = response.read()
                    if response.status not in ok:
                        raise StoreError(
                            f"{method} {path}: HTTP {response.status} {detail[:500]!r}"
                        )
                return response.status
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self.close()
                if attempt == 2 or (body is not None and not isinstance(body, bytes)):
                    raise
        raise AssertionError("unreachable")

    def create_bucket(self) -> None:
        # 409 BucketAlreadyOwnedByYou / BucketAlreadyExists: fine, it is ours.
        self._request("PUT", "", ok=(200, 409))

    def put_file(self, key: str, path: str) -> None:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            self._request(
                "PUT",
                key,
                body=f,
                headers={"Content-Length": str(size), "Content-Type": "application/octet-stream"},
            )

    def digest(self, key: str) -> tuple[int, str]:
        """GET the object; return (bytes read, hex xxh3-128 of them)."""
        hasher = xxhash.xxh3_128()
        count = 0

        def read(response: http.client.HTTPResponse) -> None:
            nonlocal count
            while chunk := response.read(_CHUNK):
                hasher.update(chunk)
                count += len(chunk)

        self._request("GET", key, read=read)
        return count, hasher.hexdigest()

    def delete(self, key: str) -> None:
        self._request("DELETE", key, ok=(200, 204, 404))
