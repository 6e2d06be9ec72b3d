"""Resuming an interrupted download into a file: the temporary file is kept, with a checkpoint
of the ranges written and each range's xxh3.

A later run with the same checkpoint checks first that the object is the same version (the
caller compares the validator: the S3 ETag and version id, or the HTTP ETag / Last-Modified of
the first response) and the same plan. Then every recorded range is read back from the
temporary file and kept only if it still hashes to its record; the others are fetched. Changed,
foreign or unreadable: the old temporary file goes, and the download starts from zero.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread

from ._core.checkpoint import CheckpointError, DownloadCheckpoint, shown_source, source_digest
from ._errors import (
    IntegrityError,
    InvalidRequestError,
    LocalFileError,
    NotFoundError,
    PreconditionFailedError,
    ProtocolViolationError,
)
from ._io import hashing

if TYPE_CHECKING:
    from ._checkpoints import CheckpointFile, Saver
    from ._core.plan import Part

logger = logging.getLogger("asynctransfer")


def keep_for_resume(exc: BaseException) -> bool:
    """Whether a failed transfer is worth resuming: yes for the network, the store's 5xx, a
    cancellation; not when the source changed, the input or a response was wrong, or the
    object or upload is gone."""
    if isinstance(exc, BaseExceptionGroup):
        return all(keep_for_resume(e) for e in exc.exceptions)
    final = (
        LocalFileError,
        IntegrityError,
        InvalidRequestError,
        NotFoundError,
        PreconditionFailedError,
        ProtocolViolationError,
    )
    return not isinstance(exc, final)


class DownloadResume:
    """The checkpoint of one download into a file."""

    def __init__(self, file: CheckpointFile, state: DownloadCheckpoint) -> None:
        self.file = file
        self.state = state
        self.kept: dict[int, str] = {}
        """Ranges of the previous run, to verify and reuse: number -> xxh3."""
        self.reused_parts = 0
        self.reused_bytes = 0
        self._read_fd = -1
        self._saver: Saver | None = None
        # Worker threads record ranges while the loop thread serializes the state.
        self._lock = threading.Lock()

    @classmethod
    async def open(
        cls,
        file: CheckpointFile,
        *,
        source: str,
        dest: str,
        size: int,
        part_size: int,
        validator: str,
        version_id: str | None = None,
    ) -> tuple[DownloadResume, str | None]:
        """The resume state, and the temporary file to reuse (None: start a new one)."""
        state = DownloadCheckpoint(
            source=shown_source(source),
            source_digest=source_digest(source),
            dest=os.path.abspath(dest),  # noqa: ASYNC240  (getcwd only: no disk access)
            temp="",
            size=size,
            part_size=part_size,
            validator=validator,
            version_id=version_id,
        )
        resume = cls(file, state)
        data = await file.read()
        if data is None:
            return resume, None
        try:
            old = DownloadCheckpoint.from_json(data)
        except CheckpointError as exc:
            logger.warning("%s: %s; downloading from the start", file.path, exc)
            return resume, None
        same = (
            old.source_digest,
            old.dest,
            old.size,
            old.part_size,
            old.validator,
            old.version_id,
        ) == (
            state.source_digest,
            state.dest,
            size,
            part_size,
            validator,
            version_id,
        )
        # Only a temporary file beside the destination is ever reused or removed: a checkpoint
        # is not trusted to name any other path.
        beside = bool(old.temp) and os.path.dirname(old.temp) == os.path.dirname(state.dest)
        if same and beside and await anyio.to_thread.run_sync(os.path.isfile, old.temp):
            resume.kept = dict(old.ranges)
            return resume, old.temp
        if old.validator != validator and old.source_digest == state.source_digest:
            why = f"the object changed (was {old.validator}, now {validator})"
        else:
            why = "the checkpoint describes another download"
        logger.warning("%s: %s; downloading from the start", file.path, why)
        if beside:
            await anyio.to_thread.run_sync(_remove, old.temp)
        return resume, None

    def attach(self, temp: str) -> None:
        """The temporary file the ranges go to (the reused one, or a new one)."""
        self.state.temp = temp
        if self.kept:
            try:
                self._read_fd = os.open(temp, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.kept = {}
        self._saver = self.file.saver(self._snapshot)

    def reuse(self, part: Part, view: memoryview) -> bool:
        """Worker thread: read a range of the previous run back into ``view``; True if it
        still hashes to its record (it then counts as fetched and written)."""
        want = self.kept.get(part.number)
        if want is None or self._read_fd < 0:
            return False
        target = view[: part.length]
        done = 0
        try:
            while done < part.length:
                n = os.preadv(self._read_fd, [target[done:]], part.offset + done)
                if n == 0:
                    return False
                done += n
        except OSError:
            return False
        if hashing.slice_xxh3(target) != want:
            logger.info("range %d of the interrupted download differs; fetching it", part.number)
            return False
        with self._lock:
            self.state.ranges[part.number] = want
            self.reused_parts += 1
            self.reused_bytes += part.length
        return True

    def record(self, part: Part, view: memoryview) -> None:
        """Worker thread: a range was written."""
        digest = hashing.slice_xxh3(view[: part.length])
        with self._lock:
            self.state.ranges[part.number] = digest

    def _snapshot(self) -> bytes:
        with self._lock:
            return self.state.to_json()

    async def save(self) -> None:
        if self._saver is not None:
            await self._saver.save()

    def close(self) -> None:
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1

    async def finished(self) -> None:
        """The file is published: the checkpoint has served."""
        self.close()
        await self.file.remove()

    async def interrupted(self, exc: BaseException) -> bool:
        """The download failed: True if its temporary file is to be kept (the checkpoint is
        saved), False if it is to go (the checkpoint goes too)."""
        self.close()
        if keep_for_resume(exc) and self.state.temp:
            await self.save()
            logger.warning(
                "%s: %d of the ranges are in %s, kept for resume (checkpoint %s)",
                self.state.source,
                len(self.state.ranges),
                self.state.temp,
                self.file.path,
            )
            return True
        await self.file.remove()
        return False


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
