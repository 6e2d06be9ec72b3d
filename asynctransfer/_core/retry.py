"""Retries: what a failure calls for, how long to wait, how many retries a session may spend,
and how many requests to keep in flight while the store throttles.

Backoff between attempts: exponential with full jitter.

Full jitter (a uniform draw between 0 and the exponential cap) spreads retries of many parts
that failed together, instead of bringing them back in synchronized waves (AWS Architecture
Blog, "Exponential Backoff And Jitter"). The random source is a parameter, so tests are exact.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from .clock import Clock


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


# ------------------------------------------------------------------ what to do with a failure


class Verdict(enum.Enum):
    RETRY = "retry"
    """Transient: try again after a backoff."""
    SLOW_DOWN = "slow down"
    """The store is throttling: try again, and send less at once."""
    REREAD = "reread"
    """The store saw other bytes than we meant (BadDigest): read the source again, once."""
    FAIL = "fail"
    """Retrying cannot help (bad request, denied, missing, precondition)."""


_THROTTLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottled",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "BandwidthLimitExceeded",
    }
)
_TRANSIENT_CODES = frozenset(
    {"RequestTimeout", "RequestTimeTooSkewed", "InternalError", "ServiceUnavailable"}
)
_REREAD_CODES = frozenset({"BadDigest", "XAmzContentChecksumMismatch", "InvalidDigest"})


def classify(status: int | None, code: str | None, *, transport: bool = False) -> Verdict:
    """What to do after one failed request.

    ``transport``: the request failed below HTTP (refused, reset, timed out, a body cut short).
    Otherwise ``status`` and the S3 error ``code`` (empty when there was none) of the answer; a
    200 with an error code is CompleteMultipartUpload's failure, and transient.
    """
    if transport:
        return Verdict.RETRY
    code = code or ""
    if code in _THROTTLE_CODES or status in (429, 503):
        return Verdict.SLOW_DOWN
    if code in _REREAD_CODES:
        return Verdict.REREAD
    if code in _TRANSIENT_CODES or status == 408:
        return Verdict.RETRY
    if status is not None and (status >= 500 or (status == 200 and code)):
        return Verdict.RETRY
    return Verdict.FAIL


# ------------------------------------------------------------------ the retry budget


@dataclass(frozen=True)
class RetryBudgetStatistics:
    tokens: float
    capacity: float
    open: bool
    """True while retries are refused (the budget ran out and is cooling down)."""


class RetryBudget:
    """A quota of retries shared by every transfer of one session, as the AWS SDKs keep one.

    Each retry costs tokens (a timeout more, since it held a slot the longest); each success
    gives one back. When a retry finds too few tokens the budget opens: retries are refused, so
    a store that fails everything meets one clear error instead of every part retrying until
    its own attempts run out. After ``cooldown`` seconds open, it closes full again.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        capacity: float = 500.0,
        retry_cost: float = 5.0,
        timeout_cost: float = 10.0,
        cooldown: float = 30.0,
    ) -> None:
        if not (capacity > 0 and retry_cost > 0 and timeout_cost > 0 and cooldown >= 0):
            raise ValueError("capacity and costs must be positive, cooldown not negative")
        self._clock = clock
        self._capacity = capacity
        self._retry_cost = retry_cost
        self._timeout_cost = timeout_cost
        self._cooldown = cooldown
        self._tokens = capacity
        self._opened_at: float | None = None

    def try_retry(self, *, timeout: bool = False) -> bool:
        """Take the tokens of one retry; False (the budget is open) if there are not enough."""
        now = self._clock.monotonic()
        if self._opened_at is not None:
            if now - self._opened_at < self._cooldown:
                return False
            self._opened_at = None
            self._tokens = self._capacity
        cost = self._timeout_cost if timeout else self._retry_cost
        if self._tokens < cost:
            self._opened_at = now
            return False
        self._tokens -= cost
        return True

    def succeeded(self) -> None:
        if self._opened_at is None:
            self._tokens = min(self._capacity, self._tokens + 1.0)

    def statistics(self) -> RetryBudgetStatistics:
        return RetryBudgetStatistics(self._tokens, self._capacity, self._opened_at is not None)


# ------------------------------------------------------------------ adaptive concurrency


class Aimd:
    """Additive increase, multiplicative decrease of the in-flight limit (TCP's rule).

    A throttling answer halves the limit (not below ``floor``), at most once per ``hold``
    seconds: the requests already in flight when the store started refusing answer with a burst
    of 503s that says one thing, not ten. Each success adds ``1 / limit``, so the limit grows by
    about one per round of requests, back up to ``ceiling``.
    """

    def __init__(
        self, ceiling: int, clock: Clock, *, floor: int = 1, factor: float = 0.5, hold: float = 1.0
    ) -> None:
        if not (1 <= floor <= ceiling and 0 < factor < 1 and hold >= 0):
            raise ValueError(
                f"need 1 <= floor <= ceiling and 0 < factor < 1; got {floor}, {ceiling}, {factor}"
            )
        self._ceiling = ceiling
        self._floor = floor
        self._factor = factor
        self._hold = hold
        self._clock = clock
        self._limit = float(ceiling)
        self._last_cut: float | None = None
        self.decreases = 0

    @property
    def limit(self) -> int:
        return int(self._limit)

    def throttled(self) -> int:
        now = self._clock.monotonic()
        if self._last_cut is None or now - self._last_cut >= self._hold:
            self._limit = max(float(self._floor), math.floor(self._limit * self._factor))
            self._last_cut = now
            self.decreases += 1
        return self.limit

    def succeeded(self) -> int:
        if self._limit < self._ceiling:
            self._limit = min(float(self._ceiling), self._limit + 1.0 / self._limit)
        return self.limit
