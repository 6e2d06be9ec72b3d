"""When to hedge: a multiple of the recent first-byte p90, never below the floor, and only
once there is a basis."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asynctransfer._core.hedge import FirstByteLatency


def test_no_hedging_without_enough_samples() -> None:
    window = FirstByteLatency(min_samples=4)
    for _ in range(3):
        window.record(0.01)
    assert window.hedge_after() is None
    window.record(0.01)
    assert window.hedge_after() == 0.5  # the floor


def test_a_multiple_of_the_p90() -> None:
    window = FirstByteLatency(min_samples=10, factor=4, floor=0.0)
    for ms in range(1, 11):  # 1..10 ms
        window.record(ms / 1000)
    assert window.p90() == 0.010
    assert window.hedge_after() == pytest.approx(0.040)


def test_old_samples_leave_the_window() -> None:
    window = FirstByteLatency(size=4, min_samples=4, factor=1, floor=0)
    for seconds in (9.0, 9.0, 9.0, 9.0, 0.1, 0.1, 0.1, 0.1):
        window.record(seconds)
    assert window.hedge_after() == 0.1


@given(st.lists(st.floats(0, 100), min_size=16, max_size=300))
def test_never_below_the_floor_nor_the_p90(samples: list[float]) -> None:
    window = FirstByteLatency()
    for s in samples:
        window.record(s)
    after = window.hedge_after()
    p90 = window.p90()
    assert after is not None and p90 is not None
    assert after >= 0.5 and after >= p90
