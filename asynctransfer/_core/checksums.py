"""Which of a store's checksums a download can be verified against.

S3 returns, per object, checksums of two kinds. A FULL_OBJECT checksum covers the object's
bytes: any single-request upload, or a multipart upload made with ChecksumType=FULL_OBJECT. A
COMPOSITE checksum, the default for multipart uploads, is the checksum of the parts' checksums
(``base64-N``), so verifying it needs the part layout. S3 marks the kind with ChecksumType and
the ``-N`` suffix; some stores (moto) give neither, so a multipart ETag (``"...-N"``) without an
explicit FULL_OBJECT type is taken as composite.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

# S3 checksum names we can recompute over a whole object, and those S3 composes per part.
FULL_OBJECT_VERIFIABLE = ("CRC32C", "CRC32", "SHA256")
COMPOSABLE = ("CRC32C", "CRC32", "SHA256", "SHA1")

_MULTIPART_ETAG = re.compile(r"-[0-9]+\"?$")


def is_multipart_etag(etag: str) -> bool:
    return _MULTIPART_ETAG.search(etag) is not None


def full_object_checksums(
    checksums: Mapping[str, str], checksum_type: str | None, etag: str
) -> dict[str, str]:
    """The checksums, by S3 name, that cover the object's bytes as they are."""
    if checksum_type == "COMPOSITE":
        return {}
    if checksum_type != "FULL_OBJECT" and is_multipart_etag(etag):
        return {}
    return {
        name: value
        for name, value in checksums.items()
        if name in FULL_OBJECT_VERIFIABLE and "-" not in value
    }


@dataclass(frozen=True, slots=True)
class CompositeChecksum:
    """A COMPOSITE checksum: ``name`` (S3's), ``value`` (base64, no suffix), and ``parts`` when
    the value says (``-N``)."""

    name: str
    value: str
    parts: int | None = None


@dataclass(frozen=True, slots=True)
class UniformComposite:
    """A COMPOSITE checksum over ``parts`` parts of ``part_size`` bytes (the last shorter)."""

    name: str
    value: str
    parts: int
    part_size: int

    def __str__(self) -> str:
        return f"{self.value}-{self.parts}"


def composite_checksum(
    checksums: Mapping[str, str], checksum_type: str | None, etag: str
) -> CompositeChecksum | None:
    """The object's COMPOSITE checksum, if it has one we can recompute."""
    if checksum_type == "FULL_OBJECT":
        return None
    for name in COMPOSABLE:
        value = checksums.get(name)
        if value is None:
            continue
        digest, _, count = value.partition("-")
        if count:
            return CompositeChecksum(name, digest, int(count) if count.isdigit() else None)
        if checksum_type == "COMPOSITE" or is_multipart_etag(etag):
            return CompositeChecksum(name, digest)
    return None


def with_uniform_layout(
    composite: CompositeChecksum, size: int, first_part: int, parts: int | None
) -> UniformComposite | None:
    """The composite with its layout, if parts of ``first_part`` bytes (the last shorter) can
    make ``parts`` parts of a ``size``-byte object; None when they cannot, or it is unknown."""
    if parts is None or first_part <= 0 or size <= 0:
        return None
    if composite.parts is not None and composite.parts != parts:
        return None
    if (size + first_part - 1) // first_part != parts:
        return None
    return UniformComposite(composite.name, composite.value, parts, first_part)
