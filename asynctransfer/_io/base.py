"""What the drivers share: the real clock."""

from __future__ import annotations

import time


class SystemClock:
    """The process's monotonic clock, for the core's time-dependent rules."""

    def monotonic(self) -> float:
        return time.monotonic()
