"""HTTP servers for the ranged-download tests, each a real process on 127.0.0.1.

- ``http_origin``: ``tests/http_origin.py`` (Range, validators, fault knobs, request log), one
  process per session; each test gets it with its knobs and log cleared. Files written by
  earlier tests stay: give yours a name of its own.
- ``simple_http_server``: ``python -m http.server``, which ignores ``Range`` (always 200).
- ``nginx``: nginx (``apt-get install nginx``) with sendfile, a production-grade Range server.

All three have ``url`` (no trailing slash), ``root``, ``url_for(name)`` and ``put(name, data)``
(writes ``root/name``, returns its URL). ``http_origin`` adds ``knobs(**knobs)``, ``log()``,
``reset()`` and ``stderr_text()``: synchronous (urllib) and quick, so async tests call them
directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import quote

import pytest

from asynctransfer.testing import announced_url, free_port, stop_process
from benchmarks.nginx import nginx_binary, nginx_server

if TYPE_CHECKING:
    from collections.abc import Iterator

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTROL = "/__origin__/"


class OriginError(RuntimeError):
    """The origin process failed to start or refused a control request."""


def _write(root: Path, name: str, data: bytes) -> None:
    path = root / name.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    # Through a new inode: a client still reading the old version keeps the old bytes, and the
    # origin's ETag (size, mtime, inode) changes even within the clock's resolution.
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@dataclass(frozen=True)
class StaticServer:
    url: str
    """``http://127.0.0.1:PORT``, no trailing slash."""
    root: Path

    def url_for(self, name: str) -> str:
        return f"{self.url}/{quote(name.lstrip('/'))}"

    def put(self, name: str, data: bytes) -> str:
        """Write ``root/name``; return its URL."""
        _write(self.root, name, data)
        return self.url_for(name)


@dataclass(frozen=True)
class HttpOrigin(StaticServer):
    pid: int
    stderr: IO[bytes] | None = field(default=None, repr=False)

    def _call(self, method: str, name: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(self.url + CONTROL + name, data=data, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise OriginError(f"origin {method} {name}: {exc.code} {exc.read()!r}") from exc

    def knobs(self, **knobs: Any) -> None:
        """Replace the knobs (see ``tests/http_origin.py``) and reset their counters."""
        self._call("POST", "knobs", knobs)

    def log(self) -> list[dict[str, Any]]:
        """The requests to data paths since the last reset, in arrival order."""
        entries: list[dict[str, Any]] = self._call("GET", "log")
        return entries

    def reset(self) -> None:
        """Clear the knobs, their counters and the log."""
        self._call("POST", "reset", {})

    def stderr_text(self) -> str:
        """What the origin wrote on stderr so far (tracebacks of its failures)."""
        if self.stderr is None:
            return ""
        # pread: the child writes through the same file offset, which seek() would move.
        fd = self.stderr.fileno()
        return os.pread(fd, os.fstat(fd).st_size, 0).decode(errors="replace")


@contextlib.contextmanager
def http_origin_process(root: Path, *, timeout: float = 20.0) -> Iterator[HttpOrigin]:
    """Run ``tests/http_origin.py`` serving ``root`` on a free port; stop it on exit."""
    command = [sys.executable, "-m", "tests.http_origin", "--root", str(root), "--port", "0"]
    with (
        tempfile.TemporaryFile() as stderr,
        subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr) as process,
    ):
        try:
            try:
                url = announced_url(process, timeout)
            except Exception as exc:
                stop_process(process)
                stderr.seek(0)
                output = stderr.read().decode(errors="replace")[-2000:]
                raise OriginError(f"the origin did not start: {output}") from exc
            yield HttpOrigin(url, root, process.pid, stderr)
        finally:
            stop_process(process)


def _accepts(process: subprocess.Popen[bytes], port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        time.sleep(0.02)
    return False


@contextlib.contextmanager
def simple_http_process(root: Path, *, timeout: float = 20.0) -> Iterator[StaticServer]:
    """``python -m http.server`` serving ``root`` on a free port; stop it on exit."""
    for _ in range(5):
        port = free_port()
        command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]
        process = subprocess.Popen(
            [*command, "--directory", str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if _accepts(process, port, timeout):
            break
        # Lost the race for the port to another process, or too slow: try another port.
        stop_process(process)
    else:
        raise RuntimeError(f"http.server did not listen within {timeout} s")
    try:
        yield StaticServer(f"http://127.0.0.1:{port}", root)
    finally:
        stop_process(process)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def _http_origin_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpOrigin]:
    with http_origin_process(tmp_path_factory.mktemp("http-origin")) as origin:
        yield origin


@pytest.fixture
def http_origin(_http_origin_process: HttpOrigin) -> HttpOrigin:
    """The session's origin, with its knobs and log cleared."""
    _http_origin_process.reset()
    return _http_origin_process


@pytest.fixture(scope="session")
def simple_http_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StaticServer]:
    with simple_http_process(tmp_path_factory.mktemp("http-server")) as server:
        yield server


@pytest.fixture(scope="session")
def nginx() -> Iterator[StaticServer]:
    if nginx_binary() is None:
        pytest.fail("nginx is not installed: apt-get install nginx (CI installs it)")
    # Not under pytest's tmp dir (mode 0700): nginx started as root serves as 'nobody', which
    # must be able to read the files.
    root = Path(tempfile.mkdtemp(prefix="nginx-root-"))
    try:
        root.chmod(0o755)
        with nginx_server(root) as server:
            yield StaticServer(server.url, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)
