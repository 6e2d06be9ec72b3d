"""Part plans: how an object is cut into parts (upload) or ranges (download).

S3's rules (the same on MinIO, Ceph, R2, OSS): every part but the last is at least 5 MiB and at
most 5 GiB, there are at most 10,000 parts, and an object is at most 5 TiB. The planner grows
the part size to fit rather than fail, and refuses only what no part size can carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .units import GiB, MiB, TiB

if TYPE_CHECKING:
    from collections.abc import Iterator

MIN_PART_SIZE = 5 * MiB
MAX_PART_SIZE = 5 * GiB
MAX_PARTS = 10_000
MAX_OBJECT_SIZE = 5 * TiB
MAX_SINGLE_PUT = 5 * GiB


class PlanError(ValueError):
    """No valid plan exists for these inputs."""


class TooLargeError(PlanError):
    """The object cannot be carried within the size limits."""


@dataclass(frozen=True, slots=True)
class Part:
    """One part: ``number`` counts from 1 (as S3 does), bytes ``[offset, offset + length)``."""

    number: int
    offset: int
    length: int

    @property
    def end(self) -> int:
        """One past the last byte."""
        return self.offset + self.length


@dataclass(frozen=True, slots=True)
class Plan:
    """Parts of ``part_size`` bytes covering ``size`` bytes; the last part may be shorter.

    ``multipart`` is False when the object goes (or comes) in one request. Parts are computed
    on demand, so a 10,000-part plan costs no memory.
    """

    size: int
    part_size: int
    multipart: bool

    def __len__(self) -> int:
        if not self.multipart:
            return 1
        return (self.size + self.part_size - 1) // self.part_size

    def part(self, number: int) -> Part:
        if not 1 <= number <= len(self):
            raise IndexError(f"part {number} outside 1..{len(self)}")
        offset = (number - 1) * self.part_size
        return Part(number, offset, min(self.part_size, self.size - offset))

    def __iter__(self) -> Iterator[Part]:
        for number in range(1, len(self) + 1):
            yield self.part(number)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def plan_upload(
    size: int,
    part_size: int,
    *,
    multipart_threshold: int | None = None,
    max_object_size: int = MAX_OBJECT_SIZE,
    min_part_size: int = MIN_PART_SIZE,
) -> Plan:
    """Plan an upload of ``size`` bytes.

    At or below ``multipart_threshold`` (default: ``part_size``) the object goes in one
    PutObject. Above it, parts of ``part_size``, grown in whole MiB until at most 10,000 parts.
    """
    if size < 0:
        raise PlanError(f"size must be >= 0, got {size}")
    if size > max_object_size:
        raise TooLargeError(
            f"object of {size} bytes exceeds the maximum object size of {max_object_size} bytes"
        )
    if multipart_threshold is not None and multipart_threshold < 0:
        raise PlanError(f"multipart threshold must be >= 0, got {multipart_threshold}")
    if not min_part_size <= part_size <= MAX_PART_SIZE:
        raise PlanError(
            f"part size {part_size} is outside the store's limits "
            f"[{min_part_size}, {MAX_PART_SIZE}] bytes"
        )
    threshold = part_size if multipart_threshold is None else multipart_threshold
    if size <= min(threshold, MAX_SINGLE_PUT):
        return Plan(size=size, part_size=max(size, 1), multipart=False)
    if -(-size // part_size) > MAX_PARTS:
        part_size = _round_up(-(-size // MAX_PARTS), MiB)
        if part_size > MAX_PART_SIZE:
            raise TooLargeError(
                f"object of {size} bytes needs more than {MAX_PARTS} parts of {MAX_PART_SIZE} bytes"
            )
    return Plan(size=size, part_size=part_size, multipart=True)


def plan_download(size: int, part_size: int) -> Plan:
    """Plan a ranged download of ``size`` bytes in ranges of ``part_size`` (no part limit)."""
    if size < 0:
        raise PlanError(f"size must be >= 0, got {size}")
    if part_size <= 0:
        raise PlanError(f"part size must be positive, got {part_size}")
    return Plan(size=size, part_size=part_size, multipart=size > part_size)
