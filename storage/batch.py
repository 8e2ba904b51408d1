"""Batch writes: de-duplicate, cut 25-item batches, send them (in parallel), never drop an item.

Layer 2 of the retry layers, inside one process: a BatchWriteItem that comes back with
``UnprocessedItems`` (HTTP 200 — botocore does not retry it) has those items resent after a
capped full-jitter backoff, for a bounded number of rounds; a round that wrote something does not
count against the bound (progress is not failure). What is still left is *returned* in
:class:`BatchResult.unprocessed` with the reason, never dropped. A batch refused with
``ValidationException`` (one poison item fails all 25) is split in halves until the poison item
stands alone; it goes to :class:`BatchResult.rejected`, the rest is written.

Cost: one BatchWriteItem per 25 distinct keys plus one per retry round; each write costs
ceil(item size / 1 KB) WCU, charged to the optional :class:`Pacer` (the global rate limiter)
before sending and reported back after, so it can adapt. The WCU reported back are DynamoDB's
own figure when ``DynamoConfig.wants_consumed_capacity`` (``ReturnConsumedCapacity``), else
the estimate from the item sizes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from storage import errors
from storage.client import Dynamo
from storage.limits import BATCH_WRITE_MAX_ITEMS, write_units
from storage.metrics import BATCH_ITEMS, CONSUMED_WCU, RETRIES, THROTTLES
from storage.retry import FullJitter


@dataclass(frozen=True, slots=True)
class WriteOp:
    """One put (``value`` is bytes) or delete (``value`` is None) as a DynamoDB WriteRequest."""

    key: bytes | str
    value: bytes | None
    request: dict[str, Any]
    size: int

    @property
    def ident(self) -> tuple[Any, Any]:
        return request_ident(self.request)

    @property
    def is_delete(self) -> bool:
        return "DeleteRequest" in self.request


def request_ident(request: dict[str, Any]) -> tuple[Any, Any]:
    """(PK, SK) of a WriteRequest: two requests with the same ident may not share a batch."""
    attrs = (
        request["PutRequest"]["Item"]
        if "PutRequest" in request
        else request["DeleteRequest"]["Key"]
    )
    pk, sk = attrs["PK"], attrs["SK"]
    return next(iter(pk.values())), next(iter(sk.values()))


@dataclass(slots=True)
class Rejected:
    """An item DynamoDB (or a pre-flight check) refused on its own: a poison item."""

    op: WriteOp
    error: errors.StorageError


@dataclass
class BatchResult:
    """What a batch write did. ``unprocessed`` and ``rejected`` hold every item not written."""

    written: int = 0
    deleted: int = 0
    unprocessed: list[WriteOp] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    consumed_wcu: float = 0.0
    retry_rounds: int = 0
    throttled_calls: int = 0
    last_error: errors.StorageError | None = None

    @property
    def complete(self) -> bool:
        return not self.unprocessed and not self.rejected

    def merge(self, other: BatchResult) -> BatchResult:
        self.written += other.written
        self.deleted += other.deleted
        self.unprocessed.extend(other.unprocessed)
        self.rejected.extend(other.rejected)
        self.consumed_wcu += other.consumed_wcu
        self.retry_rounds += other.retry_rounds
        self.throttled_calls += other.throttled_calls
        self.last_error = other.last_error or self.last_error
        return self

    def raise_if_incomplete(self, table: str, operation: str = "BatchWriteItem") -> None:
        """Raise :class:`BatchIncompleteError` carrying every item left, if any."""
        if self.complete:
            return
        left: list[Any] = [
            op.key if op.is_delete else (op.key, op.value) for op in self.unprocessed
        ]
        left += [r.op.key if r.op.is_delete else (r.op.key, r.op.value) for r in self.rejected]
        reason = self.last_error or (self.rejected[0].error if self.rejected else None)
        raise errors.BatchIncompleteError(
            f"batch not fully written: {len(self.unprocessed)} unprocessed, "
            f"{len(self.rejected)} rejected; last error: {reason}",
            items=left,
            operation=operation,
            table=table,
            code=reason.code if reason else None,
        )


class Pacer(Protocol):
    """What a rate limiter offers the batch writer (see ``worker.limiter``)."""

    def acquire(self, table: str, units: float) -> float:
        """Block until ``units`` WCU may be spent on ``table``; return seconds waited."""
        ...

    def feedback(self, table: str, *, units: float, throttled: bool) -> None:
        """Report what a call consumed and whether it was throttled or partly refused."""
        ...


def dedupe(ops: Iterable[WriteOp]) -> list[WriteOp]:
    """Keep the last request per (PK, SK): DynamoDB refuses a batch naming a key twice."""
    last: dict[tuple[Any, Any], WriteOp] = {}
    for op in ops:
        last.pop(op.ident, None)
        last[op.ident] = op
    return list(last.values())


class BatchWriter:
    """Writes :class:`WriteOp` lists to one table in 25-item batches, ``threads`` at a time."""

    def __init__(
        self,
        dynamo: Dynamo,
        *,
        rounds: int = 6,
        threads: int = 1,
        pacer: Pacer | None = None,
        backoff: FullJitter | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.dynamo = dynamo
        self.rounds = rounds
        self.threads = threads
        self.pacer = pacer
        self.backoff = backoff or FullJitter(base=0.05, cap=2.0)
        self.sleep = sleep
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def write(
        self, table: str, ops: Iterable[WriteOp], *, unique_keys: bool = False
    ) -> BatchResult:
        """Write every op (last one per key wins); return what happened to each item.
        ``unique_keys``: the caller has de-duplicated ``ops`` already (:func:`dedupe`)."""
        unique = list(ops) if unique_keys else dedupe(ops)
        chunks = [
            unique[i : i + BATCH_WRITE_MAX_ITEMS]
            for i in range(0, len(unique), BATCH_WRITE_MAX_ITEMS)
        ]
        result = BatchResult()
        if self.threads > 1 and len(chunks) > 1:
            parts = list(self._executor().map(lambda c: self._write_chunk(table, c), chunks))
        else:
            parts = [self._write_chunk(table, chunk) for chunk in chunks]
        for part in parts:
            self._count(table, part)
            result.merge(part)
        return result

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="batch")
            return self._pool

    def _write_chunk(self, table: str, chunk: Sequence[WriteOp]) -> BatchResult:
        result = BatchResult()
        pending = list(chunk)
        rounds = idle = 0
        while pending:
            units = float(sum(write_units(op.size) for op in pending))
            if self.pacer is not None:
                self.pacer.acquire(table, units)
            params: dict[str, Any] = {"RequestItems": {table: [op.request for op in pending]}}
            if self.dynamo.config.wants_consumed_capacity:
                params["ReturnConsumedCapacity"] = "TOTAL"
            try:
                resp = self.dynamo.call("BatchWriteItem", table, **params)
            except errors.ValidationError as exc:
                result.merge(self._isolate(table, pending, exc))
                break
            except errors.RetryableError as exc:
                # The single-call policy has given up: hand every pending item back. Only
                # throttling says the table is short of capacity; an outage (5xx, refused or
                # reset connections) must not cut the shared rate to its floor.
                result.throttled_calls += 1
                if self.pacer is not None and isinstance(exc, errors.ThrottledError):
                    self.pacer.feedback(table, units=0.0, throttled=True)
                result.unprocessed.extend(pending)
                result.last_error = exc
                break
            except errors.StorageError as exc:
                # Table gone, access denied...: nothing of this chunk can be written.
                result.rejected.extend(Rejected(op, exc) for op in pending)
                break
            left = (resp.get("UnprocessedItems") or {}).get(table) or []
            left_ids = {request_ident(r) for r in left}
            done = [op for op in pending if op.ident not in left_ids] if left else pending
            for op in done:
                if op.is_delete:
                    result.deleted += 1
                else:
                    result.written += 1
            # What DynamoDB reports when asked, else the estimate from the item sizes.
            consumed = sum(
                float(c.get("CapacityUnits", 0.0)) for c in resp.get("ConsumedCapacity") or []
            ) or (units if not left else float(sum(write_units(op.size) for op in done)))
            result.consumed_wcu += consumed
            if self.pacer is not None:
                self.pacer.feedback(table, units=consumed, throttled=bool(left))
            if not left:
                break
            pending = [op for op in pending if op.ident in left_ids]
            result.throttled_calls += 1
            THROTTLES.labels("BatchWriteItem", table).inc()
            rounds += 1
            idle = 0 if done else idle + 1
            if idle >= self.rounds or rounds >= 3 * self.rounds:
                result.unprocessed.extend(pending)
                result.last_error = errors.ThrottledError(
                    f"{len(pending)} items still unprocessed after {rounds} rounds",
                    operation="BatchWriteItem",
                    table=table,
                    code="UnprocessedItems",
                )
                break
            result.retry_rounds += 1
            RETRIES.labels("BatchWriteItem", table, "UnprocessedItems").inc()
            self.sleep(self.backoff.delay(rounds))
        return result

    def _isolate(self, table: str, pending: list[WriteOp], exc: errors.StorageError) -> BatchResult:
        """Split a refused batch in halves until the poison item stands alone."""
        if len(pending) == 1:
            op = pending[0]
            err = type(exc)(
                exc.message, operation="BatchWriteItem", table=table, key=op.key, code=exc.code
            )
            return BatchResult(rejected=[Rejected(op, err)])
        mid = len(pending) // 2
        return self._write_chunk(table, pending[:mid]).merge(
            self._write_chunk(table, pending[mid:])
        )

    @staticmethod
    def _count(table: str, r: BatchResult) -> None:
        if r.written:
            BATCH_ITEMS.labels(table, "written").inc(r.written)
        if r.deleted:
            BATCH_ITEMS.labels(table, "deleted").inc(r.deleted)
        if r.unprocessed:
            BATCH_ITEMS.labels(table, "unprocessed").inc(len(r.unprocessed))
        if r.rejected:
            BATCH_ITEMS.labels(table, "rejected").inc(len(r.rejected))
        if r.consumed_wcu:
            CONSUMED_WCU.labels(table).inc(r.consumed_wcu)
