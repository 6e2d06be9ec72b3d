"""asynctransfer against boto3 / s3transfer on one S3 endpoint, in one run.

    python -m benchmarks.vs_boto3 [--size 1GiB] [--part-size 8MiB] [--concurrency 10]
                                  [--repeat 1] [--json out.json] [--endpoint-url URL]

Without ``--endpoint-url`` it starts a local server in a child process: ``--server moto``
(default; correct but slow, the bottleneck, see benchmarks/README.md) or ``--server sink``
(``benchmarks.s3_sink``: discards uploads and serves downloads from files with sendfile, so the
clients' own costs show). Each upload and download runs in a fresh child process
(see ``benchmarks.measure``) so that its CPU seconds and peak RSS are its own. Every downloaded
file is compared with the source by SHA-256 in this process, outside the timing.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Any

from benchmarks.measure import ChildFailedError, Measurement, Probe, run_child

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

MODULE = "benchmarks.vs_boto3"
CLIENTS = ("asynctransfer", "boto3")
DIRECTIONS = ("upload", "download")
DEFAULT_MIN_PART = 5 * 1024 * 1024
_CHUNK = 64 * 1024 * 1024
_GIB = 1024**3
_MIB = 1024**2


# --------------------------------------------------------------------------- the child's side
# Imports of the contestants stay inside these functions, so that each child loads only its own
# client and its baseline RSS is that client's.


def _child_asynctransfer(args: argparse.Namespace, probe: Probe) -> dict[str, Any]:
    import anyio

    import asynctransfer

    config = asynctransfer.TransferConfig(
        endpoint_url=args.endpoint_url,
        part_size=args.part_size,
        max_concurrency=args.concurrency,
        min_part_size=args.min_part_size,
    )
    url = f"s3://{args.bucket}/{args.key}"

    async def go() -> dict[str, Any]:
        async with asynctransfer.Transferer(config) as transferer:
            result: asynctransfer.UploadResult | asynctransfer.DownloadResult
            probe.start()
            if args.direction == "upload":
                result = await transferer.upload(args.file, url)
            else:
                result = await transferer.download(url, args.file)
            probe.stop()
        return dataclasses.asdict(result)

    result: dict[str, Any] = anyio.run(go, backend="asyncio", backend_options={"use_uvloop": True})
    return {"result": result}


def _child_boto3(args: argparse.Namespace, probe: Probe) -> dict[str, Any]:
    import boto3
    from boto3.s3.transfer import TransferConfig

    client = boto3.client("s3", endpoint_url=args.endpoint_url)
    config = TransferConfig(
        multipart_chunksize=args.part_size,
        multipart_threshold=args.part_size,
        max_concurrency=args.concurrency,
    )
    probe.start()
    if args.direction == "upload":
        client.upload_file(args.file, args.bucket, args.key, Config=config)
    else:
        client.download_file(args.bucket, args.key, args.file, Config=config)
    probe.stop()
    return {}


def child_main(argv: Sequence[str]) -> int:
    probe = Probe()
    parser = argparse.ArgumentParser(prog=f"{MODULE} _child")
    parser.add_argument("client", choices=CLIENTS)
    parser.add_argument("direction", choices=DIRECTIONS)
    parser.add_argument("--file", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--endpoint-url")
    parser.add_argument("--part-size", type=int, required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--min-part-size", type=int, default=DEFAULT_MIN_PART)
    args = parser.parse_args(argv)
    run = _child_asynctransfer if args.client == "asynctransfer" else _child_boto3
    extra = run(args, probe)
    probe.emit(**extra)
    return 0


# --------------------------------------------------------------------------- the parent's side


def _size(text: str) -> int:
    from asynctransfer._core.units import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"python -m {MODULE}",
        description="Upload and download one file with asynctransfer and with boto3, each in "
        "its own child process; report MB/s, CPU seconds and peak RSS.",
    )
    parser.add_argument("--size", type=_size, default=_size("1GiB"), help="default 1GiB")
    parser.add_argument("--part-size", type=_size, default=_size("8MiB"), help="default 8MiB")
    parser.add_argument("--concurrency", type=int, default=10, help="default 10")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each contestant; medians shown (default 1)"
    )
    parser.add_argument("--json", metavar="PATH", help="also write every run and the summary")
    parser.add_argument(
        "--endpoint-url", help="S3 endpoint to use (default: start a local --server)"
    )
    parser.add_argument(
        "--server",
        choices=["moto", "sink"],
        default="moto",
        help="local server without --endpoint-url: moto (default, slow) or sink (fast, discards "
        "uploads, serves downloads from files)",
    )
    parser.add_argument(
        "--bucket", default="asynctransfer-bench", help="created if missing (default %(default)s)"
    )
    parser.add_argument(
        "--tmpdir", help="where the test file and downloads go (default: the system temp dir)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        help="seconds before a child is killed (default: 120 + 1 s per MB, i.e. >= 1 MB/s)",
    )
    return parser


@dataclasses.dataclass
class _Setup:
    endpoint_url: str
    env: dict[str, str]
    min_part_size: int
    local_moto: bool
    sink_root: str | None = None  # the sink serves GETs from here; uploads are discarded


@contextlib.contextmanager
def _endpoint(args: argparse.Namespace, root: str) -> Iterator[_Setup]:
    env = dict(os.environ)
    min_part = min(DEFAULT_MIN_PART, args.part_size)
    if args.endpoint_url:
        yield _Setup(args.endpoint_url, env, min_part, local_moto=False)
        return
    from asynctransfer.testing import moto_server

    from .s3_sink import sink_server

    # Dummy credentials and no user AWS config: the local moto accepts anything, and a profile
    # or an endpoint in ~/.aws/config must not redirect the children.
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        env.pop(name, None)
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    if args.server == "sink":
        with sink_server(root) as endpoint:
            yield _Setup(endpoint, env, min_part, local_moto=True, sink_root=root)
        return
    with moto_server(min_part_size=min_part if min_part < DEFAULT_MIN_PART else None) as server:
        yield _Setup(server.endpoint_url, env, min_part, local_moto=True)


def _ensure_bucket(setup: _Setup, bucket: str) -> Any:
    """Create ``bucket`` if missing; return the boto3 client used (for clean-up)."""
    import boto3

    credentials: dict[str, str] = {}
    if setup.local_moto:
        credentials = {
            "aws_access_key_id": setup.env["AWS_ACCESS_KEY_ID"],
            "aws_secret_access_key": setup.env["AWS_SECRET_ACCESS_KEY"],
            "region_name": setup.env["AWS_DEFAULT_REGION"],
        }
    client = boto3.client("s3", endpoint_url=setup.endpoint_url, **credentials)
    if setup.sink_root is not None:  # the sink has no buckets to list or create
        return client
    existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if bucket not in existing:
        client.create_bucket(Bucket=bucket)
    return client


def _make_file(path: str, size: int) -> str:
    """Write ``size`` random bytes to ``path``; return their SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        remaining = size
        while remaining > 0:
            chunk = os.urandom(min(_CHUNK, remaining))
            f.write(chunk)
            digest.update(chunk)
            remaining -= len(chunk)
    return digest.hexdigest()


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("asynctransfer", "aiobotocore", "boto3", "botocore", "s3transfer", "moto"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "-"
    return out


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _summary(runs: list[Measurement]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for direction in DIRECTIONS:
        for client in CLIENTS:
            mine = [m for m in runs if m.client == client and m.direction == direction]
            if not mine:
                continue
            rows.append(
                {
                    "client": client,
                    "direction": direction,
                    "runs": len(mine),
                    "mb_per_s": _median([m.mb_per_s for m in mine]),
                    "wall_s": _median([m.wall_s for m in mine]),
                    "cpu_s": _median([m.cpu_s for m in mine]),
                    "cpu_s_per_gib": _median([m.cpu_s_per_gib for m in mine]),
                    "cpu_total_s": _median([m.cpu_total_s for m in mine]),
                    "peak_rss_mib": _median([m.peak_rss_mib for m in mine]),
                    "baseline_rss_mib": _median(
                        [m.baseline_rss_mib for m in mine if m.baseline_rss_mib is not None]
                    ),
                }
            )
    return rows


def _ratios(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    by = {(r["client"], r["direction"]): r for r in rows}
    out: dict[str, dict[str, float]] = {}
    for direction in DIRECTIONS:
        ours, theirs = by.get(("asynctransfer", direction)), by.get(("boto3", direction))
        if ours is None or theirs is None:
            continue
        out[direction] = {
            "mb_per_s": ours["mb_per_s"] / theirs["mb_per_s"],
            "cpu_s": ours["cpu_s"] / theirs["cpu_s"],
            "peak_rss_mib": ours["peak_rss_mib"] / theirs["peak_rss_mib"],
        }
    return out


def _table(rows: list[dict[str, Any]]) -> str:
    header = (
        "client",
        "direction",
        "MB/s",
        "wall s",
        "CPU s",
        "CPU s/GiB",
        "CPU s (process)",
        "peak RSS MiB",
        "base RSS MiB",
    )
    lines = [
        (
            r["client"],
            r["direction"],
            f"{r['mb_per_s']:.1f}",
            f"{r['wall_s']:.2f}",
            f"{r['cpu_s']:.2f}",
            f"{r['cpu_s_per_gib']:.2f}",
            f"{r['cpu_total_s']:.2f}",
            f"{r['peak_rss_mib']:.1f}",
            f"{r['baseline_rss_mib']:.1f}",
        )
        for r in rows
    ]
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]

    def fmt(row: Sequence[str]) -> str:
        cells = [
            cell.ljust(w) if i < 2 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *(fmt(line) for line in lines)])


def _child_args(
    args: argparse.Namespace, setup: _Setup, client: str, direction: str, file: str, key: str
) -> list[str]:
    return [
        "_child",
        client,
        direction,
        "--file",
        file,
        "--bucket",
        args.bucket,
        "--key",
        key,
        "--endpoint-url",
        setup.endpoint_url,
        "--part-size",
        str(args.part_size),
        "--concurrency",
        str(args.concurrency),
        "--min-part-size",
        str(setup.min_part_size),
    ]


def _server_name(args: argparse.Namespace, setup: _Setup) -> str:
    if not setup.local_moto:
        return setup.endpoint_url
    return (
        "local sink (benchmarks.s3_sink)"
        if args.server == "sink"
        else "local moto (the bottleneck)"
    )


def _log(message: str) -> None:
    sys.stderr.write(f"[vs_boto3 {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.size <= 0 or args.concurrency < 1 or args.repeat < 1:
        sys.stderr.write("--size, --concurrency and --repeat must be positive\n")
        return 2
    timeout = args.timeout if args.timeout is not None else 120 + args.size / 1e6
    runs: list[Measurement] = []
    failures: list[str] = []
    keys: set[str] = set()

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="asynctransfer-vs-boto3-", dir=args.tmpdir)
        )
        setup = stack.enter_context(_endpoint(args, tmp))
        _log(
            f"endpoint {setup.endpoint_url} ({'local ' + args.server if setup.local_moto else 'given'})"
        )
        s3 = _ensure_bucket(setup, args.bucket)
        source = os.path.join(tmp, "source.bin")
        _log(f"writing {args.size / _MIB:.1f} MiB of random bytes to {source}")
        source_sha = _make_file(source, args.size)

        def measure(client: str, direction: str, key: str, file: str) -> Measurement | None:
            _log(f"{client} {direction} ...")
            try:
                m = run_child(
                    MODULE,
                    _child_args(args, setup, client, direction, file, key),
                    client=client,
                    direction=direction,
                    size=args.size,
                    timeout=timeout,
                    env=setup.env,
                )
            except ChildFailedError as exc:
                failures.append(str(exc))
                _log(f"FAILED: {exc}")
                return None
            _log(
                f"{client} {direction}: {m.mb_per_s:.1f} MB/s, {m.wall_s:.2f} s, "
                f"CPU {m.cpu_s:.2f} s, peak RSS {m.peak_rss_mib:.1f} MiB"
            )
            runs.append(m)
            return m

        try:
            for repeat in range(args.repeat):
                # Alternate who goes first, so that neither always meets a warmer server.
                order = CLIENTS if repeat % 2 == 0 else CLIENTS[::-1]
                uploaded: set[str] = set()
                for client in order:
                    key = f"bench/{client}-{args.size}.bin"
                    keys.add(key)
                    if measure(client, "upload", key, source) is not None:
                        uploaded.add(client)
                # Each client downloads the object it uploaded: the byte check below then covers
                # both of its directions, end to end.
                for client in order:
                    if client not in uploaded:
                        continue
                    key = f"bench/{client}-{args.size}.bin"
                    if setup.sink_root is not None:  # the sink kept nothing: serve the source
                        served = os.path.join(setup.sink_root, args.bucket, key)
                        os.makedirs(os.path.dirname(served), exist_ok=True)
                        with contextlib.suppress(FileExistsError):
                            os.link(source, served)
                    target = os.path.join(tmp, f"download-{client}.bin")
                    m = measure(client, "download", key, target)
                    if m is None:
                        continue
                    got = _sha256(target)
                    if os.path.getsize(target) != args.size or got != source_sha:
                        failures.append(
                            f"{client} download: bytes differ (sha256 {got} != {source_sha})"
                        )
                        _log(f"FAILED: {failures[-1]}")
                    os.remove(target)
        finally:
            if not setup.local_moto:  # a real store keeps objects: remove ours
                for key in sorted(keys):
                    with contextlib.suppress(Exception):
                        s3.delete_object(Bucket=args.bucket, Key=key)

    rows = _summary(runs)
    ratios = _ratios(rows)
    out = sys.stdout
    out.write(
        f"\n{args.size / _MIB:.0f} MiB, part {args.part_size / _MIB:g} MiB, "
        f"concurrency {args.concurrency}, {args.repeat} run(s) each (medians), endpoint "
        f"{_server_name(args, setup)}\n\n"
    )
    out.write(_table(rows) + "\n\n")
    for direction, r in ratios.items():
        out.write(
            f"asynctransfer / boto3, {direction}: MB/s x{r['mb_per_s']:.2f}, "
            f"CPU s x{r['cpu_s']:.2f}, peak RSS x{r['peak_rss_mib']:.2f}\n"
        )
    if failures:
        out.write(f"\nFAILED ({len(failures)}):\n" + "\n".join(failures) + "\n")
    else:
        out.write("\nall downloads byte-identical to the source (sha256)\n")

    if args.json:
        document = {
            "benchmark": "vs_boto3",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "parameters": {
                "size": args.size,
                "part_size": args.part_size,
                "concurrency": args.concurrency,
                "repeat": args.repeat,
                "endpoint": _server_name(args, setup),
            },
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "versions": _versions(),
            "summary": rows,
            "ratios_asynctransfer_over_boto3": ratios,
            "runs": [m.to_json() for m in runs],
            "failures": failures,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2, sort_keys=True)
            f.write("\n")
        _log(f"wrote {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        sys.exit(child_main(sys.argv[2:]))
    sys.exit(main())
