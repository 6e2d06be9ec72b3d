"""``python -m benchmarks faults``: asynctransfer against boto3 through a fault-injecting proxy.

The set-up of ``python -m benchmarks s3`` (``benchmarks.harness``: the local endpoint in its own
process, the bucket, the peers' virtualenv, a fresh child per transfer with ``Bench.run``), plus
the proxy of the test suite (``tests/proxy_server.py``, started by ``tests.proxy.fault_proxy``)
between the children and the endpoint. For every transfer the proxy's rules are set afresh:

* of the data requests (UploadPart, GetObject), 10% are answered ``503 SlowDown`` and 2% are
  reset (RST): an UploadPart after its body came in (``reset_before``), a GetObject after half
  of its body went out (``reset_mid``);
* nothing else is faulted (CreateMultipartUpload, CompleteMultipartUpload, HeadObject), so the
  comparison is about moving data.

The proxy applies the first rule that matches and whose draw hits, so the reset rule's
probability is 0.02 / 0.90: of all data requests 2% are reset. The draws come from the proxy's
RNG, seeded per transfer with ``--seed + 10 x round + direction`` (warm-up: round 0, timed
rounds from 1; upload 0, download 1): in one round both contestants meet the same sequence of
draws, request by request in the order they arrive.

Order of play: a warm-up (each contestant uploads one part plus one byte, then downloads it),
then ``--repeat`` rounds, the contestants' order reversed every other round, in which each
contestant uploads the source file and then downloads the object it uploaded into a new file
(the harness's copy, ``bench/source.bin``, if its upload failed). Every output is checked
outside the timing, as in the S3 suite (size + xxh3-128). What each contestant ran into is
read from the proxy's log after each transfer: the faults, the data requests sent again, the
bytes of faulted requests, the requests in flight.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import chart
from benchmarks.files import random_file, run_description
from benchmarks.harness import (
    BUCKET,
    PEERS_VENV,
    RESULTS_DIR,
    SOURCE_KEY,
    AbortError,
    Bench,
    _child_env,
    _log,
    _size,
    _terminate,
    ensure_peers_venv,
)
from benchmarks.peers import CONTESTANTS
from benchmarks.servers import Store, _tree_cpu_seconds, start_server

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.proxy import Proxy

_MIB = 1024**2
CONTESTANTS_HERE = ("asynctransfer", "boto3")
CASES = ("upload", "download-new")
SLOWDOWN_RATE = 0.10
RESET_RATE = 0.02
DATA_OPERATION = {"upload": "UploadPart", "download": "GetObject"}
RESET_ACTION = {"upload": "reset_before", "download": "reset_mid"}
TARGET_RATIO = 2.0
BOTO3_RETRIES = {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "5"}
"""boto3's retries, through its config chain (the peer's module is the S3 suite's): standard
mode, 5 attempts per request in all, as asynctransfer's default ``max_attempts``."""
METRICS = (
    *chart.METRICS,
    "proxy_cpu_s",
    "data_requests",
    "retries",
    "faulted",
    "faulted_503",
    "faulted_reset",
    "resent_bytes",
    "data_bytes",
    "extra_bytes",
    "peak_in_flight",
    "mean_in_flight",
)


def fault_rules() -> list[dict[str, Any]]:
    """The proxy's rules for every transfer (see the module's docstring)."""
    rules: list[dict[str, Any]] = []
    for direction, operation in DATA_OPERATION.items():
        match = {"operation": operation}
        rules.append(
            {"match": match, "probability": SLOWDOWN_RATE, "action": "status", "status": 503}
        )
        spared = RESET_RATE / (1 - SLOWDOWN_RATE)  # drawn only for requests the 503 rule spared
        rules.append({"match": match, "probability": spared, "action": RESET_ACTION[direction]})
    return rules


def _in_flight(entries: list[dict[str, Any]]) -> tuple[int, float]:
    """Peak and time-weighted mean of the requests open at the proxy at once."""
    events = sorted(
        [(e["started"], 1) for e in entries]
        + [(e["finished"] or e["started"], -1) for e in entries],
        key=lambda event: (event[0], event[1]),  # an end before a start at the same instant
    )
    if not events or events[-1][0] <= events[0][0]:
        return len(entries), float(len(entries))
    level = peak = 0
    area = 0.0
    for (t, delta), (t_next, _) in zip(events, [*events[1:], events[-1]], strict=True):
        level += delta
        peak = max(peak, level)
        area += level * (t_next - t)
    return peak, area / (events[-1][0] - events[0][0])


def proxy_view(log: list[dict[str, Any]], direction: str, size: int) -> dict[str, Any]:
    """What one transfer of ``size`` bytes did at the proxy: its data requests, the faults,
    what went again."""
    upload, operation = direction == "upload", DATA_OPERATION[direction]
    data = [e for e in log if e["operation"] == operation]
    faulted = [e for e in data if e["fault"] is not None]

    def payload(e: dict[str, Any]) -> int:  # the request body of a part, the response of a GET
        return int((e["body_length"] if upload else e["response_bytes"]) or 0)

    def piece(e: dict[str, Any]) -> tuple[str | None, str | None]:
        if upload:
            return e["query"].get("uploadId"), e["query"].get("partNumber")
        # By where the range ends: a client may ask again for only the rest of a broken range.
        return e["path"], e["headers"].get("range", "").rpartition("-")[2]

    peak, mean = _in_flight(data)
    return {
        "data_requests": len(data),
        "retries": len(data) - len({piece(e) for e in data}),
        "faulted": len(faulted),
        "faulted_503": sum(1 for e in faulted if e["fault"] == "status"),
        "faulted_reset": sum(1 for e in faulted if e["fault"] == RESET_ACTION[direction]),
        "resent_bytes": sum(payload(e) for e in faulted),
        "data_bytes": sum(payload(e) for e in data),
        "extra_bytes": sum(payload(e) for e in data) - size,
        "peak_in_flight": peak,
        "mean_in_flight": mean,
        "other_requests": dict(Counter(e["operation"] for e in log if e["operation"] != operation)),
    }


class _KeptStore(Store):
    """The harness's own client, except that ``Bench.run`` leaves an uploaded object in place
    once it has checked it: here the same contestant downloads it next. ``discard`` deletes."""

    def delete(self, key: str) -> None:
        pass

    def discard(self, key: str) -> None:
        super().delete(key)


@dataclass
class Faults:
    """The rounds: ``Bench.run`` per transfer, with the proxy's rules set before and its log
    read after."""

    bench: Bench
    proxy: Proxy
    store: _KeptStore
    seed: int
    attempts: list[dict[str, Any]] = field(default_factory=list)
    """One per transfer, failed ones too: what the proxy saw."""
    files: dict[str, tuple[str, int, str]] = field(default_factory=dict)
    """``warm`` and ``main``: (path, size, xxh3-128)."""

    def transfer(self, contestant: str, direction: str, key: str, repeat: int | None) -> bool:
        source, size, digest = self.files["warm" if repeat is None else "main"]
        seed = self.seed + 10 * (0 if repeat is None else repeat + 1) + (direction != "upload")
        self.proxy.reset()
        self.proxy.set_rules(fault_rules(), seed=seed)
        records = self.bench.warmups if repeat is None else self.bench.runs
        known, failures = len(records), len(self.bench.failures)
        cpu = _tree_cpu_seconds(self.proxy.pid)
        self.bench.run(
            contestant,
            direction,
            dest=None if direction == "upload" else "new",
            key=key,
            size=size,
            digest=digest,
            source=source,
            repeat=repeat,
        )
        view = {
            **proxy_view(self.proxy.log(), direction, size),
            "proxy_cpu_s": _tree_cpu_seconds(self.proxy.pid) - cpu,
            "seed": seed,
            "key": key,
        }
        record = records[-1] if len(records) > known else None
        ok = record is not None and bool(record["check"]["ok"])
        if record is not None:
            record.update(view)
        failed = self.bench.failures[failures:]
        self.attempts.append(
            {
                "contestant": contestant,
                "case": chart.case_id(direction, None if direction == "upload" else "new"),
                "repeat": repeat,
                "ok": ok,
                "failure": failed[0] if failed else None,
                **view,
            }
        )
        _log(
            f"  proxy: {view['faulted']} faulted ({view['faulted_503']} x 503,"
            f" {view['faulted_reset']} x reset), {view['retries']} sent again,"
            f" {view['resent_bytes'] / _MIB:.1f} MiB in faulted requests,"
            f" {view['extra_bytes'] / _MIB:.1f} MiB moved beyond the object,"
            f" {view['mean_in_flight']:.1f} in flight on average (peak {view['peak_in_flight']})"
        )
        return ok

    def round_trip(self, contestant: str, key: str, repeat: int | None) -> None:
        """Upload, then download what was uploaded (the harness's copy if the upload failed)."""
        uploaded = self.transfer(contestant, "upload", key, repeat)
        self.transfer(contestant, "download", key if uploaded else SOURCE_KEY, repeat)
        if uploaded:
            with contextlib.suppress(OSError, RuntimeError):
                self.store.discard(key)

    def play(self, contestants: Sequence[str], repeat: int) -> None:
        """The warm-up, then the rounds; an abort (a stuck server) ends them as a failure."""
        try:
            for c in contestants:
                self.round_trip(c, f"faults/warm-{c}.bin", None)
            for r in range(repeat):
                for c in contestants if r % 2 == 0 else contestants[::-1]:
                    self.round_trip(c, f"faults/{c}-{r}.bin", r)
        except AbortError as exc:
            self.bench.failures.append(str(exc))
            _log(f"ABORTED: {exc}")


# --------------------------------------------------------------------------- report


def title(parameters: dict[str, Any]) -> str:
    return (
        f"S3 through a fault proxy: {chart.human_bytes(parameters['size'])}, parts"
        f" {chart.human_bytes(parameters['part_size'])}, concurrency"
        f" {parameters['concurrency']}, {parameters['repeat']} round(s); data requests:"
        f" {SLOWDOWN_RATE:.0%} 503 SlowDown, {RESET_RATE:.0%} reset"
    )


def _mib(spread: dict[str, float] | None) -> dict[str, float] | None:
    return None if spread is None else {k: v / _MIB for k, v in spread.items()}


def markdown(
    summary: list[dict[str, Any]],
    ratios: dict[str, dict[str, dict[str, float]]],
    parameters: dict[str, Any],
    faults: Faults,
) -> str:
    cell = chart.cell
    lines = [
        f"## {title(parameters)}",
        "",
        (
            "Each cell: median (min-max) over the checked timed runs. MB/s = bytes / wall time of"
            " the transfer call (10^6 B/s); client CPU = user+sys of the client process over"
            " that call, per GiB; server and proxy CPU = user+sys of each process over the run."
            " From the proxy's log: faults injected (503 / reset); data requests sent again"
            " (requests minus distinct parts, or distinct range ends: asking again for only the"
            " rest of a broken range counts); MiB in faulted requests (an UploadPart's body, the"
            " part of a GET's body that went out); MiB moved beyond the object (data bytes"
            " through the proxy minus the object's size); data requests open at once"
            " (time-weighted mean)."
        ),
        "",
        (
            "| contestant | case | MB/s | client CPU s/GiB | server / proxy CPU s"
            " | faulted 503 / reset | sent again | MiB in faulted requests"
            " | MiB beyond the object | in flight | runs ok / failed |"
        ),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    by = {(r["contestant"], r["case"]): r for r in summary}
    for case in CASES:
        for c in parameters["contestants"]:
            mine = [a for a in faults.attempts if a["contestant"] == c and a["case"] == case]
            mine = [a for a in mine if a["repeat"] is not None]
            row = by.get((c, case), {})
            ok = sum(1 for a in mine if a["ok"])
            cells = [
                cell(row.get("mb_per_s"), 0),
                cell(row.get("cpu_s_per_gib"), 2),
                f"{cell(row.get('server_cpu_s'), 1)} / {cell(row.get('proxy_cpu_s'), 1)}",
                f"{cell(row.get('faulted_503'), 0)} / {cell(row.get('faulted_reset'), 0)}",
                cell(row.get("retries"), 0),
                cell(_mib(row.get("resent_bytes")), 0),
                cell(_mib(row.get("extra_bytes")), 0),
                cell(row.get("mean_in_flight"), 1),
                f"{ok} / {len(mine) - ok}",
            ]
            lines.append(f"| {c} | {chart.CASES[case]} | {' | '.join(cells)} |")
    outputs = faults.bench.warmups + faults.bench.runs
    verified = sum(1 for r in outputs if r["check"]["ok"])
    wrong = len(outputs) - verified
    verdicts = []
    for case in CASES:
        ratio = ratios.get("boto3", {}).get(case, {})
        r, cpu = ratio.get("mb_per_s"), ratio.get("cpu_s_per_gib")
        verdict = "-" if r is None else f"x{r:.2f} ({'met' if r >= TARGET_RATIO else 'not met'})"
        verdicts.append(
            f"{chart.CASES[case]}: MB/s {verdict}, client CPU s/GiB"
            f" {'-' if cpu is None else f'x{cpu:.2f}'}"
        )
    lines += [
        "",
        "asynctransfer ÷ boto3, medians: " + "; ".join(verdicts) + ".",
        "",
        (
            f"Target: asynctransfer >= {TARGET_RATIO:g}x boto3's MB/s under the same faults,"
            f" zero bytes wrong. Bytes wrong: {wrong} of {len(outputs)} outputs"
            f" ({'met' if wrong == 0 else 'NOT met'}; size + xxh3-128 against the source,"
            " warm-ups included)."
        ),
    ]
    if faults.bench.failures:
        lines += ["", f"FAILED ({len(faults.bench.failures)}):", ""]
        lines += [f"- {f.splitlines()[0]}" for f in faults.bench.failures]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks faults",
        description="asynctransfer vs boto3 through a proxy that answers 10% of UploadParts "
        "and GETs with 503 SlowDown and resets 2%: upload, then download into a new file.",
    )
    p.add_argument("--size", type=_size, help="object size (default 1GiB; --quick: 32MiB)")
    p.add_argument("--part-size", type=_size, default=8 * _MIB, help="for both (default 8MiB)")
    p.add_argument("--concurrency", type=int, default=10, help="requests in flight (default 10)")
    p.add_argument("--repeat", type=int, help="timed rounds (default 3; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="32MiB, one round: for CI, not speed")
    p.add_argument("--seed", type=int, default=1, help="base seed of the proxy's RNG (1)")
    p.add_argument("--json", metavar="PATH", help="default benchmarks/results/<UTC>-faults.json")
    p.add_argument("--chart", metavar="PATH", help="default benchmarks/results/<UTC>-faults.png")
    p.add_argument("--tmpdir", help="where the files go (default: the system temp dir)")
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds per child before it is killed (default 120 + 1 per MB; --quick: 60)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from tests.proxy import fault_proxy  # the test suite's handle of tests/proxy_server.py

    args = parser().parse_args(argv)
    args.size = args.size or (32 * _MIB if args.quick else 1024 * _MIB)
    args.repeat = args.repeat or (1 if args.quick else 3)
    if args.size <= 0 or args.part_size <= 0 or args.concurrency < 1 or args.repeat < 1:
        sys.stderr.write("--size, --part-size, --concurrency and --repeat must be positive\n")
        return 2
    if args.timeout is None:
        args.timeout = 60.0 if args.quick else 120 + args.size / 1e6
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminate)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    json_path = Path(args.json or RESULTS_DIR / f"{stamp}-faults.json")
    chart_path = Path(args.chart or RESULTS_DIR / f"{stamp}-faults.png")
    started = time.perf_counter()
    contestants = list(CONTESTANTS_HERE)
    pythons = {"project": sys.executable}
    pythons["peers"], build_s = ensure_peers_venv()
    min_part = min(5 * _MIB, args.part_size)
    warm_size = min(args.size, args.part_size + 1)  # two parts: the multipart path, but small

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="bench-faults-", dir=args.tmpdir)
        )
        root = os.path.join(tmp, "server-root")
        os.mkdir(root)
        server = stack.enter_context(
            start_server(
                "local", root=root, min_part_size=min_part, log_path=os.path.join(tmp, "server.log")
            )
        )
        proxy = stack.enter_context(fault_proxy(server.endpoint_url))
        _log(f"server at {server.endpoint_url} (pid {server.pid}), proxy at {proxy.endpoint_url}")
        store = _KeptStore(server.endpoint_url, BUCKET, timeout=max(120.0, args.timeout))
        stack.callback(store.close)
        store.create_bucket()
        files: dict[str, tuple[str, int, str]] = {}
        for name, size in (("main", args.size), ("warm", warm_size)):
            path = os.path.join(tmp, f"{name}.bin")
            files[name] = (path, size, random_file(path, size))
        store.put_file(SOURCE_KEY, files["main"][0])  # what a contestant whose upload failed gets
        proxied = dataclasses.replace(server, endpoint_url=proxy.endpoint_url)
        env = {**_child_env(), **BOTO3_RETRIES}
        bench = Bench(args, proxied, store, tmp, env, pythons, min_part)
        faults = Faults(bench, proxy, store, args.seed, files=files)
        faults.play(contestants, args.repeat)

    summary = chart.summarize(bench.runs, contestants, CASES, METRICS)
    ratios = chart.ratios(summary, contestants)
    outputs = bench.warmups + bench.runs
    parameters = {
        **{k: getattr(args, k) for k in ("size", "part_size", "concurrency", "repeat", "quick")},
        **{k: getattr(args, k) for k in ("seed", "timeout")},
        "warmup_size": warm_size,
        "contestants": contestants,
        "rules": fault_rules(),
        "server": server.description,
        "server_version": server.version,
        "proxy": "tests/proxy_server.py (aiohttp, one process)",
    }
    text = markdown(summary, ratios, parameters, faults)
    sys.stdout.write(text)
    sys.stdout.flush()
    versions: dict[str, dict[str, str]] = {}
    for record in outputs:
        versions.setdefault(record["contestant"], record["extra"].get("versions", {}))
    by_contestant = {
        c: {
            "outputs": sum(1 for r in outputs if r["contestant"] == c),
            "verified": sum(1 for r in outputs if r["contestant"] == c and r["check"]["ok"]),
            "failed_runs": sum(1 for a in faults.attempts if a["contestant"] == c and not a["ok"]),
        }
        for c in contestants
    }
    document = {
        "benchmark": "faults",
        "when_utc": stamp,
        "parameters": parameters,
        **run_description(started, peers_venv=str(PEERS_VENV), peers_venv_build_s=build_s),
        "contestants": {
            c: {
                "call": CONTESTANTS[c].call,
                "retries": "engine defaults (max_attempts 5, adaptive concurrency, retry budget)"
                if c == "asynctransfer"
                else f"botocore, from the environment: {BOTO3_RETRIES}",
                "versions": versions.get(c, {}),
            }
            for c in contestants
        },
        "checks": {
            "outputs": len(outputs),
            "verified": sum(1 for r in outputs if r["check"]["ok"]),
            "by_contestant": by_contestant,
            "method": "xxh3-128 and size of every uploaded object (read back from the server, "
            "not through the proxy) and every downloaded file",
        },
        "faults_injected": sum(a["faulted"] for a in faults.attempts),
        "summary": summary,
        "ratios_asynctransfer_over_peer": ratios,
        "target": {"throughput_ratio_at_least": TARGET_RATIO, "bytes_wrong": 0},
        "markdown": text,
        "runs": bench.runs,
        "warmups": bench.warmups,
        "attempts": faults.attempts,
        "failures": bench.failures,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    chart.write_chart(summary, contestants, chart_path, title(parameters))
    _log(f"wrote {json_path} and {chart_path} ({time.perf_counter() - started:.0f} s in all)")
    return 1 if bench.failures else 0
