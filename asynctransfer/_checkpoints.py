"""Checkpoint files on disk: where they live, atomic writes, and saving as parts land.

The format and the decisions are in ``_core/checkpoint.py``; this is the I/O. A checkpoint is
written atomically (a temporary file, fsync, rename, fsync of the directory) with mode 0600 in a
0700 directory, so a crash leaves the previous version or the new one, never half of either.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import anyio
import anyio.to_thread

from ._core.checkpoint import default_name
from ._io.local import map_os_errors

if TYPE_CHECKING:
    from collections.abc import Callable

logger = logging.getLogger("asynctransfer")

CheckpointArg = str | os.PathLike[str] | bool | None
"""``True``: the default location; a path: that file; ``False``/``None``: no checkpoint."""


def cache_dir() -> Path:
    """``$ASYNCTRANSFER_CACHE_DIR``, else ``$XDG_CACHE_HOME/asynctransfer``, else
    ``~/.cache/asynctransfer``."""
    explicit = os.environ.get("ASYNCTRANSFER_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "asynctransfer"


def checkpoint_dir() -> Path:
    return cache_dir() / "checkpoints"


def resolve(
    arg: CheckpointArg, kind: Literal["upload", "download"], source: str, dest: str
) -> CheckpointFile | None:
    if arg is None or arg is False:
        return None
    if arg is True:
        return CheckpointFile(checkpoint_dir() / default_name(kind, source, dest))
    return CheckpointFile(Path(os.fspath(arg)))


def write_atomic(path: Path, data: bytes) -> None:
    with map_os_errors(str(path), "write the checkpoint"):
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            temp.unlink(missing_ok=True)
            raise
        os.close(fd)
        os.replace(temp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class CheckpointFile:
    """One checkpoint's file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"CheckpointFile({str(self.path)!r})"

    async def read(self) -> bytes | None:
        """Its bytes, or None if there is no checkpoint."""

        def read() -> bytes | None:
            try:
                return self.path.read_bytes()
            except FileNotFoundError:
                return None
            except OSError as exc:
                logger.warning(
                    "%s: cannot read the checkpoint (%s); starting fresh", self.path, exc
                )
                return None

        return await anyio.to_thread.run_sync(read)

    async def write(self, data: bytes) -> None:
        await anyio.to_thread.run_sync(write_atomic, self.path, data)

    async def remove(self) -> None:
        def remove() -> None:
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                logger.warning("%s: cannot remove the checkpoint: %s", self.path, exc)

        await anyio.to_thread.run_sync(remove)

    def saver(self, snapshot: Callable[[], bytes]) -> Saver:
        return Saver(self, snapshot)


class Saver:
    """Saves the latest state as parts land, one write at a time.

    Every finished part asks for a save; a part that finds a write in progress waits for it,
    and then writes only if the state it recorded is not on disk yet. So a burst of parts
    costs one or two writes, not one each, and each part's record is durable when ``save``
    returns.
    """

    def __init__(self, file: CheckpointFile, snapshot: Callable[[], bytes]) -> None:
        self._file = file
        self._snapshot = snapshot
        self._lock = anyio.Lock()
        self._changes = 0
        self._saved = 0
        self.writes = 0

    async def save(self) -> None:
        self._changes += 1
        mine = self._changes
        async with self._lock:
            if self._saved >= mine:
                return
            upto = self._changes
            data = self._snapshot()
            # Not cancellable: the file is replaced atomically, but a write abandoned half-way
            # would leave its temporary file behind.
            with anyio.CancelScope(shield=True):
                await self._file.write(data)
            self._saved = upto
            self.writes += 1
