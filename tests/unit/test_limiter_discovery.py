"""Robust discovery and fast recovery (both bucket backends): a measure rests on enough replies
and leaves out the time without any, and far below what the table was seen to take the rate
returns in a few clean windows."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.unit.test_limiter import FakeClock, clock, consume, make, redis_db, table
from worker.limiter import RateLimiter

__all__ = ["clock", "make", "redis_db", "table"]  # fixtures shared with test_limiter


def test_a_pause_in_the_replies_does_not_make_a_measure_read_low(
    make: Callable[..., RateLimiter], clock: FakeClock, table: str
) -> None:
    # The table takes 1,000 WCU/s; every writer then backs off for 0.7 s (no call, no reply)
    # before the refusal. That pause is neither taken nor refused: counting it made the
    # measure read 537 WCU/s, and the cut land at 483.
    lim = make(capacity=0.0, max_capacity=40_000.0)
    consume(lim, clock, table, 1000.0, 0.5, step=0.01)
    clock.t += 0.7
    consume(lim, clock, table, 1000.0, 0.3, step=0.01)
    lim.feedback(table, units=0.0, throttled=True)
    assert lim.current_rate(table) >= 0.8 * 1000.0  # 0.9 x (800 WCU in 0.9 s less a lull)


def test_far_below_the_peak_each_clean_window_halves_the_way_back(
    make: Callable[..., RateLimiter], clock: FakeClock, table: str
) -> None:
    # The table took 1,000 WCU/s cleanly; a refusal while the load sent only 300 WCU/s cut
    # the rate to 270. Once refusals stop, each clean window closes half the gap to 0.9 x that
    # peak (at most +50 %): over 0.85 of it is back in four windows (raises doubling from 2 %
    # took seven).
    lim = make(capacity=0.0, max_capacity=40_000.0)
    consume(lim, clock, table, 1000.0, 3.0, step=0.01)
    consume(lim, clock, table, 300.0, 2.0, step=0.01)
    lim.feedback(table, units=0.0, throttled=True)
    assert lim.current_rate(table) == pytest.approx(270.0, rel=0.01)
    consume(lim, clock, table, lim.current_rate(table), 1.0, step=0.01)  # the cut's window
    for _ in range(4):
        consume(lim, clock, table, lim.current_rate(table), 1.0, step=0.01)
    assert lim.current_rate(table) >= 0.85 * 1000.0
