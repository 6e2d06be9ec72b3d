"""Directory trees as S3 key spaces: filters, names, walk order, and what ``sync`` compares.

Pure: the engine walks directories and lists prefixes; this module decides.

Order matters because ``sync`` walks the source and the destination side by side, one entry of
each at a time, so that neither listing is ever held whole (a million keys must not be). S3
lists keys in UTF-8 byte order; a directory walk yields the same order when each directory's
entries are sorted by their UTF-8 name with ``/`` appended to subdirectories (a file ``a-b``
sorts before the files under ``a/``, as the key ``a-b`` sorts before ``a/x``), see
:func:`walk_order`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Sequence

FilterKind = Literal["include", "exclude"]
Filter = tuple[FilterKind, str]

_MD5_ETAG = re.compile(r'^"?([0-9a-f]{32})"?$')
_MULTIPART_ETAG = re.compile(r'^"?([0-9a-f]{32})-(\d+)"?$')


class UnsafeNameError(ValueError):
    """A key that cannot become a local path under the destination directory."""


class Filters:
    """``--include`` / ``--exclude`` as the AWS CLI applies them: every file is included
    unless a filter says otherwise, and of the filters matching a path the last one given wins.
    Patterns are shell globs over the path relative to the tree's root, with ``/`` separators;
    ``*`` also matches ``/`` (``--exclude '*.tmp'`` drops them at every depth)."""

    def __init__(self, filters: Sequence[tuple[str, str]] = ()) -> None:
        compiled: list[tuple[bool, re.Pattern[str]]] = []
        for kind, pattern in filters:
            if kind not in ("include", "exclude"):
                raise ValueError(f"filter kind must be 'include' or 'exclude', got {kind!r}")
            if not pattern:
                raise ValueError(f"--{kind}: empty pattern")
            compiled.append((kind == "include", re.compile(fnmatch.translate(pattern))))
        self._filters = compiled[::-1]

    def __bool__(self) -> bool:
        return bool(self._filters)

    def selects(self, relative: str) -> bool:
        for include, pattern in self._filters:
            if pattern.match(relative):
                return include
        return True


def key_prefix(path: str) -> str:
    """The key prefix a tree goes under: ``""`` for the bucket's root, else ending in ``/``
    (``s3://b/data`` and ``s3://b/data/`` both mean the keys under ``data/``)."""
    return path if not path or path.endswith("/") else path + "/"


def relative_name(key: str, prefix: str) -> str:
    """The path of ``key`` relative to ``prefix``, checked so that it stays inside the
    destination directory: no empty, ``.`` or ``..`` component, no NUL. A key ending in ``/``
    (a "folder" marker some tools create) is not a file: UnsafeNameError too, and the caller
    skips markers before asking."""
    if not key.startswith(prefix):
        raise UnsafeNameError(f"{key!r} is not under the prefix {prefix!r}")
    relative = key[len(prefix) :]
    parts = relative.split("/")
    for part in parts:
        if part in ("", ".", "..") or "\0" in part:
            raise UnsafeNameError(
                f"key {key!r} cannot be a file under the destination directory "
                f"(component {part!r}); copy it on its own with `cp` to a name of your choice"
            )
    return relative


def is_folder_marker(key: str, size: int) -> bool:
    return key.endswith("/") and size == 0


def walk_order(name: str, is_dir: bool) -> bytes:
    """Sort key for one directory's entries that makes a depth-first walk yield paths in S3's
    key order (UTF-8 bytes; undecodable names keep their original bytes)."""
    encoded = name.encode("utf-8", "surrogateescape")
    return encoded + b"/" if is_dir else encoded


def key_order(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


# ------------------------------------------------------------------------------------- sync

Decision = Literal["copy", "skip", "compare-md5"]


@dataclass(frozen=True)
class Entry:
    """What a listing or a walk says about one file: enough to decide whether to copy it."""

    size: int
    mtime: float
    """Seconds since the epoch: the file's mtime, or the object's LastModified."""
    etag: str | None = None
    """The object's ETag (remote side only)."""


def comparable_etag(etag: str | None, size: int, part_size: int) -> int | None:
    """How many MD5 parts the local file must be hashed in for its ETag to equal ``etag``:
    1 for a plain MD5 ETag, N for a multipart ``md5-N`` whose N matches ``size`` cut in
    ``part_size`` parts; None when the ETag cannot be compared (another part size, or not an
    MD5 at all: SSE-KMS, SSE-C)."""
    if etag is None:
        return None
    if _MD5_ETAG.match(etag):
        return 1
    m = _MULTIPART_ETAG.match(etag)
    if m is None:
        return None
    parts = int(m.group(2))
    expected = max(1, -(-size // part_size))
    return parts if parts == expected and parts > 1 else None


def decide(
    source: Entry | None,
    dest: Entry | None,
    *,
    direction: Literal["upload", "download"],
    part_size: int,
) -> Decision:
    """Whether ``sync`` copies a file: missing or of another size, copy; same size and a
    comparable ETag, compare MD5s (the caller hashes the local file); otherwise by time, as
    the AWS CLI does: copy when the source is newer than the destination."""
    if source is None:
        raise ValueError("nothing to copy: the source has no such file")
    if dest is None or dest.size != source.size:
        return "copy"
    remote = dest if direction == "upload" else source
    if comparable_etag(remote.etag, remote.size, part_size) is not None:
        return "compare-md5"
    return "copy" if source.mtime > dest.mtime + 1.0 else "skip"


def etag_of(part_md5s: list[bytes]) -> str:
    """The ETag S3 gives an object made of parts with these MD5s (one: that MD5)."""
    if len(part_md5s) == 1:
        return part_md5s[0].hex()
    return f"{hashlib.md5(b''.join(part_md5s), usedforsecurity=False).hexdigest()}-{len(part_md5s)}"


def same_etag(etag: str, computed: str) -> bool:
    return etag.strip('"') == computed
