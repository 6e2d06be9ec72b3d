"""Range requests and the Content-Range we must get back before writing at an offset."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynctransfer._core.ranges import (
    ContentRange,
    RangeMismatchError,
    check_content_range,
    parse_content_range,
    range_header,
)
from asynctransfer._core.units import TiB

FAST = settings(max_examples=75, deadline=None)

offsets = st.integers(0, 5 * TiB)
lengths = st.integers(1, 5 * TiB)


# ------------------------------------------------------------------ range_header


@pytest.mark.parametrize(
    ("offset", "length", "expected"),
    [
        (0, 1, "bytes=0-0"),
        (0, 100, "bytes=0-99"),
        (100, 100, "bytes=100-199"),
        (5 * TiB - 1, 1, f"bytes={5 * TiB - 1}-{5 * TiB - 1}"),
    ],
)
def test_range_header(offset: int, length: int, expected: str) -> None:
    assert range_header(offset, length) == expected


@pytest.mark.parametrize(("offset", "length"), [(-1, 10), (0, 0), (10, -1), (-5, -5)])
def test_range_header_refuses_empty_or_negative(offset: int, length: int) -> None:
    with pytest.raises(ValueError, match="invalid range"):
        range_header(offset, length)


# ------------------------------------------------------------------ parse_content_range


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("bytes 0-99/1000", ContentRange(0, 99, 1000)),
        ("bytes 0-0/1", ContentRange(0, 0, 1)),
        ("bytes 999-999/1000", ContentRange(999, 999, 1000)),
        ("bytes 5-9/*", ContentRange(5, 9, None)),
        ("  bytes 0-9/10\r\n", ContentRange(0, 9, 10)),
        (f"bytes 0-{5 * TiB - 1}/{5 * TiB}", ContentRange(0, 5 * TiB - 1, 5 * TiB)),
    ],
)
def test_parse_content_range_valid(value: str, expected: ContentRange) -> None:
    got = parse_content_range(value)
    assert got == expected
    assert got.length == expected.end - expected.start + 1


@pytest.mark.parametrize(
    "value",
    [
        "",
        "bytes",
        "bytes ",
        "bytes 0-99",
        "bytes 0-99/",
        "bytes=0-99/100",  # the request syntax, not the response syntax
        "bytes */100",  # the 416 form names no range
        "bytes -1-5/10",
        "bytes 0--5/10",
        "bytes a-b/c",
        "bytes 0-9/10 extra",
        "bytes 0 - 9/10",
        "bytes 0-9/-10",
        "bytes 1.5-9/10",
        "items 0-9/10",
        "0-9/10",
    ],
)
def test_parse_content_range_malformed(value: str) -> None:
    with pytest.raises(RangeMismatchError, match="malformed"):
        parse_content_range(value)


@pytest.mark.parametrize(
    "value",
    [
        "bytes 9-0/10",  # end before start
        "bytes 1-0/*",
        "bytes 0-10/10",  # end at the total
        "bytes 5-20/10",  # end past the total
        "bytes 0-0/0",
    ],
)
def test_parse_content_range_impossible(value: str) -> None:
    with pytest.raises(RangeMismatchError, match="impossible"):
        parse_content_range(value)


def test_range_mismatch_is_a_value_error() -> None:
    assert issubclass(RangeMismatchError, ValueError)


# ------------------------------------------------------------------ check_content_range


def test_check_content_range_accepts_the_range_asked_for() -> None:
    got = check_content_range("bytes 100-199/1000", 100, 100, 1000)
    assert got == ContentRange(100, 199, 1000)


def test_check_content_range_unknown_total_accepts_any_total() -> None:
    assert check_content_range("bytes 0-9/55", 0, 10, None).total == 55


def test_check_content_range_star_total_is_accepted() -> None:
    assert check_content_range("bytes 0-9/*", 0, 10, 1000).total is None


@pytest.mark.parametrize(
    ("value", "offset", "length", "total", "message"),
    [
        pytest.param("bytes 0-99/1000", 100, 100, 1000, "asked for", id="wrong-start"),
        pytest.param("bytes 100-149/1000", 100, 100, 1000, "asked for", id="short-end"),
        pytest.param("bytes 100-299/1000", 100, 100, 1000, "asked for", id="long-end"),
        pytest.param("bytes 0-999/1000", 100, 100, 1000, "asked for", id="whole-object"),
        pytest.param("bytes 100-199/2000", 100, 100, 1000, "size changed", id="total-changed"),
        pytest.param(None, 100, 100, 1000, "no Content-Range", id="missing"),
        pytest.param("", 100, 100, 1000, "malformed", id="empty"),
        pytest.param("bytes 100-199", 100, 100, 1000, "malformed", id="no-total"),
        pytest.param("bytes 199-100/1000", 100, 100, 1000, "impossible", id="reversed"),
    ],
)
def test_check_content_range_mismatch(
    value: str | None, offset: int, length: int, total: int | None, message: str
) -> None:
    with pytest.raises(RangeMismatchError, match=message):
        check_content_range(value, offset, length, total)


# ------------------------------------------------------------------ properties


@FAST
@given(offset=offsets, length=lengths, extra=st.integers(0, TiB), known=st.booleans())
def test_round_trip_through_range_header(offset: int, length: int, extra: int, known: bool) -> None:
    # What a correct server does: echo the asked range in Content-Range, with the object size.
    total = offset + length + extra
    asked = range_header(offset, length)
    assert asked.startswith("bytes=")
    content_range = f"bytes {asked.removeprefix('bytes=')}/{total}"
    got = check_content_range(content_range, offset, length, total if known else None)
    assert (got.start, got.length, got.total) == (offset, length, total)
    assert parse_content_range(content_range) == got


@FAST
@given(start=offsets, length=lengths, total=st.one_of(st.none(), st.integers(0, 6 * TiB)))
def test_parse_matches_format(start: int, length: int, total: int | None) -> None:
    end = start + length - 1
    value = f"bytes {start}-{end}/{'*' if total is None else total}"
    if total is not None and end >= total:
        with pytest.raises(RangeMismatchError):
            parse_content_range(value)
    else:
        assert parse_content_range(value) == ContentRange(start, end, total)


@FAST
@given(
    offset=offsets,
    length=lengths,
    got_start=offsets,
    got_length=lengths,
)
def test_any_other_range_is_refused(
    offset: int, length: int, got_start: int, got_length: int
) -> None:
    value = f"bytes {got_start}-{got_start + got_length - 1}/*"
    if (got_start, got_length) == (offset, length):
        assert check_content_range(value, offset, length, None).start == offset
    else:
        with pytest.raises(RangeMismatchError):
            check_content_range(value, offset, length, None)


@FAST
@given(
    offset=offsets,
    length=lengths,
    extra=st.integers(0, TiB),
    expected_total=st.integers(1, 12 * TiB),
    same=st.booleans(),
)
def test_changed_total_is_refused(
    offset: int, length: int, extra: int, expected_total: int, same: bool
) -> None:
    answered_total = offset + length + extra
    if same:
        expected_total = answered_total
    value = f"bytes {offset}-{offset + length - 1}/{answered_total}"
    if expected_total == answered_total:
        assert check_content_range(value, offset, length, expected_total).total == answered_total
    else:
        with pytest.raises(RangeMismatchError, match="size changed"):
            check_content_range(value, offset, length, expected_total)
