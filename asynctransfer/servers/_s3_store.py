"""The on-disk store of the local S3 server: buckets and objects as files (uploads: _s3_uploads).

Theory of operation. An object is its bytes, under a name never used before, and its metadata
(``<leaf>@meta.json``), which names them. The metadata file is the commit point: new bytes
are moved beside it with ``os.replace`` and become the object only when the new metadata
replaces the old (temp + ``os.replace``); the old bytes are then moved to the trash, which a
worker thread empties. A reader reads the metadata and opens what it names, so it never sees
a half-written object, and one already sending the old bytes keeps its open files. A crash
leaves at worst unreferenced bytes.

The bytes of a single PutObject are one file, ``<leaf>@<token>.data``, except for a small one
(at most ``ServerConfig.small_body``): its bytes follow its metadata in the metadata file itself
(``inline``: the JSON document on one line, a newline, the bytes), so that it costs one new
file, not two. Creating a file is the dearest thing a small PutObject does here (ext4's inode
allocator, which steps over recently deleted inodes one by one, took a third of the server's
CPU), and a GetObject of it is one open and one read. The bytes of a multipart upload are the
directory of its parts, ``<leaf>@<token>.parts/<00001>@<token>.part...``: moved there whole by
CompleteMultipartUpload (a rename, however large the object) and sent part after part; ``cat``
of the ``.part`` files in name order gives the object.

Layout under ROOT::

    .tmp/<pid>-<token>/                 bodies being received, trash (swept when the pid is gone)
    .uploads/<upload-id>/               an open multipart upload (see _s3_uploads)
    <bucket>/@bucket.json               creation time
    <bucket>/<dir>/.../<leaf>@meta.json an object (keys split at '/'); a small one's bytes too
    <bucket>/<dir>/.../<leaf>@<token>.data / .parts/   a larger one's bytes

Key segments are percent-encoded (all but ``A-Za-z0-9_.-~``, and a leading '.'), the empty
segment is ``%``, and a segment whose encoding passes 200 characters continues in directories
named ``<piece>@+``. Encoded names never contain '/' or '@' and are never '.' or '..', so
``a/b`` and ``a/b/c`` coexist, no key names a marker or hidden file, and no key reaches outside
its bucket. Keys with '.' or '..' segments are refused all the same: they look like an escape.

Metadata is fsynced before it replaces the old when ``fsync`` is set; object bytes never are
(this store serves tests and benchmarks; ``os.replace`` keeps it consistent if the server dies,
not if the machine does). The fsync is most of a small PutObject's time (~4 ms of waiting and
~0.3 ms of CPU each here): benchmarks that measure clients turn it off.

Listings walk the directories lazily in key order (``iter_keys``): a page enters only the
directories it needs, from its marker on, and stops after its last key. Each directory's sorted
entries are kept until this store next changes a bucket, so the pages of one listing scan and
sort a directory once (10,000 keys in one directory: ~50 ms of CPU per page of 1,000 when each
page scanned it again). The store assumes it is the only writer under its root (its locks, which
make conditional writes atomic, are this process's).
"""

from __future__ import annotations

import bisect
import concurrent.futures
import contextlib
import itertools
import json
import os
import re
import secrets
import shutil
import threading
import urllib.parse
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from ._s3_xml import S3Error

if TYPE_CHECKING:
    from collections.abc import Iterator

MAX_KEY_BYTES = 1024
_PIECE = 200
_META = "@meta.json"
_BUCKET_META = "@bucket.json"
# Old bytes up to this size are unlinked at once rather than handed to the trash thread: the
# hand-off (a rename, a stat, a thread wake-up) costs more than unlinking a small file.
_UNLINK_NOW = 8 * 1024 * 1024
# How much of a metadata file a HEAD or a listing reads at first: the document is a few hundred
# bytes; an inline object's bytes follow it.
_HEADER_READ = 4096
# Directories whose sorted entries are kept for listings (the most recently scanned).
_LISTINGS_KEPT = 64
# A segment that encodes to itself in one piece (most keys): no quote() call.
_PLAIN_SEGMENT = re.compile(rf"[A-Za-z0-9_~-][A-Za-z0-9_.~-]{{0,{_PIECE - 1}}}")
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_IP_ADDRESS = re.compile(r"[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+")


@dataclass(frozen=True, kw_only=True)
class Checksum:
    algorithm: str
    """S3's name: ``CRC32C``, ``CRC32``, ``SHA1`` or ``SHA256``."""
    value: str
    """Base64; a COMPOSITE one ends with ``-N``."""
    type: str
    """``FULL_OBJECT`` or ``COMPOSITE``."""


@dataclass(frozen=True, kw_only=True)
class Segment:
    """One part of a multipart object."""

    size: int
    checksum: str | None
    """Base64, of the upload's algorithm."""
    file: str
    """Its file in the object's ``.parts`` directory."""


@dataclass(frozen=True, kw_only=True)
class ObjectMeta:
    key: str
    size: int
    etag: str
    """S3's ETag without quotes: the MD5 in hex, or ``<md5 of part MD5s>-N``."""
    last_modified: float
    content_type: str
    headers: dict[str, str]
    """Stored response headers: ``x-amz-meta-*``, Cache-Control, Content-Disposition..."""
    checksum: Checksum | None = None
    parts: list[Segment] | None = None
    """A multipart object's parts, in order."""
    data: str = ""
    """The file (single PutObject) or directory (multipart) of the bytes, beside the metadata."""
    inline: bool = False
    """The bytes follow the metadata in its own file (a small PutObject); ``data`` is empty."""


def to_json(value: Any) -> bytes:
    if isinstance(value, ObjectMeta):  # written per PutObject: asdict's deep copy is slower
        raw: dict[str, Any] = {
            "key": value.key,
            "size": value.size,
            "etag": value.etag,
            "last_modified": value.last_modified,
            "content_type": value.content_type,
            "headers": value.headers,
            "checksum": asdict(value.checksum) if value.checksum is not None else None,
            "parts": [asdict(part) for part in value.parts] if value.parts is not None else None,
            "data": value.data,
            "inline": value.inline,
        }
        return json.dumps(raw, separators=(",", ":")).encode()
    return json.dumps(asdict(value), separators=(",", ":")).encode()


def _object_from_json(raw: dict[str, Any]) -> ObjectMeta:
    checksum = Checksum(**raw["checksum"]) if raw.get("checksum") else None
    parts = [Segment(**part) for part in raw["parts"]] if raw.get("parts") else None
    return ObjectMeta(**{**raw, "checksum": checksum, "parts": parts})


def check_bucket_name(name: str) -> None:
    if not _BUCKET_NAME.fullmatch(name) or ".." in name or _IP_ADDRESS.fullmatch(name):
        raise S3Error(
            "InvalidBucketName", "The specified bucket is not valid.", BucketName=name[:100]
        )


def check_key(key: str) -> None:
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", "Your key is too long", Size=len(key.encode()))
    if any(segment in (".", "..") for segment in key.split("/")):
        raise S3Error(
            "InvalidArgument",
            "This server refuses keys with '.' or '..' segments: they would name a path "
            "outside the bucket",
            ArgumentName="key",
        )


def _encode_segment(segment: str) -> list[str]:
    """A key segment as names: zero or more ``<piece>@+`` directories, then the last piece."""
    if not segment:
        return ["%"]
    if _PLAIN_SEGMENT.fullmatch(segment):
        return [segment]
    encoded = urllib.parse.quote(segment, safe="")
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    names = []
    while len(encoded) > _PIECE:
        cut = _PIECE
        while encoded[cut] == ".":  # no piece may start with '.'; encoded[0] never does
            cut -= 1
        names.append(encoded[:cut] + "@+")
        encoded = encoded[cut:]
    names.append(encoded)
    return names


def _decode_segment(encoded: str) -> str:
    if "%" not in encoded:  # (most names: no call into urllib)
        return encoded
    return "" if encoded == "%" else urllib.parse.unquote(encoded, errors="strict")


def _key_names(key: str) -> tuple[list[str], str]:
    """(directory names, leaf stem) of a key, relative to its bucket's directory."""
    check_key(key)
    segments = key.split("/")
    dirs = [name for segment in segments[:-1] for name in _encode_segment(segment)]
    leaf = _encode_segment(segments[-1])
    return dirs + leaf[:-1], leaf[-1]


def precondition_failed(condition: str) -> S3Error:
    return S3Error(
        "PreconditionFailed",
        "At least one of the pre-conditions you specified did not hold",
        Condition=condition,
    )


def etag_matches(etag: str, candidates: list[str]) -> bool:
    return "*" in candidates or etag in candidates


def _meta_path(directory: str | Path, stem: str) -> str:
    """An object's metadata file (also the name of its lock)."""
    return f"{directory}/{stem}{_META}"


def read_object_file(path: str, *, whole: bool) -> tuple[dict[str, Any], bytes] | None:
    """An object's metadata file: (its metadata, the bytes that follow it: an inline object's,
    when ``whole``; empty otherwise). None: there is no such file.

    The metadata is the file's first line (JSON has no raw newline); files without one (not
    inline) are the document alone. ``whole=False`` reads only as far as that line."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if whole:
            size = os.fstat(fd).st_size
            chunks = []
            while chunk := os.read(fd, max(size, 4096)):
                chunks.append(chunk)
                size -= len(chunk)
                if size <= 0:
                    break
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            end = data.find(b"\n")
        else:
            data = os.read(fd, _HEADER_READ)
            end = data.find(b"\n")
            if end < 0 and len(data) == _HEADER_READ:  # a long document (many parts): the rest
                chunks = [data]
                size = os.fstat(fd).st_size - len(data)
                while size > 0 and (chunk := os.read(fd, size)):
                    chunks.append(chunk)
                    size -= len(chunk)
                data = b"".join(chunks)
                end = data.find(b"\n")
    finally:
        os.close(fd)
    if end < 0:
        return json.loads(data), b""
    raw: dict[str, Any] = json.loads(data[:end])
    # bytes, not a memoryview: aiohttp sends a bytes body with the headers in one write, and
    # any other body through its Payload machinery (more calls, a second send) for a 64 KiB copy.
    return raw, data[end + 1 :] if whole else b""


def _unlink_now(old: dict[str, Any]) -> bool:
    """Whether an object's replaced bytes are one small file, unlinked at once (not trashed)."""
    return not old.get("parts") and int(old.get("size", _UNLINK_NOW + 1)) <= _UNLINK_NOW


def write_all(fd: int, chunks: list[bytes]) -> None:
    """``writev`` (fewer than IOV_MAX chunks), finished plainly after a short write."""
    if not chunks:
        return
    written = os.writev(fd, chunks)
    total = sum(len(c) for c in chunks)
    if written < total:  # (rare on files)
        view = memoryview(b"".join(chunks))[written:]
        while view:
            view = view[os.write(fd, view) :]


def unlink(path: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Store:
    """Synchronous file operations; the server runs them in worker threads."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        # Paths as strings on the per-request paths: pathlib's joins cost more than the syscalls.
        self._root = str(self.root)
        self._fsync = fsync
        tmp_root = self.root / ".tmp"
        tmp_root.mkdir(exist_ok=True)
        self._sweep_temp(tmp_root)
        self.tmp = tmp_root / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.tmp.mkdir()
        self._locks = [threading.Lock() for _ in range(64)]
        self._temp_names = itertools.count()  # (the directory is this process's own)
        # Sorted directory entries for listings: directory -> (generation, entries). Any change
        # to a bucket's tree bumps the generation (under its lock: no lost update).
        self._generation = 0
        self._generation_lock = threading.Lock()
        self._listings: dict[str, tuple[int, list[tuple[str, bool, str]]]] = {}
        self._reaper = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="asynctransfer-s3-trash"
        )

    def close(self) -> None:
        self._reaper.shutdown(wait=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    @staticmethod
    def _sweep_temp(tmp_root: Path) -> None:
        """Remove the temp directories of server processes that are gone."""
        for entry in tmp_root.iterdir():
            pid = entry.name.split("-", 1)[0]
            if not pid.isdigit():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(entry, ignore_errors=True)
            except PermissionError:
                pass

    def _changed(self) -> None:
        """A bucket's tree changed (after the change is visible): cached listings are stale."""
        with self._generation_lock:
            self._generation += 1

    def lock(self, name: str) -> threading.Lock:
        """One of a fixed set of locks, by name (serialises commits of one key or upload)."""
        return self._locks[hash(name) % len(self._locks)]

    # ------------------------------------------------------------------ files

    def new_temp(self) -> tuple[int, str]:
        """A new empty file in this server's temp directory: (fd open for writing, path)."""
        path = f"{self.tmp}/{next(self._temp_names)}.tmp"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        return fd, path

    def trash(self, path: str | Path) -> None:
        """Remove a file or directory tree: out of sight now, its blocks freed in the background
        (unlinking a GiB of freshly written data takes a noticeable fraction of a second)."""
        target = self.tmp / f"trash-{secrets.token_hex(8)}"
        try:
            os.replace(path, target)
        except FileNotFoundError:
            return
        if target.is_dir():
            self._reaper.submit(shutil.rmtree, target, ignore_errors=True)
        else:
            self._reaper.submit(unlink, target)

    def stage_json(self, payload: bytes, body: list[bytes] | None = None) -> str:
        """A temp file holding ``payload`` (and, after a newline, ``body``: an inline object),
        fsynced: ready to replace a metadata file (the slow part done before any lock is
        taken)."""
        fd, temp = self.new_temp()
        try:
            write_all(fd, [payload, b"\n", *body] if body is not None else [payload])
            if self._fsync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            unlink(temp)
            raise
        os.close(fd)
        return temp

    def write_temp(self, chunks: list[bytes]) -> str:
        """A temp file holding ``chunks`` (not fsynced: object bytes never are)."""
        fd, temp = self.new_temp()
        try:
            write_all(fd, chunks)
        except BaseException:
            os.close(fd)
            unlink(temp)
            raise
        os.close(fd)
        return temp

    def write_json(self, path: Path, payload: bytes) -> None:
        temp = self.stage_json(payload)
        try:
            os.replace(temp, path)
        except BaseException:
            unlink(temp)
            raise

    @staticmethod
    def read_json(path: str | Path) -> dict[str, Any] | None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:  # (os.read, not open(): no buffered file object for a few hundred bytes)
            chunks = []
            while chunk := os.read(fd, 65536):
                chunks.append(chunk)
        finally:
            os.close(fd)
        raw: dict[str, Any] = json.loads(b"".join(chunks))
        return raw

    # ---------------------------------------------------------------- buckets

    def _bucket_dir(self, bucket: str) -> Path:
        check_bucket_name(bucket)
        return self.root / bucket

    def _require(self, bucket: str) -> str:
        check_bucket_name(bucket)
        path = f"{self._root}/{bucket}"
        if not os.path.isdir(path):
            raise S3Error("NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)
        return path

    def require_bucket(self, bucket: str) -> Path:
        return Path(self._require(bucket))

    def create_bucket(self, bucket: str, created: float) -> None:
        path = self._bucket_dir(bucket)
        try:
            path.mkdir()
        except FileExistsError:
            raise S3Error(
                "BucketAlreadyOwnedByYou",
                "Your previous request to create the named bucket succeeded and you already "
                "own it.",
                BucketName=bucket,
            ) from None
        self.write_json(path / _BUCKET_META, json.dumps({"created": created}).encode())
        self._changed()

    def list_buckets(self) -> list[tuple[str, float]]:
        buckets = []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if not _BUCKET_NAME.fullmatch(entry.name) or not entry.is_dir():
                continue
            raw = self.read_json(Path(entry.path) / _BUCKET_META)
            created = raw["created"] if raw else entry.stat().st_mtime
            buckets.append((entry.name, float(created)))
        return buckets

    def delete_bucket(self, bucket: str, *, has_uploads: bool) -> None:
        path = self.require_bucket(bucket)
        if has_uploads or next(self._walk(str(path), ""), None) is not None:
            raise S3Error(
                "BucketNotEmpty", "The bucket you tried to delete is not empty", BucketName=bucket
            )
        self.trash(path)
        self._changed()

    # ---------------------------------------------------------------- objects

    def object_paths(self, bucket: str, key: str) -> tuple[Path, str]:
        directory, stem = self._locate(bucket, key)
        return Path(directory), stem

    def _locate(self, bucket: str, key: str) -> tuple[str, str]:
        """(directory, leaf stem) of a key's files, as strings."""
        check_bucket_name(bucket)
        dirs, stem = _key_names(key)
        return "/".join([self._root, bucket, *dirs]), stem

    def check_object_name(self, bucket: str, key: str) -> None:
        """Fail early (before a body is read) on a missing bucket or a refused key."""
        self._require(bucket)
        _key_names(key)

    def head(self, bucket: str, key: str) -> ObjectMeta:
        """The object's metadata; NoSuchBucket or NoSuchKey when it is not there."""
        directory, stem = self._locate(bucket, key)
        return self._head(bucket, key, directory, stem)

    def _head(self, bucket: str, key: str, directory: str, stem: str) -> ObjectMeta:
        found = read_object_file(_meta_path(directory, stem), whole=False)
        if found is None:
            self.require_bucket(bucket)
            raise S3Error("NoSuchKey", "The specified key does not exist.", Key=key)
        return _object_from_json(found[0])

    def read_object(self, bucket: str, key: str, limit: int) -> tuple[ObjectMeta, bytes | None]:
        """The object's metadata and, when it is inline or has at most ``limit`` bytes, the
        bytes: a small GetObject in one worker-thread call (cheaper than a second hop to open
        the file and ``loop.sendfile``'s setup). FileNotFoundError: replaced meanwhile."""
        directory, stem = self._locate(bucket, key)
        found = read_object_file(_meta_path(directory, stem), whole=True)
        if found is None:
            self.require_bucket(bucket)
            raise S3Error("NoSuchKey", "The specified key does not exist.", Key=key)
        meta = _object_from_json(found[0])
        if meta.inline:
            if len(found[1]) != meta.size:
                raise S3Error("InternalError", f"the stored bytes of {key!r} are cut short")
            return meta, found[1]
        if meta.size > limit:
            return meta, None
        if meta.parts is None:
            paths = [f"{directory}/{meta.data}"]
        else:
            paths = [f"{directory}/{meta.data}/{part.file}" for part in meta.parts]
        chunks = []
        for path in paths:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                while chunk := os.read(fd, meta.size + 1):
                    chunks.append(chunk)
            finally:
                os.close(fd)
        data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if len(data) != meta.size:  # sendfile would send a short body; refuse to instead
            raise S3Error("InternalError", f"the stored bytes of {key!r} are not {meta.size} long")
        return meta, data

    def read_meta(self, path: str) -> ObjectMeta | None:
        """The metadata at a path ``iter_keys`` gave; None if the key was deleted since."""
        found = read_object_file(path, whole=False)
        return _object_from_json(found[0]) if found is not None else None

    def find(self, bucket: str, key: str) -> ObjectMeta | None:
        try:
            return self.head(bucket, key)
        except S3Error as exc:
            if exc.code == "NoSuchKey":
                return None
            raise

    def open_range(
        self, bucket: str, meta: ObjectMeta, first: int, count: int
    ) -> list[tuple[BinaryIO, int, int]]:
        """Open the files holding bytes [first, first + count) of this version of the object:
        (file, offset in it, bytes from it) each. FileNotFoundError: replaced meanwhile."""
        directory, _ = self.object_paths(bucket, meta.key)
        if meta.inline:  # (read_object gives their bytes: never asked for here)
            raise S3Error("InternalError", "an inline object has no file of its own to send")
        if meta.parts is None:
            segments = [(directory / meta.data, meta.size)]
        else:
            segments = [(directory / meta.data / part.file, part.size) for part in meta.parts]
        pieces: list[tuple[BinaryIO, int, int]] = []
        start = 0
        try:
            for path, size in segments:
                lo, hi = max(first, start), min(first + count, start + size)
                if lo < hi:
                    pieces.append((open(path, "rb"), lo - start, hi - lo))  # noqa: SIM115
                start += size
        except BaseException:
            for file, _, _ in pieces:
                file.close()
            raise
        return pieces

    def commit_object(
        self,
        bucket: str,
        key: str,
        source: Path,
        meta: ObjectMeta,
        *,
        if_match: list[str] | None = None,
        if_none_match: bool = False,
    ) -> ObjectMeta:
        """Publish ``source`` (a file, or a directory of parts) as the object; conditional
        writes are checked here, atomically with the switch."""
        self._require(bucket)
        directory, stem = self._locate(bucket, key)
        meta_path = _meta_path(directory, stem)
        suffix = "parts" if meta.parts is not None else "data"
        data = f"{stem}@{secrets.token_hex(8)}.{suffix}"
        meta = replace(meta, data=data, inline=False)
        staged = self.stage_json(to_json(meta))
        old: dict[str, Any] | None = None
        try:
            with self.lock(meta_path):  # renames only, under the lock
                old = self._read_for_commit(meta_path, key, if_match, if_none_match)
                self._into_directory(source, directory, f"{directory}/{data}")
                try:
                    os.replace(staged, meta_path)
                except BaseException:
                    os.replace(f"{directory}/{data}", source)
                    raise
                self._changed()
                self._drop(directory, old, now=False)
        finally:
            unlink(staged)  # (gone when it was used)
        self._drop(directory, old, now=True)
        return meta

    def commit_inline(
        self,
        bucket: str,
        key: str,
        body: list[bytes],
        meta: ObjectMeta,
        *,
        if_match: list[str] | None = None,
        if_none_match: bool = False,
    ) -> ObjectMeta:
        """Publish a small object whose bytes ``body`` go in its metadata file: one new file
        (and one fsync when on), checked and switched like ``commit_object``."""
        self._require(bucket)
        directory, stem = self._locate(bucket, key)
        meta_path = _meta_path(directory, stem)
        meta = replace(meta, data="", inline=True)
        staged = self.stage_json(to_json(meta), body)
        old: dict[str, Any] | None = None
        try:
            with self.lock(meta_path):
                old = self._read_for_commit(meta_path, key, if_match, if_none_match)
                self._into_directory(staged, directory, meta_path)
                self._changed()
                self._drop(directory, old, now=False)
        finally:
            unlink(staged)  # (gone when it was used)
        self._drop(directory, old, now=True)
        return meta

    def _read_for_commit(
        self, meta_path: str, key: str, if_match: list[str] | None, if_none_match: bool
    ) -> dict[str, Any] | None:
        """The metadata being replaced, once the conditional write's conditions hold (called
        under the key's lock)."""
        found = read_object_file(meta_path, whole=False)
        old = found[0] if found is not None else None
        if if_none_match and old is not None:
            raise precondition_failed("If-None-Match")
        if if_match is not None:
            if old is None:
                raise S3Error("NoSuchKey", "The specified key does not exist.", Key=key)
            if not etag_matches(str(old["etag"]), if_match):
                raise precondition_failed("If-Match")
        return old

    @staticmethod
    def _into_directory(source: str | Path, directory: str, target: str) -> None:
        """Rename ``source`` to ``target`` in ``directory``, making the directory when missing
        (it usually exists: the rename is tried first)."""
        for attempt in range(4):
            try:
                os.replace(source, target)
                return
            except FileNotFoundError:
                if attempt == 3 or not os.path.lexists(source):
                    raise  # (else a delete pruned the directory we made: again)
                os.makedirs(directory, exist_ok=True)

    def _drop(self, directory: str, old: dict[str, Any] | None, *, now: bool) -> None:
        """Free the replaced version's bytes: a large file or a parts directory goes to the
        trash (under the lock: ``now=False``); a small file is unlinked after the lock
        (``now=True``: unreferenced since the metadata moved; readers that opened it keep
        their bytes). An inline version's bytes went with its metadata file."""
        if old is None or old.get("inline") or _unlink_now(old) != now:
            return
        if now:
            unlink(f"{directory}/{old['data']}")
        else:
            self.trash(f"{directory}/{old['data']}")

    def delete(self, bucket: str, key: str) -> None:
        bucket_dir = self.require_bucket(bucket)
        directory, stem = self.object_paths(bucket, key)
        meta_path = _meta_path(directory, stem)
        with self.lock(meta_path):
            found = read_object_file(meta_path, whole=False)
            if found is None:
                return
            unlink(meta_path)
            self._changed()
            if not found[0].get("inline"):
                self.trash(directory / str(found[0]["data"]))
        while directory != bucket_dir:  # prune directories left empty
            try:
                directory.rmdir()
            except OSError:
                break
            directory = directory.parent

    def iter_keys(self, bucket: str, prefix: str, after: str = "") -> Iterator[tuple[str, str]]:
        """(key, path of its metadata) of the keys that start with ``prefix`` and sort after
        ``after``, in UTF-8 binary order (= code point order), lazily: a listing page enters only
        the directories it needs, from ``after`` on, and stops where its consumer does."""
        bucket_dir = self.require_bucket(bucket)
        segments = prefix.split("/")[:-1]
        names = [name for segment in segments for name in _encode_segment(segment)]
        base = "".join(segment + "/" for segment in segments)
        return self._sorted_walk(str(bucket_dir.joinpath(*names)), base, prefix, after)

    def _sorted_walk(
        self, directory: str, base: str, prefix: str, after: str
    ) -> Iterator[tuple[str, str]]:
        """The keys under ``directory`` (whose keys all start with ``base``), in order."""
        entries = self._listing(directory, base)
        start = bisect.bisect_right(entries, after, key=lambda entry: entry[0])
        if start and entries[start - 1][1] and after.startswith(entries[start - 1][0]):
            start -= 1  # the directory ``after`` is in: its keys after ``after`` are still due
        for key, is_dir, path in itertools.islice(entries, start, None):
            if not key.startswith(prefix) and not (is_dir and prefix.startswith(key)):
                if key > prefix:
                    return  # (the keys that start with ``prefix`` are all behind)
                continue
            if is_dir:
                yield from self._sorted_walk(path, key, prefix, after)
            else:
                yield key, path

    def _listing(self, directory: str, base: str) -> list[tuple[str, bool, str]]:
        """A directory's entries in key order: (key, False, metadata path) for an object,
        (key prefix ending in '/', True, path) for a subdirectory. Cached until the store
        changes (see the module's notes).

        Within a directory, a key ``base + segment`` and a subdirectory's keys
        ``base + segment2 + '/' + ...`` sort like ``base + segment2 + '/'`` against any key not
        under it, so a subdirectory takes that one place in the order. A long segment continued
        in ``@+`` directories is read whole here (rare)."""
        generation = self._generation
        cached = self._listings.get(directory)
        if cached is not None and cached[0] == generation:
            return cached[1]
        try:
            with os.scandir(directory) as it:
                found = list(it)
        except (FileNotFoundError, NotADirectoryError):
            found = []
        entries: list[tuple[str, bool, str]] = []
        for entry in found:
            name = entry.name
            try:
                if name.endswith(_META):
                    stem = name[: -len(_META)]
                    entries.append((base + _decode_segment(stem), False, entry.path))
                elif "@" not in name and entry.is_dir(follow_symlinks=False):
                    entries.append((base + _decode_segment(name) + "/", True, entry.path))
                elif name.endswith("@+") and entry.is_dir(follow_symlinks=False):
                    for key, path in self._walk(entry.path, base, name[:-2]):
                        entries.append((key, False, path))
            except UnicodeDecodeError:
                continue  # not a name this store wrote
        entries.sort()
        with self._generation_lock:
            self._listings[directory] = (generation, entries)
            while len(self._listings) > _LISTINGS_KEPT:
                del self._listings[next(iter(self._listings))]  # (the oldest)
        return entries

    def _walk(self, directory: str, base: str, pending: str = "") -> Iterator[tuple[str, str]]:
        """(key, metadata path) under ``directory``, in no order; ``pending``: the start of a
        segment continued here (``@+``)."""
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except FileNotFoundError:
            return
        for entry in entries:
            name = entry.name
            try:
                if name.endswith(_META):
                    yield base + _decode_segment(pending + name[: -len(_META)]), entry.path
                elif "@" not in name and entry.is_dir(follow_symlinks=False):
                    segment = _decode_segment(pending + name)
                    yield from self._walk(entry.path, base + segment + "/")
                elif name.endswith("@+") and entry.is_dir(follow_symlinks=False):
                    yield from self._walk(entry.path, base, pending + name[:-2])
            except UnicodeDecodeError:
                continue  # not a name this store wrote
