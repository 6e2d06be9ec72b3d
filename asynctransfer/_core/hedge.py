"""When to hedge a ranged GET: its first byte is late compared with the recent ones.

The AWS CRT client sends a second request for a part whose first byte is much slower than the
recent 90th percentile, and takes whichever answers first: one slow server or connection then
costs one extra request instead of stalling the whole download behind that part. This keeps
the recent first-byte latencies and says how long to wait before hedging.
"""

from __future__ import annotations

from collections import deque


class FirstByteLatency:
    """The last ``size`` first-byte latencies. ``hedge_after`` is ``factor`` times their 90th
    percentile, at least ``floor`` seconds; None until ``min_samples`` are in (no basis)."""

    def __init__(
        self,
        *,
        size: int = 128,
        min_samples: int = 16,
        factor: float = 4.0,
        floor: float = 0.5,
    ) -> None:
        if not (1 <= min_samples <= size and factor >= 1 and floor >= 0):
            raise ValueError("need 1 <= min_samples <= size, factor >= 1, floor >= 0")
        self._samples: deque[float] = deque(maxlen=size)
        self._min = min_samples
        self._factor = factor
        self._floor = floor

    def record(self, seconds: float) -> None:
        self._samples.append(max(0.0, seconds))

    def p90(self) -> float | None:
        if len(self._samples) < self._min:
            return None
        ordered = sorted(self._samples)
        return ordered[min(len(ordered) - 1, (len(ordered) * 9) // 10)]

    def hedge_after(self) -> float | None:
        p90 = self.p90()
        return None if p90 is None else max(self._floor, p90 * self._factor)
