"""Token-bucket arithmetic for bytes/s and requests/s caps.

Theory of operation: the bucket holds up to ``burst`` tokens and refills at ``rate`` per second.
``reserve(n)`` always takes n tokens, letting the balance go negative, and returns how long the
caller must wait before it may proceed (0 when the tokens were there). Going into debt, rather
than refusing, lets a request larger than the burst (one 8 MiB part against a 1 MB burst) through
after a fair wait, and keeps callers first-come first-served. The bucket never sleeps: the engine
does, so this stays pure and is tested with a fake clock (s3transfer's LeakyBucket raises for
control flow instead; returning the wait is simpler to reason about).

Invariant: if every caller proceeds no earlier than ``reserve``'s time plus the wait returned, the
tokens admitted by time t since creation never exceed ``burst + rate * t``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .clock import Clock


@dataclass(frozen=True)
class TokenBucketStatistics:
    rate: float
    burst: float
    tokens: float


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Clock) -> None:
        # Written as `not x > 0` so that NaN is refused too.
        if not (rate > 0 and math.isfinite(rate)):
            raise ValueError(f"rate must be positive and finite, got {rate}")
        if not (burst > 0 and math.isfinite(burst)):
            raise ValueError(f"burst must be positive and finite, got {burst}")
        self._rate = float(rate)
        self._burst = float(burst)
        self._clock = clock
        self._tokens = self._burst
        self._last = clock.monotonic()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = now - self._last
        self._last = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)

    def reserve(self, n: float) -> float:
        """Take ``n`` tokens; return the seconds to wait before using them (0.0 if none)."""
        if not n >= 0:
            raise ValueError(f"cannot reserve a negative amount ({n})")
        self._refill()
        self._tokens -= n
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self._rate

    def statistics(self) -> TokenBucketStatistics:
        self._refill()
        return TokenBucketStatistics(rate=self._rate, burst=self._burst, tokens=self._tokens)

    def __repr__(self) -> str:
        return f"<TokenBucket rate={self._rate:g}/s burst={self._burst:g} tokens={self._tokens:g}>"
