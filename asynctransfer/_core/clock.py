"""Time as a parameter: the core never reads a clock itself, so tests can drive it."""

from __future__ import annotations

from typing import Protocol


class Clock(Protocol):
    """Anything with a monotonic ``monotonic() -> seconds``; the real one lives in ``_io``."""

    def monotonic(self) -> float: ...


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def monotonic(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if not seconds >= 0:
            raise ValueError("a monotonic clock cannot go back")
        self._now += seconds
