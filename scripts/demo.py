"""The demo: upload a random file to the local S3 endpoint with asynctransfer, download it
back, check every byte, and show what each direction cost.

    scripts/demo [--size 1GiB] [--part-size 8MiB] [--concurrency 10]

The endpoint is this package's own (``asynctransfer serve``), started on a free port with a
temporary root. It runs in a child process rather than in this one, so that the CPU seconds and
peak RSS shown are the client's alone; the server's CPU is shown beside them.
Exit status 0 when the downloaded bytes are identical to the source, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import anyio

import asynctransfer
from asynctransfer._core.units import format_size, parse_size
from asynctransfer.testing import local_s3_process

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

_CHUNK = 64 * 1024 * 1024
_MIB = 1024 * 1024
_MIN_PART = 5 * _MIB
BUCKET = "asynctransfer-demo"
R = TypeVar("R", asynctransfer.UploadResult, asynctransfer.DownloadResult)


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/demo",
        description="Upload a random file to the local S3 endpoint with asynctransfer, download "
        "it back, verify the bytes and show MB/s, CPU seconds per GiB and peak RSS.",
    )
    parser.add_argument("--size", type=_size, default=1024 * _MIB, help="default 1GiB")
    parser.add_argument("--part-size", type=_size, default=8 * _MIB, help="default 8MiB")
    parser.add_argument("--concurrency", type=int, default=10, help="default 10")
    return parser


def _isolate_aws_env() -> None:
    """Dummy credentials for the local endpoint, and no user AWS config to redirect us."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )


def _create_bucket(endpoint_url: str, bucket: str) -> None:
    # The endpoint accepts any credentials unless told otherwise, so a plain PUT creates the
    # bucket; this keeps boto3 (and its memory) out of this process, whose peak RSS is reported.
    request = urllib.request.Request(f"{endpoint_url}/{bucket}", method="PUT")
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != 200:
            raise RuntimeError(f"CreateBucket {bucket}: HTTP {response.status}")


def _make_file(path: str, size: int) -> None:
    with open(path, "wb") as f:
        remaining = size
        while remaining > 0:
            chunk = os.urandom(min(_CHUNK, remaining))
            f.write(chunk)
            remaining -= len(chunk)


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux: ``echo 5 > /proc/self/clear_refs``), so that each
    direction reports its own peak. False when that is not possible: peaks are then cumulative."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _peak_rss_mib() -> float:
    """Peak RSS since the last reset: VmHWM on Linux (ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / _MIB if sys.platform == "darwin" else maxrss / 1024


@dataclass(frozen=True)
class Row:
    direction: str
    size: int
    seconds: float
    cpu_seconds: float
    server_cpu_seconds: float
    peak_rss_mib: float


def _cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of another process (Linux /proc; 0 where unavailable)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measure(direction: str, server_pid: int, fn: Callable[[], Awaitable[R]]) -> tuple[R, Row]:
    reset = _reset_peak_rss()
    server0 = _cpu_seconds_of(server_pid)
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = anyio.run(fn, backend="asyncio", backend_options={"use_uvloop": True})
    seconds, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    server = _cpu_seconds_of(server_pid) - server0
    label = direction if reset else f"{direction} (RSS: process peak so far)"
    return result, Row(label, result.size, seconds, cpu, server, _peak_rss_mib())


def _table(rows: Sequence[Row]) -> str:
    header = (
        "direction",
        "size",
        "seconds",
        "MB/s",
        "CPU s",
        "CPU s/GiB",
        "server CPU s",
        "peak RSS MiB",
    )
    body = [
        (
            r.direction,
            format_size(r.size),
            f"{r.seconds:.2f}",
            f"{r.size / r.seconds / 1e6:.1f}" if r.seconds > 0 else "-",
            f"{r.cpu_seconds:.2f}",
            f"{r.cpu_seconds / (r.size / 2**30):.2f}" if r.size else "-",
            f"{r.server_cpu_seconds:.2f}",
            f"{r.peak_rss_mib:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def fmt(line: Sequence[str]) -> str:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells)

    return "\n".join([fmt(header), "  ".join("-" * w for w in widths), *map(fmt, body)])


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.size <= 0 or args.concurrency < 1:
        sys.stderr.write("demo: --size and --concurrency must be positive\n")
        return 2
    out = sys.stdout
    _isolate_aws_env()
    min_part = min(_MIN_PART, args.part_size)
    out.write("starting the local S3 endpoint (asynctransfer serve) ...\n")
    out.flush()
    with (
        tempfile.TemporaryDirectory(prefix="asynctransfer-demo-") as tmp,
        local_s3_process(os.path.join(tmp, "store"), min_part_size=min_part) as server,
    ):
        _create_bucket(server.endpoint_url, BUCKET)
        config = asynctransfer.TransferConfig(
            endpoint_url=server.endpoint_url,
            part_size=args.part_size,
            max_concurrency=args.concurrency,
            min_part_size=min_part,
        )
        source = os.path.join(tmp, "source.bin")
        target = os.path.join(tmp, "downloaded.bin")
        url = f"s3://{BUCKET}/demo/source.bin"
        out.write(
            f"endpoint {server.endpoint_url}; writing {format_size(args.size)} of random bytes; "
            f"part {format_size(args.part_size)}, concurrency {args.concurrency}\n"
        )
        out.flush()
        _make_file(source, args.size)

        out.write(f"upload   {source} -> {url}\n")
        out.flush()
        up, up_row = _measure(
            "upload", server.pid, lambda: asynctransfer.upload(source, url, config=config)
        )
        out.write(f"download {url} -> {target}\n")
        out.flush()
        down, down_row = _measure(
            "download", server.pid, lambda: asynctransfer.download(url, target, config=config)
        )

        # The same object as a plain HTTP URL: the endpoint serves anonymous GETs (with Range,
        # ETag and sendfile) when started without keys, as a web server or CDN would.
        http_url = f"{server.endpoint_url}/{BUCKET}/demo/source.bin"
        http_target = os.path.join(tmp, "downloaded-http.bin")
        out.write(f"download {http_url} -> {http_target}\n")
        out.flush()
        web, web_row = _measure(
            "download (http)",
            server.pid,
            lambda: asynctransfer.download(http_url, http_target, config=config),
        )

        sha_source, sha_target = _sha256(source), _sha256(target)
        sha_http = _sha256(http_target)
        size_target = os.path.getsize(target)

    out.write("\n" + _table([up_row, down_row, web_row]) + "\n\n")
    out.write(
        "CPU s is this process's time.process_time() (all its threads, including the "
        "client's set-up); server CPU s is the endpoint's, a separate process on the same two "
        "cores. Timings include creating the client. Each download writes a new file, fsync'ed "
        "before it is renamed into place.\n\n"
    )
    out.write(f"size      source {args.size}  uploaded {up.size}  downloaded {size_target}\n")
    out.write(f"xxh3-128  uploaded {up.xxh3_128}  downloaded {down.xxh3_128}  (from the results)\n")
    out.write(f"sha256    source {sha_source}\n          downloaded {sha_target}\n")
    out.write(f"          downloaded over http {sha_http}\n")
    ok = up.size == args.size == down.size == size_target == web.size
    ok = ok and up.xxh3_128 == down.xxh3_128 == web.xxh3_128
    ok = ok and sha_source == sha_target == sha_http
    if not ok:
        out.write("FAILED: the downloaded bytes differ from the source\n")
        return 1
    out.write("OK: bytes identical\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
