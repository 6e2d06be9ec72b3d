"""Turns in plan order for tasks that finish in any order.

Ranges of a download arrive out of order, but whole-file digests (and, later, a stream to
stdout) must see the bytes in order. Each range's task waits for its turn holding its buffer, so
nothing is read back from the file and the wait is bounded by the memory budget: buffers are
taken in plan order, so the range whose turn it is always has one.
"""

from __future__ import annotations

import anyio


class Turns:
    def __init__(self, count: int) -> None:
        self._count = count
        self._next = 1
        self._events: dict[int, anyio.Event] = {}

    async def wait(self, number: int) -> None:
        """Return when every number before ``number`` is done."""
        if number != self._next:
            await self._events.setdefault(number, anyio.Event()).wait()

    def is_next(self, number: int) -> bool:
        return number == self._next

    def done(self, number: int) -> None:
        if number != self._next:
            raise RuntimeError(f"turn {number} done out of order (expected {self._next})")
        self._next += 1
        event = self._events.pop(self._next, None)
        if event is not None:
            event.set()

    @property
    def complete(self) -> bool:
        return self._next == self._count + 1
