"""HTTP byte ranges: the Range header we send and the Content-Range we must get back.

botocore and aiohttp check neither 206 nor Content-Range; a server that answers a different
range than asked (or the whole object) would otherwise be written at the wrong offset.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CONTENT_RANGE = re.compile(r"bytes ([0-9]+)-([0-9]+)/([0-9]+|\*)")


class RangeMismatchError(ValueError):
    """A Content-Range header is malformed or differs from the range asked for."""


@dataclass(frozen=True, slots=True)
class ContentRange:
    start: int
    end: int  # inclusive, as in the header
    total: int | None  # None for '*'

    @property
    def length(self) -> int:
        return self.end - self.start + 1


def range_header(offset: int, length: int) -> str:
    """The Range header for bytes ``[offset, offset + length)``; length must be positive."""
    if offset < 0 or length <= 0:
        raise ValueError(f"invalid range offset={offset} length={length}")
    return f"bytes={offset}-{offset + length - 1}"


def parse_content_range(value: str) -> ContentRange:
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if match is None:
        raise RangeMismatchError(f"malformed Content-Range {value!r}")
    start, end = int(match.group(1)), int(match.group(2))
    total = None if match.group(3) == "*" else int(match.group(3))
    if end < start or (total is not None and end >= total):
        raise RangeMismatchError(f"impossible Content-Range {value!r}")
    return ContentRange(start, end, total)


def check_content_range(
    value: str | None, offset: int, length: int, total: int | None
) -> ContentRange:
    """Check a response's Content-Range against the range asked for (and the known total)."""
    if value is None:
        raise RangeMismatchError(
            f"no Content-Range in the answer to bytes {offset}-{offset + length - 1}"
        )
    got = parse_content_range(value)
    if got.start != offset or got.end != offset + length - 1:
        raise RangeMismatchError(
            f"asked for bytes {offset}-{offset + length - 1}, got Content-Range {value!r}"
        )
    if total is not None and got.total is not None and got.total != total:
        raise RangeMismatchError(
            f"object size changed: expected {total} bytes, Content-Range says {got.total}"
        )
    return got
