"""Retry policy (pure, seeded, on a fake clock): backoff with full jitter, the verdict for\neach kind of failure, the session's retry budget, and AIMD concurrency."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asynctransfer._core.clock import FakeClock
from asynctransfer._core.retry import (
    Aimd,
    RetryBudget,
    RetryBudgetStatistics,
    Verdict,
    classify,
    full_jitter,
)


@given(st.integers(1, 200), st.integers(0, 2**32))
def test_waits_stay_within_the_exponential_cap(attempt: int, seed: int) -> None:
    wait = full_jitter(attempt, random.Random(seed), base=0.1, cap=5.0)
    assert 0.0 <= wait <= min(5.0, 0.1 * 2 ** min(attempt - 1, 60))


def test_waits_spread_over_the_whole_interval() -> None:
    rng = random.Random(1)
    waits = [full_jitter(4, rng, base=0.1, cap=5.0) for _ in range(2000)]
    assert max(waits) <= 0.8
    assert min(waits) < 0.05 and max(waits) > 0.75  # full jitter, not "cap plus noise"


@pytest.mark.parametrize(("attempt", "base", "cap"), [(0, 0.1, 5.0), (1, 0.0, 5.0), (1, 1.0, 0.5)])
def test_bad_arguments(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        full_jitter(attempt, random.Random(0), base=base, cap=cap)


# ------------------------------------------------------------------ classify


@pytest.mark.parametrize(
    ("status", "code", "transport", "verdict"),
    [
        (None, None, True, Verdict.RETRY),  # reset, timeout, truncated body
        (500, "InternalError", False, Verdict.RETRY),
        (502, "", False, Verdict.RETRY),
        (200, "InternalError", False, Verdict.RETRY),  # Complete's 200 with <Error>
        (400, "RequestTimeout", False, Verdict.RETRY),
        (503, "SlowDown", False, Verdict.SLOW_DOWN),
        (503, "", False, Verdict.SLOW_DOWN),
        (429, "", False, Verdict.SLOW_DOWN),
        (400, "ThrottlingException", False, Verdict.SLOW_DOWN),
        (400, "BadDigest", False, Verdict.REREAD),
        (400, "InvalidArgument", False, Verdict.FAIL),
        (403, "AccessDenied", False, Verdict.FAIL),
        (404, "NoSuchKey", False, Verdict.FAIL),
        (412, "PreconditionFailed", False, Verdict.FAIL),
        (409, "ConditionalRequestConflict", False, Verdict.FAIL),
        (200, "", False, Verdict.FAIL),
    ],
)
def test_classify(status: int | None, code: str | None, transport: bool, verdict: Verdict) -> None:
    assert classify(status, code, transport=transport) is verdict


@given(st.integers(400, 499).filter(lambda s: s not in (408, 429)), st.sampled_from(["", "Nope"]))
def test_other_client_errors_fail_at_once(status: int, code: str) -> None:
    assert classify(status, code) is Verdict.FAIL


# ------------------------------------------------------------------ retry budget


def test_the_budget_opens_when_failures_outrun_successes_and_closes_after_the_cooldown() -> None:
    clock = FakeClock()
    budget = RetryBudget(clock, capacity=20, retry_cost=5, timeout_cost=10, cooldown=30)
    assert [budget.try_retry() for _ in range(5)] == [True, True, True, True, False]
    assert budget.statistics().open
    budget.succeeded()  # no refund while open
    clock.advance(29.9)
    assert not budget.try_retry()
    clock.advance(0.1)
    assert budget.try_retry()  # closed again, full
    assert budget.statistics() == RetryBudgetStatistics(15, 20, False)


def test_successes_pay_retries_back() -> None:
    budget = RetryBudget(FakeClock(), capacity=10, retry_cost=5, timeout_cost=10)
    assert budget.try_retry(timeout=True)
    for _ in range(5):
        budget.succeeded()
    assert budget.try_retry()
    assert not budget.try_retry()


@given(st.lists(st.sampled_from(["retry", "timeout", "ok", "wait"]), max_size=200))
def test_tokens_stay_within_bounds(events: list[str]) -> None:
    clock = FakeClock()
    budget = RetryBudget(clock, capacity=50, cooldown=10)
    for event in events:
        if event == "ok":
            budget.succeeded()
        elif event == "wait":
            clock.advance(3)
        else:
            budget.try_retry(timeout=event == "timeout")
        assert 0 <= budget.statistics().tokens <= 50


# ------------------------------------------------------------------ AIMD


def test_throttling_halves_once_per_hold_and_successes_climb_back() -> None:
    clock = FakeClock()
    aimd = Aimd(16, clock, hold=1.0)
    assert aimd.throttled() == 8
    assert aimd.throttled() == 8  # the same burst of 503s
    clock.advance(1.0)
    assert aimd.throttled() == 4
    successes = 0
    while aimd.limit < 16:
        aimd.succeeded()
        successes += 1
    # About one step per round of `limit` requests: 4 + 5 + ... + 15.
    assert sum(range(4, 16)) - 12 <= successes <= sum(range(4, 16)) + 12
    assert aimd.succeeded() == 16
    assert aimd.decreases == 2


@given(st.lists(st.sampled_from(["throttle", "ok", "wait"]), max_size=300), st.integers(1, 64))
def test_the_limit_stays_between_floor_and_ceiling(events: list[str], ceiling: int) -> None:
    clock = FakeClock()
    aimd = Aimd(ceiling, clock, floor=1, hold=0.5)
    for event in events:
        if event == "throttle":
            aimd.throttled()
        elif event == "ok":
            aimd.succeeded()
        else:
            clock.advance(0.5)
        assert 1 <= aimd.limit <= ceiling
