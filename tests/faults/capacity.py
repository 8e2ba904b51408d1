"""Simulated provisioned write capacity: item sizes, write units and per-table token buckets.

Item size follows DynamoDB's documented rules closely enough for load tests: each attribute
costs the UTF-8 length of its name plus its value's size (S: UTF-8 bytes, B: decoded bytes,
N: about one byte per two significant digits plus one, BOOL/NULL: 1, L/M: 3 bytes overhead plus
one byte per element plus the elements, sets: the sum of their members). A write costs
ceil(size / 1 KB) WCU, at least 1.

Each table, and each partition key value of a table with a per-partition limit, has a token
bucket filled at its WCU/s rate and holding at most ``rate * burst_seconds`` units (DynamoDB
keeps up to 300 seconds of a table's unused capacity, about one second of a partition's); a
bucket starts full. A write is admitted when every bucket it draws on holds its cost, or, for a
write larger than a whole bucket, when that bucket is full (it then goes negative, so the
long-run rate holds).
"""

from __future__ import annotations

import base64
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .config import FaultConfig

KB = 1024
PARTITION = "partition"
"""The limit of one partition key value (DynamoDB's key range limit)."""
TABLE = "table"
"""The limit of the whole table (provisioned capacity, or the on-demand maximum)."""


def value_size(value: Mapping[str, Any]) -> int:
    """Size in bytes of one DynamoDB JSON attribute value, e.g. ``{"S": "abc"}`` → 3."""
    if not value:
        return 0
    ((kind, payload),) = list(value.items())[:1]
    if kind == "S":
        return len(str(payload).encode("utf-8"))
    if kind == "N":
        return _number_size(str(payload))
    if kind == "B":
        return _binary_size(payload)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode("utf-8")) for s in payload)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in payload)
    if kind == "BS":
        return sum(_binary_size(b) for b in payload)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in payload)
    if kind == "M":
        return 3 + sum(1 + len(k.encode("utf-8")) + value_size(v) for k, v in payload.items())
    return len(str(payload).encode("utf-8"))


def _number_size(text: str) -> int:
    digits = text.lstrip("+-").lower().split("e", 1)[0].replace(".", "").strip("0")
    return (len(digits) + 1) // 2 + 1


def _binary_size(payload: Any) -> int:
    if isinstance(payload, bytes | bytearray):
        return len(payload)
    try:
        return len(base64.b64decode(str(payload), validate=False))
    except ValueError:
        return len(str(payload))


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Size of an item in DynamoDB JSON (attribute names' UTF-8 lengths + value sizes)."""
    return sum(len(name.encode("utf-8")) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    """WCU of writing an item of `size` bytes: ceil(size / 1 KB), at least 1."""
    return max(1, math.ceil(size / KB))


def partition_of(body: Mapping[str, Any], attribute: str) -> str | None:
    """The partition key value of a write (its ``Item`` or ``Key``), as text; None if absent.

    ``{"Item": {"PK": {"S": "alice"}, ...}}`` → ``"alice"`` (a B value stays base64 text).
    """
    source = body.get("Item") if "Item" in body else body.get("Key")
    value = source.get(attribute) if isinstance(source, Mapping) else None
    if not isinstance(value, Mapping) or not value:
        return None
    return str(next(iter(value.values())))


def request_units(operation: str, body: Mapping[str, Any]) -> int:
    """Estimated WCU of one write call or one BatchWriteItem write request (its JSON).

    PutItem / PutRequest: the item. UpdateItem: key plus the update's values (the stored item is
    not known here). DeleteItem / DeleteRequest: 1 (the deleted item's size is not known).
    """
    if operation in ("PutItem", "PutRequest"):
        return write_units(item_size(body.get("Item", {})))
    if operation == "UpdateItem":
        size = item_size(body.get("Key", {}))
        size += sum(value_size(v) for v in body.get("ExpressionAttributeValues", {}).values())
        for name, update in body.get("AttributeUpdates", {}).items():
            size += len(name.encode("utf-8")) + value_size(update.get("Value", {}))
        return write_units(size)
    return 1


class TokenBucket:
    """Write capacity of one table or partition key. Not thread-safe: `CapacityModel` locks."""

    def __init__(self, rate: float, burst_seconds: float, now: float) -> None:
        self.rate = rate
        self.capacity = rate * burst_seconds
        self.tokens = self.capacity
        self.updated = now

    def reconfigure(self, rate: float, burst_seconds: float, now: float) -> None:
        """Change rate and burst, keeping the current level (clamped to the new capacity)."""
        self.refill(now)
        self.rate = rate
        self.capacity = rate * burst_seconds
        self.tokens = min(self.tokens, self.capacity)

    def refill(self, now: float) -> None:
        """Add the capacity accrued since the last call, up to the bucket's capacity."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now

    def fits(self, units: int) -> bool:
        """Whether `units` fit now (or the bucket is full and they never could)."""
        return self.tokens + 1e-9 >= min(float(units), self.capacity) and self.tokens > 0

    def try_take(self, units: int) -> bool:
        """Take `units` if they `fit`; else False."""
        if self.fits(units):
            self.tokens -= units
            return True
        return False


Write = tuple[str, str | None, int]
"""One write for `CapacityModel.decide`: (table, partition key value or None, WCU)."""


class CapacityModel:
    """Token buckets per table (``capacity_wcu``) and per (table, partition key) value
    (``partition_wcu``, created on first use), all with ``burst_seconds`` of burst."""

    def __init__(self, config: FaultConfig, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._config = config
        self._buckets: dict[str, TokenBucket] = {}
        self._partitions: dict[tuple[str, str], TokenBucket] = {}
        self._lock = threading.Lock()

    def configure(self, config: FaultConfig) -> None:
        """Apply new rates; existing buckets keep their level; unlimited ones are dropped."""
        with self._lock:
            self._config = config
            now = self._clock()
            for table in list(self._buckets):
                rate = config.wcu_for(table)
                if rate is None:
                    del self._buckets[table]
                else:
                    self._buckets[table].reconfigure(rate, config.burst_seconds, now)
            for part in list(self._partitions):
                rate = config.partition_wcu_for(part[0])
                if rate is None:
                    del self._partitions[part]
                else:
                    self._partitions[part].reconfigure(rate, config.burst_seconds, now)

    def reset(self) -> None:
        """Forget every bucket (each starts full again on next use)."""
        with self._lock:
            self._buckets.clear()
            self._partitions.clear()

    def limited(self, table: str) -> bool:
        """Whether `table` has a simulated capacity (of the table or of its partitions)."""
        config = self._config
        return config.wcu_for(table) is not None or config.partition_wcu_for(table) is not None

    def admit(self, requests: list[tuple[str, int]]) -> list[bool]:
        """Admit (table, units) writes by their table's bucket only; one flag per write."""
        return [d is None for d in self.decide([(t, None, u) for t, u in requests])]

    def decide(self, writes: list[Write]) -> list[str | None]:
        """Admit writes in order: each must fit its partition key's bucket, then its table's.

        Returns per write None (admitted, taken from both buckets) or the limit that refused
        it: `PARTITION` (checked first, so a hot key is named even when the table is also
        short) or `TABLE`. A partition key, or a table, that refused once refuses the call's
        later writes too, so writes never overtake each other. Unlimited buckets admit.
        """
        with self._lock:
            now = self._clock()
            refused: set[tuple[str, str | None]] = set()
            out: list[str | None] = []
            for table, pk, units in writes:
                part = self._partition(table, pk, now)
                bucket = self._bucket(table, now)
                if part is not None and ((table, pk) in refused or not part.fits(units)):
                    refused.add((table, pk))
                    out.append(PARTITION)
                elif bucket is not None and ((table, None) in refused or not bucket.fits(units)):
                    refused.add((table, None))
                    out.append(TABLE)
                else:
                    for taken in (part, bucket):
                        if taken is not None:
                            taken.tokens -= units
                    out.append(None)
            return out

    def _bucket(self, table: str, now: float) -> TokenBucket | None:
        rate = self._config.wcu_for(table)
        if rate is None:
            return None
        bucket = self._buckets.get(table)
        if bucket is None:
            bucket = self._buckets[table] = TokenBucket(rate, self._config.burst_seconds, now)
        bucket.refill(now)
        return bucket

    def _partition(self, table: str, pk: str | None, now: float) -> TokenBucket | None:
        rate = self._config.partition_wcu_for(table)
        if rate is None or pk is None:
            return None
        bucket = self._partitions.get((table, pk))
        if bucket is None:
            bucket = TokenBucket(rate, self._config.burst_seconds, now)
            self._partitions[(table, pk)] = bucket
        bucket.refill(now)
        return bucket
