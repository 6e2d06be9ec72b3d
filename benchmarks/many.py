"""``python -m benchmarks many``: many small files, and a mix, up and down the local endpoint.

asynctransfer's ``Transferer.copy_tree`` against aioboto3 (a semaphore around one request per
file), obstore (the same, on its Rust client) and s3fs (``fs.put`` / ``fs.get`` of the tree),
every one at the same concurrency, on the project's local S3 server (``benchmarks.servers``,
one process for the whole run). The trees, made once per run outside any timing, of random
bytes, 100 files per directory two levels deep:

* ``small``: ``--files`` files of ``--small-size`` (default 10,000 x 64 KiB);
* ``small-tenth``: a tenth as many files of the same size, so that the peak RSS at two file
  counts shows whether memory grows with the number of files;
* ``mix``: one file of ``--big-size`` (default 1 GiB) plus ``--mix-files`` small ones (2,000).

Each tree is also put on the server once, by the harness's own client (``servers.Store``), as
``src/<tree>/``: every download reads those same objects. Order of play: a warm-up (each
contestant copies a tree of 20 small files up and down, untimed, checked), then ``--repeat``
rounds; in each, for every tree and direction, every contestant once (their order reversed
every other round). Up copies the tree to a prefix of its own (``run/<tree>-<contestant>-<round>/``);
down copies ``src/<tree>/`` into a directory that does not exist yet.

Every transfer is a fresh child process (``benchmarks.measure``), with ``os.sync()`` and
``prefault()`` before it, killed after ``--timeout``; the whole suite stops starting runs once
``--budget`` seconds have passed. Every output is checked outside the timing: an upload by
listing its prefix (ListObjectsV2: the same keys and sizes, and each ETag equal to the MD5 of
the local file, or for a multipart object its bytes read back and hashed), after which the
prefix is deleted (DeleteObjects); a download by walking the directory (the same relative
paths, sizes and xxh3-128). The statistics, the Markdown table, the targets and the chart are in
``benchmarks.many_report``.
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from benchmarks import harness
from benchmarks import many_report as report
from benchmarks.files import file_digest, random_file, run_description
from benchmarks.harness import AbortError, _log
from benchmarks.measure import ChildFailedError, ChildTimeoutError, prefault, run_child
from benchmarks.peers import CONTESTANTS, Contestant, Direction, Spec
from benchmarks.peers.many_tree import local_files
from benchmarks.servers import Server, Store, StoreError, start_server

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from benchmarks.measure import Measurement

BUCKET = "asynctransfer-many"
_KIB, _MIB, _GIB = 1024, 1024**2, 1024**3
_PER_DIRECTORY = 100
_WARM_FILES = 20
_PREFAULT_EXTRA = 256 * _MIB
_LIST_PAGE = 1000  # S3's most keys per ListObjectsV2 page and per DeleteObjects request
_UPLOAD_THREADS = 8


_UP_DOWN: tuple[Direction, ...] = ("upload", "download")
_CALLS: tuple[tuple[str, tuple[Direction, ...], str], ...] = (
    (
        "asynctransfer",
        _UP_DOWN,
        "Transferer.copy_tree(src, dest) on uvloop, TransferConfig(max_concurrency=N)",
    ),
    (
        "asynctransfer-nofsync",
        ("download",),
        "the same with TransferConfig(durable=False): no fsync per file, as the peers write",
    ),
    (
        "aioboto3",
        _UP_DOWN,
        (
            "asyncio.gather under Semaphore(N): put_object / get_object per file (the big file:"
            " upload_file / download_file), on uvloop"
        ),
    ),
    (
        "obstore",
        _UP_DOWN,
        (
            "asyncio.gather under Semaphore(N): put_async / get_async per file (the big file:"
            " put_async multipart / get_range_async x N), on uvloop"
        ),
    ),
    ("s3fs", _UP_DOWN, "fs.put / fs.get(recursive=True, batch_size=N, max_concurrency=N)"),
)
MANY_CONTESTANTS = {
    # The S3 suite's contestants (the same names, interpreters and versions recorded), with
    # this suite's child modules: asynctransfer-nofsync runs asynctransfer's.
    name: Contestant(
        name,
        "benchmarks.peers.many_" + name.removesuffix("-nofsync"),
        CONTESTANTS[name].venv,
        CONTESTANTS[name].distributions,
        call,
        directions,
    )
    for name, directions, call in _CALLS
}
DEFAULT_CONTESTANTS = ("asynctransfer", "aioboto3", "obstore", "s3fs")


# --------------------------------------------------------------------------- the trees


@dataclass(frozen=True)
class Tree:
    """A local directory of random files, and where the harness put its copy on the server."""

    name: str
    root: str
    prefix: str
    files: dict[str, tuple[int, str, str]]
    """Relative path (``/``) -> (size, xxh3-128, MD5), all hex."""

    @property
    def count(self) -> int:
        return len(self.files)

    @property
    def size(self) -> int:
        return sum(size for size, _, _ in self.files.values())


def make_tree(name: str, root: str, count: int, size: int, big: int = 0) -> Tree:
    """``count`` files of ``size`` random bytes, ``_PER_DIRECTORY`` per directory two levels
    deep, plus one of ``big`` bytes if ``big``; synced to disk. Not timed."""
    import xxhash

    files: dict[str, tuple[int, str, str]] = {}
    for i in range(count):
        relative = f"d{i // (10 * _PER_DIRECTORY):03d}/e{i // _PER_DIRECTORY % 10}/f{i:06d}.bin"
        path = os.path.join(root, *relative.split("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = os.urandom(size)
        with open(path, "wb") as f:
            f.write(data)
        files[relative] = (size, xxhash.xxh3_128_hexdigest(data), hashlib.md5(data).hexdigest())
    if big:
        path = os.path.join(root, "big", "big.bin")
        os.makedirs(os.path.dirname(path))
        digest = random_file(path, big)
        with open(path, "rb") as f:
            md5 = hashlib.file_digest(f, "md5").hexdigest()
        files["big/big.bin"] = (big, digest, md5)
    os.sync()
    return Tree(name, root, f"src/{name}/", files)


# --------------------------------------------------------------------------- the bucket


class Bucket(Store):
    """The harness's own client (``servers.Store``) plus the two bucket-level calls this suite
    needs: ListObjectsV2 and DeleteObjects.

    ``servers.sigv4_headers`` signs a path without a query, so these two requests carry a
    signature over the path with its query in it: the local server, started without
    credentials, accepts any signature (a server that checks them would refuse both)."""

    _query = ""

    def _path(self, key: str) -> str:
        return super()._path(key) + self._query

    def _bucket_call(self, method: str, query: str, body: bytes | None = None) -> bytes:
        chunks: list[bytes] = []
        headers = {}
        if body is not None:
            md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
            headers = {"Content-MD5": md5, "Content-Type": "application/xml"}
        self._query = "?" + query
        try:
            self._request(
                method, "", body=body, headers=headers, read=lambda r: chunks.append(r.read())
            )
        finally:
            self._query = ""
        return b"".join(chunks)

    def list(self, prefix: str) -> dict[str, tuple[int, str]]:
        """Every object under ``prefix``: key -> (size, ETag without its quotes)."""
        from urllib.parse import quote

        found: dict[str, tuple[int, str]] = {}
        token: str | None = None
        while True:
            query = f"list-type=2&max-keys={_LIST_PAGE}&prefix={quote(prefix, safe='')}"
            if token is not None:
                query += f"&continuation-token={quote(token, safe='')}"
            page = ET.fromstring(self._bucket_call("GET", query))
            for item in page.findall("{*}Contents"):
                key = item.findtext("{*}Key", "")
                etag = item.findtext("{*}ETag", "").strip('"')
                found[key] = (int(item.findtext("{*}Size", "-1")), etag)
            token = page.findtext("{*}NextContinuationToken")
            if page.findtext("{*}IsTruncated", "false").lower() != "true" or not token:
                return found

    def delete_keys(self, keys: Iterable[str]) -> None:
        """Delete these objects (DeleteObjects, 1000 keys a request)."""
        keys = sorted(keys)
        for start in range(0, len(keys), _LIST_PAGE):
            objects = "".join(
                f"<Object><Key>{escape(k)}</Key></Object>" for k in keys[start : start + _LIST_PAGE]
            )
            body = f"<Delete><Quiet>true</Quiet>{objects}</Delete>".encode()
            answer = ET.fromstring(self._bucket_call("POST", "delete", body))
            errors = [e.findtext("{*}Key") for e in answer.findall("{*}Error")]
            if errors:
                raise StoreError(f"DeleteObjects: {len(errors)} keys not deleted, e.g. {errors[0]}")


def put_tree(endpoint_url: str, tree: Tree) -> None:
    """Put every file of ``tree`` under its prefix (the objects every download reads): single
    PUTs by the harness's own client, a few connections at once. Not timed."""
    local = threading.local()
    stores: list[Store] = []

    def put(relative: str) -> None:
        store = getattr(local, "store", None)
        if store is None:
            store = local.store = Store(endpoint_url, BUCKET, timeout=600)
            stores.append(store)
        store.put_file(tree.prefix + relative, os.path.join(tree.root, *relative.split("/")))

    try:
        with concurrent.futures.ThreadPoolExecutor(_UPLOAD_THREADS) as pool:
            for _ in pool.map(put, sorted(tree.files)):
                pass
    finally:
        for store in stores:
            store.close()


# --------------------------------------------------------------------------- the checks


def _verdict(
    expected: Tree, missing: list[str], extra: list[str], wrong: list[str], got: dict[str, int]
) -> dict[str, Any]:
    return {
        "ok": not (missing or extra or wrong),
        "expected": {"files": expected.count, "bytes": expected.size},
        "got": {**got, "missing": len(missing), "extra": len(extra), "wrong": len(wrong)},
        "examples": [*missing[:3], *extra[:3], *wrong[:3]],
    }


def check_upload(
    bucket: Bucket, tree: Tree, prefix: str, listed: dict[str, tuple[int, str]]
) -> dict[str, Any]:
    """The objects ``listed`` under ``prefix`` (``Bucket.list``) against ``tree``: keys, sizes,
    and bytes (ETag = MD5 for a single PUT; a multipart object read back and hashed)."""
    expected = {prefix + relative: facts for relative, facts in tree.files.items()}
    wrong: list[str] = []
    read_back = 0
    for key in sorted(expected.keys() & listed.keys()):
        (size, xxh3, md5), (got_size, etag) = expected[key], listed[key]
        if got_size != size:
            wrong.append(f"{key}: {got_size} B, not {size}")
        elif "-" in etag:  # multipart: the ETag is not the MD5 of the bytes
            read_back += 1
            if bucket.digest(key) != (size, xxh3):
                wrong.append(f"{key}: read back, its xxh3-128 differs")
        elif etag != md5:
            wrong.append(f"{key}: ETag {etag} is not the MD5 {md5}")
    verdict = _verdict(
        tree,
        sorted(expected.keys() - listed.keys()),
        sorted(listed.keys() - expected.keys()),
        wrong,
        {"files": len(listed), "bytes": sum(size for size, _ in listed.values())},
    )
    verdict["method"] = (
        "ListObjectsV2 of the prefix: the same keys and sizes; ETag = MD5 of the local file "
        f"(single PUT) or the object read back, size + xxh3-128 (multipart: {read_back})"
    )
    return verdict


def check_download(tree: Tree, root: str) -> dict[str, Any]:
    """The directory ``root`` against ``tree``: relative paths, sizes, xxh3-128."""
    found = {relative: (path, size) for relative, path, size in local_files(root)}
    wrong: list[str] = []
    for relative in sorted(found.keys() & tree.files.keys()):
        path, _ = found[relative]
        size, xxh3, _ = tree.files[relative]
        if file_digest(path) != (size, xxh3):
            wrong.append(f"{relative}: size or xxh3-128 differs")
    verdict = _verdict(
        tree,
        sorted(tree.files.keys() - found.keys()),
        sorted(found.keys() - tree.files.keys()),
        wrong,
        {"files": len(found), "bytes": sum(size for _, size in found.values())},
    )
    verdict["method"] = "walk of the directory: the same relative paths, sizes and xxh3-128"
    return verdict


# --------------------------------------------------------------------------- one run


@dataclass
class Suite:
    args: argparse.Namespace
    server: Server
    bucket: Bucket
    tmp: str
    env: dict[str, str]
    pythons: dict[str, str]
    modules: dict[str, str]
    deadline: float
    """``time.monotonic()`` after which no run starts (``--budget``)."""
    runs: list[dict[str, Any]] = field(default_factory=list)
    warmups: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    timeouts: int = 0

    def run(self, contestant: str, tree: Tree, direction: str, repeat: int | None) -> None:
        """One child: measure, check, clean up, record (``repeat`` None: the warm-up)."""
        label = f"{contestant} {tree.name} {direction}"
        label += " (warm-up)" if repeat is None else f" #{repeat + 1}"
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise AbortError(f"the time budget (--budget {self.args.budget:g} s) is spent")
        round_name = "warm" if repeat is None else str(repeat)
        if direction == "upload":
            prefix, local = f"run/{tree.name}-{contestant}-{round_name}/", tree.root
        else:
            prefix = tree.prefix
            local = os.path.join(self.tmp, "down", f"{tree.name}-{contestant}-{round_name}")
        spec = Spec(
            contestant=contestant,
            direction="upload" if direction == "upload" else "download",
            endpoint_url=self.server.endpoint_url,
            bucket=BUCKET,
            key=prefix,
            file=local,
            size=tree.size,
            part_size=self.args.part_size,
            concurrency=self.args.concurrency,
            min_part_size=min(5 * _MIB, self.args.part_size),
        )
        info = MANY_CONTESTANTS[contestant]
        timeout = min(self.args.timeout, left + 5)
        os.sync()  # no writeback left over from the previous run lands inside this one
        if not self.args.quick:  # see prefault(): for the speed of big writes, not --quick's
            prefault(2 * tree.size + _PREFAULT_EXTRA)
        cpu_before = self.server.cpu_seconds()
        try:
            m = run_child(
                self.modules[contestant],
                [spec.to_json()],
                client=contestant,
                direction=direction,
                size=tree.size,
                timeout=timeout,
                env=self.env,
                python=self.pythons[info.venv],
            )
        except ChildFailedError as exc:
            self._cleanup(direction, prefix, local)
            self.failures.append(f"{label}: {exc}")
            _log(f"FAILED {self.failures[-1]}")
            if isinstance(exc, ChildTimeoutError):
                self.timeouts += 1
                # Two timeouts, or one and a server that does not answer: stop here.
                first = tree.prefix + min(tree.files)
                if self.timeouts >= 2 or not self.bucket.ping(first):
                    raise AbortError(f"stopped after {label} timed out: server stuck?") from exc
            return
        finally:
            server_cpu = self.server.cpu_seconds() - cpu_before
        check = self._check(direction, tree, prefix, local, m)
        record = report.record(m, contestant, tree, direction, repeat, server_cpu, check)
        (self.warmups if repeat is None else self.runs).append(record)
        if not check["ok"]:
            self.failures.append(f"{label}: output differs: {check['got']} {check['examples']}")
            _log(f"FAILED {self.failures[-1]}")
            return
        _log(
            f"{label}: {record['objects_per_s']:.0f} objects/s, {m.mb_per_s:.0f} MB/s,"
            f" {m.wall_s:.2f} s, CPU {m.cpu_s:.2f} s, peak RSS {m.peak_rss_mib:.0f} MiB,"
            f" server CPU {server_cpu:.2f} s, checked"
        )

    def _check(
        self, direction: str, tree: Tree, prefix: str, local: str, m: Measurement
    ) -> dict[str, Any]:
        """Outside any timing: the output against the tree, then remove it."""
        listed = None
        try:
            if direction == "upload":
                listed = self.bucket.list(prefix)
                check = check_upload(self.bucket, tree, prefix, listed)
            else:
                check = check_download(tree, local)
        finally:
            self._cleanup(direction, prefix, local, listed)
        result = m.extra.get("result")
        if isinstance(result, dict) and result.get("ok") is False:  # asynctransfer's BatchResult
            check["ok"] = False
            check["examples"] = [*result.get("failures", []), *check["examples"]]
        return check

    def _cleanup(
        self, direction: str, prefix: str, local: str, listed: Iterable[str] | None = None
    ) -> None:
        """Delete an upload's objects (``listed``, else whatever is under ``prefix``), or the
        downloaded directory."""
        if direction == "upload":
            with contextlib.suppress(OSError, StoreError):
                self.bucket.delete_keys(self.bucket.list(prefix) if listed is None else listed)
        else:
            shutil.rmtree(local, ignore_errors=True)


def _play(suite: Suite, contestants: Sequence[str], trees: Sequence[Tree], warm: Tree) -> None:
    """The warm-up (not with ``--quick``), then the rounds. With ``--quick`` only asynctransfer
    copies the ``small-tenth`` tree (its peak RSS at two file counts is a target)."""

    def each(tree: Tree, order: Sequence[str], repeat: int | None) -> None:
        if suite.args.quick and tree.name == "small-tenth":
            order = [c for c in order if c in report.OURS]
        for direction in ("upload", "download"):
            for c in order:
                if direction in MANY_CONTESTANTS[c].directions:
                    suite.run(c, tree, direction, repeat)

    try:
        if not suite.args.quick:
            each(warm, contestants, None)
        for r in range(suite.args.repeat):
            # Alternate who goes first, so that no one always meets the same state of the
            # server and the page cache.
            order = list(contestants) if r % 2 == 0 else list(contestants)[::-1]
            for tree in trees:
                each(tree, order, r)
    except AbortError as exc:
        suite.failures.append(str(exc))
        _log(f"ABORTED: {exc}")


# --------------------------------------------------------------------------- command line


def _contestants(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in MANY_CONTESTANTS]
    if unknown or not names or names[0] != "asynctransfer" or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(
            "expected a comma-separated list of distinct names starting with asynctransfer, "
            f"from {list(MANY_CONTESTANTS)}"
        )
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks many",
        description="asynctransfer's copy_tree vs aioboto3, obstore and s3fs on the local S3 "
        "endpoint: many small files, and one big file plus small ones, up and down.",
    )
    p.add_argument("--files", type=int, help="small files (default 10000; --quick: 200)")
    p.add_argument(
        "--small-size", type=harness._size, help="bytes each (default 64KiB; --quick: 16KiB)"
    )
    p.add_argument(
        "--big-size", type=harness._size, help="the mix's big file (default 1GiB; --quick: 16MiB)"
    )
    p.add_argument(
        "--mix-files", type=int, help="the mix's small files (default 2000; --quick: 50)"
    )
    p.add_argument(
        "--part-size", type=harness._size, default=8 * _MIB, help="part size (default 8MiB)"
    )
    p.add_argument("--concurrency", type=int, default=32, help="requests in flight (default 32)")
    p.add_argument("--repeat", type=int, help="timed rounds (default 2; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="tiny trees, one round, no warm-up: CI")
    p.add_argument(
        "--contestants",
        type=_contestants,
        default=list(DEFAULT_CONTESTANTS),
        help=f"comma-separated, asynctransfer first (default {','.join(DEFAULT_CONTESTANTS)};"
        f" also: asynctransfer-nofsync)",
    )
    p.add_argument("--json", metavar="PATH", help="default benchmarks/results/<UTC>-many.json")
    p.add_argument("--chart", metavar="PATH", help="default benchmarks/results/<UTC>-many.png")
    p.add_argument("--tmpdir", help="where the trees go (default: the system temp dir)")
    p.add_argument(
        "--timeout",
        type=float,
        help="seconds per child before it is killed (default 60 + 1 per 5 MB + 0.02 per file"
        " of the largest tree; --quick: 60)",
    )
    p.add_argument(
        "--budget",
        type=float,
        help="seconds after which no run starts; what ran is reported (default 3600; --quick: 300)",
    )
    return p


def _defaults(args: argparse.Namespace) -> str | None:
    """Fill in the defaults; return what is wrong with the arguments, if anything."""
    quick = args.quick
    args.files = args.files if args.files is not None else (200 if quick else 10_000)
    args.small_size = args.small_size or (16 * _KIB if quick else 64 * _KIB)
    args.big_size = args.big_size or (16 * _MIB if quick else _GIB)
    args.mix_files = args.mix_files if args.mix_files is not None else (50 if quick else 2000)
    args.repeat = args.repeat or (1 if quick else 2)
    args.budget = args.budget or (300.0 if quick else 3600.0)
    if args.files < 10 or args.mix_files < 1:
        return "--files must be at least 10 and --mix-files at least 1"
    if min(args.small_size, args.big_size, args.part_size, args.concurrency, args.repeat) < 1:
        return "sizes, --concurrency and --repeat must be positive"
    if args.small_size > args.part_size or args.big_size <= args.part_size:
        return "--small-size must be at most --part-size, and --big-size more than it"
    if args.timeout is None:
        biggest = max(args.files * args.small_size, args.big_size)
        args.timeout = 60.0 if quick else 60 + biggest / 5e6 + 0.02 * args.files
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    problem = _defaults(args)
    if problem is not None:
        sys.stderr.write(problem + "\n")
        return 2
    try:
        import matplotlib  # noqa: F401  (fail now, not after the runs)
    except ImportError:
        sys.stderr.write("the chart needs matplotlib: pip install -e '.[bench]'\n")
        return 2
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, harness._terminate)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    json_path = Path(args.json or harness.RESULTS_DIR / f"{stamp}-many.json")
    chart_path = Path(args.chart or harness.RESULTS_DIR / f"{stamp}-many.png")
    started = time.perf_counter()
    load_before = os.getloadavg()
    contestants: list[str] = args.contestants
    pythons = {"project": sys.executable}
    build_s = 0.0
    if any(MANY_CONTESTANTS[c].venv == "peers" for c in contestants):
        pythons["peers"], build_s = harness.ensure_peers_venv()
    modules = {c: MANY_CONTESTANTS[c].module for c in contestants}

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="bench-many-", dir=args.tmpdir)
        )
        root = os.path.join(tmp, "server-root")
        os.mkdir(root)
        server = stack.enter_context(
            start_server(
                "local",
                root=root,
                min_part_size=min(5 * _MIB, args.part_size),
                log_path=os.path.join(tmp, "server.log"),
            )
        )
        _log(f"server at {server.endpoint_url} (pid {server.pid})")
        bucket = Bucket(server.endpoint_url, BUCKET, timeout=600)
        stack.callback(bucket.close)
        bucket.create_bucket()
        shapes: list[tuple[str, int, int, int]] = [
            ("small", args.files, args.small_size, 0),
            ("small-tenth", args.files // 10, args.small_size, 0),
            ("mix", args.mix_files, args.small_size, args.big_size),
            ("warm", _WARM_FILES, args.small_size, 0),
        ]
        trees: list[Tree] = []
        for name, count, size, big in shapes:
            _log(f"writing the {name} tree ({count} x {size} B{f' + {big} B' if big else ''})")
            made = time.perf_counter()
            tree = make_tree(name, os.path.join(tmp, "trees", name), count, size, big)
            put_tree(server.endpoint_url, tree)
            check = check_upload(bucket, tree, tree.prefix, bucket.list(tree.prefix))
            if not check["ok"]:
                raise RuntimeError(f"the server did not store {name} intact: {check}")
            _log(f"  made and put in {time.perf_counter() - made:.1f} s")
            trees.append(tree)
        *timed_trees, warm = trees
        env = harness._child_env()
        deadline = time.monotonic() + args.budget - (time.perf_counter() - started)
        suite = Suite(args, server, bucket, tmp, env, pythons, modules, deadline)
        _play(suite, contestants, timed_trees, warm)

    parameters = {
        **{k: getattr(args, k) for k in ("files", "small_size", "big_size", "mix_files")},
        **{k: getattr(args, k) for k in ("part_size", "concurrency", "repeat", "quick")},
        **{k: getattr(args, k) for k in ("timeout", "budget")},
        "trees": {t.name: {"files": t.count, "bytes": t.size} for t in trees},
        "contestants": contestants,
        "server": server.description,
        "server_version": server.version,
        # This machine is shared: others' work competes for the two cores (1-minute averages).
        "load_average": {"start": load_before[0], "end": os.getloadavg()[0]},
    }
    summary = report.summarize(suite.runs, contestants)
    ratios = report.ratios(summary, contestants)
    targets = report.targets(summary, ratios)
    outputs = suite.warmups + suite.runs
    text = report.markdown(summary, ratios, targets, parameters, outputs, suite.failures)
    sys.stdout.write(text)
    sys.stdout.flush()
    versions: dict[str, dict[str, str]] = {}
    for record in outputs:
        versions.setdefault(record["contestant"], record["extra"].get("versions", {}))
    document = {
        "benchmark": "many",
        "when_utc": stamp,
        "parameters": parameters,
        **run_description(started, peers_venv=str(harness.PEERS_VENV), peers_venv_build_s=build_s),
        "contestants": {
            c: {
                "call": MANY_CONTESTANTS[c].call,
                "module": modules[c],
                "versions": versions.get(c, {}),
            }
            for c in contestants
        },
        "checks": {
            "outputs": len(outputs),
            "verified": sum(1 for r in outputs if r["check"]["ok"]),
            "method": "uploads: ListObjectsV2 (keys, sizes, ETag = MD5 or the object read back);"
            " downloads: the directory walked (relative paths, sizes, xxh3-128)",
        },
        "summary": summary,
        "ratios_asynctransfer_over_peer": ratios,
        "targets": targets,
        "markdown": text,
        "runs": suite.runs,
        "warmups": suite.warmups,
        "failures": suite.failures,
    }
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    report.write_chart(summary, contestants, chart_path, report.title(parameters))
    _log(f"wrote {json_path} and {chart_path} ({time.perf_counter() - started:.0f} s in all)")
    return 1 if suite.failures else 0
