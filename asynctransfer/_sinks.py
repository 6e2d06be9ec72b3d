"""Where a download's bytes go: a file (ranges written at their offsets in any order, published
once verified) or a stream such as stdout (bytes written in order). Both see every range in
plan order too, for the whole-file digests. The methods block; the engine runs them in worker
threads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ._io import local
from ._turns import Turns

if TYPE_CHECKING:
    from ._core.plan import Part
    from ._io.hashing import Hasher


class Writable(Protocol):
    def write(self, data: memoryview, /) -> int | None: ...


class Sink(Protocol):
    turns: Turns
    hashers: list[Hasher]
    direct: bool
    """Ranges arrive in page-aligned buffers padded for O_DIRECT."""
    writes_ranges: bool
    """``write`` does something (else only ``in_order`` is called for)."""

    def write(self, part: Part, data: memoryview) -> None:
        """Any order: ``data`` holds the range's bytes (padded for O_DIRECT when direct)."""

    def in_order(self, data: memoryview) -> None:
        """In plan order: the bytes of the next range."""

    def finish(self, size: int) -> None:
        """Every range is in and verified."""

    def discard(self) -> None:
        """The download failed: leave nothing behind."""


@dataclass
class FileSink:
    """A unique temporary file beside the destination, renamed over it by ``finish``."""

    fd: int
    temp: str
    path: str
    direct: bool
    durable: bool
    turns: Turns
    hashers: list[Hasher] = field(default_factory=list)
    writes_ranges: bool = True

    @classmethod
    def create(
        cls, path: str, size: int | None, *, direct: bool, durable: bool, parts: int
    ) -> FileSink:
        fd, temp = local.create_temp_beside(path, size or 0)
        direct = direct and local.try_direct(fd)
        return cls(fd, temp, path, direct, durable, Turns(parts))

    @classmethod
    def reopen(cls, path: str, temp: str, *, direct: bool, durable: bool, parts: int) -> FileSink:
        """The temporary file of an interrupted download, to fill in what it lacks."""
        with local.map_os_errors(temp, "reopen the interrupted download's temporary file"):
            fd = os.open(temp, os.O_RDWR | os.O_CLOEXEC)
        direct = direct and local.try_direct(fd)
        return cls(fd, temp, path, direct, durable, Turns(parts))

    def write(self, part: Part, data: memoryview) -> None:
        if self.direct:
            local.pwrite_direct(self.fd, data, part.offset, part.length, self.temp)
        else:
            local.pwrite_all(self.fd, data[: part.length], part.offset, self.temp)
            local.start_writeback(self.fd, part.offset, part.length)

    def in_order(self, data: memoryview) -> None:
        for hasher in self.hashers:
            hasher.update(data)

    def finish(self, size: int) -> None:
        if self.direct or os.fstat(self.fd).st_size != size:
            local.finish_direct(self.fd, size, self.temp)  # cut padding / fallocate'd excess
        fd, self.fd = self.fd, -1  # publish closes it, whatever happens
        local.publish(fd, self.temp, self.path, durable=self.durable)

    def discard(self) -> None:
        if self.fd >= 0:
            local.close_fd(self.fd)
            self.fd = -1
        local.discard(-1, self.temp)

    def keep(self) -> None:
        """The download failed but will resume: close the temporary file and leave it."""
        if self.fd >= 0:
            local.close_fd(self.fd)
            self.fd = -1


@dataclass
class StreamSink:
    """A writable binary stream (``sys.stdout.buffer``, a socket file, ``open(..., "wb")``):
    bytes go out in order as the ranges before them arrive, within the memory budget."""

    stream: Writable
    turns: Turns
    hashers: list[Hasher] = field(default_factory=list)
    direct: bool = False
    writes_ranges: bool = False

    def write(self, part: Part, data: memoryview) -> None:
        pass  # the bytes leave in order, from in_order

    def in_order(self, data: memoryview) -> None:
        for hasher in self.hashers:
            hasher.update(data)
        while data:
            written = self.stream.write(data)
            # Raw streams may write less; buffered ones return the full length (or None).
            data = data[len(data) if written is None else written :]

    def finish(self, size: int) -> None:
        flush = getattr(self.stream, "flush", None)
        if flush is not None:
            flush()

    def discard(self) -> None:
        pass  # what went out is out; the error says the stream is incomplete
