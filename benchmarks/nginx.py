"""nginx serving a directory on 127.0.0.1, for the HTTP tests and the ``http`` benchmark.

    with nginx_server(root) as server:   # server.url == "http://127.0.0.1:PORT"
        ...                              # GET server.url + "/file.bin"

Its own configuration and prefix in a temporary directory (never the system's), one worker,
sendfile on, ``master_process`` in the foreground so the PID we start is the one we stop. The
binary comes from the OS packages (``apt-get install nginx``): :func:`nginx_binary` says where,
or None.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from asynctransfer.testing import free_port, stop_process

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["NginxServer", "nginx_binary", "nginx_server"]

_CONFIG = """\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    types {{ }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location / {{ }}
    }}
}}
"""


@dataclass(frozen=True)
class NginxServer:
    url: str
    """``http://127.0.0.1:PORT``, no trailing slash."""
    pid: int
    root: str


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


@contextlib.contextmanager
def nginx_server(root: str | os.PathLike[str], timeout: float = 10.0) -> Iterator[NginxServer]:
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx)")
    with tempfile.TemporaryDirectory(prefix="nginx-") as prefix:
        port = free_port()
        config = os.path.join(prefix, "nginx.conf")
        with open(config, "w", encoding="ascii") as f:
            f.write(_CONFIG.format(prefix=prefix, port=port, root=os.path.abspath(root)))
        process = subprocess.Popen(
            [binary, "-p", prefix, "-c", config, "-e", os.path.join(prefix, "error.log")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    err = process.stderr.read().decode(errors="replace") if process.stderr else ""
                    raise RuntimeError(f"nginx exited with {process.returncode}: {err.strip()}")
                with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not listen on port {port} within {timeout} s")
                time.sleep(0.05)
            yield NginxServer(f"http://127.0.0.1:{port}", process.pid, os.path.abspath(root))
        finally:
            stop_process(process)
            if process.stderr is not None:
                process.stderr.close()
