"""A pool of reusable part buffers under one byte budget: the engine's memory bound.

Every part in flight holds one buffer; a transfer that would exceed the budget waits for a
buffer to come back. Buffers are reused, not allocated per part: a fresh multi-MiB allocation
costs a page-faulting memset (~2 GB/s here), while refilling an existing one runs at memcpy
speed (~19 GB/s). ``release`` is synchronous so it is safe in ``finally`` under cancellation.

Two kinds share the budget: ``bytearray`` for uploads (botocore accepts no other mutable body)
and page-aligned anonymous ``mmap`` for downloads, which O_DIRECT writes need.
"""

from __future__ import annotations

import mmap
from collections import deque
from dataclasses import dataclass
from typing import Literal, overload

import anyio

Buffer = bytearray | mmap.mmap


@dataclass(frozen=True)
class BufferPoolStatistics:
    budget: int
    in_use: int
    allocated: int
    waiting: int


class _Waiter:
    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event = anyio.Event()


class BufferPool:
    def __init__(self, budget: int) -> None:
        self._budget = budget
        self._in_use = 0
        self._allocated = 0
        self._free: dict[tuple[int, bool], list[Buffer]] = {}
        self._waiters: deque[_Waiter] = deque()

    def _fits(self, size: int) -> bool:
        # One buffer is always granted, even if larger than the budget, so that a part size
        # grown by the planner for a huge object cannot deadlock the pool.
        return self._in_use == 0 or self._in_use + size <= self._budget

    @overload
    async def acquire(self, size: int, *, aligned: Literal[False] = False) -> bytearray: ...
    @overload
    async def acquire(self, size: int, *, aligned: Literal[True]) -> mmap.mmap: ...
    async def acquire(self, size: int, *, aligned: bool = False) -> Buffer:
        """A buffer of exactly ``size`` bytes (contents undefined), page-aligned if ``aligned``;
        waits for budget, FIFO."""
        await self.reserve(size)
        return self._take(size, aligned)

    async def reserve(self, size: int) -> None:
        """Budget for ``size`` bytes, waiting for it FIFO. :meth:`acquire` takes a buffer with
        it; alone, it accounts for bytes held elsewhere (a small object's body as the HTTP
        client returns it), given back with :meth:`unreserve`."""
        if self._waiters or not self._fits(size):
            waiter = _Waiter()
            self._waiters.append(waiter)
            try:
                while not (self._waiters[0] is waiter and self._fits(size)):
                    waiter.event = anyio.Event()
                    await waiter.event.wait()
            except BaseException:
                self._waiters.remove(waiter)
                self._wake_first()
                raise
            self._waiters.popleft()
            self._in_use += size
            self._wake_first()  # the next in line may fit as well
        else:
            self._in_use += size

    def unreserve(self, size: int) -> None:
        self._in_use -= size
        self._wake_first()

    def try_acquire(self, size: int) -> bytearray | None:
        """A buffer now if the budget has room and nobody waits; None otherwise. For work that
        may be skipped (a hedged request), never for work that must be done."""
        if self._waiters or self._in_use == 0 or self._in_use + size > self._budget:
            return None
        self._in_use += size
        buf = self._take(size, False)
        assert isinstance(buf, bytearray)
        return buf

    def _take(self, size: int, aligned: bool) -> Buffer:
        free = self._free.get((size, aligned))
        if free:
            return free.pop()
        # Make room: drop idle buffers of other sizes so allocated memory stays in budget.
        for other in list(self._free):
            while self._free[other] and self._allocated + size > self._budget:
                self._free[other].pop()
                self._allocated -= other[0]
        self._allocated += size
        return mmap.mmap(-1, size) if aligned and size else bytearray(size)

    def release(self, buf: Buffer) -> None:
        size = len(buf)
        self._in_use -= size
        if self._allocated <= self._budget:
            self._free.setdefault((size, isinstance(buf, mmap.mmap)), []).append(buf)
        else:
            self._allocated -= size
        self._wake_first()

    def _wake_first(self) -> None:
        if self._waiters:
            self._waiters[0].event.set()

    def statistics(self) -> BufferPoolStatistics:
        return BufferPoolStatistics(self._budget, self._in_use, self._allocated, len(self._waiters))

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<BufferPool budget={s.budget} in_use={s.in_use} allocated={s.allocated}>"
