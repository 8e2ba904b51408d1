"""A bounded acquire: a wait that would pass the caller's deadline is never begun — nothing is
charged or booked for it — so the capacity goes to callers that can use it in time (both
bucket backends: the Lua script and its twin)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from storage.errors import StoppedError
from tests.unit.test_limiter import FakeClock, clock, make, redis_db, table
from worker.limiter import RateLimiter

__all__ = ["clock", "make", "redis_db", "table"]  # fixtures, shared


def test_a_wait_past_the_deadline_is_neither_charged_nor_booked(
    make: Callable[..., RateLimiter], clock: FakeClock, table: str
) -> None:
    lim = make(capacity=100.0)
    other = table + "-twin"  # the same history, without the refused request
    for t in (table, other):  # at the same instant: no sleeping
        assert lim.try_acquire(t, 100.0).granted  # the burst is spent
        assert lim.try_acquire(t, 20.0).granted  # in debt: the next caller is booked behind it
    before = lim.state(table)["tokens"]
    start = clock.t
    with pytest.raises(StoppedError) as err:
        lim.acquire(table, 500.0, deadline=clock.t + 1.0)  # needs ~5 s
    assert err.value.code == "CapacityDeadline" and err.value.table == table
    assert clock.t == start  # nothing slept
    assert lim.state(table)["tokens"] == pytest.approx(before, abs=1e-6)  # nothing charged
    # Nothing booked: the next caller waits exactly as long as on the twin table.
    assert lim.try_acquire(table, 10.0).wait == pytest.approx(lim.try_acquire(other, 10.0).wait)
    # Within the deadline it is granted as before.
    waited = lim.acquire(table, 50.0, deadline=clock.t + 5.0)
    assert 0.0 < waited <= 5.0
