"""Partition keys inside a table's limit: which limit a refusal names, and the hot partitions.

DynamoDB limits one partition key's key range (about 1,000 WCU/s) apart from the table
(provisioned capacity, on-demand maximum, account quota). Every item of one user in one
namespace shares a partition key — the user id — so one user's load can hit its partition's
limit while the table has capacity to spare; cutting the table's shared rate then would slow
every other user with it.

Since 2025 a throttling exception says which limit refused in ``ThrottlingReasons``:
:func:`scope_of` reads them. A partly refused batch says nothing (``UnprocessedItems``): its
partition is cut, and the table only when another partition was refused within a window
(``token_bucket.lua``'s tag).

A partition gets a bucket of its own only once it has been refused — :class:`HotPartitions`
remembers which, per process, and forgets them when their rate is back at the ceiling or
after the idle ttl — so a load nothing throttles pays nothing for partitions, and the count of
buckets follows the partitions refused lately, not the users ever seen. Buckets and metrics
name a partition by a hash of its key, never the key: no user id in Redis key names or labels.
"""

from __future__ import annotations

import enum
import hashlib
import threading
import time
from collections.abc import Callable, Iterable

from worker.limiter.bucket import BucketBackend, BucketParams
from worker.limiter.metrics import HOT_PARTITIONS, LABEL_BUCKETS, PARTITION_CUTS, PARTITION_RATE


class Scope(enum.Enum):
    """What a refusal says was short of capacity."""

    PARTITION = "partition"  # the key range of one partition key
    TABLE = "table"  # the table: provisioned, on-demand maximum, account quota, an index
    UNKNOWN = "unknown"  # no reason given (UnprocessedItems, an older endpoint)


def scope_of(reasons: Iterable[str]) -> Scope:
    """The scope of a refusal from its ``ThrottlingReasons`` reason strings: a key range
    (``TableWriteKeyRangeThroughputExceeded``, an index's too) is a partition's; any other
    reason is the table's; none at all is unknown."""
    found = [r for r in reasons if r]
    if not found:
        return Scope.UNKNOWN
    if all("KeyRange" in r for r in found):
        return Scope.PARTITION
    return Scope.TABLE


def tag_of(partition: str) -> int:
    """A partition key as a non-zero 48-bit number (exact in Lua's doubles)."""
    digest = hashlib.blake2b(partition.encode("utf-8"), digest_size=6).digest()
    return int.from_bytes(digest, "big") | 1


def bucket_name(table: str, tag: int) -> str:
    """The limiter bucket of one partition of ``table`` (a name under the table's)."""
    return f"{table}/p{tag:012x}"


class HotPartitions:
    """The partitions of each table refused lately, in this process (thread-safe)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._hot: dict[tuple[str, int], float] = {}
        self._lock = threading.Lock()

    def __contains__(self, key: tuple[str, int]) -> bool:
        with self._lock:
            seen = self._hot.get(key)
            if seen is not None and self._clock() - seen >= self.ttl:
                del self._hot[key]
                self._count(key[0])
                return False
            return seen is not None

    def refused(self, table: str, tag: int) -> None:
        with self._lock:
            now = self._clock()
            # Forget every partition idle for the ttl, not only those asked about again: the
            # count follows the partitions refused lately, never the users ever seen.
            idle = [k for k, seen in self._hot.items() if now - seen >= self.ttl]
            for key in idle:
                del self._hot[key]
            self._hot[(table, tag)] = now
            for t in {table, *(t for t, _ in idle)}:
                self._count(t)

    def recovered(self, table: str, tag: int) -> None:
        """Its rate is back at the ceiling: the table's bucket alone is enough again."""
        with self._lock:
            if self._hot.pop((table, tag), None) is not None:
                self._count(table)

    def feedback(
        self,
        backend: BucketBackend,
        params: BucketParams,
        table: str,
        tag: int,
        units: float,
        throttled: bool,
        reasons: tuple[str, ...],
        granted: float,
    ) -> int:
        """Feed a hot partition's bucket (``granted``: what its last acquire took); the tag the
        table's feedback carries: 0 none, the partition's for a refusal without a reason, its
        negative for one naming its key range (not the table's: nothing of the table is cut)."""
        scope = scope_of(reasons) if throttled else None
        cut = scope in (Scope.PARTITION, Scope.UNKNOWN)
        if cut:
            self.refused(table, tag)
        elif (table, tag) not in self:
            return 0
        name = bucket_name(table, tag)
        reply = backend.run(
            name, "feedback", params, units=units, throttled=cut, charge=units - granted
        )
        PARTITION_RATE.labels(table, label(tag)).set(reply.rate)
        if reply.cut:
            PARTITION_CUTS.labels(table, label(tag)).inc()
        if not throttled and reply.rate >= params.ceiling:
            self.recovered(table, tag)
        if scope is Scope.PARTITION:
            return -tag
        return tag if scope is Scope.UNKNOWN else 0

    def _count(self, table: str) -> None:
        HOT_PARTITIONS.labels(table).set(sum(1 for t, _ in self._hot if t == table))


def label(tag: int) -> str:
    return str(tag % LABEL_BUCKETS)
