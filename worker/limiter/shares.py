"""Max-min fair shares of a table's rate between its users, and a reserve for single writes.

The table's bucket alone serves whoever asks first: a user whose load runs more segments at once
takes more of the table, and a small job's few batches queue behind a large job's many. While a
table's bucket makes callers wait (it is the bottleneck), each user — the partition key every
item of a bulk batch shares: the user id — is first admitted by its share (``fair_share.lua``):
the users that want more than an equal split of what the others leave each get that level, one
that wants less is never held, and the rest of the rate is theirs. While the table has capacity
to spare nothing is asked: no round trip, and a table DynamoDB Local or on-demand never
throttles costs nothing.

Single writes are a user's interactive requests: they skip the shares and go ahead of the bulk
bookings in the table's bucket, which may lend them up to :data:`RESERVE_SECONDS` of its rate at
once (paid back by the bulk callers' waits), so their latency stays low while bulk loads keep the
table saturated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from storage.errors import StoppedError
from worker.limiter.bucket import IDLE_TTL_SECONDS, RETRY_FLOOR_SECONDS, BucketBackend
from worker.limiter.metrics import ACTIVE_USERS, FAIR_LEVEL

SHARE_BURST_SECONDS = 1.0
"""A user's share holds one second of the level, like the table's bucket: a worker's batches
of 25 items go out without a wait each."""
ACTIVE_SECONDS = 2.0
"""A user counts in the split while it asked within this span: longer than a wait in the table's
bucket, so a user held there is not forgotten and its share handed out twice."""
TAU_SECONDS = 1.0
"""Time constant of each user's measured rate: one window, like the bucket's."""
MARGIN = 0.8
"""A user is satisfied (it keeps what it takes and is not held) while its rate is below this
share of an equal split: those held at the level measure about the level, and must not count
as satisfied."""
PRESSED_SECONDS = 0.05
"""A batch that waited this long in the table's bucket (beyond the ahead margin and its own
units' turn) shows its user wants more than it gets: its low rate is then not counted as
satisfied. Without this, a user whose batches queue behind another's many threads measures
little, looks satisfied, and the other is never held."""
CONTENDED_SECONDS = 2.0
"""The shares apply this long after the table's bucket last made a caller of this process wait."""
RESERVE_SECONDS = 0.1
"""Single writes may take up to this many seconds of the table's rate ahead of every bulk
booking (10 % of capacity at once): a single write waits for nothing while bulk loads hold
the bucket in debt."""


@dataclass(frozen=True, slots=True)
class ShareParams:
    """The constants every ``fair_share.lua`` call sends (ARGV[6..10])."""

    burst: float = SHARE_BURST_SECONDS
    active: float = ACTIVE_SECONDS
    tau: float = TAU_SECONDS
    margin: float = MARGIN
    ttl_seconds: float = IDLE_TTL_SECONDS

    def argv(self) -> list[str]:
        ttl_ms = str(max(1, round(self.ttl_seconds * 1000)))
        return [repr(self.burst), repr(self.active), repr(self.tau), repr(self.margin), ttl_ms]


@dataclass(frozen=True, slots=True)
class ShareReply:
    """``granted``: the units are the user's; else ask again after ``wait``. ``level``: the
    share of each user held (WCU/s); ``users``: how many share the table now."""

    granted: bool
    wait: float
    level: float
    users: int


class ShareBackend(Protocol):
    """Where the shares live: the same two homes as the buckets."""

    def share(
        self,
        table: str,
        op: str,
        user: int,
        units: float,
        rate: float,
        params: ShareParams,
        pressed_now: bool = False,
    ) -> ShareReply: ...


class LimiterBackend(BucketBackend, ShareBackend, Protocol):
    """A home of both the buckets and the shares (Redis, or the in-memory twin)."""


class FairShares:
    """The shares layer of one :class:`~worker.limiter.RateLimiter` (thread-safe)."""

    def __init__(
        self,
        backend: ShareBackend,
        params: ShareParams,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._backend = backend
        self.params = params
        self._sleep = sleep
        self._clock = clock
        self._busy: dict[str, float] = {}
        self._pressed: set[tuple[str, int]] = set()
        self._lock = threading.Lock()

    def waited(self, table: str) -> None:
        """The table's bucket made a caller wait: it is the bottleneck now."""
        with self._lock:
            self._busy[table] = self._clock()

    def pressed(self, table: str, user: int, waited: float) -> None:
        """``user``'s batch waited ``waited`` seconds in the table's bucket."""
        if waited >= PRESSED_SECONDS:
            with self._lock:
                self._pressed.add((table, user))

    def take(
        self, table: str, user: int, units: float, rate: float, deadline: float | None
    ) -> float:
        """:meth:`admit` while the table is the bottleneck; else nothing to wait for (and the
        gauges say no one is held)."""
        if self.contended(table):
            return self.admit(table, user, units, rate, deadline)
        FAIR_LEVEL.labels(table).set(rate)
        ACTIVE_USERS.labels(table).set(0)
        return 0.0

    def contended(self, table: str) -> bool:
        with self._lock:
            seen = self._busy.get(table)
        return seen is not None and self._clock() - seen < CONTENDED_SECONDS

    def admit(
        self, table: str, user: int, units: float, rate: float, deadline: float | None
    ) -> float:
        """Block until ``user``'s share holds ``units``; the seconds waited. StoppedError when
        that would end past ``deadline`` (nothing taken)."""
        start = self._clock()
        with self._lock:
            pressed = (table, user) in self._pressed
            self._pressed.discard((table, user))
        while True:
            reply = self._backend.share(table, "admit", user, units, rate, self.params, pressed)
            FAIR_LEVEL.labels(table).set(reply.level)
            ACTIVE_USERS.labels(table).set(reply.users)
            if reply.granted:
                return self._clock() - start
            wait = max(RETRY_FLOOR_SECONDS, reply.wait)
            if deadline is not None and self._clock() + wait > deadline:
                raise StoppedError(
                    f"no share of the table for {units:g} WCU before the deadline "
                    f"(next in {wait:.1f}s)",
                    operation="RateLimiter.acquire",
                    table=table,
                    code="CapacityDeadline",
                )
            self._sleep(wait)

    def refund(self, table: str, user: int, units: float, rate: float) -> None:
        """Give back units admitted and never sent."""
        self._backend.share(table, "refund", user, units, rate, self.params)
