"""Fair shares by user and the single writes' reserve, under a fake clock, over both backends.

The shares are driven as a discrete-event simulation: each user's threads ask for 25 WCU, wait
what the script says when refused, and ask again at once when granted (a greedy load) or at
their own pace (a user that wants less). The table's rate is fixed, as the bucket would hold it.
"""

from __future__ import annotations

import heapq
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from pipeline import keys
from tests.unit.test_limiter import FakeClock, redis_db
from worker.limiter import MemoryBucketBackend, RateLimiter, RedisBucketBackend
from worker.limiter.metrics import ACTIVE_USERS, FAIR_LEVEL
from worker.limiter.shares import ShareParams

__all__ = ["redis_db"]  # the fixture, shared with test_limiter

RATE = 3000.0
BATCH = 25.0


@pytest.fixture
def table(redis_db: redis.Redis[Any]) -> Iterator[str]:
    name = f"pytest-shares-{uuid.uuid4().hex[:12]}"
    yield name
    redis_db.delete(keys.limiter_shares(name), keys.limiter_bucket(name))


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest, clock: FakeClock) -> Any:
    if request.param == "redis":
        return RedisBucketBackend(request.getfixturevalue("redis_db"), now=clock)
    return MemoryBucketBackend(clock)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def simulate(
    backend: Any, clock: FakeClock, table: str, users: dict[int, tuple[int, float]], span: float
) -> tuple[dict[int, float], dict[int, float]]:
    """``users``: tag -> (threads, pace in WCU/s per thread, 0 for greedy). The WCU/s each
    was admitted over the last half of ``span``, and the longest wait each was told."""
    params, start = ShareParams(), clock.t
    events = [(start, tag, i) for tag, (threads, _) in users.items() for i in range(threads)]
    heapq.heapify(events)
    admitted = dict.fromkeys(users, 0.0)
    longest = dict.fromkeys(users, 0.0)
    while events:
        t, tag, i = heapq.heappop(events)
        if t > start + span:
            break
        clock.t = t
        reply = backend.share(table, "admit", tag, BATCH, RATE, params)
        pace = users[tag][1]
        if reply.granted:
            if t >= start + span / 2:
                admitted[tag] += BATCH
            nxt = t + (BATCH / pace if pace else 0.005)  # a call's round trip
        else:
            longest[tag] = max(longest[tag], reply.wait)
            nxt = t + reply.wait
        heapq.heappush(events, (nxt, tag, i))
    return {k: v / (span / 2) for k, v in admitted.items()}, longest


def test_greedy_users_get_equal_shares_whatever_their_thread_counts(
    backend: Any, clock: FakeClock, table: str
) -> None:
    rates, _ = simulate(backend, clock, table, {11: (8, 0.0), 13: (2, 0.0), 15: (1, 0.0)}, 20.0)
    for tag, rate in rates.items():
        assert rate == pytest.approx(RATE / 3, rel=0.1), (tag, rates)


def test_a_user_wanting_less_is_never_held_and_the_others_split_the_rest(
    backend: Any, clock: FakeClock, table: str
) -> None:
    users = {11: (6, 0.0), 13: (2, 0.0), 17: (1, 300.0)}
    rates, longest = simulate(backend, clock, table, users, 20.0)
    assert rates[17] == pytest.approx(300.0, rel=0.05)
    assert longest[17] == 0.0, "the small user was held"
    for tag in (11, 13):
        assert rates[tag] == pytest.approx((RATE - 300.0) / 2, rel=0.1), rates


def test_a_user_alone_has_the_whole_rate(backend: Any, clock: FakeClock, table: str) -> None:
    rates, _ = simulate(backend, clock, table, {11: (4, 0.0)}, 10.0)
    assert rates[11] >= RATE * 0.95  # the table's bucket, not the share, holds it


def test_shares_twin_agrees_with_the_lua(redis_db: redis.Redis[Any], table: str) -> None:
    clock, rng = FakeClock(), random.Random(11)
    twins = (MemoryBucketBackend(clock), RedisBucketBackend(redis_db, now=clock))
    params = ShareParams(ttl_seconds=30.0)
    for _ in range(800):
        clock.t += rng.choice([0.0, 0.001, 0.01, 0.1, 0.5, 2.5, 40.0])
        op = rng.choice(["admit", "admit", "admit", "refund", "state"])
        user = rng.choice([3, 5, 7, 9])
        units, rate = rng.choice([1.0, 25.0, 400.0, 5000.0]), rng.choice([100.0, 3000.0])
        mem, lua = (b.share(table, op, user, units, rate, params) for b in twins)
        assert (lua.granted, lua.users) == (mem.granted, mem.users), op
        assert lua.wait == pytest.approx(mem.wait, rel=1e-9, abs=1e-9)
        assert lua.level == pytest.approx(mem.level, rel=1e-9, abs=1e-9)


class Counting:
    """Counts share calls of a memory backend."""

    def __init__(self, inner: MemoryBucketBackend) -> None:
        self.inner, self.shares = inner, 0

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.run(*args, **kwargs)

    def share(self, *args: Any) -> Any:
        self.shares += 1
        return self.inner.share(*args)


def test_shares_are_asked_only_while_the_table_makes_callers_wait(
    clock: FakeClock, table: str
) -> None:
    backend = Counting(MemoryBucketBackend(clock))
    lim = RateLimiter(backend, capacity=1000.0, sleep=clock.sleep, clock=clock)
    for _ in range(20):  # within the bucket's burst: no wait, no share asked
        lim.acquire(table, 25.0, partition="alice")
        clock.t += 0.05
    assert backend.shares == 0
    for _ in range(100):  # far beyond the rate: the bucket makes callers wait
        lim.acquire(table, 25.0, partition="alice")
    assert backend.shares > 0
    before = backend.shares
    lim.acquire(table, 25.0)  # no partition key: no user to share by
    assert backend.shares == before
    off = Counting(MemoryBucketBackend(clock))
    lim = RateLimiter(off, capacity=1000.0, sleep=clock.sleep, clock=clock, partitions=False)
    for _ in range(100):
        lim.acquire(table, 25.0, partition="alice")
    assert off.shares == 0 and lim.acquire(table, 1.0, priority=True) == 0.0


def test_a_single_write_goes_ahead_of_the_bulk_bookings(
    backend: Any, clock: FakeClock, table: str
) -> None:
    lim = RateLimiter(backend, capacity=1000.0, sleep=clock.sleep, clock=clock)
    for _ in range(60):  # bulk callers: the burst spent, the bucket in debt
        lim.try_acquire(table, 25.0)
    bulk = lim.try_acquire(table, 25.0)
    assert not bulk.granted or bulk.wait > 0.04
    assert lim.acquire(table, 1.0, priority=True) == 0.0
    # The reserve is bounded: a flood of single writes queues like everyone else.
    waits = [lim.acquire(table, 1.0, priority=True) for _ in range(300)]
    assert waits[:70] == [0.0] * 70 and max(waits) > 0.0


def test_the_gauges_say_the_level_users_are_held_to_and_how_many_share(
    backend: Any, clock: FakeClock, table: str
) -> None:
    lim = RateLimiter(backend, capacity=1000.0, sleep=clock.sleep, clock=clock)
    assert lim.admit(table, 25.0, None, "alice") == 0.0
    assert ACTIVE_USERS.labels(table)._value.get() == 0  # not the bottleneck: no one held
    assert FAIR_LEVEL.labels(table)._value.get() == 1000.0
    for _ in range(200):  # two greedy users, far beyond the rate
        lim.acquire(table, 25.0, partition="alice")
        lim.acquire(table, 25.0, partition="bob")
    assert ACTIVE_USERS.labels(table)._value.get() == 2
    # Max-min between two users who both want more than half: each is held to half.
    assert FAIR_LEVEL.labels(table)._value.get() == pytest.approx(500.0)
