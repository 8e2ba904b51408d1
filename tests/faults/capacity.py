"""Simulated provisioned write capacity: item sizes, write units and per-table token buckets.

Item size follows DynamoDB's documented rules closely enough for load tests: each attribute
costs the UTF-8 length of its name plus its value's size (S: UTF-8 bytes, B: decoded bytes,
N: about one byte per two significant digits plus one, BOOL/NULL: 1, L/M: 3 bytes overhead plus
one byte per element plus the elements, sets: the sum of their members). A write costs
ceil(size / 1 KB) WCU, at least 1.

Each table has a token bucket filled at its WCU/s rate and holding at most ``rate *
burst_seconds`` units (DynamoDB keeps up to 300 seconds of unused capacity); a bucket starts
full. A write is admitted when the bucket holds its cost, or, for a write larger than the whole
bucket, when the bucket is full (the bucket then goes negative, so the long-run rate holds).
"""

from __future__ import annotations

import base64
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .config import FaultConfig

KB = 1024


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
    """Write capacity of one table. Not thread-safe: `CapacityModel` holds the lock."""

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

    def try_take(self, units: int) -> bool:
        """Take `units` if they fit (or the bucket is full and they never could); else False."""
        if self.tokens + 1e-9 >= min(float(units), self.capacity) and self.tokens > 0:
            self.tokens -= units
            return True
        return False


class CapacityModel:
    """Per-table token buckets following a `FaultConfig`'s ``capacity_wcu``/``burst_seconds``."""

    def __init__(self, config: FaultConfig, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._config = config
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def configure(self, config: FaultConfig) -> None:
        """Apply new rates; existing buckets keep their level; unlimited tables are dropped."""
        with self._lock:
            self._config = config
            now = self._clock()
            for table in list(self._buckets):
                rate = config.wcu_for(table)
                if rate is None:
                    del self._buckets[table]
                else:
                    self._buckets[table].reconfigure(rate, config.burst_seconds, now)

    def reset(self) -> None:
        """Forget every bucket (each starts full again on next use)."""
        with self._lock:
            self._buckets.clear()

    def limited(self, table: str) -> bool:
        """Whether `table` has a simulated capacity at all."""
        return self._config.wcu_for(table) is not None

    def admit(self, requests: list[tuple[str, int]]) -> list[bool]:
        """Admit (table, units) writes in order; a table stops admitting after its first refusal.

        Returns one flag per write. Unlimited tables always admit.
        """
        with self._lock:
            now = self._clock()
            refused: set[str] = set()
            out: list[bool] = []
            for table, units in requests:
                bucket = self._bucket(table, now)
                if bucket is None:
                    out.append(True)
                elif table in refused or not bucket.try_take(units):
                    refused.add(table)
                    out.append(False)
                else:
                    out.append(True)
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
