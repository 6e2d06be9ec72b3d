"""The command line: ``asynctransfer cp SRC DST``, ``asynctransfer uploads list|abort``,
``asynctransfer serve``.

Exit status: 0 on success, 1 when the transfer failed (one line on stderr names the file or key
and the cause), 2 for a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._api import Transferer
from ._cli_uploads import add_parser as add_uploads_parser
from ._cli_uploads import run as run_uploads
from ._core.units import format_size, parse_rate, parse_size
from ._core.urls import scheme_of
from ._errors import InvalidRequestError, TransferError
from ._options import TransferConfig
from ._results import BatchResult, DownloadResult, UploadResult
from .progress import JsonLines, TqdmBatchProgress, auto_progress

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._events import EventHook

T = TypeVar("T")
logger = logging.getLogger("asynctransfer")


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _rate(text: str) -> int:
    try:
        return parse_rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="asynctransfer", description="Fast, verified transfers to and from S3."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    cp = commands.add_parser(
        "cp",
        help="copy a file, a directory tree or a list of URLs to or from S3",
        description="Copy a local file to s3://bucket/key; or s3://bucket/key or an http(s):// "
        "URL to a local path, or to stdout (-) in order. With -r, a directory tree to "
        "s3://bucket/prefix/ or back. With --from-list, every URL of a list file into DST.",
    )
    cp.add_argument("src", nargs="?", help="local path, s3://bucket/key, or an http(s):// URL")
    cp.add_argument("dst", help="local path, - (stdout), or s3://bucket/key")
    cp.add_argument(
        "-r",
        "--recursive",
        action="store_true",
        help="copy the files under the directory or s3://bucket/prefix/ SRC to DST, as "
        "`aws s3 cp --recursive` does",
    )
    cp.add_argument(
        "--from-list",
        metavar="FILE",
        help="download every URL of FILE (one `URL [NAME]` per line) into the directory DST",
    )
    _add_batch_options(cp)
    _add_transfer_options(cp)
    sync = commands.add_parser(
        "sync",
        help="copy only what is missing or differs, between a directory and s3://bucket/prefix/",
        description="Copy the files of SRC that DST lacks or that differ (size; then MD5 against "
        "the ETag where comparable, else a newer source), either way between a local directory "
        "and s3://bucket/prefix/. --delete also removes what only DST has.",
    )
    sync.add_argument("src", help="local directory or s3://bucket/prefix/")
    sync.add_argument("dst", help="s3://bucket/prefix/ or local directory")
    sync.add_argument(
        "--delete",
        action="store_true",
        help="delete files under DST that SRC does not have (among those the filters select)",
    )
    _add_batch_options(sync)
    _add_transfer_options(sync)
    add_uploads_parser(commands)
    serve = commands.add_parser(
        "serve",
        help="run a local S3-compatible endpoint",
        description="Serve buckets stored as files under --root over the S3 API (path-style), "
        "until SIGINT or SIGTERM. Prints 'listening on http://HOST:PORT' on stdout when ready.",
    )
    serve.add_argument("--root", required=True, help="directory of buckets, objects and uploads")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9000, help="TCP port; 0: a free one")
    serve.add_argument("--access-key", help="require SigV4 signatures by this access key...")
    serve.add_argument("--secret-key", help="...and this secret key (default: accept any)")
    serve.add_argument(
        "--min-part-size", type=_size, help="smallest multipart part but the last (default 5MiB)"
    )
    serve.add_argument(
        "--max-body", type=_size, help="largest PutObject / UploadPart body (default 5GiB)"
    )
    serve.add_argument(
        "--no-fsync",
        dest="fsync",
        action="store_false",
        help="do not fsync each object's metadata (faster small PUTs; the store stays "
        "consistent if the server dies, not if the machine does)",
    )
    serve.add_argument("-v", "--verbose", action="store_true", help="log every request to stderr")
    return parser


def _add_batch_options(p: argparse.ArgumentParser) -> None:
    for flag, kind in (("--include", "include"), ("--exclude", "exclude")):
        p.add_argument(
            flag,
            dest="filters",
            action=_FilterAction,
            kind=kind,
            default=[],
            metavar="GLOB",
            help=f"{kind} the files whose path under the tree matches GLOB (repeatable; the "
            "last matching --include/--exclude decides; `*` also matches `/`)",
        )
    p.add_argument(
        "--fail-fast",
        action="store_true",
        help="stop at the first file that fails (by default the rest go on and the failures "
        "are listed at the end)",
    )


class _FilterAction(argparse.Action):
    """--include and --exclude into one list, in the order given: the order decides."""

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kind = kind

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, [*getattr(namespace, self.dest, []), (self.kind, values)])


def _add_transfer_options(cp: argparse.ArgumentParser) -> None:
    cp.add_argument("--endpoint-url", help="S3 endpoint, e.g. http://127.0.0.1:9000")
    cp.add_argument("--region", help="region to sign requests for")
    cp.add_argument("--part-size", type=_size, help="bytes per part, e.g. 8MiB (default 8MiB)")
    cp.add_argument("--concurrency", type=int, help="requests in flight (default 10)")
    cp.add_argument(
        "--max-memory", type=_size, help="bytes of part buffers at once (default: (N+2) parts)"
    )
    cp.add_argument("--rate-limit", type=_rate, help="cap on bytes per second, e.g. 50MB/s")
    cp.add_argument(
        "--checksum", choices=["crc32c", "md5", "none"], help="per-part checksum (default crc32c)"
    )
    cp.add_argument(
        "--no-fsync",
        dest="durable",
        action="store_false",
        default=None,
        help="download: skip the fsync before the rename (faster; a crash may leave a partial "
        "file under the final name)",
    )
    cp.add_argument(
        "--no-direct-io",
        dest="direct_io",
        action="store_false",
        default=None,
        help="download: write through the page cache instead of O_DIRECT",
    )
    cp.add_argument(
        "-H",
        "--header",
        action="append",
        metavar="'NAME: VALUE'",
        help="http(s) source: a request header, e.g. 'Authorization: Bearer T' (repeatable)",
    )
    cp.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="where to record progress for resume (default: a file under "
        "~/.cache/asynctransfer/checkpoints named after SRC and DST)",
    )
    cp.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="no checkpoint: a failure aborts the multipart upload and removes the partial "
        "download (by default both are kept, and running the same command again resumes)",
    )
    cp.add_argument(
        "--no-restart",
        dest="restart",
        action="store_false",
        help="upload: fail if the file changed since the interrupted upload, instead of "
        "aborting it and starting over",
    )
    cp.add_argument(
        "--no-overwrite",
        dest="overwrite",
        action="store_false",
        help="upload: fail if the key exists (checked first, and atomically at the end)",
    )
    cp.add_argument("--expected-sha256", metavar="HEX", help="download: fail unless this digest")
    cp.add_argument("--expected-xxh3", metavar="HEX", help="download: fail unless this xxh3-128")
    cp.add_argument(
        "--json", action="store_true", help="print the result as one JSON object on stdout"
    )
    cp.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bar (one is drawn on a terminal)"
    )
    cp.add_argument(
        "--events",
        action="store_true",
        help="write every event (started, part, retry, slowdown, finished, failed) to stderr, "
        "one JSON object per line, instead of a progress bar",
    )
    cp.add_argument("-v", "--verbose", action="store_true", help="log what happens to stderr")


def serve(args: argparse.Namespace) -> int:
    from .servers.s3 import serve_command

    if (args.access_key is None) != (args.secret_key is None):
        sys.stderr.write("asynctransfer serve: --access-key and --secret-key go together\n")
        return 2
    options = {"min_part_size": args.min_part_size, "max_body": args.max_body}
    return serve_command(
        args.root,
        host=args.host,
        port=args.port,
        access_key=args.access_key,
        secret_key=args.secret_key,
        verbose=args.verbose,
        fsync=args.fsync,
        **{name: value for name, value in options.items() if value is not None},
    )


def _config(args: argparse.Namespace) -> TransferConfig:
    fields: dict[str, Any] = {
        "endpoint_url": args.endpoint_url,
        "region": args.region,
        "part_size": args.part_size,
        "max_concurrency": args.concurrency,
        "max_memory": args.max_memory,
        "max_bytes_per_second": args.rate_limit,
        "checksum": args.checksum,
        "durable": args.durable,
        "direct_io": args.direct_io,
    }
    return TransferConfig(**{k: v for k, v in fields.items() if v is not None})


def _run(config: TransferConfig, fn: Callable[[], Awaitable[T]]) -> T:
    options: dict[str, Any] = {}
    if config.use_uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            pass
        else:
            options["use_uvloop"] = True
    logger.info("event loop: %s", "uvloop" if options else "asyncio")
    return anyio.run(fn, backend="asyncio", backend_options=options)


def _report(result: UploadResult | DownloadResult, as_json: bool) -> str:
    if as_json:
        record = dataclasses.asdict(result)
        record["bytes"] = result.size
        record["direction"] = "upload" if isinstance(result, UploadResult) else "download"
        return json.dumps(record, sort_keys=True)
    rate = result.size / result.seconds / 1e6 if result.seconds > 0 else 0.0
    if isinstance(result, UploadResult):
        route = f"upload: {result.source} -> {result.url}"
    else:
        route = f"download: {result.url} -> {result.path}"
    reused = ""
    if result.reused_parts:
        reused = (
            f" ({result.reused_parts} kept from the interrupted run, "
            f"{format_size(result.reused_bytes)})"
        )
    return (
        f"{route}  {format_size(result.size)} in {result.seconds:.2f} s "
        f"({rate:.0f} MB/s), {result.parts} part(s){reused}, xxh3-128 {result.xxh3_128}"
    )


def _headers(values: list[str] | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values or []:
        name, sep, text = value.partition(":")
        if not sep or not name.strip() or any(c.isspace() for c in name.strip()):
            raise InvalidRequestError(f"--header {value!r}: expected 'Name: value'")
        headers[name.strip()] = text.strip()
    return headers


def _reporter(args: argparse.Namespace) -> EventHook | None:
    if args.events:
        return JsonLines(sys.stderr)
    if args.quiet:
        return None
    return auto_progress(sys.stderr)


_SHOWN_FAILURES = 20


def _batch_report(result: BatchResult, as_json: bool) -> tuple[str, str]:
    """(stdout, stderr) text of a batch: the summary, and the failures."""
    if as_json:
        return json.dumps(result.to_dict(), sort_keys=True) + "\n", ""
    rate = result.bytes / result.seconds / 1e6 if result.seconds > 0 else 0.0
    files = result.files / result.seconds if result.seconds > 0 else 0.0
    summary = (
        f"copied {result.files} file(s), {format_size(result.bytes)} in {result.seconds:.2f} s "
        f"({rate:.0f} MB/s, {files:.0f} files/s); skipped {result.skipped} (up to date), "
        f"deleted {result.deleted}, failed {len(result.failures)}\n"
    )
    lines = [f"failed: {f.error}\n" for f in result.failures[:_SHOWN_FAILURES]]
    if len(result.failures) > _SHOWN_FAILURES:
        lines.append(
            f"... and {len(result.failures) - _SHOWN_FAILURES} more failures (--json lists all)\n"
        )
    return summary, "".join(lines)


def _batch(
    args: argparse.Namespace,
    run: Callable[[Transferer, EventHook | None], Awaitable[BatchResult]],
) -> int:
    for name, flag in (
        ("header", "--header"),
        ("expected_sha256", "--expected-sha256"),
        ("expected_xxh3", "--expected-xxh3"),
        ("checkpoint", "--checkpoint"),
    ):
        if getattr(args, name):
            raise InvalidRequestError(
                f"{flag} applies to one file, not to a batch (each file of a batch keeps its own "
                "checkpoint under ~/.cache/asynctransfer/checkpoints unless --no-resume)"
            )
    if not args.overwrite or not args.restart:
        raise InvalidRequestError("--no-overwrite and --no-restart apply to one file")
    config = _config(args)
    if args.events:
        on_event: EventHook | None = JsonLines(sys.stderr)
    else:
        on_event = None if args.quiet else auto_progress(sys.stderr, batch=True)

    async def go() -> BatchResult:
        async with Transferer(config) as t:
            return await run(t, on_event)

    try:
        result = _run(config, go)
    finally:
        if isinstance(on_event, TqdmBatchProgress):
            on_event.close()
    out, err = _batch_report(result, args.json)
    sys.stderr.write(err)
    sys.stdout.write(out)
    return 0 if result.ok else 1


def sync(args: argparse.Namespace) -> int:
    return _batch(
        args,
        lambda t, on_event: t.sync(
            args.src,
            args.dst,
            filters=args.filters,
            delete=args.delete,
            fail_fast=args.fail_fast,
            checkpoint=args.resume,
            on_event=on_event,
        ),
    )


def cp(args: argparse.Namespace) -> int:
    if args.from_list is not None:
        if args.src is not None or args.recursive:
            raise InvalidRequestError("cp --from-list FILE DIR: give only the directory DIR")
        return _batch(
            args,
            lambda t, on_event: t.copy_list(
                args.from_list,
                args.dst,
                fail_fast=args.fail_fast,
                checkpoint=args.resume,
                on_event=on_event,
            ),
        )
    if args.src is None:
        raise InvalidRequestError("cp SRC DST: give both (or --from-list FILE DIR)")
    if args.recursive:
        return _batch(
            args,
            lambda t, on_event: t.copy_tree(
                args.src,
                args.dst,
                filters=args.filters,
                fail_fast=args.fail_fast,
                checkpoint=args.resume,
                on_event=on_event,
            ),
        )
    if args.filters or args.fail_fast:
        raise InvalidRequestError("--include, --exclude and --fail-fast go with -r or --from-list")
    config = _config(args)
    src_scheme, dst_scheme = scheme_of(args.src), scheme_of(args.dst)
    downloadable = ("s3", "http", "https")
    for scheme, value in ((src_scheme, args.src), (dst_scheme, args.dst)):
        if scheme not in (None, *downloadable):
            raise InvalidRequestError(
                f"{value!r}: unsupported URL scheme {scheme!r}; supported: s3://, http(s):// "
                "(as a source) and local paths"
            )
    headers = _headers(args.header)
    on_event = _reporter(args)
    if headers and src_scheme not in ("http", "https"):
        raise InvalidRequestError("--header applies to http(s):// sources only")
    expected = {"expected_sha256": args.expected_sha256, "expected_xxh3": args.expected_xxh3}
    to_stdout = args.dst == "-"
    if args.checkpoint is not None and not args.resume:
        raise InvalidRequestError("--checkpoint and --no-resume contradict each other")
    checkpoint: str | bool = args.checkpoint or args.resume
    if src_scheme is None and dst_scheme == "s3":
        if any(expected.values()):
            raise InvalidRequestError("--expected-sha256/--expected-xxh3 apply to downloads")

        async def go() -> UploadResult | DownloadResult:
            async with Transferer(config) as t:
                return await t.upload(
                    args.src,
                    args.dst,
                    checkpoint=checkpoint,
                    restart=args.restart,
                    overwrite=args.overwrite,
                    on_event=on_event,
                )

    elif src_scheme in downloadable and dst_scheme is None:
        dest = sys.stdout.buffer if to_stdout else args.dst

        async def go() -> UploadResult | DownloadResult:
            async with Transferer(config) as t:
                return await t.download(
                    args.src,
                    dest,
                    headers=headers,
                    checkpoint=checkpoint,
                    on_event=on_event,
                    **expected,
                )

    else:
        raise InvalidRequestError(
            f"cp {args.src} {args.dst}: one side must be a local path (or - for stdout) and "
            "the other a URL: upload to s3://, download from s3:// or http(s)://"
        )
    try:
        result = _run(config, go)
    except BrokenPipeError:
        # The reader went away (`| head`): not our failure; say nothing more on a dead pipe.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    report = _report(result, args.json)
    # With the bytes on stdout, the report goes to stderr.
    (sys.stderr if to_stdout else sys.stdout).write(report + "\n")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="asynctransfer: %(levelname)s: %(message)s",
    )
    try:
        if args.command == "serve":
            return serve(args)
        if args.command == "uploads":
            return run_uploads(args)
        if args.command == "sync":
            return sync(args)
        return cp(args)
    except TransferError as exc:
        sys.stderr.write(f"asynctransfer: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("asynctransfer: interrupted\n")
        return 130
