"""Test-side handle of the fault-injecting proxy (``tests/proxy_server.py``), and its fixtures.

``fault_proxy(upstream_url)`` runs the proxy in a child process on a free port of 127.0.0.1 in
front of ``upstream_url`` and yields a ``Proxy``: ``endpoint_url`` to point a client at,
``set_rules``, ``log`` and ``reset``. The calls are synchronous (urllib) and quick, so async
tests call them directly.

The fixtures ``proxy_server`` (session: the proxy in front of the ``moto`` fixture) and
``proxied_bucket`` (a fresh ``Bucket`` whose ``config`` goes through the proxy, with the proxy's
rules and log cleared) are exposed to the suite by ``tests/conftest.py``. ``Bucket.client`` talks
to moto directly, so checks made with it neither appear in the log nor meet faults.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pytest

from asynctransfer import TransferConfig
from asynctransfer.testing import free_port, stop_process

if TYPE_CHECKING:
    from collections.abc import Iterator

    from asynctransfer.testing import MotoServer

    from .conftest import Bucket

SERVER_SCRIPT = Path(__file__).with_name("proxy_server.py")
CONTROL = "/__proxy__/"


class ProxyError(RuntimeError):
    """The proxy process failed to start or refused a control request."""


@dataclass
class Proxy:
    endpoint_url: str
    pid: int
    upstream_url: str
    stderr: IO[bytes] | None = field(default=None, repr=False)

    def _call(self, method: str, name: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(
            self.endpoint_url + CONTROL + name,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"} if data is not None else {},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise ProxyError(f"proxy {method} {name}: {exc.code} {exc.read()!r}") from exc

    def set_rules(self, rules: list[dict[str, Any]], *, seed: int = 0) -> None:
        """Replace the fault rules (see ``tests/proxy_server.py`` for their form)."""
        self._call("POST", "rules", {"rules": rules, "seed": seed})

    def rules(self) -> list[dict[str, Any]]:
        """The rules, each with ``applied``: how many requests it faulted."""
        rules: list[dict[str, Any]] = self._call("GET", "rules")
        return rules

    def log(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = self._call("GET", "log")
        return entries

    def requests(self, *operations: str) -> list[dict[str, Any]]:
        """The log entries of these S3 operations (all entries when none are named)."""
        return [e for e in self.log() if not operations or e["operation"] in operations]

    def reset(self) -> None:
        """Clear the rules and the log."""
        self._call("POST", "reset", {})

    def stderr_text(self) -> str:
        if self.stderr is None:
            return ""
        self.stderr.flush()
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")


def _wait_ready(process: subprocess.Popen[bytes], url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + CONTROL + "health", timeout=1) as response:
                # The pid tells our proxy from another process that won the port.
                return bool(json.loads(response.read()).get("pid") == process.pid)
        except (urllib.error.URLError, OSError, ValueError):
            time.sleep(0.05)
    return False


@contextlib.contextmanager
def fault_proxy(upstream_url: str, *, timeout: float = 30.0) -> Iterator[Proxy]:
    """Run the proxy in front of ``upstream_url`` in a child process; stop it on exit."""
    with tempfile.TemporaryFile() as stderr:
        for _ in range(5):
            port = free_port()
            process = subprocess.Popen(
                [
                    sys.executable,
                    str(SERVER_SCRIPT),
                    "--upstream",
                    upstream_url,
                    "--port",
                    str(port),
                ],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
            url = f"http://127.0.0.1:{port}"
            if _wait_ready(process, url, timeout):
                break
            # Lost the race for the port, or too slow: try again on another one.
            stop_process(process)
        else:
            stderr.seek(0)
            raise ProxyError(
                f"the fault proxy did not start within {timeout} s: "
                f"{stderr.read().decode(errors='replace')[-2000:]}"
            )
        try:
            yield Proxy(url, process.pid, upstream_url, stderr)
        finally:
            stop_process(process)


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def proxy_server(moto: MotoServer) -> Iterator[Proxy]:
    """The fault proxy in front of the session's moto server."""
    with fault_proxy(moto.endpoint_url) as proxy:
        yield proxy


@pytest.fixture
def proxied_bucket(moto: MotoServer, proxy_server: Proxy) -> Iterator[Bucket]:
    """A fresh bucket; its ``config`` goes through the proxy (rules and log cleared first)."""
    # Imported here: conftest imports this module, so a top-level import would be circular.
    from .conftest import SMALL_MIN_PART, SMALL_PART, _make_bucket

    config = TransferConfig(
        endpoint_url=proxy_server.endpoint_url,
        part_size=SMALL_PART,
        min_part_size=SMALL_MIN_PART,
        max_concurrency=4,
    )
    proxy_server.reset()
    try:
        yield from _make_bucket(moto, config)
    finally:
        proxy_server.reset()
