"""Backoff between attempts: exponential with full jitter.

Full jitter (a uniform draw between 0 and the exponential cap) spreads retries of many parts
that failed together, instead of bringing them back in synchronized waves (AWS Architecture
Blog, "Exponential Backoff And Jitter"). The random source is a parameter, so tests are exact.
"""

from __future__ import annotations

from typing import Protocol


class Uniform(Protocol):
    def uniform(self, a: float, b: float, /) -> float: ...


def full_jitter(attempt: int, rng: Uniform, *, base: float = 0.1, cap: float = 5.0) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""
    if attempt < 1:
        raise ValueError(f"attempt counts from 1, got {attempt}")
    if not (base > 0 and cap >= base):
        raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
    ceiling = cap if attempt > 60 else min(cap, base * 2 ** (attempt - 1))
    return rng.uniform(0.0, ceiling)
