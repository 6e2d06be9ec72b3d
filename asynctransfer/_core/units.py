"""Byte sizes and rates as people write them: ``8MiB``, ``5MB``, ``1GiB``, ``50MB/s``, ``1048576``."""

from __future__ import annotations

import re

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": KiB,
    "mib": MiB,
    "gib": GiB,
    "tib": TiB,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> int:
    """Parse ``"8MiB"``, ``"5MB"``, ``"1.5GiB"`` or ``"1048576"`` into a number of bytes.

    Decimal units (kB, MB, GB, TB) are powers of 1000, binary ones (KiB, MiB, GiB, TiB) of 1024,
    as in SI and IEC. Raises ValueError with the offending text on anything else.
    """
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"invalid size {text!r}: expected a number with an optional unit "
            "(B, kB, MB, GB, TB, KiB, MiB, GiB, TiB), e.g. '8MiB'"
        )
    number: str = match.group(1)
    factor = _UNITS[unit]
    if "." in number:
        whole, frac = number.split(".")
        # Integer arithmetic: '1.5GiB' is exactly 1.5 * 2**30, with no float rounding.
        scale: int = 10 ** len(frac)
        value = int(whole) * factor + int(frac) * factor // scale
    else:
        value = int(number) * factor
    return value


def parse_rate(text: str) -> int:
    """Parse a rate such as ``"50MB/s"``, ``"1GiB/s"`` or ``"1000000"`` into bytes per second."""
    stripped = text.strip()
    if stripped.lower().endswith("/s"):
        stripped = stripped[:-2]
    try:
        return parse_size(stripped)
    except ValueError:
        raise ValueError(f"invalid rate {text!r}: expected e.g. '50MB/s' or '1GiB/s'") from None


def format_size(n: int) -> str:
    """Format a byte count with a binary unit, e.g. ``8.0 MiB``."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(round(value, 1)) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
