"""The on-disk store of the local S3 server: buckets and objects as files (uploads: _s3_uploads).

Theory of operation. An object is its bytes, under a name never used before, and its metadata
(``<leaf>@meta.json``), which names them. The metadata file is the commit point: new bytes
are moved beside it with ``os.replace`` and become the object only when the new metadata
replaces the old (temp + ``os.replace``); the old bytes are then moved to the trash, which a
worker thread empties. A reader reads the metadata and opens what it names, so it never sees
a half-written object, and one already sending the old bytes keeps its open files. A crash
leaves at worst unreferenced bytes.

The bytes of a single PutObject are one file, ``<leaf>@<token>.data``. Those of a multipart
upload are the directory of its parts, ``<leaf>@<token>.parts/<00001>@<token>.part...``: moved
there whole by CompleteMultipartUpload (a rename, however large the object) and sent part after
part; ``cat`` of the ``.part`` files in name order gives the object.

Layout under ROOT::

    .tmp/<pid>-<token>/                 bodies being received, trash (swept when the pid is gone)
    .uploads/<upload-id>/               an open multipart upload (see _s3_uploads)
    <bucket>/@bucket.json               creation time
    <bucket>/<dir>/.../<leaf>@meta.json an object (keys split at '/')

Key segments are percent-encoded (all but ``A-Za-z0-9_.-~``, and a leading '.'), the empty
segment is ``%``, and a segment whose encoding passes 200 characters continues in directories
named ``<piece>@+``. Encoded names never contain '/' or '@' and are never '.' or '..', so
``a/b`` and ``a/b/c`` coexist, no key names a marker or hidden file, and no key reaches outside
its bucket. Keys with '.' or '..' segments are refused all the same: they look like an escape.

Metadata is fsynced before it replaces the old when ``fsync`` is set; object bytes never are
(this store serves tests and benchmarks; ``os.replace`` keeps it consistent if the server dies,
not if the machine does).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
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


def to_json(value: Any) -> bytes:
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


def unlink(path: str | Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class Store:
    """Synchronous file operations; the server runs them in worker threads."""

    def __init__(self, root: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self._fsync = fsync
        tmp_root = self.root / ".tmp"
        tmp_root.mkdir(exist_ok=True)
        self._sweep_temp(tmp_root)
        self.tmp = tmp_root / f"{os.getpid()}-{secrets.token_hex(4)}"
        self.tmp.mkdir()
        self._locks = [threading.Lock() for _ in range(64)]
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

    def lock(self, name: str) -> threading.Lock:
        """One of a fixed set of locks, by name (serialises commits of one key or upload)."""
        return self._locks[hash(name) % len(self._locks)]

    # ------------------------------------------------------------------ files

    def new_temp(self) -> tuple[int, str]:
        """A new empty file in this server's temp directory: (fd open for writing, path)."""
        path = str(self.tmp / f"{secrets.token_hex(8)}.tmp")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        return fd, path

    def trash(self, path: Path) -> None:
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

    def stage_json(self, payload: bytes) -> str:
        """A temp file holding ``payload``, fsynced: ready to replace a metadata file (the
        slow part done before any lock is taken)."""
        fd, temp = self.new_temp()
        try:
            os.write(fd, payload)
            if self._fsync:
                os.fsync(fd)
        finally:
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
    def read_json(path: Path) -> dict[str, Any] | None:
        try:
            with open(path, "rb") as f:
                raw: dict[str, Any] = json.load(f)
                return raw
        except FileNotFoundError:
            return None

    # ---------------------------------------------------------------- buckets

    def _bucket_dir(self, bucket: str) -> Path:
        check_bucket_name(bucket)
        return self.root / bucket

    def require_bucket(self, bucket: str) -> Path:
        path = self._bucket_dir(bucket)
        if not path.is_dir():
            raise S3Error("NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)
        return path

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
        if has_uploads or next(self._walk(path, []), None) is not None:
            raise S3Error(
                "BucketNotEmpty", "The bucket you tried to delete is not empty", BucketName=bucket
            )
        self.trash(path)

    # ---------------------------------------------------------------- objects

    def object_paths(self, bucket: str, key: str) -> tuple[Path, str]:
        bucket_dir = self._bucket_dir(bucket)
        dirs, stem = _key_names(key)
        return bucket_dir.joinpath(*dirs), stem

    def check_object_name(self, bucket: str, key: str) -> None:
        """Fail early (before a body is read) on a missing bucket or a refused key."""
        self.require_bucket(bucket)
        self.object_paths(bucket, key)

    def head(self, bucket: str, key: str) -> ObjectMeta:
        """The object's metadata; NoSuchBucket or NoSuchKey when it is not there."""
        directory, stem = self.object_paths(bucket, key)
        raw = self.read_json(directory / (stem + _META))
        if raw is None:
            self.require_bucket(bucket)
            raise S3Error("NoSuchKey", "The specified key does not exist.", Key=key)
        return _object_from_json(raw)

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
        self.require_bucket(bucket)
        directory, stem = self.object_paths(bucket, key)
        meta_path = directory / (stem + _META)
        suffix = "parts" if meta.parts is not None else "data"
        data = f"{stem}@{secrets.token_hex(8)}.{suffix}"
        meta = replace(meta, data=data)
        staged = self.stage_json(to_json(meta))
        try:
            with self.lock(str(meta_path)):  # renames only, under the lock
                old = self.read_json(meta_path)
                if if_none_match and old is not None:
                    raise precondition_failed("If-None-Match")
                if if_match is not None:
                    if old is None:
                        raise S3Error("NoSuchKey", "The specified key does not exist.", Key=key)
                    if not etag_matches(str(old["etag"]), if_match):
                        raise precondition_failed("If-Match")
                for attempt in range(3):
                    directory.mkdir(parents=True, exist_ok=True)
                    try:
                        os.replace(source, directory / data)
                        break
                    except FileNotFoundError:
                        if attempt == 2 or not os.path.lexists(source):
                            raise  # (else a delete pruned the directory we made: again)
                try:
                    os.replace(staged, meta_path)
                except BaseException:
                    os.replace(directory / data, source)
                    raise
                if old is not None:
                    self.trash(directory / str(old["data"]))
        finally:
            unlink(staged)  # (gone when it was used)
        return meta

    def delete(self, bucket: str, key: str) -> None:
        bucket_dir = self.require_bucket(bucket)
        directory, stem = self.object_paths(bucket, key)
        meta_path = directory / (stem + _META)
        with self.lock(str(meta_path)):
            raw = self.read_json(meta_path)
            if raw is None:
                return
            unlink(meta_path)
            self.trash(directory / str(raw["data"]))
        while directory != bucket_dir:  # prune directories left empty
            try:
                directory.rmdir()
            except OSError:
                break
            directory = directory.parent

    def list_keys(self, bucket: str, prefix: str) -> list[str]:
        """Every key that starts with ``prefix``, in UTF-8 binary order (= code point order)."""
        bucket_dir = self.require_bucket(bucket)
        segments = prefix.split("/")[:-1]
        names = [name for segment in segments for name in _encode_segment(segment)]
        start = bucket_dir.joinpath(*names)
        if not start.is_dir():
            return []
        return sorted(key for key in self._walk(start, segments) if key.startswith(prefix))

    def _walk(self, directory: Path, segments: list[str], pending: str = "") -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return
        for entry in entries:
            name = entry.name
            try:
                if name.endswith(_META):
                    yield "/".join([*segments, _decode_segment(pending + name[: -len(_META)])])
                elif "@" not in name and entry.is_dir(follow_symlinks=False):
                    segment = _decode_segment(pending + name)
                    yield from self._walk(Path(entry.path), [*segments, segment])
                elif name.endswith("@+") and entry.is_dir(follow_symlinks=False):
                    yield from self._walk(Path(entry.path), segments, pending + name[:-2])
            except UnicodeDecodeError:
                continue  # not a name this store wrote
