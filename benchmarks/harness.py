"""``python -m benchmarks s3``: asynctransfer against boto3, aioboto3, obstore and s3fs.

One endpoint process for the whole run (``benchmarks.servers``); every transfer in a fresh child
process (``benchmarks.measure``), asynctransfer's with this interpreter and the peers' with their
own virtualenv (``benchmarks/.venv-peers``, built from ``benchmarks/peers.txt`` when that file
changes: aioboto3 and s3fs need aiobotocore 2.x, asynctransfer 3.x). Every contestant gets the
same part size and concurrency. Order of play:

1. warm-up: each contestant uploads and downloads a small object once, untimed (checked too);
2. ``--repeat`` rounds, the contestants' order reversed every other round: each uploads the
   source file; then each downloads the same object (put once by the harness) into a new file
   and into a preallocated one (a file of the full size with other bytes, already on disk).

Every output is checked outside the timing: a downloaded file by size and xxh3-128 against the
source, an uploaded object by reading it back with a plain GET. The statistics, the Markdown
table and the PNG chart are in ``benchmarks.chart``.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import chart as report
from benchmarks.files import file_digest, prefill, random_file, run_description
from benchmarks.measure import ChildFailedError, ChildTimeoutError, prefault, run_child
from benchmarks.peers import CONTESTANTS, Spec
from benchmarks.servers import Server, Store, StoreError, local_server_available, start_server

if TYPE_CHECKING:
    from collections.abc import Sequence

BENCH_DIR = Path(__file__).resolve().parent
PEERS_TXT = BENCH_DIR / "peers.txt"
PEERS_VENV = BENCH_DIR / ".venv-peers"
RESULTS_DIR = BENCH_DIR / "results"
BUCKET = "asynctransfer-bench"
SOURCE_KEY = "bench/source.bin"
WARM_KEY = "bench/warm.bin"
_MIB = 1024**2
# Memory touched before each child: twice the file (page cache, buffers) and the interpreter.
_PREFAULT_EXTRA = 256 * _MIB


def _log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- the peers' venv


def ensure_peers_venv() -> tuple[str, float]:
    """Build ``benchmarks/.venv-peers`` unless its stamp matches ``peers.txt``; return (python,
    seconds spent building: 0 when it was already there)."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".peers-stamp"
    digest = hashlib.sha256(PEERS_TXT.read_bytes() + platform.python_version().encode()).hexdigest()
    with open(PEERS_TXT, "rb") as lock:  # two harnesses at once: one builds, the other waits
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text().strip() == digest:
            return str(python), 0.0
        _log(f"building {PEERS_VENV} from {PEERS_TXT.name} (once per change of that file)")
        started = time.perf_counter()
        shutil.rmtree(PEERS_VENV, ignore_errors=True)
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input"]
        for command, limit in (
            ([sys.executable, "-m", "venv", str(PEERS_VENV)], 300),
            ([*pip, "-q", "-r", str(PEERS_TXT)], 900),
        ):
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=limit, check=False
            )
            if done.returncode != 0:
                shutil.rmtree(PEERS_VENV, ignore_errors=True)
                raise RuntimeError(
                    f"`{' '.join(command)}` failed ({done.returncode}):\n{done.stderr[-3000:]}"
                )
            # As Python >= 3.13 does for every venv: git, ruff (and so `scripts/test`) skip it.
            (PEERS_VENV / ".gitignore").write_text("# created by benchmarks.harness\n*\n")
        stamp.write_text(digest + "\n")
        elapsed = time.perf_counter() - started
        _log(f"built {PEERS_VENV} in {elapsed:.1f} s")
        return str(python), elapsed


# --------------------------------------------------------------------------- one run


class AbortError(RuntimeError):
    """Stop the rounds: what was measured so far is still reported."""


@dataclass
class Bench:
    args: argparse.Namespace
    server: Server
    store: Store
    tmp: str
    env: dict[str, str]
    pythons: dict[str, str]
    """Interpreter per venv kind: "project", "peers"."""
    min_part_size: int
    runs: list[dict[str, Any]] = field(default_factory=list)
    warmups: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    timeouts: int = 0

    def run(
        self,
        contestant: str,
        direction: str,
        *,
        dest: str | None,
        key: str,
        size: int,
        digest: str,
        source: str,
        repeat: int | None,
    ) -> None:
        """One child: prepare, measure, check the bytes, record (``repeat`` None: warm-up)."""
        label = f"{contestant} {direction}{'' if dest is None else ' -> ' + dest}"
        label += " (warm-up)" if repeat is None else f" #{repeat + 1}"
        file = source
        if direction == "download":
            file = os.path.join(self.tmp, f"download-{contestant}.bin")
            with contextlib.suppress(FileNotFoundError):
                os.remove(file)
            if dest == "prealloc":
                prefill(file, size)
        spec = Spec(
            contestant=contestant,
            direction="upload" if direction == "upload" else "download",
            endpoint_url=self.server.endpoint_url,
            bucket=BUCKET,
            key=key,
            file=file,
            size=size,
            part_size=self.args.part_size,
            concurrency=self.args.concurrency,
            preallocate=dest == "prealloc",
            min_part_size=self.min_part_size,
        )
        info = CONTESTANTS[contestant]
        os.sync()  # no writeback left over from the previous run lands inside this one
        prefault(2 * size + _PREFAULT_EXTRA)
        cpu_before = self.server.cpu_seconds()
        try:
            m = run_child(
                info.module,
                [spec.to_json()],
                client=contestant,
                direction=direction,
                size=size,
                timeout=self.args.timeout,
                env=self.env,
                python=self.pythons[info.venv],
            )
        except ChildFailedError as exc:
            self.failures.append(f"{label}: {exc}")
            _log(f"FAILED {self.failures[-1]}")
            if isinstance(exc, ChildTimeoutError):
                self.timeouts += 1
                # Two timeouts, or one and a server that does not answer a HEAD: the server is
                # stuck, and every run left would wait out its own timeout. Stop here.
                if self.timeouts >= 2 or not self.store.ping(SOURCE_KEY):
                    raise AbortError(f"stopped after {label} timed out: server stuck?") from exc
            return
        finally:
            server_cpu = self.server.cpu_seconds() - cpu_before
        # The check, outside any timing: the file on disk, or the object read back.
        got_size, got = -1, ""
        if direction == "download":
            method = "downloaded file: size + xxh3-128 vs the source"
            with contextlib.suppress(FileNotFoundError):  # no file: the check fails below
                got_size, got = file_digest(file)
                os.remove(file)
        else:
            method = "uploaded object read back (GET): size + xxh3-128 vs the source"
            with contextlib.suppress(StoreError):  # no object: the check fails below
                got_size, got = self.store.digest(key)
                self.store.delete(key)
        ok = got_size == size and got == digest
        record = {
            **m.to_json(),
            "contestant": contestant,
            "case": report.case_id(direction, dest),
            "dest": dest,
            "repeat": repeat,
            "server_cpu_s": server_cpu,
            "server_cpu_s_per_gib": server_cpu / (size / 1024**3),
            "check": {
                "ok": ok,
                "method": method,
                "expected": {"size": size, "xxh3_128": digest},
                "got": {"size": got_size, "xxh3_128": got},
            },
        }
        (self.warmups if repeat is None else self.runs).append(record)
        if not ok:
            self.failures.append(f"{label}: bytes differ ({got_size} B, {got} != {digest})")
            _log(f"FAILED {self.failures[-1]}")
            return
        _log(
            f"{label}: {m.mb_per_s:.0f} MB/s, {m.wall_s:.2f} s, CPU {m.cpu_s:.2f} s, "
            f"peak RSS {m.peak_rss_mib:.0f} MiB, server CPU {server_cpu:.2f} s, bytes ok"
        )


# --------------------------------------------------------------------------- command line


def _size(text: str) -> int:
    from asynctransfer._core.units import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _contestants(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONTESTANTS]
    if unknown or not names or names[0] != "asynctransfer":
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list starting with asynctransfer, from {list(CONTESTANTS)}"
        )
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks s3",
        description="asynctransfer vs boto3, aioboto3, obstore and s3fs on one local S3 "
        "endpoint: upload, download into a new file, download into a preallocated one.",
    )
    p.add_argument("--size", type=_size, help="object size (default 1GiB; --quick: 32MiB)")
    p.add_argument("--part-size", type=_size, help="part/range size for all (default 8MiB)")
    p.add_argument("--concurrency", type=int, default=10, help="requests in flight (default 10)")
    p.add_argument("--repeat", type=int, help="timed rounds (default 3; --quick: 1)")
    p.add_argument(
        "--quick", action="store_true", help="32MiB, 8MiB parts, one round: for CI, not speed"
    )
    p.add_argument(
        "--server",
        choices=["local", "moto"],
        default="local",
        help="local: python -m asynctransfer serve (default); moto: correct but slow",
    )
    p.add_argument(
        "--contestants",
        type=_contestants,
        default=list(CONTESTANTS),
        help=f"comma-separated, asynctransfer first (default {','.join(CONTESTANTS)})",
    )
    p.add_argument("--json", metavar="PATH", help="default benchmarks/results/<UTC time>-s3.json")
    p.add_argument("--chart", metavar="PATH", help="default benchmarks/results/<UTC time>-s3.png")
    p.add_argument("--tmpdir", help="where the files go (default: the system temp dir)")
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds per child before it is killed (default 120 + 1 per MB; --quick: 60)",
    )
    return p


def _play(
    bench: Bench,
    args: argparse.Namespace,
    warm: tuple[str, int, str],
    main: tuple[str, int, str],
) -> None:
    """The warm-up, then the rounds. ``warm`` and ``main`` are (file, size, xxh3-128)."""
    uploaders = [c for c in args.contestants if "upload" in CONTESTANTS[c].directions]
    for c in args.contestants:
        common: dict[str, Any] = dict(zip(("source", "size", "digest"), warm, strict=True))
        if c in uploaders:
            bench.run(c, "upload", dest=None, key=f"bench/warm-{c}.bin", repeat=None, **common)
        bench.run(c, "download", dest="new", key=WARM_KEY, repeat=None, **common)
    common = dict(zip(("source", "size", "digest"), main, strict=True))
    for r in range(args.repeat):
        # Alternate who goes first (and new-before-preallocated), so that no one always meets
        # the same state of the server and the page cache.
        order = args.contestants if r % 2 == 0 else args.contestants[::-1]
        for c in order:
            if c in uploaders:
                bench.run(c, "upload", dest=None, key=f"bench/up-{c}-{r}.bin", repeat=r, **common)
        for c in order:
            for dest in ("new", "prealloc") if r % 2 == 0 else ("prealloc", "new"):
                bench.run(c, "download", dest=dest, key=SOURCE_KEY, repeat=r, **common)


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: the child is killed, the server stopped, tmp removed


def _child_env() -> dict[str, str]:
    """Dummy credentials, no user AWS config or proxies: every client talks to 127.0.0.1."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("AWS_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        NO_PROXY="127.0.0.1,localhost",
        no_proxy="127.0.0.1,localhost",
    )
    return env


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.size = args.size or (32 * _MIB if args.quick else 1024 * _MIB)
    args.part_size = args.part_size or 8 * _MIB
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.size <= 0 or args.concurrency < 1 or args.repeat < 1:
        sys.stderr.write("--size, --concurrency and --repeat must be positive\n")
        return 2
    if args.timeout is None:
        args.timeout = 60.0 if args.quick else 120 + args.size / 1e6
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    try:
        import matplotlib  # noqa: F401  (fail now, not after the runs)
    except ImportError:
        sys.stderr.write("the chart needs matplotlib: pip install -e '.[bench]'\n")
        return 2
    if args.server == "local" and not local_server_available():
        sys.stderr.write(
            "`python -m asynctransfer serve` is not available in this checkout; use --server moto\n"
        )
        return 2
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    json_path = Path(args.json or RESULTS_DIR / f"{stamp}-s3.json")
    chart_path = Path(args.chart or RESULTS_DIR / f"{stamp}-s3.png")
    started = time.perf_counter()

    pythons = {"project": sys.executable}
    build_s = 0.0
    if any(CONTESTANTS[c].venv == "peers" for c in args.contestants):
        pythons["peers"], build_s = ensure_peers_venv()
    min_part = min(5 * _MIB, args.part_size)
    warm_size = min(args.size, args.part_size + 1)  # two parts: the multipart path, but small

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-s3-", dir=args.tmpdir))
        root = os.path.join(tmp, "server-root")
        os.mkdir(root)
        server = stack.enter_context(
            start_server(
                args.server,
                root=root,
                min_part_size=min_part,
                log_path=os.path.join(tmp, "server.log"),
            )
        )
        _log(f"server: {server.description} at {server.endpoint_url} (pid {server.pid})")
        store = Store(server.endpoint_url, BUCKET, timeout=max(120.0, args.timeout))
        stack.callback(store.close)
        store.create_bucket()
        source, warm = os.path.join(tmp, "source.bin"), os.path.join(tmp, "warm.bin")
        _log(f"writing {args.size / _MIB:.1f} MiB of random bytes; putting it as {SOURCE_KEY}")
        digest = random_file(source, args.size)
        warm_digest = random_file(warm, warm_size)
        for key, path, want in ((SOURCE_KEY, source, digest), (WARM_KEY, warm, warm_digest)):
            store.put_file(key, path)
            if store.digest(key) != (os.path.getsize(path), want):
                raise RuntimeError(f"the server did not store {key} intact: cannot benchmark")
        bench = Bench(args, server, store, tmp, _child_env(), pythons, min_part)

        try:
            _play(bench, args, (warm, warm_size, warm_digest), (source, args.size, digest))
        except AbortError as exc:
            bench.failures.append(str(exc))
            _log(f"ABORTED: {exc}")

    summary = report.summarize(bench.runs, args.contestants)
    ratios = report.ratios(summary, args.contestants)
    versions: dict[str, dict[str, str]] = {}
    for record in bench.warmups + bench.runs:
        versions.setdefault(record["contestant"], record["extra"].get("versions", {}))
    outputs = bench.warmups + bench.runs
    parameters = {
        "size": args.size,
        "part_size": args.part_size,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "warmup_size": warm_size,
        "quick": args.quick,
        "contestants": args.contestants,
        "server": server.description,
        "server_version": server.version,
    }
    markdown = report.markdown(summary, ratios, parameters, outputs, bench.failures)
    sys.stdout.write(markdown)
    sys.stdout.flush()
    document = {
        "benchmark": "s3",
        "when_utc": stamp,
        "parameters": parameters,
        **run_description(started, peers_venv=str(PEERS_VENV), peers_venv_build_s=build_s),
        "contestants": {
            c: {"call": CONTESTANTS[c].call, "versions": versions.get(c, {})}
            for c in args.contestants
        },
        "checks": {
            "outputs": len(outputs),
            "verified": sum(1 for r in outputs if r["check"]["ok"]),
            "method": "xxh3-128 and size of every downloaded file and every uploaded object",
        },
        "summary": summary,
        "ratios_asynctransfer_over_peer": ratios,
        "markdown": markdown,
        "runs": bench.runs,
        "warmups": bench.warmups,
        "failures": bench.failures,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    report.write_chart(summary, args.contestants, chart_path, report.title(parameters))
    _log(f"wrote {json_path} and {chart_path} ({time.perf_counter() - started:.0f} s in all)")
    return 1 if bench.failures else 0
