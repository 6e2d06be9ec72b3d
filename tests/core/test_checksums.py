"""Which store checksums a download can be verified against (pure: table tests)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asynctransfer._core.checksums import (
    CompositeChecksum,
    UniformComposite,
    composite_checksum,
    full_object_checksums,
    is_multipart_etag,
    with_uniform_layout,
)

SINGLE = '"5d41402abc4b2a76b9719d911017c592"'
MULTI = '"19a654dc7ecb38263e3e93873e8a3b52-6"'


@pytest.mark.parametrize(
    ("etag", "expected"),
    [(SINGLE, False), (MULTI, True), ("abc-12", True), ("abc", False), ('"a-b"', False)],
)
def test_is_multipart_etag(etag: str, expected: bool) -> None:
    assert is_multipart_etag(etag) is expected


@pytest.mark.parametrize(
    ("checksums", "kind", "etag", "expected"),
    [
        ({"CRC32C": "mnG7TA=="}, None, SINGLE, {"CRC32C": "mnG7TA=="}),
        (
            {"CRC32C": "mnG7TA==", "SHA256": "x="},
            None,
            SINGLE,
            {"CRC32C": "mnG7TA==", "SHA256": "x="},
        ),
        ({"CRC32C": "mnG7TA=="}, "FULL_OBJECT", MULTI, {"CRC32C": "mnG7TA=="}),
        # moto: a multipart object's composite value, with neither type nor suffix
        ({"CRC32C": "rq9K5g=="}, None, MULTI, {}),
        ({"CRC32C": "rq9K5g==-6"}, "COMPOSITE", MULTI, {}),
        ({"CRC32C": "rq9K5g==-6"}, None, SINGLE, {}),
        ({"CRC64NVME": "abc="}, "FULL_OBJECT", SINGLE, {}),
        ({}, None, SINGLE, {}),
    ],
)
def test_full_object_checksums(
    checksums: dict[str, str], kind: str | None, etag: str, expected: dict[str, str]
) -> None:
    assert full_object_checksums(checksums, kind, etag) == expected


@pytest.mark.parametrize(
    ("checksums", "kind", "etag", "expected"),
    [
        ({"CRC32C": "xT1aww==-6"}, "COMPOSITE", MULTI, CompositeChecksum("CRC32C", "xT1aww==", 6)),
        ({"CRC32C": "rq9K5g=="}, None, MULTI, CompositeChecksum("CRC32C", "rq9K5g==", None)),
        ({"CRC32": "AAAAAA==-2"}, None, MULTI, CompositeChecksum("CRC32", "AAAAAA==", 2)),
        ({"SHA1": "abc=-3"}, None, MULTI, CompositeChecksum("SHA1", "abc=", 3)),
        ({"CRC32C": "mnG7TA=="}, None, SINGLE, None),
        ({"CRC32C": "mnG7TA=="}, "FULL_OBJECT", MULTI, None),
        ({"CRC64NVME": "abc="}, None, MULTI, None),
        ({}, "COMPOSITE", MULTI, None),
    ],
)
def test_composite_checksum(
    checksums: dict[str, str], kind: str | None, etag: str, expected: CompositeChecksum | None
) -> None:
    assert composite_checksum(checksums, kind, etag) == expected


@pytest.mark.parametrize(
    ("composite", "size", "first", "parts", "expected"),
    [
        (
            CompositeChecksum("CRC32C", "v", 6),
            1310725,
            262144,
            6,
            UniformComposite("CRC32C", "v", 6, 262144),
        ),
        (
            CompositeChecksum("CRC32C", "v"),
            1310725,
            262144,
            6,
            UniformComposite("CRC32C", "v", 6, 262144),
        ),
        (CompositeChecksum("CRC32C", "v", 5), 1310725, 262144, 6, None),  # counts disagree
        (CompositeChecksum("CRC32C", "v"), 1310725, 262144, None, None),  # store gave no count
        (CompositeChecksum("CRC32C", "v"), 1310725, 1310725, 6, None),  # PartNumber ignored
        (CompositeChecksum("CRC32C", "v"), 1310725, 0, 6, None),
        (CompositeChecksum("CRC32C", "v"), 0, 262144, 1, None),
    ],
)
def test_with_uniform_layout(
    composite: CompositeChecksum,
    size: int,
    first: int,
    parts: int | None,
    expected: UniformComposite | None,
) -> None:
    assert with_uniform_layout(composite, size, first, parts) == expected


@given(
    part=st.integers(1, 2**33),
    parts=st.integers(1, 10_000),
    last=st.integers(1, 2**33),
)
def test_uniform_layout_accepts_every_uniform_cut(part: int, parts: int, last: int) -> None:
    last = min(last, part)
    size = part * (parts - 1) + last
    layout = with_uniform_layout(CompositeChecksum("CRC32C", "v"), size, part, parts)
    assert layout == UniformComposite("CRC32C", "v", parts, part)
    assert str(layout) == f"v-{parts}"
