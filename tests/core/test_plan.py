"""Part plans: S3's limits (5 MiB..5 GiB parts, <= 10,000 parts, <= 5 TiB) and exact coverage.

Plans are lazy, so sizes up to 5 TiB cost nothing; walking every part of a plan is at most
10,000 small objects for uploads. Download plans have no part limit, so the properties that walk
them bound the number of parts instead.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asynctransfer._core.plan import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MAX_SINGLE_PUT,
    MIN_PART_SIZE,
    Part,
    Plan,
    PlanError,
    TooLargeError,
    plan_download,
    plan_upload,
)
from asynctransfer._core.units import GiB, KiB, MiB, TiB

FAST = settings(max_examples=75, deadline=None)


def assert_exact_cover(plan: Plan) -> list[Part]:
    """Every byte of ``[0, plan.size)`` in exactly one part: numbered 1..N, contiguous, in order."""
    parts = list(plan)
    assert len(parts) == len(plan) >= 1
    position = 0
    for number, part in enumerate(parts, start=1):
        assert part.number == number
        assert part.offset == position, f"gap or overlap before part {number}"
        assert part.length > 0 or plan.size == 0, f"empty part {number} in a non-empty plan"
        position = part.end
    assert position == plan.size
    return parts


def assert_store_limits(plan: Plan, min_part_size: int = MIN_PART_SIZE) -> None:
    """What S3 (and MinIO, Ceph, R2...) accept for an upload plan."""
    parts = assert_exact_cover(plan)
    assert len(parts) <= MAX_PARTS
    if not plan.multipart:
        assert len(parts) == 1
        assert parts[0].length == plan.size <= MAX_SINGLE_PUT
        return
    for part in parts[:-1]:
        assert min_part_size <= part.length <= MAX_PART_SIZE, part
    last = parts[-1]
    assert 0 < last.length <= plan.part_size <= MAX_PART_SIZE


# ------------------------------------------------------------------ plan_upload: tables


@pytest.mark.parametrize("size", [0, 1, MiB, 8 * MiB - 1, 8 * MiB])
def test_at_or_below_threshold_is_one_put(size: int) -> None:
    plan = plan_upload(size, 8 * MiB)
    assert not plan.multipart
    assert list(plan) == [Part(1, 0, size)]


def test_empty_object_is_one_empty_put() -> None:
    plan = plan_upload(0, MIN_PART_SIZE)
    assert not plan.multipart
    assert len(plan) == 1
    assert list(plan) == [Part(number=1, offset=0, length=0)]


def test_one_byte_over_part_size_is_two_parts() -> None:
    plan = plan_upload(8 * MiB + 1, 8 * MiB)
    assert plan.multipart
    assert list(plan) == [Part(1, 0, 8 * MiB), Part(2, 8 * MiB, 1)]


@pytest.mark.parametrize(
    ("size", "threshold", "multipart"),
    [
        (100 * MiB, 100 * MiB, False),
        (100 * MiB + 1, 100 * MiB, True),
        (0, 0, False),
        (1, 0, True),
        (MiB, 64 * MiB, False),
        # The threshold never lets a single PutObject exceed S3's 5 GiB.
        (MAX_SINGLE_PUT, 6 * GiB, False),
        (MAX_SINGLE_PUT + 1, 6 * GiB, True),
    ],
)
def test_explicit_multipart_threshold(size: int, threshold: int, multipart: bool) -> None:
    plan = plan_upload(size, 8 * MiB, multipart_threshold=threshold)
    assert plan.multipart is multipart
    assert_store_limits(plan)


def test_multipart_threshold_below_part_size_gives_one_short_part() -> None:
    plan = plan_upload(3 * MiB, 8 * MiB, multipart_threshold=MiB)
    assert plan.multipart
    assert list(plan) == [Part(1, 0, 3 * MiB)]


@pytest.mark.parametrize("part_size", [MIN_PART_SIZE, 8 * MiB, 8 * MiB + 1, 524 * MiB])
def test_exactly_max_parts_does_not_grow(part_size: int) -> None:
    plan = plan_upload(MAX_PARTS * part_size, part_size)
    assert plan.part_size == part_size
    assert len(plan) == MAX_PARTS
    assert plan.part(MAX_PARTS).length == part_size
    assert_store_limits(plan)


@pytest.mark.parametrize("part_size", [MIN_PART_SIZE, 8 * MiB, 8 * MiB + 1, 100 * MiB + 12345])
def test_grows_part_size_rather_than_failing(part_size: int) -> None:
    size = MAX_PARTS * part_size + 1  # one byte too many for 10,000 parts of part_size
    plan = plan_upload(size, part_size)
    assert plan.multipart
    assert plan.part_size > part_size
    assert plan.part_size % MiB == 0, "grown in whole MiB"
    assert len(plan) <= MAX_PARTS
    # The smallest whole-MiB size that fits: one MiB less would need too many parts.
    assert -(-size // (plan.part_size - MiB)) > MAX_PARTS
    assert_store_limits(plan)


def test_grown_part_size_example() -> None:
    plan = plan_upload(MAX_PARTS * MIN_PART_SIZE + 1, MIN_PART_SIZE)
    assert plan.part_size == 6 * MiB
    assert len(plan) == 8334


@pytest.mark.parametrize(
    ("part_size", "expected_part_size", "expected_parts"),
    [
        (8 * MiB, 525 * MiB, 9987),  # grown: 5 TiB / 10,000 rounded up to whole MiB
        (MIN_PART_SIZE, 525 * MiB, 9987),
        (GiB, GiB, 5120),
        (MAX_PART_SIZE, MAX_PART_SIZE, 1024),
    ],
)
def test_five_tib_object_plans_fine(
    part_size: int, expected_part_size: int, expected_parts: int
) -> None:
    plan = plan_upload(5 * TiB, part_size)
    assert plan.multipart
    assert plan.part_size == expected_part_size
    assert len(plan) == expected_parts
    assert_store_limits(plan)


@pytest.mark.parametrize("size", [MAX_OBJECT_SIZE + 1, 6 * TiB, 10**18])
def test_refuses_objects_over_five_tib(size: int) -> None:
    with pytest.raises(TooLargeError, match=str(size)):
        plan_upload(size, 8 * MiB)


@pytest.mark.parametrize(
    ("size", "max_object_size"),
    [(GiB + 1, GiB), (1, 0), (MiB, MiB - 1)],
)
def test_refuses_objects_over_a_configured_maximum(size: int, max_object_size: int) -> None:
    # Refused even when the object would otherwise go in one small PutObject.
    with pytest.raises(TooLargeError):
        plan_upload(size, 8 * MiB, max_object_size=max_object_size)
    plan_upload(max_object_size, 8 * MiB, max_object_size=max_object_size)  # the limit itself fits


def test_refuses_what_no_part_size_can_carry() -> None:
    # With a raised object limit, 10,000 parts of 5 GiB is the real ceiling.
    size = MAX_PARTS * MAX_PART_SIZE + 1
    with pytest.raises(TooLargeError):
        plan_upload(size, 8 * MiB, max_object_size=100 * TiB)
    plan = plan_upload(MAX_PARTS * MAX_PART_SIZE, 8 * MiB, max_object_size=100 * TiB)
    assert plan.part_size == MAX_PART_SIZE
    assert len(plan) == MAX_PARTS


@pytest.mark.parametrize("part_size", [1, MIN_PART_SIZE - 1, MAX_PART_SIZE + 1])
def test_too_large_is_checked_before_anything_else(part_size: int) -> None:
    with pytest.raises(TooLargeError):
        plan_upload(MAX_OBJECT_SIZE + 1, part_size)


@pytest.mark.parametrize("part_size", [-1, 0, 1, MIN_PART_SIZE - 1, MAX_PART_SIZE + 1, 6 * GiB])
def test_part_size_outside_store_limits_raises(part_size: int) -> None:
    with pytest.raises(PlanError, match="part size") as info:
        plan_upload(100 * MiB, part_size)
    assert not isinstance(info.value, TooLargeError)


@pytest.mark.parametrize("size", [0, 100 * MiB])
def test_part_size_below_a_custom_minimum_raises(size: int) -> None:
    with pytest.raises(PlanError):
        plan_upload(size, 64 * KiB - 1, min_part_size=64 * KiB)
    plan = plan_upload(size, 64 * KiB, min_part_size=64 * KiB)
    assert_store_limits(plan, min_part_size=64 * KiB)


def test_negative_size_raises() -> None:
    with pytest.raises(PlanError, match="size"):
        plan_upload(-1, 8 * MiB)


@pytest.mark.parametrize("number", [0, -1, 3])
def test_part_number_outside_plan_raises(number: int) -> None:
    plan = plan_upload(8 * MiB + 1, 8 * MiB)
    assert len(plan) == 2
    with pytest.raises(IndexError):
        plan.part(number)


def test_part_end_is_one_past_last_byte() -> None:
    assert Part(3, 10, 5).end == 15


# ------------------------------------------------------------------ plan_upload: properties

sizes = st.one_of(
    st.integers(0, 64 * MiB),  # around the single-put threshold and small plans
    st.integers(0, MAX_OBJECT_SIZE),  # anything up to 5 TiB
    st.integers(MAX_OBJECT_SIZE - GiB, MAX_OBJECT_SIZE),  # near the top
)
part_sizes = st.one_of(
    st.sampled_from([MIN_PART_SIZE, 8 * MiB, 16 * MiB, 64 * MiB, GiB, MAX_PART_SIZE]),
    st.integers(MIN_PART_SIZE, MAX_PART_SIZE),
)
thresholds = st.one_of(st.none(), st.integers(0, 6 * GiB))


@settings(max_examples=60, deadline=None)
@given(size=sizes, part_size=part_sizes, threshold=thresholds)
def test_upload_plan_respects_store_limits(
    size: int, part_size: int, threshold: int | None
) -> None:
    plan = plan_upload(size, part_size, multipart_threshold=threshold)
    assert plan.size == size
    assert_store_limits(plan)
    effective_threshold = part_size if threshold is None else threshold
    assert plan.multipart is (size > min(effective_threshold, MAX_SINGLE_PUT))
    if plan.multipart:
        if -(-size // part_size) <= MAX_PARTS:
            assert plan.part_size == part_size, "grew the part size without need"
        else:
            assert plan.part_size > part_size
            assert plan.part_size % MiB == 0


# Every example here walks 5,000-10,000 parts (~30 ms): few examples, all of them large plans.
@settings(max_examples=15, deadline=None)
@given(data=st.data(), part_size=part_sizes)
def test_upload_plan_grows_when_parts_would_exceed_limit(
    data: st.DataObject, part_size: int
) -> None:
    low = MAX_PARTS * part_size + 1
    if low > MAX_OBJECT_SIZE:
        part_size = MIN_PART_SIZE
        low = MAX_PARTS * part_size + 1
    size = data.draw(st.integers(low, MAX_OBJECT_SIZE), label="size")
    plan = plan_upload(size, part_size)
    assert plan.multipart
    assert plan.part_size > part_size
    assert plan.part_size % MiB == 0
    assert -(-size // (plan.part_size - MiB)) > MAX_PARTS, "grew more than needed"
    assert_store_limits(plan)


@FAST
@given(
    size=st.integers(MAX_OBJECT_SIZE + 1, 2**62),
    part_size=part_sizes,
    threshold=thresholds,
)
def test_upload_over_max_object_size_is_refused(
    size: int, part_size: int, threshold: int | None
) -> None:
    with pytest.raises(TooLargeError):
        plan_upload(size, part_size, multipart_threshold=threshold)


@FAST
@given(
    size=st.integers(0, 4 * GiB),
    min_part_size=st.integers(1, 8 * MiB),
    data=st.data(),
)
def test_upload_plan_with_custom_minimum(
    size: int, min_part_size: int, data: st.DataObject
) -> None:
    part_size = data.draw(st.integers(min_part_size, 16 * MiB), label="part_size")
    plan = plan_upload(size, part_size, min_part_size=min_part_size)
    assert_store_limits(plan, min_part_size=min_part_size)


# ------------------------------------------------------------------ plan_download


def test_download_empty_object_is_one_empty_part() -> None:
    plan = plan_download(0, 8 * MiB)
    assert not plan.multipart
    assert list(plan) == [Part(1, 0, 0)]


@pytest.mark.parametrize(
    ("size", "part_size", "expected"),
    [
        (1, 8, [Part(1, 0, 1)]),
        (8, 8, [Part(1, 0, 8)]),
        (9, 8, [Part(1, 0, 8), Part(2, 8, 1)]),
        (16, 8, [Part(1, 0, 8), Part(2, 8, 8)]),
        (17, 8, [Part(1, 0, 8), Part(2, 8, 8), Part(3, 16, 1)]),
        (5, 1, [Part(i, i - 1, 1) for i in range(1, 6)]),
    ],
)
def test_download_plan_table(size: int, part_size: int, expected: list[Part]) -> None:
    plan = plan_download(size, part_size)
    assert plan.multipart is (len(expected) > 1)
    assert list(plan) == expected


def test_download_has_no_part_limit() -> None:
    plan = plan_download(5 * TiB, MiB)
    assert len(plan) == 5 * MiB  # far more than 10,000, and still no memory used
    assert plan.part(len(plan)) == Part(5 * MiB, 5 * TiB - MiB, MiB)


@pytest.mark.parametrize(("size", "part_size"), [(-1, 8), (10, 0), (10, -8)])
def test_download_bad_input_raises(size: int, part_size: int) -> None:
    with pytest.raises(PlanError):
        plan_download(size, part_size)


@FAST
@given(
    part_size=st.integers(1, MAX_PART_SIZE),
    whole_parts=st.integers(0, 2000),
    data=st.data(),
)
def test_download_plan_covers_every_byte_once(
    part_size: int, whole_parts: int, data: st.DataObject
) -> None:
    remainder = data.draw(st.integers(0, part_size - 1), label="remainder")
    size = whole_parts * part_size + remainder
    plan = plan_download(size, part_size)
    parts = assert_exact_cover(plan)
    assert len(parts) == max(1, -(-size // part_size))
    assert all(p.length == part_size for p in parts[:-1])
    assert plan.multipart is (size > part_size)


@FAST
@given(size=st.integers(0, 2**62), part_size=st.integers(1, 2**40))
def test_download_plan_arithmetic_at_any_size(size: int, part_size: int) -> None:
    # Too many parts to walk: check the ends and one part in the middle.
    plan = plan_download(size, part_size)
    n = len(plan)
    assert n == max(1, -(-size // part_size))
    first, last = plan.part(1), plan.part(n)
    assert first.offset == 0
    assert last.end == size
    assert (0 < last.length <= part_size) if size else last.length == 0
    middle = plan.part((n + 1) // 2)
    assert middle.offset == (middle.number - 1) * part_size
    if middle.number < n:
        assert middle.length == part_size
        assert plan.part(middle.number + 1).offset == middle.end


def test_negative_threshold_is_refused() -> None:
    with pytest.raises(PlanError, match="threshold"):
        plan_upload(0, MIN_PART_SIZE, multipart_threshold=-1)
