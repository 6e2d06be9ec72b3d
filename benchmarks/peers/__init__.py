"""The contestants of ``python -m benchmarks s3``: one module per client, each with one entry.

Each module ``benchmarks.peers.NAME_`` defines ``run(spec: Spec) -> dict`` and ends with
``if __name__ == "__main__": sys.exit(child_main(run))``. The harness starts it as
``python -m benchmarks.peers.NAME_ SPEC_JSON`` in a fresh process per run, with the project's
interpreter for asynctransfer and with the peers' virtualenv (``benchmarks/.venv-peers``) for
the others. ``run`` sets its client up, wraps the transfer itself, and nothing else, in
``with timed():``, and returns whatever it wants recorded (JSON-able). ``child_main`` prints the
measurement (``benchmarks.measure.Probe``) plus the versions of the client's libraries as they
are installed in that interpreter.

The trailing underscore in the module names keeps ``import boto3`` inside ``boto3_`` meaning the
library. This package and ``benchmarks.measure`` use the standard library only, since they are
imported by every child, whichever interpreter runs it; the clients are imported inside ``run``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import platform
import sys
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from benchmarks.measure import Probe

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = [
    "CONTESTANTS",
    "Contestant",
    "Spec",
    "child_main",
    "timed",
    "write_all",
]

Direction = Literal["upload", "download"]


@dataclass(frozen=True, kw_only=True)
class Spec:
    """One transfer for one child: everything a contestant needs, as plain JSON-able values."""

    contestant: str
    direction: Direction
    endpoint_url: str
    """``http://127.0.0.1:PORT`` of the server under test."""
    bucket: str
    key: str
    file: str
    """Upload: the source. Download: the destination (absent for ``preallocate=False``)."""
    size: int
    """Bytes of the object / file."""
    part_size: int
    """Part size (upload) and range size (download), the same for every contestant."""
    concurrency: int
    """Requests in flight, the same for every contestant."""
    preallocate: bool = False
    """Download only: ``file`` already exists with ``size`` bytes (of other content)."""
    min_part_size: int = 5 * 1024 * 1024
    """The server's smallest non-last part (lowered for small test parts)."""
    region: str = "us-east-1"
    access_key: str = "testing"
    secret_key: str = "testing"

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Spec:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Contestant:
    name: str
    module: str
    """Run as ``python -m MODULE SPEC_JSON``."""
    venv: Literal["project", "peers"]
    """Which interpreter runs it: the project's (``sys.executable``) or the peers' virtualenv."""
    distributions: tuple[str, ...]
    """Whose versions to record."""
    call: str
    """What the timed region calls, for the report."""
    directions: tuple[Direction, ...] = ("upload", "download")


CONTESTANTS: dict[str, Contestant] = {
    c.name: c
    for c in (
        Contestant(
            "asynctransfer",
            "benchmarks.peers.asynctransfer_",
            "project",
            ("asynctransfer", "aiobotocore", "botocore", "aiohttp", "anyio", "uvloop"),
            "Transferer.upload / .download on uvloop",
        ),
        Contestant(
            "asynctransfer-nofsync",
            "benchmarks.peers.asynctransfer_",
            "project",
            ("asynctransfer",),
            "the same with TransferConfig(durable=False): no fsync before the rename, like the "
            "peers (downloads only; uploads are the same)",
            ("download",),
        ),
        Contestant(
            "boto3",
            "benchmarks.peers.boto3_",
            "peers",
            ("boto3", "botocore", "s3transfer"),
            "client.upload_file / download_file",
        ),
        Contestant(
            "aioboto3",
            "benchmarks.peers.aioboto3_",
            "peers",
            ("aioboto3", "aiobotocore", "botocore", "aiohttp", "aiofiles", "uvloop"),
            "client.upload_file / download_file on uvloop",
        ),
        Contestant(
            "obstore",
            "benchmarks.peers.obstore_",
            "peers",
            ("obstore",),
            "obstore.put / get_range x N threads + pwrite",
        ),
        Contestant(
            "s3fs",
            "benchmarks.peers.s3fs_",
            "peers",
            ("s3fs", "fsspec", "aiobotocore", "botocore", "aiohttp"),
            "fs.put_file / get_file",
        ),
    )
}

_PROBE: Probe | None = None


@contextlib.contextmanager
def timed() -> Iterator[None]:
    """The measured region of this child's one transfer (use exactly once, in ``run``)."""
    if _PROBE is None:
        raise RuntimeError("timed() outside child_main()")
    if _PROBE.done:
        raise RuntimeError("timed() used twice in one child")
    with _PROBE.timed():
        yield


def write_all(fd: int, data: Any, offset: int) -> None:
    """``os.pwrite`` every byte of ``data`` (a buffer) at ``offset``, however short the writes."""
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written


def _versions(names: Sequence[str]) -> dict[str, str]:
    out = {"python": platform.python_version(), "interpreter": sys.executable}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def child_main(run: Callable[[Spec], dict[str, Any]], argv: Sequence[str] | None = None) -> int:
    """The child's ``main``: ``run(Spec.from_json(argv[0]))`` measured, then one record line."""
    global _PROBE
    _PROBE = Probe()  # created first, so that its set-up time covers the imports below
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m benchmarks.peers.NAME_ SPEC_JSON\n")
        return 2
    spec = Spec.from_json(args[0])
    extra = run(spec)
    if not _PROBE.done:
        raise RuntimeError(f"{spec.contestant}: run() never entered timed()")
    versions = _versions(CONTESTANTS[spec.contestant].distributions)
    _PROBE.emit(versions=versions, **extra)
    return 0
