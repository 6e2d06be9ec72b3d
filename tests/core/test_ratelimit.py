"""TokenBucket and FakeClock: the bucket returns waits and never sleeps, so a fake clock drives it.

The property that matters to users: if every caller proceeds at (reserve time + returned wait),
then over any interval since the bucket was made, at most ``burst + rate * elapsed`` tokens have
been admitted, however callers interleave; and a caller that goes back to back gets the full
rate, not less.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynctransfer._core.clock import Clock, FakeClock
from asynctransfer._core.ratelimit import TokenBucket, TokenBucketStatistics

FAST = settings(max_examples=75, deadline=None)


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


# ------------------------------------------------------------------ FakeClock


def test_fake_clock_starts_where_told() -> None:
    assert FakeClock().monotonic() == 0.0
    assert FakeClock(start=123.5).monotonic() == 123.5


def test_fake_clock_moves_only_when_advanced() -> None:
    clock = FakeClock(10.0)
    assert clock.monotonic() == 10.0
    assert clock.monotonic() == 10.0
    clock.advance(2.5)
    assert clock.monotonic() == 12.5
    clock.advance(0)
    assert clock.monotonic() == 12.5
    clock.advance(0.25)
    assert clock.monotonic() == 12.75


def test_fake_clock_refuses_to_go_back() -> None:
    clock = FakeClock(5.0)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-0.001)
    assert clock.monotonic() == 5.0


def test_fake_clock_satisfies_clock_protocol() -> None:
    clock: Clock = FakeClock()
    assert clock.monotonic() == 0.0


# ------------------------------------------------------------------ TokenBucket: tables


def test_no_wait_while_tokens_last() -> None:
    bucket = TokenBucket(rate=10, burst=100, clock=FakeClock())
    assert bucket.reserve(40) == 0.0
    assert bucket.reserve(60) == 0.0
    assert bucket.reserve(0) == 0.0
    assert bucket.statistics().tokens == 0.0


def test_wait_is_deficit_over_rate() -> None:
    bucket = TokenBucket(rate=10, burst=100, clock=FakeClock())
    assert bucket.reserve(100) == 0.0
    assert bucket.reserve(1) == pytest.approx(0.1)
    # Debts queue up first-come first-served: the next caller waits behind the last.
    assert bucket.reserve(9) == pytest.approx(1.0)
    assert bucket.statistics().tokens == pytest.approx(-10.0)


def test_larger_than_burst_is_admitted_after_a_wait() -> None:
    bucket = TokenBucket(rate=1_000_000, burst=1_000_000, clock=FakeClock())
    wait = bucket.reserve(8 * 1024 * 1024)  # one 8 MiB part against a 1 MB burst
    assert wait == pytest.approx((8 * 1024 * 1024 - 1_000_000) / 1_000_000)


def test_refill_over_time() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=100, clock=clock)
    assert bucket.reserve(100) == 0.0
    clock.advance(2.0)
    assert bucket.statistics().tokens == pytest.approx(20.0)
    assert bucket.reserve(20) == 0.0
    assert bucket.reserve(10) == pytest.approx(1.0)


def test_debt_is_repaid_by_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=100, clock=clock)
    wait = bucket.reserve(150)
    assert wait == pytest.approx(5.0)
    clock.advance(wait)
    assert bucket.statistics().tokens == pytest.approx(0.0)
    assert bucket.reserve(10) == pytest.approx(1.0)


def test_refill_is_capped_at_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=100, clock=clock)
    assert bucket.reserve(100) == 0.0
    clock.advance(1000.0)  # long idle: would be 10,000 tokens without the cap
    assert bucket.statistics().tokens == 100.0
    assert bucket.reserve(100) == 0.0
    assert bucket.reserve(1) == pytest.approx(0.1)


def test_bucket_starts_full_at_any_clock_reading() -> None:
    clock = FakeClock(start=1e6)
    bucket = TokenBucket(rate=5, burst=50, clock=clock)
    assert bucket.statistics() == TokenBucketStatistics(rate=5.0, burst=50.0, tokens=50.0)
    assert bucket.reserve(50) == 0.0
    assert bucket.reserve(5) == pytest.approx(1.0)


@pytest.mark.parametrize("rate", [0, -1, -0.5])
def test_bad_rate_raises(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(rate=rate, burst=10, clock=FakeClock())


@pytest.mark.parametrize("burst", [0, -1, -0.5])
def test_bad_burst_raises(burst: float) -> None:
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(rate=10, burst=burst, clock=FakeClock())


@pytest.mark.parametrize("n", [-1, -0.001])
def test_negative_reservation_raises(n: float) -> None:
    bucket = TokenBucket(rate=10, burst=100, clock=FakeClock())
    with pytest.raises(ValueError, match="negative"):
        bucket.reserve(n)
    assert bucket.statistics().tokens == 100.0, "a refused reservation took tokens"


@pytest.mark.parametrize("field", ["rate", "burst", "n"])
def test_nan_is_refused(field: str) -> None:
    nan = float("nan")
    with pytest.raises(ValueError):
        bucket = TokenBucket(
            rate=nan if field == "rate" else 10.0,
            burst=nan if field == "burst" else 100.0,
            clock=FakeClock(),
        )
        bucket.reserve(nan if field == "n" else 200.0)


def test_statistics_and_repr_show_live_state() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=8, clock=clock)
    bucket.reserve(6)
    assert bucket.statistics() == TokenBucketStatistics(rate=2.0, burst=8.0, tokens=2.0)
    assert repr(bucket) == "<TokenBucket rate=2/s burst=8 tokens=2>"
    clock.advance(1.0)
    assert bucket.statistics().tokens == 4.0
    assert "tokens=4" in repr(bucket)


# ------------------------------------------------------------------ TokenBucket: properties

rates = st.floats(min_value=0.01, max_value=1e7, allow_nan=False, allow_infinity=False)
bursts = st.floats(min_value=0.01, max_value=1e7, allow_nan=False, allow_infinity=False)
advances = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False, allow_infinity=False),
)


@st.composite
def operations(draw: st.DrawFn, burst: float) -> list[tuple[float, float]]:
    """(seconds to advance before, tokens to reserve): from nothing up to a few bursts."""
    amounts = st.one_of(
        st.just(0.0),
        st.floats(min_value=0.0, max_value=3 * burst, allow_nan=False, allow_infinity=False),
        st.integers(0, max(1, int(3 * burst))).map(float),
        # Right at the edges, where an off-by-a-little bucket would show.
        st.sampled_from([0.5, 0.999, 1.0, 1.001, 2.0]).map(lambda f: f * burst),
    )
    return draw(st.lists(st.tuples(advances, amounts), min_size=1, max_size=30))


def run_callers(
    rate: float, burst: float, start: float, ops: list[tuple[float, float]]
) -> list[tuple[float, float, float]]:
    """Callers reserve as ``ops`` say and proceed at reserve time + wait.

    Returns (reserve time, proceed time, tokens) for each, times measured from bucket creation.
    """
    clock = FakeClock(start)
    bucket = TokenBucket(rate, burst, clock)
    callers: list[tuple[float, float, float]] = []
    for advance, n in ops:
        clock.advance(advance)
        wait = bucket.reserve(n)
        assert wait >= 0.0
        assert math.isfinite(wait)
        now = clock.monotonic() - start
        callers.append((now, now + wait, n))
    return callers


def tolerance(rate: float, start: float, *values: float) -> float:
    # Float rounding only: relative error on the token sums, plus a few ulps of clock reading
    # (the clock counts from ``start``, so its precision is that of ``start + elapsed``).
    return 1e-9 * max(1.0, *values) + rate * 64 * math.ulp(start + max(values) / rate + 1.0)


@settings(max_examples=150, deadline=None)  # the property users rely on: worth more examples
@given(rate=rates, burst=bursts, start=st.floats(0, 1e6), data=st.data())
def test_admitted_never_exceeds_burst_plus_rate_times_elapsed(
    rate: float, burst: float, start: float, data: st.DataObject
) -> None:
    callers = run_callers(rate, burst, start, data.draw(operations(burst), label="ops"))
    # Admitted tokens by time T is a step function that only rises at proceed times, and the
    # bound only rises with T, so checking at each proceed time checks every T.
    admitted = 0.0
    for _, at, n in sorted(callers, key=lambda c: c[1]):
        admitted += n
        bound = burst + rate * at
        assert admitted <= bound + tolerance(rate, start, bound, admitted), (at, admitted, bound)


@settings(max_examples=75, deadline=None)
@given(rate=rates, burst=bursts, start=st.floats(0, 1e6), data=st.data())
def test_no_window_admits_more_than_burst_plus_rate_times_its_length(
    rate: float, burst: float, start: float, data: st.DataObject
) -> None:
    # The same bound from any moment T1 on, not just from creation: tokens reserved at or after
    # T1 and admitted by T2 never exceed burst + rate * (T2 - T1). This is what the refill cap
    # buys: an idle bucket does not bank more than one burst.
    callers = run_callers(rate, burst, start, data.draw(operations(burst), label="ops"))
    for t1 in {0.0} | {reserved for reserved, _, _ in callers}:
        admitted = 0.0
        later = sorted((at, n) for reserved, at, n in callers if reserved >= t1)
        for at, n in later:
            admitted += n
            bound = burst + rate * (at - t1)
            assert admitted <= bound + tolerance(rate, start, bound, admitted), (
                t1,
                at,
                admitted,
                bound,
            )


@FAST
@given(rate=rates, burst=bursts, data=st.data())
def test_back_to_back_caller_gets_the_full_rate(
    rate: float, burst: float, data: st.DataObject
) -> None:
    # One caller that waits exactly as told and reserves again at once is never held back more
    # than the bound requires: it proceeds at max(0, (reserved - burst) / rate).
    amounts = data.draw(
        st.lists(
            st.floats(min_value=0.0, max_value=3 * burst, allow_nan=False, allow_infinity=False),
            min_size=1,
            max_size=40,
        ),
        label="amounts",
    )
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock)
    reserved = 0.0
    for n in amounts:
        clock.advance(bucket.reserve(n))
        reserved += n
        earliest = max(0.0, (reserved - burst) / rate)
        assert math.isclose(clock.monotonic(), earliest, rel_tol=1e-6, abs_tol=1e-6 / rate), (
            clock.monotonic(),
            earliest,
        )


@FAST
@given(rate=rates, burst=bursts, n=st.floats(0, 1e8), idle=advances)
def test_wait_is_zero_iff_tokens_cover_the_request(
    rate: float, burst: float, n: float, idle: float
) -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate, burst, clock)
    bucket.reserve(burst / 2)
    clock.advance(idle)
    available = bucket.statistics().tokens
    assert available <= burst
    wait = bucket.reserve(n)
    if n <= available:
        assert wait == 0.0
    else:
        assert close(wait, (n - available) / rate)


def test_fake_clock_refuses_nan() -> None:
    with pytest.raises(ValueError, match="cannot go back"):
        FakeClock().advance(math.nan)
