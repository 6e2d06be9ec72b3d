"""``asynctransfer uploads list|abort``: the open multipart uploads of a bucket, and their cleanup.

Exit status as for ``cp``: 0 on success, 1 when the store failed (one line per upload that
could not be aborted, with the command to retry it), 2 for a usage error. ``abort`` refuses to
run without a filter: aborting every upload under a prefix also kills transfers in progress.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from datetime import UTC
from typing import Any

from ._errors import InvalidRequestError, TransferError
from ._options import TransferConfig
from ._orphans import UploadInfo, abort_uploads, list_uploads, parse_location

_DURATION = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``"90s"``, ``"30m"``, ``"24h"``, ``"7d"``, ``"2w"``, ``"1.5h"`` or ``"600"``."""
    match = _DURATION.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _SECONDS:
        raise ValueError(
            f"invalid duration {text!r}: expected a number with an optional unit "
            "(s, m, h, d, w), e.g. '24h'"
        )
    return float(match.group(1)) * _SECONDS[unit]


def format_age(seconds: float | None) -> str:
    """``3d4h``, ``2h5m``, ``12m30s``, ``40s``: the two largest units are enough to judge."""
    if seconds is None:
        return "-"
    left = max(0, int(seconds))
    pieces: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not pieces):
            pieces.append(f"{left // size}{unit}")
            left %= size
    return "".join(pieces[:2])


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    uploads = commands.add_parser(
        "uploads",
        help="list or abort unfinished multipart uploads",
        description="Multipart uploads that were started and neither completed nor aborted "
        "still store (and bill) their parts. Those a checkpoint can resume are marked.",
    )
    actions = uploads.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list the open multipart uploads")
    abort = actions.add_parser(
        "abort",
        help="abort open multipart uploads",
        description="Abort the open multipart uploads that match: --older-than AGE, or "
        "--key K --upload-id ID, or --all. Each abort is confirmed with ListParts.",
    )
    for sub in (listing, abort):
        sub.add_argument("url", help="s3://bucket or s3://bucket/prefix")
        sub.add_argument(
            "--older-than",
            type=_duration,
            metavar="AGE",
            help="only uploads initiated longer ago than this, e.g. 90s, 30m, 24h, 7d",
        )
        sub.add_argument("--endpoint-url", help="S3 endpoint, e.g. http://127.0.0.1:9000")
        sub.add_argument("--region", help="region to sign requests for")
        sub.add_argument("--json", action="store_true", help="print one JSON array on stdout")
        sub.add_argument("-v", "--verbose", action="store_true", help="log to stderr")
    abort.add_argument("--key", help="only the uploads of this key (with --upload-id)")
    abort.add_argument("--upload-id", help="only this upload (with --key)")
    abort.add_argument(
        "--all", action="store_true", help="every open upload under the URL, whatever its age"
    )


def _record(upload: UploadInfo) -> dict[str, Any]:
    return {
        "bucket": upload.bucket,
        "key": upload.key,
        "upload_id": upload.upload_id,
        "initiated": upload.initiated.isoformat() if upload.initiated else None,
        "age_seconds": upload.age_seconds,
        "resumable": upload.resumable,
        "checkpoint": upload.checkpoint,
    }


def _line(upload: UploadInfo) -> str:
    initiated = (
        upload.initiated.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ") if upload.initiated else "-"
    )
    line = f"{upload.key}  {upload.upload_id}  {initiated}  {format_age(upload.age_seconds)}"
    return f"{line}  resumable: {upload.checkpoint}" if upload.checkpoint else line


def _usage_error(args: argparse.Namespace) -> str | None:
    if args.action != "abort":
        return None
    if (args.key is None) != (args.upload_id is None):
        return "--key and --upload-id go together"
    if args.all and (args.older_than is not None or args.key is not None):
        return "--all takes no other filter"
    if not args.all and args.older_than is None and args.key is None:
        return (
            "say which uploads to abort: pass --older-than AGE (e.g. 24h), --key K --upload-id "
            "ID, or --all (this also aborts uploads in progress)"
        )
    return None


def run(args: argparse.Namespace) -> int:
    # Imported here: cli imports this module, and needs to for its parser.
    from ._api import Transferer
    from .cli import _run

    problem = _usage_error(args)
    if problem is None:
        try:
            parse_location(args.url)
        except InvalidRequestError as exc:
            problem = str(exc)
    if problem is not None:
        sys.stderr.write(f"asynctransfer uploads {args.action}: error: {problem}\n")
        return 2
    fields = {"endpoint_url": args.endpoint_url, "region": args.region}
    config = TransferConfig(**{k: v for k, v in fields.items() if v is not None})

    async def go() -> list[UploadInfo]:
        async with Transferer(config) as t:
            engine = t._require_engine()
            if args.action == "list":
                return await list_uploads(engine, args.url, args.older_than)
            return await abort_uploads(
                engine,
                args.url,
                older_than=args.older_than,
                key=args.key,
                upload_id=args.upload_id,
            )

    try:
        uploads = _run(config, go)
    except TransferError as exc:
        sys.stderr.write(f"asynctransfer: error: {exc}\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps([_record(u) for u in uploads]) + "\n")
    elif not uploads:
        verb = "open" if args.action == "list" else "matching open"
        sys.stdout.write(f"no {verb} multipart uploads under {args.url}\n")
    else:
        prefix = "aborted " if args.action == "abort" else ""
        sys.stdout.write("".join(f"{prefix}{_line(u)}\n" for u in uploads))
    return 0
