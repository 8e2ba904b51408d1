"""The global adaptive rate limiter: one token bucket per table in Redis, shared by every worker.

Units are write capacity units (WCU): an item write costs ceil(size / 1 KB); rates are WCU/s.
The batch writer calls :meth:`RateLimiter.acquire` with a batch's estimated WCU before sending
it, then :meth:`RateLimiter.feedback` with the WCU DynamoDB reports consumed and whether any of
it was throttled or unprocessed (the ``storage.batch.Pacer`` protocol). Feedback charges the
bucket what was really consumed beyond the estimate (indexes cost extra) and refunds what a
clean call did not use.

Each table's bucket is a Redis hash (``worker.keys.limiter_bucket``) changed atomically by the
one Lua script ``worker/lua/token_bucket.lua``, so all processes on all machines share it; the
script reads Redis ``TIME``, never a caller's clock. Cost: one round trip (EVALSHA, well under a
millisecond on a LAN) per acquire and per feedback, plus about one per caller told to wait. An
idle bucket expires after ``idle_ttl`` seconds; a table that comes back starts optimistic again.

Grants: the bucket holds ``rate * burst_seconds`` WCU. While less than ``AHEAD_SECONDS`` of the
rate is owed, a request is granted whatever its size and the bucket goes into debt; the caller
sleeps until its share is paid. So a batch larger than the bucket (25 items of 400 KB = 10,000
WCU) is served in its turn instead of waiting forever for a full bucket, and the total stays
exact: ``burst + rate * t``. Otherwise nothing is taken and the caller is booked a wake-up one
request after the previous one. Few promises stand at a time, so a cut bites at once.

Adaptation (AIMD on the shared rate, in the same script):

* A throttled or partly refused call **cuts** the rate to ``BETA`` x the WCU/s the table really
  consumed over the last one to two seconds (``FALLBACK_BETA`` x the rate when under
  ``MIN_SPAN_SECONDS`` or nothing was reported), and pauses ``AHEAD_SECONDS``: the table's burst
  is spent. Cutting to the *measured* rate lands near the real capacity in one step. Within
  two windows of a cut, the measure is what the table let through *since that cut* (its burst
  is spent by then, while the windows still hold it): a discovery from 40,000 WCU/s lands in two
  cuts instead of a dozen 10 % steps, which cost ~1.5 s of refused calls.
* At most one cut per ``CUT_WINDOW_SECONDS``: twenty threads reporting one congestion are one
  event, not twenty cuts to the floor. A measured target under ``FALLBACK_BETA`` x the rate cuts
  at once: anchored to consumption, it does not compound, and it ends a 40,000 WCU/s start soon.
* Each clean ``WINDOW_SECONDS`` (consumption, no throttle) **raises** the rate by ``ALPHA`` of
  itself, up to the ceiling: proportional, so regaining a cut takes the same few seconds at
  50 WCU/s as at 40,000 WCU/s (a fixed +10 WCU step would need 100 s to regain 1,000).

Why these constants, against 1,000 WCU/s: a cut lands near 0.9 x ~1,050 (the measure includes
the table's burst); +2 % per clean second passes 1,000 again in ~3 s, overdraws the table's
burst, a few calls come back partly refused, and the ~6 s cycle repeats. The simulation in
``tests/unit/test_limiter.py`` (saturating load, 0.1 s of table burst, 10-30 threads, 10-100 ms
replies, discovery from 40,000 included) measures 98 % of capacity used, 1.7-3.2 % of calls
throttled. ``BETA`` 0.85 or ``ALPHA`` 0.01 throttle less and use less.

Ceiling: ``capacity`` (``DATAFOLD_WRITE_CAPACITY``) when > 0, with cuts still applying below it;
else ``max_capacity``, where discovery starts (optimistic: on-demand tables and DynamoDB Local
never throttle, and there the limiter must cost nothing). The floor is ``min_capacity``. Redis
unreachable raises :class:`~storage.errors.BackendUnavailableError`: never fail open.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from prometheus_client import Counter, Gauge, Histogram

from storage.errors import ConfigError

if TYPE_CHECKING:
    from redis import Redis

    from storage.settings import PipelineConfig

WINDOW_SECONDS = 1.0
"""Measurement window: one clean window raises the rate once."""
CUT_WINDOW_SECONDS = 0.5
"""At most one cut per this span: longer than a round trip, so one congestion is one cut."""
BETA = 0.9
"""Cut to 90 % of the measured consumption: headroom for the table to refill its burst."""
FALLBACK_BETA = 0.7
"""Cut to 70 % of the rate when nothing was measured (the beta of botocore's CUBIC)."""
ALPHA = 0.02
"""Raise 2 % of the rate per clean window: back from a cut in ~3-5 s, yet a small overshoot."""
MIN_SPAN_SECONDS = 0.1
"""Less measured time than this is noise (a reply's latency): use the fallback cut."""
AHEAD_SECONDS = 0.05
"""Grants run at most this far ahead. Promises made before a cut go out at the old rate: ~50 ms
of them costs a few refused calls, not one per waiting thread. Also the pause after a cut."""
RETRY_FLOOR_SECONDS = 0.001
"""A refused caller waits at least this long before asking again: no busy loop on Redis."""
COALESCE_SECONDS = 0.05
"""While a table's rate stands at its ceiling (nothing has cut it: DynamoDB Local, on-demand,
or a configured limit that holds), workers report clean calls at most this often, summed: one
round trip per batch was half the limiter's cost, ~8 % of a worker's CPU (bench/). Once a cut
has happened, every call is reported at once again, so the next cut measures everything (the
other processes' pending reports included) — coalescing there cost ~10 % of utilisation."""
IDLE_TTL_SECONDS = 300.0
"""An untouched bucket expires after 5 minutes; the table then starts optimistic again."""

Op = Literal["acquire", "feedback", "state"]

WAIT_SECONDS = Histogram(
    "datafold_limiter_wait_seconds",
    "Time one acquire waited for write capacity (includes the Redis round trip), by table.",
    ["table"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
RATE_WCU = Gauge(
    "datafold_limiter_rate_wcu",
    "Current shared write rate of a table's limiter, WCU per second.",
    ["table"],
    # Under the prefork pool (multiprocess mode) every process sees the same shared rate:
    # serve the latest value, not one series per pid.
    multiprocess_mode="mostrecent",
)
THROTTLE_CUTS = Counter(
    "datafold_limiter_throttle_cuts_total",
    "Multiplicative cuts of a table's shared rate after throttled or partly refused writes.",
    ["table"],
)


@dataclass(frozen=True, slots=True)
class BucketParams:
    """What every script call needs besides the op: limits (WCU/s) and the adaptive constants."""

    ceiling: float
    floor: float
    burst_seconds: float = 1.0
    ttl_seconds: float = IDLE_TTL_SECONDS
    window: float = WINDOW_SECONDS
    cut_window: float = CUT_WINDOW_SECONDS
    beta: float = BETA
    fallback_beta: float = FALLBACK_BETA
    alpha: float = ALPHA
    min_span: float = MIN_SPAN_SECONDS
    ahead: float = AHEAD_SECONDS

    def argv(self) -> list[str]:
        """ARGV[6..16] of the Lua script, in its order."""
        return [
            repr(self.ceiling),
            repr(self.floor),
            repr(self.burst_seconds),
            str(max(1, round(self.ttl_seconds * 1000))),
            repr(self.window),
            repr(self.cut_window),
            repr(self.beta),
            repr(self.fallback_beta),
            repr(self.alpha),
            repr(self.min_span),
            repr(self.ahead),
        ]


@dataclass(frozen=True, slots=True)
class BucketReply:
    """One script answer. ``tokens`` < 0 is debt being paid off by sleeping callers.

    For acquire: ``granted`` means the units are charged, spend them after ``wait`` seconds;
    otherwise nothing was charged, ask again after ``wait`` seconds.
    """

    wait: float
    rate: float
    tokens: float
    cut: bool
    window_units: float
    prev_units: float
    prev_span: float
    last_cut: float
    granted: bool = False

    @classmethod
    def parse(cls, raw: Sequence[str | bytes]) -> BucketReply:
        v = [float(x) for x in raw]
        return cls(v[0], v[1], v[2], v[3] != 0.0, v[4], v[5], v[6], v[7], v[8] != 0.0)


@dataclass(frozen=True, slots=True)
class Grant:
    """Answer of :meth:`RateLimiter.try_acquire`: charged or not, and how long to wait."""

    granted: bool
    wait: float


class BucketBackend(Protocol):
    """Where buckets live: ``worker.limiter_redis`` (shared by every process, production) or
    ``worker.limiter_memory`` (one process: tests, local runs)."""

    def run(
        self,
        table: str,
        op: Op,
        params: BucketParams,
        *,
        units: float = 0.0,
        throttled: bool = False,
        charge: float = 0.0,
    ) -> BucketReply:
        """Apply ``op`` to the table's bucket atomically and return its state after it."""
        ...


class RateLimiter:
    """The global adaptive limiter (a ``storage.batch.Pacer``); thread- and process-safe.

    ``capacity`` > 0 is a fixed ceiling in WCU/s; 0 means discover, starting at
    ``max_capacity``. The rate never goes below ``min_capacity``. ``burst_seconds`` of the
    current rate may be spent at once. ``sleep`` and ``clock`` are injected for tests;
    ``backend`` replaces the Redis backend built from ``redis_client``.
    ``coalesce_seconds`` > 0 sums clean feedback per table and reports it at most that often
    (workers use :data:`COALESCE_SECONDS`); 0 reports every call at once.
    """

    def __init__(
        self,
        redis_client: Redis[Any] | None,
        *,
        capacity: float = 0.0,
        max_capacity: float = 40000.0,
        min_capacity: float = 25.0,
        burst_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        idle_ttl: float = IDLE_TTL_SECONDS,
        backend: BucketBackend | None = None,
        coalesce_seconds: float = 0.0,
    ) -> None:
        if not capacity >= 0:
            raise ConfigError(f"limiter capacity must be 0 (adaptive) or more, not {capacity}")
        for name, value in (
            ("max_capacity", max_capacity),
            ("min_capacity", min_capacity),
            ("burst_seconds", burst_seconds),
            ("idle_ttl", idle_ttl),
        ):
            if not value > 0:
                raise ConfigError(f"limiter {name} must be greater than 0, not {value}")
        if backend is None:
            if redis_client is None:
                raise ValueError("RateLimiter needs a redis_client or a backend")
            from worker.limiter_redis import RedisBucketBackend  # it imports this module

            backend = RedisBucketBackend(redis_client)
        ceiling = capacity if capacity > 0 else max_capacity
        self.params = BucketParams(
            ceiling=ceiling,
            floor=min(min_capacity, ceiling),
            burst_seconds=burst_seconds,
            ttl_seconds=idle_ttl,
        )
        self._backend = backend
        self._sleep = sleep
        self._clock = clock
        self._granted = threading.local()  # table -> WCU of this thread's last grant
        self._coalesce = coalesce_seconds
        self._pending: dict[str, list[float]] = {}  # table -> [units, charge, first report]
        self._rates: dict[str, float] = {}  # table -> shared rate in the last reply
        self._pending_lock = threading.Lock()

    @classmethod
    def from_config(
        cls, redis_client: Redis[Any], config: PipelineConfig, **kwargs: Any
    ) -> RateLimiter:
        """Build from ``DATAFOLD_WRITE_CAPACITY`` / ``_MAX_`` / ``_MIN_WRITE_CAPACITY``."""
        return cls(
            redis_client,
            capacity=config.write_capacity,
            max_capacity=config.max_write_capacity,
            min_capacity=config.min_write_capacity,
            **kwargs,
        )

    def __repr__(self) -> str:
        p = self.params
        return (
            f"RateLimiter(ceiling={p.ceiling} WCU/s, floor={p.floor} WCU/s, "
            f"burst={p.burst_seconds}s)"
        )

    def acquire(self, table: str, units: float) -> float:
        """Block until ``units`` WCU may be spent on ``table``; return the seconds waited.

        One Redis round trip when capacity is free; under contention one more per retry (each
        after the wait the script computed). Raises :class:`BackendUnavailableError` when
        Redis cannot be reached.
        """
        if not units > 0:
            if units == 0:
                return 0.0
            raise ValueError(f"units must be 0 or more, not {units}")
        start = self._clock()
        while True:
            grant = self.try_acquire(table, units)
            if grant.wait > 0:
                self._sleep(grant.wait)
            if grant.granted:
                break
        self._granted.__dict__[table] = units
        waited = max(0.0, self._clock() - start)
        WAIT_SECONDS.labels(table).observe(waited)
        return waited

    def try_acquire(self, table: str, units: float) -> Grant:
        """One non-blocking step of :meth:`acquire` (for event loops and simulations).

        ``Grant(True, w)``: the units are charged, spend them after ``w`` seconds.
        ``Grant(False, w)``: nothing charged, try again after ``w`` seconds.
        """
        reply = self._backend.run(table, "acquire", self.params, units=units)
        self._rates[table] = reply.rate
        RATE_WCU.labels(table).set(reply.rate)
        if reply.granted:
            return Grant(True, max(0.0, reply.wait))
        return Grant(False, max(RETRY_FLOOR_SECONDS, reply.wait))

    def feedback(
        self, table: str, *, units: float, throttled: bool, charged: float | None = None
    ) -> None:
        """Report the WCU a call consumed and whether it was throttled or partly refused.

        The bucket is charged the difference between ``units`` (really consumed: indexes cost
        extra) and ``charged``, what was acquired for that call: by default this thread's last
        acquire on ``table``. A throttle may cut the shared rate; clean consumption lets it
        rise. Raises :class:`BackendUnavailableError` when Redis cannot be reached.
        """
        if not units >= 0:
            raise ValueError(f"units must be 0 or more, not {units}")
        granted = self._granted.__dict__.pop(table, 0.0) if charged is None else charged
        if units == 0 and granted == 0 and not throttled:
            return
        if throttled or self._coalesce <= 0 or self._rates.get(table, 0.0) < self.params.ceiling:
            self.flush(table)
        else:
            now = self._clock()
            with self._pending_lock:
                p = self._pending.setdefault(table, [0.0, 0.0, now])
                p[0] += units
                p[1] += units - granted
                if now - p[2] < self._coalesce:
                    return
                del self._pending[table]
            units, granted = p[0], p[0] - p[1]
        self._report(table, units, throttled, units - granted)

    def flush(self, table: str | None = None) -> None:
        """Report the clean consumption still pending (of ``table``, or of every table)."""
        with self._pending_lock:
            names = list(self._pending) if table is None else [table]
            due = [(t, self._pending.pop(t)) for t in names if t in self._pending]
        for t, (units, charge, _) in due:
            self._report(t, units, False, charge)

    def _report(self, table: str, units: float, throttled: bool, charge: float) -> None:
        reply = self._backend.run(
            table, "feedback", self.params, units=units, throttled=throttled, charge=charge
        )
        self._rates[table] = reply.rate
        RATE_WCU.labels(table).set(reply.rate)
        if reply.cut:
            THROTTLE_CUTS.labels(table).inc()

    def current_rate(self, table: str) -> float:
        """The table's shared rate now, WCU/s (the ceiling for a table never seen)."""
        self.flush(table)
        return self._backend.run(table, "state", self.params).rate

    def state(self, table: str) -> dict[str, float]:
        """The table's bucket now, for metrics and tests (changes nothing but what is pending)."""
        self.flush(table)
        r = self._backend.run(table, "state", self.params)
        return {
            "rate": r.rate,
            "tokens": r.tokens,
            "bucket": r.rate * self.params.burst_seconds,
            "ceiling": self.params.ceiling,
            "floor": self.params.floor,
            "window_units": r.window_units,
            "prev_units": r.prev_units,
            "prev_span": r.prev_span,
            "last_cut": r.last_cut,
        }
