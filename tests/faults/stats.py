"""Thread-safe counters of what the proxy did, and immutable snapshots of them.

Per operation (``""`` for requests without a DynamoDB target): ``requests``, ``forwarded``,
``upstream_errors`` (the upstream could not be reached: 502), ``latency_ms`` (total injected),
one counter per `FaultKind` value, ``capacity_throttled`` (rejected by the capacity model),
and for BatchWriteItem ``items`` (write requests received), ``items_forwarded``,
``items_kept_back`` (partial_batch fault), ``items_unprocessed_capacity`` and
``items_unprocessed_upstream``.

Per table (capacity mode only): ``wcu_admitted``, ``items_admitted``, ``requests_throttled``
(calls answered ProvisionedThroughputExceededException), ``items_unprocessed`` (batch writes
returned unprocessed for lack of capacity), ``items_unprocessed_partition`` (of those, the ones
its partition key's limit refused) and ``wcu_unprocessed``.

Per partition key value of a table (capacity mode, writes that name their partition key): the
same counters but ``items_unprocessed_partition``. Per throttling reason (``reasons``): the calls
refused whole whose ``ThrottlingReasons`` named it, e.g. ``TableWriteKeyRangeThroughputExceeded``.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StatsSnapshot:
    """Counters at one moment; `elapsed_s` is the time since the proxy started or was reset."""

    operations: Mapping[str, Mapping[str, int]]
    tables: Mapping[str, Mapping[str, int]]
    elapsed_s: float
    partitions: Mapping[str, Mapping[str, Mapping[str, int]]] = field(default_factory=dict)
    reasons: Mapping[str, int] = field(default_factory=dict)

    def op(self, operation: str, counter: str) -> int:
        """One counter of one operation (0 if never counted)."""
        return self.operations.get(operation, {}).get(counter, 0)

    def total(self, counter: str) -> int:
        """One counter summed over all operations."""
        return sum(c.get(counter, 0) for c in self.operations.values())

    def table(self, table: str, counter: str) -> int:
        """One capacity counter of one table (0 if never counted)."""
        return self.tables.get(table, {}).get(counter, 0)

    def partition(self, table: str, pk: str, counter: str) -> int:
        """One capacity counter of one partition key value of a table (0 if never counted)."""
        return self.partitions.get(table, {}).get(pk, {}).get(counter, 0)

    def reason(self, reason: str) -> int:
        """Calls refused whole naming `reason` in their ThrottlingReasons (0 if none)."""
        return self.reasons.get(reason, 0)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (as served by ``GET /__faults__/stats``)."""
        return {
            "elapsed_s": self.elapsed_s,
            "operations": {op: dict(c) for op, c in self.operations.items()},
            "tables": {t: dict(c) for t, c in self.tables.items()},
            "partitions": {
                t: {pk: dict(c) for pk, c in parts.items()} for t, parts in self.partitions.items()
            },
            "reasons": dict(self.reasons),
        }


class Stats:
    """The live counters; every method is safe to call from the proxy's handler threads."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._ops: dict[str, Counter[str]] = {}
        self._tables: dict[str, Counter[str]] = {}
        self._partitions: dict[str, dict[str, Counter[str]]] = {}
        self._reasons: Counter[str] = Counter()
        self._since = clock()

    def count(self, operation: str, counter: str, n: int = 1) -> None:
        """Add `n` to an operation's counter."""
        with self._lock:
            self._ops.setdefault(operation, Counter())[counter] += n

    def count_table(self, table: str, counter: str, n: int = 1) -> None:
        """Add `n` to a table's capacity counter."""
        with self._lock:
            self._tables.setdefault(table, Counter())[counter] += n

    def count_partition(self, table: str, pk: str, counter: str, n: int = 1) -> None:
        """Add `n` to a partition key's capacity counter."""
        with self._lock:
            self._partitions.setdefault(table, {}).setdefault(pk, Counter())[counter] += n

    def count_reason(self, reason: str) -> None:
        """Count one call refused whole with `reason` among its ThrottlingReasons."""
        with self._lock:
            self._reasons[reason] += 1

    def snapshot(self) -> StatsSnapshot:
        """A consistent copy of every counter."""
        with self._lock:
            return StatsSnapshot(
                operations={op: dict(c) for op, c in self._ops.items()},
                tables={t: dict(c) for t, c in self._tables.items()},
                elapsed_s=self._clock() - self._since,
                partitions={
                    t: {pk: dict(c) for pk, c in parts.items()}
                    for t, parts in self._partitions.items()
                },
                reasons=dict(self._reasons),
            )

    def reset(self) -> None:
        """Zero every counter and restart `elapsed_s`."""
        with self._lock:
            self._ops.clear()
            self._tables.clear()
            self._partitions.clear()
            self._reasons.clear()
            self._since = self._clock()
