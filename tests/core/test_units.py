"""Sizes and rates as people write them, parsed exactly (integer arithmetic, no float rounding)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynctransfer._core.units import GiB, KiB, MiB, TiB, format_size, parse_rate, parse_size

FAST = settings(max_examples=75, deadline=None)

FACTORS = {
    "": 1,
    "B": 1,
    "k": 1000,
    "kB": 1000,
    "M": 1000**2,
    "MB": 1000**2,
    "G": 1000**3,
    "GB": 1000**3,
    "T": 1000**4,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}


def test_unit_constants() -> None:
    assert (KiB, MiB, GiB, TiB) == (2**10, 2**20, 2**30, 2**40)


# ------------------------------------------------------------------ parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1", 1),
        ("1048576", 1048576),
        ("8MiB", 8 * 2**20),
        ("5MB", 5_000_000),
        ("1GiB", 2**30),
        ("1GB", 10**9),
        ("1.5GiB", 1_610_612_736),  # exactly 1.5 * 2**30
        ("0.5MiB", 2**19),
        ("2.25KiB", 2304),
        ("1.5MB", 1_500_000),
        ("5TiB", 5 * 2**40),
        ("5TB", 5 * 10**12),
        ("7B", 7),
        ("64kB", 64_000),
        ("64KiB", 65536),
        ("3k", 3000),
        ("010MiB", 10 * 2**20),
        ("1.000MiB", 2**20),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    value = parse_size(text)
    assert value == expected
    assert type(value) is int


@pytest.mark.parametrize(
    "text", ["8MiB", "8mib", "8MIB", "8Mib", " 8MiB", "8MiB ", "  8  MiB  ", "8 MiB", "\t8MiB\n"]
)
def test_parse_size_ignores_case_and_whitespace(text: str) -> None:
    assert parse_size(text) == 8 * MiB


def test_fractions_are_exact_even_for_huge_values() -> None:
    # A float would lose the last bytes here: 1.1 TiB is not a whole multiple of any power of 2.
    assert parse_size("1.1TiB") == 11 * TiB // 10
    assert parse_size("123456789.123456789GiB") == (123456789123456789 * GiB) // 10**9


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "abc",
        "MiB",
        "5XB",
        "5 XB",
        "-1",
        "-1MiB",
        "+1",
        "1..2MB",
        "1.2.3MB",
        "1.MiB",
        ".5MiB",
        "1e6",
        "1,000",
        "1_000",
        "8 Mi B",
        "8MiB/s",
        "5MiBs",
        "0x10",
        "inf",
        "nan",
    ],
)
def test_parse_size_malformed_raises_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size") as info:
        parse_size(text)
    assert repr(text) in str(info.value)


@FAST
@given(n=st.integers(0, 10**15), unit=st.sampled_from(sorted(FACTORS)), data=st.data())
def test_parse_size_any_unit_any_case(n: int, unit: str, data: st.DataObject) -> None:
    cased = "".join(
        c.upper() if data.draw(st.booleans(), label=f"upper {c}") else c.lower() for c in unit
    )
    space = data.draw(st.sampled_from(["", " ", "  "]), label="space")
    assert parse_size(f"{n}{space}{cased}") == n * FACTORS[unit]


@FAST
@given(
    whole=st.integers(0, 10**6),
    frac=st.text(alphabet="0123456789", min_size=1, max_size=12),
    unit=st.sampled_from(sorted(FACTORS)),
)
def test_parse_size_fraction_is_exact_floor(whole: int, frac: str, unit: str) -> None:
    exact = (whole + Fraction(int(frac), 10 ** len(frac))) * FACTORS[unit]
    assert parse_size(f"{whole}.{frac}{unit}") == int(exact)  # int() floors a positive Fraction


@FAST
@given(n=st.integers(0, 2**63))
def test_parse_plain_bytes(n: int) -> None:
    assert parse_size(str(n)) == n


# ------------------------------------------------------------------ parse_rate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("50MB/s", 50_000_000),
        ("1GiB/s", 2**30),
        ("1000000", 1_000_000),
        ("1000000/s", 1_000_000),
        ("8 MiB/s", 8 * MiB),
        ("50mb/S", 50_000_000),
        ("  1.5GiB/s  ", 1_610_612_736),
        ("100MiB", 100 * MiB),
    ],
)
def test_parse_rate(text: str, expected: int) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text", ["", "/s", "fast", "5XB/s", "-1/s", "50MB/h", "50MB/s/s", "1..2MB/s", "MB/s"]
)
def test_parse_rate_malformed_raises_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="invalid rate") as info:
        parse_rate(text)
    assert repr(text) in str(info.value)


# ------------------------------------------------------------------ format_size


@pytest.mark.parametrize(
    ("n", "expected"),
    [
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KiB"),
        (1536, "1.5 KiB"),
        (8 * MiB, "8.0 MiB"),
        (GiB, "1.0 GiB"),
        (1_610_612_736, "1.5 GiB"),
        (TiB, "1.0 TiB"),
        (5 * TiB, "5.0 TiB"),
        (2048 * TiB, "2048.0 TiB"),
    ],
)
def test_format_size(n: int, expected: str) -> None:
    assert format_size(n) == expected


@FAST
@given(n=st.integers(0, 10**16))
def test_format_then_parse_is_within_display_precision(n: int) -> None:
    text = format_size(n)
    number, unit = text.split(" ")
    factor = FACTORS[unit]
    # One decimal shown: off by at most half of 0.1 unit (plus the floor of the parse).
    assert abs(parse_size(text) - n) <= factor // 20 + 1, text
    if unit != "TiB":
        assert float(number) <= 1024.0, text


def test_format_size_rounds_up_into_the_next_unit() -> None:
    assert format_size(MiB - 1) == "1.0 MiB"
    assert format_size(1023) == "1023 B"


@pytest.mark.parametrize("text", ["\u0663MiB", "1\u0660", "\uff11MB"])
def test_non_ascii_digits_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_size(text)
