"""A multipart upload, from CreateMultipartUpload (or a checkpoint) to Complete.

With a checkpoint, the upload is recorded before its first part is sent and after every part
the store acknowledges; a later run with the same checkpoint lists the upload's parts, keeps
those whose bytes the store and the local file agree on, and sends only the rest. Without one,
any failure aborts the upload.
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

from . import _events
from ._checkpoints import resolve
from ._core.checkpoint import (
    CheckpointError,
    LocalSlice,
    PartRecord,
    Reconciliation,
    SourceIdentity,
    UploadCheckpoint,
    peek_upload,
)
from ._core.urls import S3Address
from ._errors import IntegrityError, LocalFileError, NotFoundError, SourceChangedError
from ._io import hashing, local
from ._resume import keep_for_resume

if TYPE_CHECKING:
    from ._checkpoints import CheckpointFile, Saver
    from ._core.plan import Part, Plan
    from ._engine import Engine
    from ._io.s3 import PutResult

logger = logging.getLogger("asynctransfer")


def checksum_kwargs(algorithm: str, digest: bytes | None) -> dict[str, str]:
    if digest is None:
        return {}
    if algorithm == "crc32c":
        # Both, as the SDKs send them: the store verifies the value, and botocore, seeing it
        # precomputed, neither hashes again nor switches to an aws-chunked trailer.
        return {"ChecksumAlgorithm": "CRC32C", "ChecksumCRC32C": hashing.b64(digest)}
    return {"ContentMD5": hashing.b64(digest)}


def read_part(
    source: local.SourceFile,
    buf: bytearray,
    offset: int,
    algorithm: str,
    whole: hashing.Hasher,
    slice_digests: bool = False,
    md5: bool = False,
) -> tuple[bytes | None, LocalSlice | None]:
    """Worker thread: fill ``buf`` from the file, update the whole-file digest, hash the part.
    ``slice_digests``: also the digests a checkpoint records or checks (``md5`` for a part the
    store has that the checkpoint does not know)."""
    view = memoryview(buf)
    local.pread_exact(source.fd, view, offset, source.path)
    whole.update(view)
    digest = None
    if algorithm != "none":
        part = hashing.new_hasher(algorithm)
        part.update(view)
        digest = part.digest()
    if not slice_digests:
        return digest, None
    return digest, LocalSlice(
        xxh3=hashing.slice_xxh3(view),
        md5=hashlib.md5(view).hexdigest() if md5 else None,
        crc32c=hashing.b64(digest) if algorithm == "crc32c" and digest is not None else None,
    )


async def complete(
    engine: Engine,
    dest: S3Address,
    upload_id: str,
    sent: dict[int, tuple[str, bytes | None]],
    parts: int,
    *,
    overwrite: bool,
) -> PutResult:
    """CompleteMultipartUpload with parts 1..``parts`` in order (``sent``: number -> ETag and
    checksum digest), retried like any request: a 5xx, a reset, or a 200 carrying an <Error>
    document leaves the upload open, and the same part list completes it. With CRC32C, the
    store's composite checksum is compared with ours."""
    url = str(dest)
    algorithm = engine.config.checksum
    listed: list[dict[str, Any]] = []
    digests: list[bytes] = []
    for number in range(1, parts + 1):
        etag, digest = sent[number]
        entry: dict[str, Any] = {"PartNumber": number, "ETag": etag}
        if digest is not None:
            digests.append(digest)
            if algorithm == "crc32c":
                entry["ChecksumCRC32C"] = hashing.b64(digest)
        listed.append(entry)
    await engine.throttle(0)
    result = await engine.retrying(
        url,
        lambda: engine.s3.complete_multipart_upload(
            dest.bucket, dest.key, upload_id, listed, url, if_none_match=not overwrite
        ),
    )
    if algorithm == "crc32c":
        theirs = result.checksums.get("CRC32C")
        ours = hashing.composite_crc32c(digests)
        if theirs is not None and "-" in theirs and theirs != ours:
            raise IntegrityError(
                f"{url}: the store's composite CRC32C {theirs} differs from ours {ours}", url=url
            )
    return result


def identity(source: local.SourceFile) -> SourceIdentity:
    return SourceIdentity(source.size, source.mtime_ns, source.device, source.inode)


class MultipartUpload:
    """One multipart upload of ``source`` to ``dest`` along ``plan``."""

    def __init__(
        self,
        engine: Engine,
        source: local.SourceFile,
        dest: S3Address,
        plan: Plan,
        whole: hashing.Hasher,
        checkpoint: CheckpointFile | None,
        *,
        overwrite: bool = True,
    ) -> None:
        self.engine = engine
        self.overwrite = overwrite
        self.source = source
        self.dest = dest
        self.url = str(dest)
        self.plan = plan
        self.whole = whole
        self.checkpoint = checkpoint
        self.algorithm = engine.config.checksum
        self.reused_parts = 0
        self.reused_bytes = 0
        self._state: UploadCheckpoint | None = None
        self._saver: Saver | None = None
        self._sent: dict[int, tuple[str, bytes | None]] = {}

    async def run(self, restart: bool) -> PutResult:
        engine = self.engine
        reconciliation = await self._resume(restart) if self.checkpoint is not None else None
        if self._state is None:
            await engine.throttle(0)
            upload_id = await engine.retrying(
                self.url,
                lambda: engine.s3.create_multipart_upload(
                    self.dest.bucket,
                    self.dest.key,
                    "CRC32C" if self.algorithm == "crc32c" else None,
                    self.url,
                ),
            )
            self._state = UploadCheckpoint(
                bucket=self.dest.bucket,
                key=self.dest.key,
                upload_id=upload_id,
                source_path=self.source.path,
                source=identity(self.source),
                size=self.plan.size,
                part_size=self.plan.part_size,
                checksum_algorithm=self.algorithm,
            )
        state = self._state
        try:
            if self.checkpoint is not None:
                self._saver = self.checkpoint.saver(state.to_json)
                await self._saver.save()  # before any part: no upload the checkpoint misses
            result = await self._send_all(state.upload_id, reconciliation)
        except BaseException as exc:
            if self.checkpoint is not None and keep_for_resume(exc):
                if self._saver is not None:
                    # Parts acknowledged while their save waited: on disk before we go.
                    with anyio.CancelScope(shield=True):
                        await self._saver.save()
                logger.warning(
                    "%s: upload %s kept for resume (%d of %d parts in); checkpoint %s",
                    self.url,
                    state.upload_id,
                    len(state.parts),
                    len(self.plan),
                    self.checkpoint.path,
                )
            elif await engine.abort(self.dest, state.upload_id):
                if self.checkpoint is not None:
                    await self.checkpoint.remove()
            else:
                await self._remember(state)
            raise
        if self.checkpoint is not None:
            await self.checkpoint.remove()
        return result

    async def _remember(self, state: UploadCheckpoint) -> None:
        """The abort failed: keep the upload in a checkpoint (the default one if there was
        none), so ``uploads list`` marks it and the same command resumes or replaces it."""
        file = self.checkpoint or resolve(
            True,
            "upload",
            os.path.abspath(self.source.path),  # noqa: ASYNC240  (getcwd only)
            self.url,
        )
        if file is None:
            return
        with anyio.CancelScope(shield=True):
            try:
                await file.write(state.to_json())
            except LocalFileError as exc:
                logger.error("%s: %s", self.url, exc)
                return
        logger.warning("%s: upload %s recorded in %s", self.url, state.upload_id, file.path)

    async def _resume(self, restart: bool) -> Reconciliation | None:
        """The checkpoint's upload, if it can go on: sets ``_state`` and says which parts the
        store has. Otherwise clears the way for a fresh upload."""
        assert self.checkpoint is not None
        data = await self.checkpoint.read()
        if data is None:
            return None
        where = self.checkpoint.path
        try:
            old = UploadCheckpoint.from_json(data)
        except CheckpointError as exc:
            logger.warning("%s: %s; starting a fresh upload", where, exc)
            named = peek_upload(data)
            if named is not None:
                await self.engine.abort(S3Address(named[0], named[1]), named[2])
            return None
        foreign = (old.bucket, old.key, old.size, old.part_size, old.checksum_algorithm) != (
            self.dest.bucket,
            self.dest.key,
            self.plan.size,
            self.plan.part_size,
            self.algorithm,
        )
        if foreign:
            logger.warning(
                "%s: the checkpoint describes another upload (s3://%s/%s, %d bytes in parts of "
                "%d, %s); aborting it and starting fresh",
                where,
                old.bucket,
                old.key,
                old.size,
                old.part_size,
                old.checksum_algorithm,
            )
            await self.engine.abort(S3Address(old.bucket, old.key), old.upload_id)
            return None
        if old.source != identity(self.source):
            if not restart:
                raise SourceChangedError(
                    f"{self.source.path}: the file changed since the interrupted upload "
                    f"{old.upload_id} to {self.url} (checkpoint {where}); allow a restart to "
                    "start over",
                    url=self.source.path,
                )
            logger.warning(
                "%s: the file changed since the interrupted upload; aborting %s and starting over",
                self.source.path,
                old.upload_id,
            )
            await self.engine.abort(self.dest, old.upload_id)
            return None
        try:
            await self.engine.throttle(0)
            listed = await self.engine.retrying(
                self.url,
                lambda: self.engine.s3.list_parts(
                    self.dest.bucket, self.dest.key, old.upload_id, self.url
                ),
            )
        except NotFoundError:
            logger.warning(
                "%s: upload %s no longer exists (expired or aborted); starting fresh",
                self.url,
                old.upload_id,
            )
            return None
        self._state = old
        lengths = {p.number: p.length for p in self.plan}
        reconciliation = Reconciliation(old, listed, lengths)
        old.parts = {}  # refilled with what is verified below, and with what is sent
        logger.info(
            "%s: resuming upload %s: the store has %d part(s) of %d",
            self.url,
            old.upload_id,
            len(listed),
            len(self.plan),
        )
        return reconciliation

    async def _send_all(self, upload_id: str, reconciliation: Reconciliation | None) -> PutResult:
        engine = self.engine
        candidates = reconciliation.candidates() if reconciliation is not None else set()
        recording = self.checkpoint is not None
        async with anyio.create_task_group() as tg:
            for part in self.plan:
                buf = await engine.pool.acquire(part.length)
                try:
                    check = reconciliation is not None and part.number in candidates
                    digest, local_slice = await anyio.to_thread.run_sync(
                        read_part,
                        self.source,
                        buf,
                        part.offset,
                        self.algorithm,
                        self.whole,
                        recording,
                        check
                        and reconciliation is not None
                        and reconciliation.needs_md5(part.number),
                    )
                    if check and reconciliation is not None and local_slice is not None:
                        record = reconciliation.keep(part.number, local_slice)
                        if record is not None:
                            self._keep(part, record, digest)
                            engine.pool.release(buf)
                            continue
                except BaseException:
                    engine.pool.release(buf)
                    raise
                tg.start_soon(self._send_part, upload_id, part, buf, digest, local_slice)
        await engine.check_unchanged(self.source)
        return await complete(
            engine, self.dest, upload_id, self._sent, len(self.plan), overwrite=self.overwrite
        )

    def _keep(self, part: Part, record: PartRecord, digest: bytes | None) -> None:
        assert self._state is not None
        self._state.parts[part.number] = record
        self._sent[part.number] = (record.etag, digest)
        self.reused_parts += 1
        self.reused_bytes += part.length
        _events.part_done(
            part.number, part.length, in_flight=self.engine.limiter.borrowed_tokens, reused=True
        )

    async def _send_part(
        self,
        upload_id: str,
        part: Part,
        buf: bytearray,
        digest: bytes | None,
        local_slice: LocalSlice | None,
    ) -> None:
        engine = self.engine
        sent = digest

        async def send() -> PutResult:
            async with engine.limiter:
                put = await engine.s3.upload_part(
                    self.dest.bucket,
                    self.dest.key,
                    upload_id,
                    part.number,
                    buf,
                    checksum_kwargs(self.algorithm, sent),
                    self.url,
                )
            engine.count_sent(part.length)
            return put

        async def reread() -> None:
            # The store saw other bytes than we hashed (BadDigest): read the slice again. If
            # it hashes differently now, the file changed under the upload.
            nonlocal sent
            again, _ = await anyio.to_thread.run_sync(
                read_part, self.source, buf, part.offset, self.algorithm, hashing.new_hasher("xxh3")
            )
            if again != digest:
                raise SourceChangedError(
                    f"{self.source.path}: the file changed while it was being uploaded "
                    f"(part {part.number} reads differently now)",
                    url=self.source.path,
                )
            sent = again

        try:
            await engine.throttle(part.length)
            put = await engine.retrying(f"{self.url} part {part.number}", send, reread=reread)
        finally:
            engine.pool.release(buf)
        self._sent[part.number] = (put.etag, digest)
        _events.part_done(part.number, part.length, in_flight=engine.limiter.borrowed_tokens)
        if self._saver is not None and local_slice is not None:
            assert self._state is not None
            checksum = put.checksums.get("CRC32C") or local_slice.crc32c
            self._state.parts[part.number] = PartRecord(put.etag, local_slice.xxh3, checksum)
            await self._saver.save()
