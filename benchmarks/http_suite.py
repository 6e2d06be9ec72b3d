"""``python -m benchmarks http``: asynctransfer against curl and aria2c, downloading from nginx.

One nginx for the whole run (``benchmarks.nginx``: one worker, sendfile on) serving a file of
``--size`` random bytes from the page cache; every download in a fresh child process
(``benchmarks.measure``), with ``os.sync()`` and ``prefault()`` before each, as in the S3 suite.
Order of play:

1. warm-up: each contestant downloads a small file (one part plus one byte) once per case,
   untimed but checked;
2. ``--repeat`` rounds, the contestants' order and the order of the cases reversed every other
   round; each contestant downloads the file in each of its cases: into a **new** file, into a
   **preallocated** one (a file of the full size with other bytes, on disk), and to
   **/dev/null**.

asynctransfer runs in-process in its child (``benchmarks.peers.asynctransfer_http``); curl and
aria2c run under a small Python wrapper that reports the program's own wall time, CPU and peak
RSS (``benchmarks.peers.http_child.run_program``). Every output is checked outside the timing:
a file by size and xxh3-128 against the source; asynctransfer's /dev/null stream by the
xxh3-128 and size of its ``DownloadResult``; curl's /dev/null by its ``size_download`` only.
The statistics, Markdown table and PNG chart are in ``benchmarks.http_report``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import importlib.metadata
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
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import http_report as report
from benchmarks.files import file_digest, prefill, random_file, run_description
from benchmarks.measure import ChildFailedError, ChildTimeoutError, prefault, run_child
from benchmarks.nginx import nginx_binary, nginx_server
from benchmarks.peers.http_child import CASES, HTTP_CONTESTANTS, Case, HttpSpec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from benchmarks.nginx import NginxServer

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
SOURCE_NAME = "source.bin"
WARM_NAME = "warm.bin"
_MIB = 1024**2
_GIB = 1024**3
# Memory touched before each child: twice the file (page cache, buffers) and the interpreter.
_PREFAULT_EXTRA = 256 * _MIB
_TICKS = os.sysconf("SC_CLK_TCK")


def _log(message: str) -> None:
    sys.stderr.write(f"[bench http {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


# --------------------------------------------------------------------------- nginx


@dataclass(frozen=True)
class Source:
    """A file nginx serves: its URL path, size and xxh3-128."""

    name: str
    size: int
    digest: str


def _nginx_cpu_seconds(master: int) -> float:
    """User+sys CPU seconds of nginx so far: the master, its live workers, and what it reaped."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as f:
                text = f.read()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may contain spaces: split after it.
        # Then: state ppid ... utime stime cutime cstime at indexes 11..14.
        fields = text[text.rindex(")") + 2 :].split()
        if int(entry) == master:
            total += sum(int(x) for x in fields[11:15])
        elif int(fields[1]) == master:
            total += int(fields[11]) + int(fields[12])
    return total / _TICKS


def _ping(url: str, timeout: float = 10.0) -> bool:
    """Does nginx answer a HEAD of ``url`` within ``timeout`` seconds?"""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.netloc, timeout=timeout)
    try:
        connection.request("HEAD", parts.path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


# --------------------------------------------------------------------------- one run


class AbortError(RuntimeError):
    """Stop the rounds: what was measured so far is still reported."""


@dataclass
class Suite:
    args: argparse.Namespace
    server: NginxServer
    out_dir: str
    env: dict[str, str]
    runs: list[dict[str, Any]] = field(default_factory=list)
    warmups: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    timeouts: int = 0

    def run(self, contestant: str, case: Case, source: Source, repeat: int | None) -> None:
        """One child: prepare, measure, check the bytes, record (``repeat`` None: warm-up)."""
        label = f"{contestant} -> {case}"
        label += " (warm-up)" if repeat is None else f" #{repeat + 1}"
        url = f"{self.server.url}/{source.name}"
        dest = os.devnull
        if case != "devnull":
            dest = os.path.join(self.out_dir, f"{contestant}-{case}.bin")
            self._remove(dest)
            if case == "prealloc":
                prefill(dest, source.size)
        spec = HttpSpec(
            contestant=contestant,
            url=url,
            dest=dest,
            case=case,
            size=source.size,
            part_size=self.args.part_size,
            concurrency=self.args.concurrency,
            # The child gives up (and stops its program) before the harness kills it.
            deadline_s=max(1.0, self.args.timeout - 5),
        )
        os.sync()  # no writeback left over from the previous run lands inside this one
        prefault(2 * source.size + _PREFAULT_EXTRA)
        cpu_before = _nginx_cpu_seconds(self.server.pid)
        try:
            m = run_child(
                HTTP_CONTESTANTS[contestant].module,
                [spec.to_json()],
                client=contestant,
                direction="download",
                size=source.size,
                timeout=self.args.timeout,
                env=self.env,
            )
        except ChildFailedError as exc:
            self.failures.append(f"{label}: {exc}")
            _log(f"FAILED {self.failures[-1]}")
            if case != "devnull":
                self._remove(dest)
            if isinstance(exc, ChildTimeoutError):
                self.timeouts += 1
                # Two timeouts, or one and an nginx that does not answer a HEAD: every run left
                # would wait out its own timeout. Stop here.
                if self.timeouts >= 2 or not _ping(url):
                    raise AbortError(f"stopped after {label} timed out: nginx stuck?") from exc
            return
        finally:
            server_cpu = _nginx_cpu_seconds(self.server.pid) - cpu_before
        check = self._check(case, dest, source, m.extra)
        record = {
            **m.to_json(),
            "contestant": contestant,
            "case": case,
            "repeat": repeat,
            "server_cpu_s": server_cpu,
            "server_cpu_s_per_gib": server_cpu / (source.size / _GIB),
            "check": check,
        }
        (self.warmups if repeat is None else self.runs).append(record)
        if not check["ok"]:
            self.failures.append(f"{label}: bytes differ: got {check['got']}")
            _log(f"FAILED {self.failures[-1]}")
            return
        _log(
            f"{label}: {m.mb_per_s:.0f} MB/s, {m.wall_s:.2f} s, CPU {m.cpu_s:.2f} s, "
            f"peak RSS {m.peak_rss_mib:.0f} MiB, nginx CPU {server_cpu:.2f} s, {check['method']} ok"
        )

    @staticmethod
    def _check(case: Case, dest: str, source: Source, extra: dict[str, Any]) -> dict[str, Any]:
        """The check, outside any timing: the file on disk, or what the child reported."""
        got_size, got = -1, ""
        hashed = True
        if case != "devnull":
            method = "file on disk: size + xxh3-128 vs the source"
            with contextlib.suppress(FileNotFoundError):  # no file: the check fails below
                got_size, got = file_digest(dest)
            Suite._remove(dest)
        elif "result" in extra:
            method = "DownloadResult: size + xxh3-128 of the streamed bytes vs the source"
            got_size = int(extra["result"].get("size", -1))
            got = str(extra["result"].get("xxh3_128", ""))
        else:
            method = "size only: curl's size_download (the bytes are gone)"
            got_size, hashed = int(extra.get("size_download", -1)), False
        expected = {"size": source.size, "xxh3_128": source.digest if hashed else None}
        actual = {"size": got_size, "xxh3_128": got if hashed else None}
        return {"ok": actual == expected, "method": method, "expected": expected, "got": actual}

    @staticmethod
    def _remove(dest: str) -> None:
        for path in (dest, dest + ".aria2"):  # aria2c's control file, if a run left one
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _play(suite: Suite, contestants: list[str], warm: Source, main: Source) -> None:
    for c in contestants:
        for case in HTTP_CONTESTANTS[c].cases:
            suite.run(c, case, warm, repeat=None)
    for r in range(suite.args.repeat):
        # Alternate who goes first, and the order of the cases, so that no one always meets
        # the same state of the disk, the page cache and nginx.
        order = contestants if r % 2 == 0 else contestants[::-1]
        for c in order:
            cases = HTTP_CONTESTANTS[c].cases
            for case in cases if r % 2 == 0 else cases[::-1]:
                suite.run(c, case, main, repeat=r)


# --------------------------------------------------------------------------- versions


def _first_line(command: Sequence[str]) -> str:
    """The first line a command prints (stdout, else stderr: ``nginx -v`` uses stderr)."""
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"- ({exc})"
    return (done.stdout.strip() or done.stderr.strip() or "-").splitlines()[0]


def _versions(contestants: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name in contestants:
        info = HTTP_CONTESTANTS[name]
        versions = {"python": platform.python_version(), "interpreter": sys.executable}
        if info.version_command is not None:
            versions[info.version_command[0]] = _first_line(info.version_command)
        for dist in info.distributions:
            try:
                versions[dist] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                versions[dist] = "-"
        out[name] = versions
    return out


def _size(text: str) -> int:
    from asynctransfer._core.units import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _contestants(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in HTTP_CONTESTANTS]
    if unknown or not names or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of distinct names from {list(HTTP_CONTESTANTS)}"
        )
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks http",
        description="asynctransfer vs curl and aria2c downloading one file from a local nginx: "
        "into a new file, into a preallocated one, and to /dev/null.",
    )
    p.add_argument("--size", type=_size, help="file size (default 1GiB; --quick: 32MiB)")
    p.add_argument("--part-size", type=_size, help="range size (default 8MiB)")
    p.add_argument("--concurrency", type=int, default=10, help="requests in flight (default 10)")
    p.add_argument("--repeat", type=int, help="timed rounds (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="32MiB, one round: for CI, not speed")
    p.add_argument(
        "--contestants",
        type=_contestants,
        default=list(HTTP_CONTESTANTS),
        help=f"comma-separated (default {','.join(HTTP_CONTESTANTS)})",
    )
    p.add_argument("--json", metavar="PATH", help="default benchmarks/results/<UTC time>-http.json")
    p.add_argument("--chart", metavar="PATH", help="default benchmarks/results/<UTC time>-http.png")
    p.add_argument("--tmpdir", help="where the files go (default: the system temp dir)")
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds per child before it is killed (default 60 + 1 per 10 MB; --quick: 30)",
    )
    return p


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: the child is killed, nginx stopped, tmp removed


def _child_env() -> dict[str, str]:
    """No proxies: every client talks to 127.0.0.1 directly."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    return env


def _missing_tools(contestants: Sequence[str]) -> list[str]:
    missing = [] if nginx_binary() else ["nginx"]
    for name in contestants:
        command = HTTP_CONTESTANTS[name].version_command
        if command is not None and shutil.which(command[0]) is None:
            missing.append(command[0])
    return missing


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.size = args.size or (32 * _MIB if args.quick else _GIB)
    args.part_size = args.part_size or 8 * _MIB
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.size <= 0 or args.part_size <= 0 or args.concurrency < 1 or args.repeat < 1:
        sys.stderr.write("--size, --part-size, --concurrency and --repeat must be positive\n")
        return 2
    if args.timeout is None:
        args.timeout = 30.0 if args.quick else 60 + args.size / 1e7
    if args.timeout <= 5:
        sys.stderr.write("--timeout must be more than 5 s\n")
        return 2
    missing = _missing_tools(args.contestants)
    if missing:
        sys.stderr.write(f"not installed: {', '.join(missing)} (apt-get install ...)\n")
        return 2
    try:
        import matplotlib  # noqa: F401  (fail now, not after the runs)
    except ImportError:
        sys.stderr.write("the chart needs matplotlib: pip install -e '.[bench]'\n")
        return 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    json_path = Path(args.json or RESULTS_DIR / f"{stamp}-http.json")
    chart_path = Path(args.chart or RESULTS_DIR / f"{stamp}-http.png")
    started = time.perf_counter()
    contestants: list[str] = args.contestants
    warm_size = min(args.size, args.part_size + 1)  # two ranges: the parallel path, but small

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="bench-http-", dir=args.tmpdir)
        )
        root, out_dir = os.path.join(tmp, "www"), os.path.join(tmp, "out")
        os.mkdir(root)
        os.mkdir(out_dir)
        # Started as root, nginx's worker runs as nobody: it must be able to reach the files
        # (mkdtemp makes the directory 0700).
        os.chmod(tmp, 0o711)
        os.chmod(root, 0o755)
        _log(f"writing {args.size / _MIB:.1f} MiB of random bytes to {root}/{SOURCE_NAME}")
        main_source = Source(
            SOURCE_NAME, args.size, random_file(f"{root}/{SOURCE_NAME}", args.size)
        )
        warm = Source(WARM_NAME, warm_size, random_file(f"{root}/{WARM_NAME}", warm_size))
        server = stack.enter_context(nginx_server(root))
        _log(f"nginx at {server.url} (pid {server.pid})")
        if not _ping(f"{server.url}/{WARM_NAME}"):
            sys.stderr.write(
                f"nginx does not serve {root}: started as root, its worker runs as nobody, which"
                " must be able to traverse every directory above it; use a --tmpdir it can"
                " reach (e.g. the default, the system temp dir)\n"
            )
            return 2
        suite = Suite(args, server, out_dir, _child_env())
        try:
            _play(suite, contestants, warm, main_source)
        except AbortError as exc:
            suite.failures.append(str(exc))
            _log(f"ABORTED: {exc}")

    summary = report.summarize(suite.runs, contestants)
    ratios = report.ratios(summary, contestants)
    outputs = suite.warmups + suite.runs
    nginx_version = _first_line([nginx_binary() or "nginx", "-v"])
    parameters = {
        "size": args.size,
        "part_size": args.part_size,
        "concurrency": args.concurrency,
        "repeat": args.repeat,
        "warmup_size": warm_size,
        "quick": args.quick,
        "contestants": contestants,
        "timeout_s": args.timeout,
        "server": "nginx (1 worker, sendfile on, file in the page cache)",
        "server_version": nginx_version,
    }
    markdown = report.markdown(summary, ratios, parameters, outputs, suite.failures)
    sys.stdout.write(markdown)
    sys.stdout.flush()
    versions = _versions(contestants)
    document = {
        "benchmark": "http",
        "when_utc": stamp,
        "parameters": parameters,
        **run_description(started, nginx=nginx_version),
        "contestants": {
            c: {
                "call": HTTP_CONTESTANTS[c].call,
                "cases": list(HTTP_CONTESTANTS[c].cases),
                "preallocated": HTTP_CONTESTANTS[c].preallocated,
                "versions": versions[c],
            }
            for c in contestants
        },
        "cases": CASES,
        "checks": {
            "outputs": len(outputs),
            "verified": sum(1 for r in outputs if r["check"]["ok"]),
            "method": "size + xxh3-128 of every file and of asynctransfer's /dev/null stream; "
            "size only for curl to /dev/null",
        },
        "summary": summary,
        "ratios": ratios,
        "markdown": markdown,
        "runs": suite.runs,
        "warmups": suite.warmups,
        "failures": suite.failures,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    report.write_chart(summary, contestants, chart_path, report.title(parameters))
    _log(f"wrote {json_path} and {chart_path} ({time.perf_counter() - started:.0f} s in all)")
    return 1 if suite.failures else 0
