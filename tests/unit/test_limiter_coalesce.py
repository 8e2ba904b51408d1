"""Coalesced feedback: while a table's rate stands at its ceiling, a worker sums the clean
calls it reports and sends them at most every interval; a throttle, a cut, or a flush sends
them at once. The totals stay exact."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_limiter import FakeClock
from worker.limiter import MemoryBucketBackend, RateLimiter


class CountingBackend:
    """Counts the backend calls of each op (a round trip each against Redis)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, float, bool, float]] = []

    def run(
        self,
        table: str,
        op: str,
        params: Any,
        *,
        units: float = 0.0,
        throttled: bool = False,
        charge: float = 0.0,
        tag: int = 0,
        reserve: float = 0.0,
    ) -> Any:
        if op == "feedback":
            self.calls.append((op, units, throttled, charge))
        return self.inner.run(
            table,
            op,
            params,
            units=units,
            throttled=throttled,
            charge=charge,
            tag=tag,
            reserve=reserve,
        )

    def share(self, *args: Any) -> Any:
        return self.inner.share(*args)


TABLE = "t"  # the memory backend: nothing outlives the test


def coalescing(clock: FakeClock) -> tuple[RateLimiter, CountingBackend]:
    """A 1,000 WCU/s limiter that sums clean feedback per 50 ms, and its counted backend."""
    backend = CountingBackend(MemoryBucketBackend(clock))
    return RateLimiter(
        backend,
        clock=clock,
        sleep=clock.sleep,
        capacity=1000.0,
        coalesce_seconds=0.05,
    ), backend


def test_clean_feedback_is_summed_into_one_report_per_interval() -> None:
    clock, table = FakeClock(), TABLE
    lim, backend = coalescing(clock)
    for _ in range(10):  # ten calls within 50 ms, one estimated 25 WCU too low: one report
        lim.acquire(table, 25.0)
        lim.feedback(table, units=25.0, throttled=False)
        clock.t += 0.004
    lim.acquire(table, 10.0)
    lim.feedback(table, units=35.0, throttled=False)
    assert backend.calls == []
    clock.t += 0.02
    lim.acquire(table, 25.0)
    lim.feedback(table, units=25.0, throttled=False)
    assert backend.calls == [("feedback", 310.0, False, 25.0)]
    # Exact all the same: 1000 at first, 285 granted, 25 more consumed, 60 ms of refill.
    assert lim.state(table)["tokens"] == pytest.approx(1000.0 - 285.0 - 25.0 + 60.0)


def test_a_throttle_reports_what_is_pending_first() -> None:
    clock, table = FakeClock(), TABLE
    lim, backend = coalescing(clock)
    lim.acquire(table, 25.0)
    lim.feedback(table, units=25.0, throttled=False)
    lim.acquire(table, 25.0)
    lim.feedback(table, units=0.0, throttled=True)
    assert backend.calls == [("feedback", 25.0, False, 0.0), ("feedback", 0.0, True, -25.0)]
    # The rate is cut below its ceiling now: every clean call is reported at once again.
    assert lim.state(table)["rate"] < 1000.0
    lim.acquire(table, 5.0)
    lim.feedback(table, units=5.0, throttled=False)
    assert backend.calls[-1] == ("feedback", 5.0, False, 0.0) and len(backend.calls) == 3
    lim.flush()
    assert len(backend.calls) == 3


def test_pending_reports_are_flushed_on_demand() -> None:
    clock, table = FakeClock(), TABLE
    lim, backend = coalescing(clock)
    lim.acquire(table, 5.0)
    lim.feedback(table, units=5.0, throttled=False)
    assert backend.calls == []
    lim.flush()
    assert backend.calls == [("feedback", 5.0, False, 0.0)]
