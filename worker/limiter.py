"""The global adaptive rate limiter: one token bucket per table in Redis, shared by every worker.

Units: write capacity units (WCU). Writing an item costs ceil(size / 1 KB) WCU; rates are WCU
per second. The batch writer calls :meth:`RateLimiter.acquire` before each BatchWriteItem with
the batch's estimated WCU, then :meth:`RateLimiter.feedback` with the WCU DynamoDB reports as
consumed and whether any of it was throttled or came back unprocessed (``storage.batch.Pacer``).

One bucket per table lives in a Redis hash (``worker.keys.limiter_bucket``), updated atomically
by the one Lua script ``worker/lua/token_bucket.lua``, so every process on every machine draws
from the same bucket. The script reads Redis ``TIME``: no caller's clock is trusted. Cost: one
Redis round trip (EVALSHA, well under a millisecond on a LAN) per acquire and per feedback.
An idle bucket expires after ``idle_ttl`` seconds, so old tables don't pile up; a table that
comes back starts optimistic again.

Acquire reserves: it takes the units at once, letting the bucket go into debt, and sleeps until
the debt is paid. Requests are therefore served in the order they reach Redis, and a batch
larger than the whole bucket (25 items of 400 KB = 10,000 WCU) waits its turn instead of
waiting forever for a full bucket. The bucket holds ``rate * burst_seconds`` WCU.

The rate adapts, shared by all processes (AIMD on the rate, computed in the script):

* A throttled or partly refused call **cuts** the rate to ``BETA`` x the WCU/s the table really
  consumed over the last one to two seconds (the previous window plus the current one), and
  empties the bucket: the table's own burst is exhausted, so sending ours would only be refused.
  Cutting to the *measured* rate rather than the current one lands near the table's real
  capacity in one step, even from a 40,000 WCU/s start.
* At most one cut per ``CUT_WINDOW_SECONDS``: twenty threads reporting the same congestion
  within one round trip are one event, not twenty cuts down to the floor.
* Each clean window of ``WINDOW_SECONDS`` (it consumed something and saw no throttle) **raises**
  the rate by ``ALPHA`` of itself, up to the ceiling. The step is proportional so regaining the
  10 % a cut took costs the same few seconds at 50 WCU/s as at 40,000 WCU/s.

The constants, against a table of 1,000 WCU/s: a cut lands near 900; +3 % per clean second
climbs back to 1,000 in ~4 s and then overdraws the table's small burst for a few seconds, a few
calls are refused, and the cycle (~8 s) repeats. The rate averages ~95 % of capacity with ~1 %
of calls throttled (the simulation in ``tests/unit/test_limiter.py`` measures it). A larger
``BETA`` or ``ALPHA`` trades more throttles for more throughput.

Ceiling: ``capacity`` (``DATAFOLD_WRITE_CAPACITY``) when > 0, a fixed ceiling below which the
cuts still apply; else ``max_capacity``, where discovery starts (optimistic: an on-demand table
or DynamoDB Local never throttles, and there the limiter must not cost throughput). The floor is
``min_capacity``. If Redis cannot be reached, :class:`~storage.errors.BackendUnavailableError`
is raised: the limiter never fails open.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from prometheus_client import Counter, Gauge, Histogram
from redis.exceptions import RedisError

from storage.errors import BackendUnavailableError, ConfigError
from worker import keys

if TYPE_CHECKING:
    from redis import Redis

    from storage.settings import PipelineConfig

WINDOW_SECONDS = 1.0
"""Measurement window: one "clean second" raises the rate once."""
CUT_WINDOW_SECONDS = 0.5
"""At most one cut per this span: longer than a round trip, so one congestion is one cut."""
BETA = 0.9
"""Cut to 90 % of the measured consumption: 10 % headroom lets the table refill its burst."""
FALLBACK_BETA = 0.7
"""Cut to 70 % of the current rate when nothing was measured (botocore's CUBIC beta)."""
ALPHA = 0.03
"""Raise 3 % of the rate per clean window: back from a cut in ~4 s, gently enough that the
overshoot past the table's capacity stays small (few refused calls)."""
MIN_SPAN_SECONDS = 0.02
"""Below this much measured time the consumption rate is noise: use the fallback cut."""
AHEAD_SECONDS = 0.05
"""Grants may run this far ahead of the bucket (in debt); later callers ask again when it
has drained. Promises made before a cut still go out at the old rate, so keeping them to ~50 ms
keeps the refusals after a cut to a call or two instead of one per waiting thread."""
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
        """ARGV[5..15] of the Lua script, in its order."""
        return [repr(self.ceiling), repr(self.floor), repr(self.burst_seconds),
                str(max(1, round(self.ttl_seconds * 1000))), repr(self.window),
                repr(self.cut_window), repr(self.beta), repr(self.fallback_beta),
                repr(self.alpha), repr(self.min_span), repr(self.ahead)]


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
    """Where buckets live. ``RedisBucketBackend`` (shared) or ``limiter_memory`` (one process)."""

    def run(self, table: str, op: Op, params: BucketParams, *, units: float = 0.0,
            throttled: bool = False) -> BucketReply:
        """Apply ``op`` to the table's bucket atomically and return its state after it."""
        ...


_SCRIPT = (Path(__file__).parent / "lua" / "token_bucket.lua").read_text(encoding="utf-8")


class RedisBucketBackend:
    """The buckets in Redis, one hash per table, changed only by the Lua script.

    ``now`` exists for tests only: it replaces Redis ``TIME`` so the script itself can run
    under a fake clock. Leave it ``None`` in production.
    """

    def __init__(self, client: Redis[Any], *, now: Callable[[], float] | None = None) -> None:
        self._client = client
        self._script = client.register_script(_SCRIPT)
        self._now = now

    def run(self, table: str, op: Op, params: BucketParams, *, units: float = 0.0,
            throttled: bool = False) -> BucketReply:
        now = "" if self._now is None else repr(self._now())
        args = [op, now, repr(float(units)), "1" if throttled else "0", *params.argv()]
        try:
            raw = self._script(keys=[keys.limiter_bucket(table)], args=args)
        except RedisError as exc:
            raise BackendUnavailableError(
                f"rate limiter cannot use Redis at {self.where} ({type(exc).__name__}); "
                "refusing to write without the limit",
                operation=f"RateLimiter.{op}", table=table,
            ) from exc
        return BucketReply.parse(raw)

    @property
    def where(self) -> str:
        """host:port/db of the client, never its password."""
        kw = self._client.connection_pool.connection_kwargs
        if "path" in kw:
            return f"unix:{kw['path']}"
        return f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"


class RateLimiter:
    """The global adaptive limiter (a ``storage.batch.Pacer``); thread- and process-safe.

    ``capacity`` > 0 is a fixed ceiling in WCU/s; 0 means discover, starting at
    ``max_capacity``. The rate never goes below ``min_capacity``. ``burst_seconds`` of the
    current rate may be spent at once. ``sleep`` and ``clock`` are injected for tests;
    ``backend`` replaces the Redis backend built from ``redis_client``.
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
    ) -> None:
        if not capacity >= 0:
            raise ConfigError(f"limiter capacity must be 0 (adaptive) or more, not {capacity}")
        for name, value in (("max_capacity", max_capacity), ("min_capacity", min_capacity),
                            ("burst_seconds", burst_seconds), ("idle_ttl", idle_ttl)):
            if not value > 0:
                raise ConfigError(f"limiter {name} must be greater than 0, not {value}")
        if backend is None:
            if redis_client is None:
                raise ValueError("RateLimiter needs a redis_client or a backend")
            backend = RedisBucketBackend(redis_client)
        ceiling = capacity if capacity > 0 else max_capacity
        self.params = BucketParams(ceiling=ceiling, floor=min(min_capacity, ceiling),
                                   burst_seconds=burst_seconds, ttl_seconds=idle_ttl)
        self._backend = backend
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_config(cls, redis_client: Redis[Any], config: PipelineConfig,
                    **kwargs: Any) -> RateLimiter:
        """Build from ``DATAFOLD_WRITE_CAPACITY`` / ``_MAX_`` / ``_MIN_WRITE_CAPACITY``."""
        return cls(redis_client, capacity=config.write_capacity,
                   max_capacity=config.max_write_capacity,
                   min_capacity=config.min_write_capacity, **kwargs)

    def __repr__(self) -> str:
        p = self.params
        return (f"RateLimiter(ceiling={p.ceiling} WCU/s, floor={p.floor} WCU/s, "
                f"burst={p.burst_seconds}s)")

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
        waited = max(0.0, self._clock() - start)
        WAIT_SECONDS.labels(table).observe(waited)
        return waited

    def try_acquire(self, table: str, units: float) -> Grant:
        """One non-blocking step of :meth:`acquire` (for event loops and simulations).

        ``Grant(True, w)``: the units are charged, spend them after ``w`` seconds.
        ``Grant(False, w)``: nothing charged, try again after ``w`` seconds.
        """
        reply = self._backend.run(table, "acquire", self.params, units=units)
        RATE_WCU.labels(table).set(reply.rate)
        return Grant(reply.granted, max(0.0, reply.wait))

    def feedback(self, table: str, *, units: float, throttled: bool) -> None:
        """Report the WCU a call consumed and whether it was throttled or partly refused.

        A throttle may cut the shared rate; clean consumption lets it rise again. Raises
        :class:`BackendUnavailableError` when Redis cannot be reached.
        """
        if not units >= 0:
            raise ValueError(f"units must be 0 or more, not {units}")
        if units == 0 and not throttled:
            return
        reply = self._backend.run(table, "feedback", self.params, units=units,
                                  throttled=throttled)
        RATE_WCU.labels(table).set(reply.rate)
        if reply.cut:
            THROTTLE_CUTS.labels(table).inc()

    def current_rate(self, table: str) -> float:
        """The table's shared rate now, WCU/s (the ceiling for a table never seen)."""
        return self._backend.run(table, "state", self.params).rate

    def state(self, table: str) -> dict[str, float]:
        """The table's bucket now, for metrics and tests (reads, changes nothing)."""
        r = self._backend.run(table, "state", self.params)
        return {"rate": r.rate, "tokens": r.tokens, "bucket": r.rate * self.params.burst_seconds,
                "ceiling": self.params.ceiling, "floor": self.params.floor,
                "window_units": r.window_units, "prev_units": r.prev_units,
                "prev_span": r.prev_span, "last_cut": r.last_cut}
