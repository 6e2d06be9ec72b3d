"""Transfer addresses: ``s3://bucket/key`` or a local path."""

from __future__ import annotations

import re
from dataclasses import dataclass

# S3's bucket naming rules, relaxed to what S3-compatible stores also accept (dots, underscores).
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]", re.IGNORECASE | re.ASCII)
_SCHEME = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*)://")


class AddressError(ValueError):
    """The address is not one this library can transfer to or from."""


@dataclass(frozen=True, slots=True)
class S3Address:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def scheme_of(address: str) -> str | None:
    """The URL scheme in lower case, or None for a local path."""
    match = _SCHEME.match(address)
    return match.group(1).lower() if match else None


def parse_s3_url(url: str) -> S3Address:
    """Parse ``s3://bucket/key``; the key may contain any characters but must not be empty."""
    if scheme_of(url) != "s3":
        raise AddressError(f"{url!r} is not an s3:// URL")
    rest = url[len("s3://") :]
    bucket, sep, key = rest.partition("/")
    if not bucket:
        raise AddressError(f"{url!r} names no bucket: expected s3://bucket/key")
    if not _BUCKET.fullmatch(bucket):
        raise AddressError(
            f"{url!r}: {bucket!r} is not a valid bucket name (3-63 characters: letters, "
            "digits, '.', '-', '_')"
        )
    if not sep or not key:
        raise AddressError(f"{url!r} names no key: expected s3://{bucket}/key")
    return S3Address(bucket, key)
