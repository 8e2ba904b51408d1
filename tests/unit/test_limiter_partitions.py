"""Partition keys inside a table's limit (both bucket backends): a refusal is charged to the
limit that says it refused — a key range cuts only its partition, the table's limits only the
table — and one without a reason cuts the table only when more than one partition is refused."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from storage.errors import StoppedError
from tests.unit.test_limiter import FakeClock, clock, make, redis_db, table
from worker.limiter import RateLimiter
from worker.limiter.metrics import HOT_PARTITIONS, LABEL_BUCKETS, PARTITION_CUTS, PARTITION_RATE
from worker.limiter.partitions import HotPartitions, Scope, bucket_name, scope_of, tag_of

__all__ = ["clock", "make", "redis_db", "table"]  # fixtures shared with test_limiter

KEY_RANGE = ("TableWriteKeyRangeThroughputExceeded",)
PROVISIONED = ("TableWriteProvisionedThroughputExceeded",)


def partition_rate(lim: RateLimiter, table: str, partition: str) -> float:
    return lim.current_rate(bucket_name(table, tag_of(partition)))


def test_reasons_name_the_scope_of_a_refusal() -> None:
    assert scope_of(KEY_RANGE) is Scope.PARTITION
    assert scope_of(("GSIWriteKeyRangeThroughputExceeded",)) is Scope.PARTITION
    assert scope_of(PROVISIONED) is Scope.TABLE
    assert scope_of(("TableWriteMaxOnDemandThroughputExceeded",)) is Scope.TABLE
    assert scope_of(("TableWriteAccountLimitExceeded",)) is Scope.TABLE
    assert scope_of((*KEY_RANGE, *PROVISIONED)) is Scope.TABLE  # both bound: the table too
    assert scope_of(()) is Scope.UNKNOWN


def test_a_key_range_refusal_slows_its_partition_and_no_other(
    make: Callable[..., RateLimiter], clock: FakeClock, table: str
) -> None:
    lim = make(capacity=3000.0)
    lim.acquire(table, 25.0, partition="alice")
    clock.t += 0.2
    lim.feedback(table, units=0.0, throttled=True, partition="alice", reasons=KEY_RANGE)
    assert lim.current_rate(table) == 3000.0  # the table is untouched
    assert partition_rate(lim, table, "alice") == pytest.approx(2100.0)
    assert (table, tag_of("alice")) in lim.hot and (table, tag_of("bob")) not in lim.hot
    # alice now waits on her own bucket (in debt after the cut); bob goes through at once
    assert lim.acquire(table, 100.0, partition="alice") > 0
    assert lim.acquire(table, 100.0, partition="bob") == 0


def test_a_table_refusal_slows_the_table_and_keeps_no_partition_bucket(
    make: Callable[..., RateLimiter], clock: FakeClock, table: str
) -> None:
    lim = make(capacity=3000.0)
    clock.t += 0.2
    lim.feedback(table, units=0.0, throttled=True, partition="alice", reasons=PROVISIONED)
    assert lim.current_rate(table) == pytest.approx(2100.0)
    assert (table, tag_of("alice")) not in lim.hot


def test_refusals_without_a_reason_are_the_tables_only_when_several_partitions_see_them(
    make: Callable[..., RateLimiter], clock: FakeClock, table: str
) -> None:
    lim = make(capacity=3000.0)
    clock.t += 0.2
    lim.feedback(table, units=50.0, throttled=True, partition="alice")  # unprocessed items
    assert lim.current_rate(table) == 3000.0  # confined to alice so far
    assert partition_rate(lim, table, "alice") < 3000.0
    clock.t += 0.1
    lim.feedback(table, units=50.0, throttled=False, partition="bob")  # bob passes
    assert lim.current_rate(table) == 3000.0
    clock.t += 0.1
    lim.feedback(table, units=50.0, throttled=True, partition="bob")  # now bob is refused too
    assert lim.current_rate(table) < 3000.0
    # Without a partition (several keys in one call) a refusal is the table's, as before.
    other = make(capacity=3000.0)
    clock.t += 5.0
    other.feedback(table + "x", units=0.0, throttled=True)
    assert other.current_rate(table + "x") == pytest.approx(2100.0)


def test_a_partition_whose_rate_is_back_at_the_ceiling_is_forgotten(
    make: Callable[..., RateLimiter], clock: FakeClock, table: str
) -> None:
    lim = make(capacity=1000.0)
    clock.t += 0.2
    lim.feedback(table, units=0.0, throttled=True, partition="alice", reasons=KEY_RANGE)
    assert (table, tag_of("alice")) in lim.hot
    for _ in range(30):  # clean windows raise her rate back to the ceiling
        clock.t += 1.0
        lim.acquire(table, 10.0, partition="alice")
        lim.feedback(table, units=10.0, throttled=False, partition="alice")
    assert (table, tag_of("alice")) not in lim.hot


def test_partition_buckets_are_named_by_a_hash_never_the_key() -> None:
    name = bucket_name("DataFoldStorage-notes", tag_of("alice@example.com"))
    assert "alice" not in name and name.startswith("DataFoldStorage-notes/p")
    assert tag_of("alice") != tag_of("bob") and tag_of("alice") % 2 == 1


def test_while_refusals_name_key_ranges_unexplained_ones_are_the_partitions_too(
    make: Callable[..., RateLimiter], clock: FakeClock, table: str
) -> None:
    # Two users each over their own partition's limit: calls refused whole name the key
    # range, partly refused ones say nothing. The table is not what binds: it is not cut.
    lim = make(capacity=10000.0)
    for _ in range(10):
        clock.t += 0.2
        lim.feedback(table, units=0.0, throttled=True, partition="alice", reasons=KEY_RANGE)
        lim.feedback(table, units=20.0, throttled=True, partition="bob")
        lim.feedback(table, units=20.0, throttled=True, partition="alice")
    assert lim.current_rate(table) == 10000.0
    assert partition_rate(lim, table, "bob") < 10000.0


def test_a_grant_the_table_cannot_match_in_time_gives_the_partitions_units_back(
    make: Callable[..., RateLimiter], clock: FakeClock, table: str
) -> None:
    lim = make(capacity=1000.0)
    clock.t += 0.2
    lim.feedback(table, units=0.0, throttled=True, partition="alice", reasons=KEY_RANGE)
    clock.t += 5.0  # alice's bucket refills (at her cut rate); the table's is full
    before = lim.state(bucket_name(table, tag_of("alice")))["tokens"]
    lim.acquire(table, 1000.0)  # someone else empties the table's bucket
    with pytest.raises(StoppedError):
        lim.acquire(table, 500.0, deadline=clock.t + 0.01, partition="alice")
    assert lim.state(bucket_name(table, tag_of("alice")))["tokens"] == pytest.approx(before)


def test_a_long_run_of_clean_windows_never_overflows_the_step(
    make: Callable[..., RateLimiter], clock: FakeClock, table: str
) -> None:
    lim = make(capacity=1000.0)
    for _ in range(1100):  # more clean windows than a double's exponent allows doublings
        clock.t += 1.0
        lim.feedback(table, units=1.0, throttled=False)
    assert lim.current_rate(table) == 1000.0


def _samples(table: str) -> list[tuple[str, dict[str, str], float]]:
    return [
        (s.name, s.labels, s.value)
        for m in (PARTITION_CUTS, PARTITION_RATE, HOT_PARTITIONS)
        for metric in m.collect()
        for s in metric.samples
        if s.labels.get("table") == table
    ]


def test_partition_cuts_and_rates_are_metrics_labelled_by_a_hashed_index_only(
    make: Callable[..., RateLimiter], clock: FakeClock, table: str
) -> None:
    lim = make(capacity=3000.0)
    user = "alice-4f1c9e"
    index = str(tag_of(user) % LABEL_BUCKETS)
    lim.acquire(table, 25.0, partition=user)
    clock.t += 0.2
    lim.feedback(table, units=0.0, throttled=True, partition=user, reasons=KEY_RANGE)
    got = _samples(table)
    cuts = {s[1]["partition"]: s[2] for s in got if s[0] == "datafold_limiter_partition_cuts_total"}
    rates = {s[1]["partition"]: s[2] for s in got if s[0] == "datafold_limiter_partition_rate_wcu"}
    hot = [s[2] for s in got if s[0] == "datafold_limiter_hot_partitions"]
    assert cuts == {index: 1.0}
    assert rates == {index: pytest.approx(2100.0)}
    assert hot == [1.0]
    # Bounded labels: a table and an index in 0..15, never the key.
    for _, labels, _ in got:
        assert set(labels) <= {"table", "partition"}
        assert user not in labels.values()
        assert "partition" not in labels or 0 <= int(labels["partition"]) < LABEL_BUCKETS


def test_the_hot_partitions_follow_the_refusals_of_the_last_ttl_not_every_user_seen(
    table: str,
) -> None:
    clock = FakeClock()
    hot = HotPartitions(ttl=10.0, clock=clock)
    for i in range(100):  # a hundred users, each refused once, a second apart
        hot.refused(table, tag_of(f"user{i}"))
        clock.t += 1.0
    # Only the last ten are within the ttl; the others are gone though never asked about.
    assert HOT_PARTITIONS.labels(table)._value.get() == 10
    assert (table, tag_of("user99")) in hot and (table, tag_of("user89")) not in hot
