"""The global adaptive rate limiter: one token bucket per table, shared by every worker, and
one per partition key that DynamoDB refused (:mod:`.partitions`).

The batch writer calls :meth:`RateLimiter.acquire` with a batch's estimated WCU before sending
it, then :meth:`RateLimiter.feedback` with the WCU DynamoDB reports consumed and whether any of
it was throttled or unprocessed (the ``storage.batch.Pacer`` protocol). Feedback charges the
bucket what was really consumed beyond the estimate (indexes cost extra) and refunds what a
clean call did not use. A throttled or partly refused call cuts the table's shared rate to what
the table really let through; each clean window raises it a little (AIMD, in the bucket's one
atomic step: ``token_bucket.lua``). A request larger than the bucket is granted into debt and
paid off by sleeping, so a 10,000 WCU batch is served in its turn instead of waiting forever.

Ceiling: ``capacity`` (``DATAFOLD_WRITE_CAPACITY``) when > 0, with cuts still applying below it;
else ``max_capacity``, where discovery starts (optimistic: on-demand tables and DynamoDB Local
never throttle, and there the limiter must cost nothing). The floor is ``min_capacity``. A
backend that cannot reach Redis raises :class:`~storage.errors.BackendUnavailableError`: the
limiter never fails open. ``docs/design.md`` ("The rate limiter") has the whole design.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline.config import PipelineConfig
from storage.errors import ConfigError, StoppedError
from worker.limiter import metrics
from worker.limiter.bucket import (
    IDLE_TTL_SECONDS,
    RETRY_FLOOR_SECONDS,
    BucketBackend,
    BucketParams,
    Grant,
)
from worker.limiter.partitions import HotPartitions, Scope, bucket_name, label, scope_of, tag_of


class RateLimiter:
    """The global adaptive limiter (a ``storage.batch.Pacer``); thread- and process-safe.

    ``capacity`` > 0 is a fixed ceiling in WCU/s; 0 means discover, starting at
    ``max_capacity``. The rate never goes below ``min_capacity``. ``burst_seconds`` of the
    current rate may be spent at once. ``sleep`` and ``clock`` are injected for tests;
    ``backend`` holds the buckets (:mod:`worker.limiter.redis_backend` for a fleet).
    ``coalesce_seconds`` > 0 sums clean feedback per table and reports it at most that often
    (workers use :data:`COALESCE_SECONDS`); 0 reports every call at once.
    """

    def __init__(
        self,
        backend: BucketBackend,
        *,
        capacity: float = 0.0,
        max_capacity: float = 40000.0,
        min_capacity: float = 25.0,
        burst_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        idle_ttl: float = IDLE_TTL_SECONDS,
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
        self.hot = HotPartitions(idle_ttl, clock)

    @classmethod
    def from_config(
        cls, backend: BucketBackend, config: PipelineConfig, **kwargs: Any
    ) -> RateLimiter:
        """Build from ``DATAFOLD_WRITE_CAPACITY`` / ``_MAX_`` / ``_MIN_WRITE_CAPACITY``."""
        return cls(
            backend,
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

    def acquire(
        self,
        table: str,
        units: float,
        deadline: float | None = None,
        partition: str | None = None,
    ) -> float:
        """Block until ``units`` WCU may be spent on ``table`` (and on ``partition``, the
        partition key every item of the call shares, when that one was refused lately: it
        has a bucket of its own); return the seconds waited.

        One Redis round trip when capacity is free; under contention one more per retry (each
        after the wait the script computed). With ``deadline`` (this limiter's clock), a wait
        that would end past it is not begun (:class:`StoppedError`): nothing is charged or
        booked for it, so the capacity goes to callers that can use it in time.
        Raises :class:`BackendUnavailableError` when Redis cannot be reached.
        """
        if not units > 0:
            if units == 0:
                return 0.0
            raise ValueError(f"units must be 0 or more, not {units}")
        if partition is None or (table, tag := tag_of(partition)) not in self.hot:
            return self._acquire(table, units, deadline, table)
        name = bucket_name(table, tag)
        waited = self._acquire(table, units, deadline, name)
        try:
            return waited + self._acquire(table, units, deadline, table)
        except StoppedError:  # nothing is sent: the partition's units go back
            self._granted.__dict__.pop(name, None)
            self._backend.run(name, "feedback", self.params, charge=-units)
            raise

    def _acquire(self, table: str, units: float, deadline: float | None, bucket: str) -> float:
        start = self._clock()
        while True:
            left = None if deadline is None else deadline - self._clock()
            grant = self._try(table, bucket, units, left)
            if left is not None and not grant.granted and grant.wait > left:
                raise StoppedError(
                    f"no capacity for {units:g} WCU before the deadline "
                    f"(next in {grant.wait:.1f}s)",
                    operation="RateLimiter.acquire",
                    table=table,
                    code="CapacityDeadline",
                )
            if grant.wait > 0:
                self._sleep(grant.wait)
            if grant.granted:
                break
        self._granted.__dict__[bucket] = units
        waited = max(0.0, self._clock() - start)
        metrics.WAIT_SECONDS.labels(table).observe(waited)
        return waited

    def try_acquire(self, table: str, units: float, max_wait: float | None = None) -> Grant:
        """One non-blocking step of :meth:`acquire` (for event loops and simulations).

        ``Grant(True, w)``: the units are charged, spend them after ``w`` seconds.
        ``Grant(False, w)``: nothing charged, try again after ``w`` seconds. With ``max_wait``,
        a grant or a booking that would wait longer is not made: ``Grant(False, w > max_wait)``
        and the bucket is left as it was.
        """
        return self._try(table, table, units, max_wait)

    def _try(self, table: str, bucket: str, units: float, max_wait: float | None) -> Grant:
        limit = -1.0 if max_wait is None else max(0.0, max_wait)
        reply = self._backend.run(bucket, "acquire", self.params, units=units, charge=limit)
        if bucket == table:
            if table not in self._rates:  # a table's series exist from its first call, at 0
                metrics.THROTTLE_CUTS.labels(table)
                metrics.HOT_PARTITIONS.labels(table).set(0)
            self._rates[table] = reply.rate
            metrics.RATE_WCU.labels(table).set(reply.rate)
        if reply.granted:
            return Grant(True, max(0.0, reply.wait))
        return Grant(False, max(RETRY_FLOOR_SECONDS, reply.wait))

    def feedback(
        self,
        table: str,
        *,
        units: float,
        throttled: bool,
        charged: float | None = None,
        partition: str | None = None,
        reasons: tuple[str, ...] = (),
    ) -> None:
        """Report the WCU a call consumed and whether it was throttled or partly refused.

        The bucket is charged the difference between ``units`` (really consumed: indexes cost
        extra) and ``charged``, what was acquired for that call: by default this thread's last
        acquire on ``table``. A throttle may cut the shared rate; clean consumption lets it
        rise. With ``partition`` (the key all items of the call share) a refusal is attributed
        by its ``reasons`` (:mod:`.partitions`). Raises :class:`BackendUnavailableError` when
        Redis cannot be reached.
        """
        if not units >= 0:
            raise ValueError(f"units must be 0 or more, not {units}")
        tag = 0
        if partition is not None:
            tag = self._partition_feedback(table, tag_of(partition), units, throttled, reasons)
            throttled = throttled and tag >= 0  # a key range's refusal is not the table's
        self._table_feedback(table, units, throttled, charged, tag)

    def _partition_feedback(
        self, table: str, tag: int, units: float, throttled: bool, reasons: tuple[str, ...]
    ) -> int:
        """Feed a hot partition's bucket; the tag the table's feedback carries: 0 none, the
        partition's for a refusal without a reason, its negative for one naming its key range."""
        scope = scope_of(reasons) if throttled else None
        if scope in (Scope.PARTITION, Scope.UNKNOWN):
            self.hot.refused(table, tag)
        elif (table, tag) not in self.hot:
            return 0
        name = bucket_name(table, tag)
        cut = scope in (Scope.PARTITION, Scope.UNKNOWN)
        granted = self._granted.__dict__.pop(name, 0.0)
        reply = self._backend.run(
            name, "feedback", self.params, units=units, throttled=cut, charge=units - granted
        )
        metrics.PARTITION_RATE.labels(table, label(tag)).set(reply.rate)
        if reply.cut:
            metrics.PARTITION_CUTS.labels(table, label(tag)).inc()
        if not throttled and reply.rate >= self.params.ceiling:
            self.hot.recovered(table, tag)
        if scope is Scope.PARTITION:
            return -tag
        return tag if scope is Scope.UNKNOWN else 0

    def _table_feedback(
        self, table: str, units: float, throttled: bool, charged: float | None, tag: int
    ) -> None:
        granted = self._granted.__dict__.pop(table, 0.0) if charged is None else charged
        if units == 0 and granted == 0 and not throttled and not tag:
            return
        urgent = throttled or tag != 0 or self._coalesce <= 0
        if urgent or self._rates.get(table, 0.0) < self.params.ceiling:
            self.flush(table)
            self._report(table, units, throttled, units - granted, tag)
            return
        now = self._clock()
        with self._pending_lock:
            p = self._pending.setdefault(table, [0.0, 0.0, now])
            p[0] += units
            p[1] += units - granted
            if now - p[2] < self._coalesce:
                return
            del self._pending[table]
        self._report(table, p[0], False, p[1])

    def flush(self, table: str | None = None) -> None:
        """Report the clean consumption still pending (of ``table``, or of every table)."""
        with self._pending_lock:
            names = list(self._pending) if table is None else [table]
            due = [(t, self._pending.pop(t)) for t in names if t in self._pending]
        for t, (units, charge, _) in due:
            self._report(t, units, False, charge)

    def _report(
        self, table: str, units: float, throttled: bool, charge: float, tag: int = 0
    ) -> None:
        reply = self._backend.run(
            table,
            "feedback",
            self.params,
            units=units,
            throttled=throttled,
            charge=charge,
            tag=tag,
        )
        self._rates[table] = reply.rate
        metrics.RATE_WCU.labels(table).set(reply.rate)
        if reply.cut:
            metrics.THROTTLE_CUTS.labels(table).inc()

    def current_rate(self, table: str) -> float:
        """The table's shared rate now, WCU/s (the ceiling for a table never seen)."""
        self.flush(table)
        return self._backend.run(table, "state", self.params).rate

    def state(self, table: str) -> dict[str, float]:
        """The table's bucket now, for metrics and tests (changes nothing but what is pending)."""
        self.flush(table)
        r, p = self._backend.run(table, "state", self.params), self.params
        return dict(
            rate=r.rate, tokens=r.tokens, bucket=r.rate * p.burst_seconds, ceiling=p.ceiling,
            floor=p.floor, window_units=r.window_units, prev_units=r.prev_units,
            prev_span=r.prev_span, last_cut=r.last_cut,
        )  # fmt: skip
