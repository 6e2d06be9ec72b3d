"""Open multipart uploads on disk: ``ROOT/.uploads/<upload-id>/``.

``upload.json`` describes the upload; part n is ``<n>.json`` (its size, MD5, checksum), which
names its bytes, ``<nnnnn>@<token>.part``, with the same commit-point rule as objects (see
_s3_store): a part uploaded again replaces the old one whole or not at all. Complete moves the
directory into the bucket as the object's bytes and removes what the object does not use.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ._s3_store import ObjectMeta, Segment, to_json, unlink
from ._s3_xml import S3Error

if TYPE_CHECKING:
    from ._s3_store import Store

_UPLOAD_ID = re.compile(r"[0-9a-f]{32}")
_PART_META = re.compile(r"([0-9]+)\.json")


@dataclass(frozen=True, kw_only=True)
class UploadMeta:
    upload_id: str
    bucket: str
    key: str
    initiated: float
    checksum_algorithm: str | None
    content_type: str
    headers: dict[str, str]


@dataclass(frozen=True, kw_only=True)
class PartMeta:
    number: int
    size: int
    etag: str
    """The part's MD5 in hex."""
    last_modified: float
    checksum: str | None
    """Base64, of ``checksum_algorithm``."""
    checksum_algorithm: str | None
    """The upload's, or the one the part was sent with."""
    data: str = ""


def new_upload_id() -> str:
    """32 hex digits that sort by creation time (ListMultipartUploads pages by upload ID)."""
    return f"{time.time_ns():016x}{secrets.token_hex(8)}"


def no_such_upload(upload_id: str) -> S3Error:
    return S3Error(
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may "
        "have been aborted or completed.",
        UploadId=upload_id,
    )


class Uploads:
    """Synchronous, like the Store they live in."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = store.root / ".uploads"
        self.root.mkdir(exist_ok=True)
        # Apart from the store's (per key) locks: Complete holds an upload's lock, then takes its
        # key's; nothing takes them the other way round.
        self._locks = [threading.Lock() for _ in range(64)]

    def create(self, meta: UploadMeta) -> None:
        self.store.check_object_name(meta.bucket, meta.key)
        directory = self.root / meta.upload_id
        directory.mkdir()
        self.store.write_json(directory / "upload.json", to_json(meta))

    def get(self, bucket: str, key: str, upload_id: str) -> UploadMeta:
        """An open upload of this bucket and key; NoSuchBucket or NoSuchUpload otherwise."""
        self.store.require_bucket(bucket)
        raw = None
        if _UPLOAD_ID.fullmatch(upload_id):
            raw = self.store.read_json(self.root / upload_id / "upload.json")
        if raw is None or raw["bucket"] != bucket or raw["key"] != key:
            raise no_such_upload(upload_id)
        return UploadMeta(**raw)

    def in_bucket(self, bucket: str) -> list[UploadMeta]:
        uploads = []
        for entry in os.scandir(self.root):
            raw = self.store.read_json(Path(entry.path) / "upload.json")
            if raw is not None and raw["bucket"] == bucket:
                uploads.append(UploadMeta(**raw))
        return uploads

    def lock(self, upload: UploadMeta) -> threading.Lock:
        """Held to change the upload's files: part commits, Complete, Abort."""
        return self._locks[hash(upload.upload_id) % len(self._locks)]

    def commit_part(self, upload: UploadMeta, temp: str, part: PartMeta) -> PartMeta:
        directory = self.root / upload.upload_id
        meta_path = directory / f"{part.number}.json"
        data = f"{part.number:05d}@{secrets.token_hex(8)}.part"
        part = replace(part, data=data)
        staged = self.store.stage_json(to_json(part))
        try:
            with self.lock(upload):  # renames only, under the lock
                old = self.store.read_json(meta_path)
                try:
                    os.replace(temp, directory / data)
                    os.replace(staged, meta_path)
                except FileNotFoundError:  # aborted or completed meanwhile
                    unlink(directory / data)
                    raise no_such_upload(upload.upload_id) from None
                if old is not None:
                    unlink(directory / str(old["data"]))
        finally:
            unlink(staged)
        return part

    def parts(self, upload: UploadMeta) -> list[PartMeta]:
        parts = []
        try:
            entries = list(os.scandir(self.root / upload.upload_id))
        except FileNotFoundError:
            return []
        for entry in entries:
            if _PART_META.fullmatch(entry.name):
                raw = self.store.read_json(Path(entry.path))
                if raw is not None:
                    parts.append(PartMeta(**raw))
        return sorted(parts, key=lambda p: p.number)

    def remove(self, upload: UploadMeta) -> None:
        with self.lock(upload):
            self.store.trash(self.root / upload.upload_id)

    def complete(
        self,
        upload: UploadMeta,
        chosen: list[PartMeta],
        meta: ObjectMeta,
        *,
        if_match: list[str] | None,
        if_none_match: bool,
    ) -> ObjectMeta:
        """Make the upload's directory the object's bytes (a rename); drop what it does not use
        (the upload's metadata, parts not listed)."""
        segments = [Segment(size=p.size, checksum=p.checksum, file=p.data) for p in chosen]
        meta = self.store.commit_object(
            upload.bucket,
            upload.key,
            self.root / upload.upload_id,
            replace(meta, parts=segments),
            if_match=if_match,
            if_none_match=if_none_match,
        )
        directory, _ = self.store.object_paths(upload.bucket, upload.key)
        keep = {segment.file for segment in segments}
        with contextlib.suppress(FileNotFoundError), os.scandir(directory / meta.data) as entries:
            for entry in entries:
                if entry.name not in keep:
                    unlink(entry.path)
        return meta
