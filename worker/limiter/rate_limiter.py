"""The global adaptive rate limiter: one token bucket per table shared by every worker, one per
partition key DynamoDB refused (:mod:`.partitions`), and fair shares by user (:mod:`.shares`).

Callers acquire a batch's estimated WCU before sending it and report what was consumed and
whether any was refused (the ``storage.pacer.Pacer`` protocol). Refusals cut the shared rate to
what the table let through, clean windows raise it (AIMD, one atomic step: ``token_bucket.lua``).
Ceiling: ``capacity`` when > 0, else ``max_capacity``, where discovery starts (DynamoDB Local
and on-demand tables never throttle: there it must cost nothing); floor: ``min_capacity``. It
never fails open (:class:`~storage.errors.BackendUnavailableError`). ``docs/design.md``, "The
rate limiter", has the whole design.
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
    BucketParams,
    Grant,
)
from worker.limiter.partitions import HotPartitions, bucket_name, tag_of
from worker.limiter.shares import RESERVE_SECONDS, FairShares, LimiterBackend, ShareParams


class RateLimiter:
    """The global adaptive limiter (a ``storage.pacer.Pacer``); thread- and process-safe.

    ``capacity`` > 0 is a fixed ceiling in WCU/s; 0: discover from ``max_capacity``, never
    below ``min_capacity``. ``burst_seconds`` of the rate may be spent at once. ``backend``
    holds buckets and shares (:mod:`.redis_backend` for a fleet). ``coalesce_seconds`` > 0 sums
    clean feedback per table, reported at most that often (workers: :data:`COALESCE_SECONDS`).
    ``partitions=False``: one bucket per table, no shares. ``sleep``/``clock``: for tests.
    """

    def __init__(
        self,
        backend: LimiterBackend,
        *,
        capacity: float = 0.0,
        max_capacity: float = 40000.0,
        min_capacity: float = 25.0,
        burst_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        idle_ttl: float = IDLE_TTL_SECONDS,
        coalesce_seconds: float = 0.0,
        partitions: bool = True,
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
        self.partitions = partitions
        self.shares = FairShares(backend, ShareParams(ttl_seconds=idle_ttl), sleep, clock)

    @classmethod
    def from_config(
        cls, backend: LimiterBackend, config: PipelineConfig, **kwargs: Any
    ) -> RateLimiter:
        """Build from ``DATAFOLD_WRITE_CAPACITY`` / ``_MAX_`` / ``_MIN_WRITE_CAPACITY``."""
        return cls(
            backend,
            capacity=config.write_capacity,
            max_capacity=config.max_write_capacity,
            min_capacity=config.min_write_capacity,
            partitions=config.limit_partitions,
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
        *,
        priority: bool = False,
        admitted: bool = False,
    ) -> float:
        """Block until ``units`` WCU may be spent on ``table`` (and on ``partition``, the
        partition key every item of the call shares — the user — by its fair share while the
        table is the bottleneck, and by its own bucket when it was refused lately); return the
        seconds waited. ``priority``: a single write, ahead of the bulk bookings
        (:mod:`.shares`); ``admitted``: :meth:`admit` took the share already. With
        ``partitions=False`` a table has one bucket, nothing more. One Redis round trip when
        capacity is free. A wait that would end past ``deadline`` (this limiter's clock) is not
        begun (:class:`StoppedError`): nothing is charged or booked for it."""
        if units == 0 or (priority and not self.partitions):
            return 0.0
        if not units > 0:
            raise ValueError(f"units must be 0 or more, not {units}")
        if priority:
            return self._acquire(table, units, deadline, table, RESERVE_SECONDS)
        tag = tag_of(partition) if partition is not None and self.partitions else 0
        rate = self._rates.get(table, self.params.ceiling)
        shared = tag != 0 and not admitted and self.shares.contended(table)
        waited = self.shares.admit(table, tag, units, rate, deadline) if shared else 0.0
        name = bucket_name(table, tag) if tag and (table, tag) in self.hot else None
        took = False  # the partition's bucket, by this call
        try:
            if name is not None:
                waited += self._acquire(table, units, deadline, name)
                took = True
            at_table = self._acquire(table, units, deadline, table)
            if tag:  # beyond the ahead margin and its own units' turn: held behind others
                self.shares.pressed(table, tag, at_table - self.params.ahead - units / rate)
            return waited + at_table
        except StoppedError:  # nothing is sent: the share's and the partition's units go back
            if shared:
                self.shares.refund(table, tag, units, rate)
            if took and self._granted.__dict__.pop(str(name), None) is not None:
                self._backend.run(str(name), "feedback", self.params, charge=-units)
            raise

    def admit(
        self, table: str, units: float, deadline: float | None, partition: str | None
    ) -> float:
        """Take ``units`` of ``partition``'s fair share while the table is the bottleneck, in
        the caller's thread, before its batch joins threads other users share (the
        ``storage.pacer.Pacer`` protocol); the seconds waited."""
        if partition is None or not self.partitions:
            return 0.0
        rate = self._rates.get(table, self.params.ceiling)
        return self.shares.take(table, tag_of(partition), units, rate, deadline)

    def _acquire(
        self, table: str, units: float, deadline: float | None, bucket: str, reserve: float = 0.0
    ) -> float:
        start = self._clock()
        while True:
            left = None if deadline is None else deadline - self._clock()
            grant = self._try(table, bucket, units, left, reserve)
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
        """One non-blocking step of :meth:`acquire` on the table's bucket (event loops,
        simulations). ``Grant(True, w)``: charged, spend after ``w`` s; ``Grant(False, w)``:
        nothing charged, ask again after ``w`` s. With ``max_wait``, a grant or booking that
        would wait longer is not made (``Grant(False, w > max_wait)``, bucket unchanged)."""
        return self._try(table, table, units, max_wait)

    def _try(
        self, table: str, bucket: str, units: float, max_wait: float | None, reserve: float = 0.0
    ) -> Grant:
        limit = -1.0 if max_wait is None else max(0.0, max_wait)
        reply = self._backend.run(
            bucket, "acquire", self.params, units=units, charge=limit, reserve=reserve
        )
        if bucket == table:
            if reply.wait > 0 or not reply.granted:
                self.shares.waited(table)
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
        by its ``reasons`` (:mod:`.partitions`)."""
        if not units >= 0:
            raise ValueError(f"units must be 0 or more, not {units}")
        tag = 0
        if partition is not None and self.partitions:
            tag, name = tag_of(partition), bucket_name(table, tag_of(partition))
            granted = self._granted.__dict__.pop(name, 0.0)
            args = (self._backend, self.params, table, tag, units, throttled, reasons, granted)
            tag = self.hot.feedback(*args)
            throttled = throttled and tag >= 0  # a key range's refusal is not the table's
        self._table_feedback(table, units, throttled, charged, tag)

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
