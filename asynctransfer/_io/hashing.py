"""Checksums: per-part digests the store verifies, and whole-file digests we verify.

All of these bindings release the GIL on large buffers, so the engine runs them in worker
threads, overlapped with the network. CRC32C comes from the ``crc32c`` package (hardware
instructions, any buffer): google-crc32c accepts only ``bytes``, which would cost a copy per part.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Protocol

import xxhash
from crc32c import crc32c as _crc32c

try:
    # ISA-L's CRC32 runs at ~12 GB/s here against zlib's ~3.6 (measured on 64 MiB), and
    # current AWS SDKs give multipart objects a full-object CRC32 that every download verifies.
    from isal.isal_zlib import crc32 as _crc32
except ImportError:  # no wheel for this platform
    _crc32 = zlib.crc32

from . import local

_CHUNK = 1024 * 1024


class Hasher(Protocol):
    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...


class Crc32c:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._value = _crc32c(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


class Crc32:
    __slots__ = ("_value",)

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._value = _crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")


def new_hasher(name: str) -> Hasher:
    """A hasher by lower-case name: S3's ``crc32c``, ``crc32``, ``sha256``, ``sha1``, and
    ``md5`` (Content-MD5), ``xxh3`` (xxh3-128, ours)."""
    if name == "crc32c":
        return Crc32c()
    if name == "crc32":
        return Crc32()
    if name == "sha256":
        return hashlib.sha256()
    if name == "sha1":
        return hashlib.sha1(usedforsecurity=False)
    if name == "md5":
        return hashlib.md5(usedforsecurity=False)
    if name == "xxh3":
        return xxhash.xxh3_128()
    raise ValueError(f"unknown checksum {name!r}")


def slice_xxh3(data: memoryview | bytes) -> str:
    """Hex xxh3-64 of one slice: what checkpoints record per part and range."""
    return xxhash.xxh3_64_hexdigest(data)


def b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


def composite_digest(name: str, part_digests: list[bytes]) -> bytes:
    """S3's COMPOSITE checksum of a multipart object: the checksum of the parts' checksums."""
    outer = new_hasher(name)
    for digest in part_digests:
        outer.update(digest)
    return outer.digest()


def composite_crc32c(part_digests: list[bytes]) -> str:
    """The CRC32C composite as S3 writes it: base64, then ``-N`` (the number of parts)."""
    return f"{b64(composite_digest('crc32c', part_digests))}-{len(part_digests)}"


class PartwiseHasher:
    """Digests of consecutive ``part_size`` slices of one stream, and their composite.

    Fed the object's bytes in order, it reproduces a COMPOSITE checksum of a multipart object
    whose parts (all but the last) are ``part_size`` long.
    """

    def __init__(self, name: str, part_size: int) -> None:
        self._name = name
        self._part_size = part_size
        self._current = new_hasher(name)
        self._filled = 0
        self._digests: list[bytes] = []

    def update(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            take = min(len(view), self._part_size - self._filled)
            self._current.update(view[:take])
            self._filled += take
            view = view[take:]
            if self._filled == self._part_size:
                self._digests.append(self._current.digest())
                self._current = new_hasher(self._name)
                self._filled = 0

    def part_digests(self) -> list[bytes]:
        return self._digests + ([self._current.digest()] if self._filled else [])

    def digest(self) -> bytes:
        return composite_digest(self._name, self.part_digests())


def hash_file_range(
    fd: int, start: int, end: int, hashers: list[Hasher], buf: bytearray, path: str
) -> None:
    """Feed bytes [start, end) of the file to every hasher, in order, through ``buf``."""
    view = memoryview(buf)
    position = start
    while position < end:
        chunk = view[: min(len(view), end - position)]
        local.pread_exact(fd, chunk, position, path)
        for hasher in hashers:
            hasher.update(chunk)
        position += len(chunk)


def partwise_file_digest(fd: int, sizes: list[int], name: str, path: str) -> bytes:
    """The composite digest of the file cut into consecutive parts of the given sizes."""
    buf = bytearray(_CHUNK)
    digests = []
    offset = 0
    for size in sizes:
        hasher = new_hasher(name)
        hash_file_range(fd, offset, offset + size, [hasher], buf, path)
        digests.append(hasher.digest())
        offset += size
    return composite_digest(name, digests)
