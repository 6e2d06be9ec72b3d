"""Backoff with full jitter (pure, seeded)."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from asynctransfer._core.retry import full_jitter


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
