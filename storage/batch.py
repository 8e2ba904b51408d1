"""Batch writes: de-duplicate, cut 25-item batches, send them (in parallel), never drop an item.

Layer 2 of the retry layers, inside one process: a BatchWriteItem that comes back with
``UnprocessedItems`` (HTTP 200 — botocore does not retry it) has those items resent after a
capped full-jitter backoff, for a bounded number of rounds; a round that wrote something does not
count against the bound (progress is not failure). What is still left is *returned* in
:class:`BatchResult.unprocessed` with the reason, never dropped. A batch refused with
``ValidationException`` (one poison item fails all 25) is split in halves until the poison item
stands alone; it goes to :class:`BatchResult.rejected`, the rest is written.

Cost: one BatchWriteItem per 25 distinct keys plus one per retry round; each write costs
ceil(item size / 1 KB) WCU, charged to the optional :class:`~storage.pacer.Pacer` (the global
rate limiter) before sending and reported back after, so it can adapt. The WCU reported back
are DynamoDB's own figure when ``DynamoConfig.wants_consumed_capacity``
(``ReturnConsumedCapacity``), else the estimate from the item sizes.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from storage import errors
from storage.client import Dynamo
from storage.limits import BATCH_WRITE_MAX_ITEMS, write_units
from storage.metrics import BATCH_ITEMS, CONSUMED_WCU, RETRIES, THROTTLES
from storage.pacer import Pacer
from storage.retry import FullJitter
from storage.writes import BatchResult, Rejected, WriteOp, dedupe, request_ident

__all__ = ["BatchResult", "BatchWriter", "Pacer", "Rejected", "Stop", "WriteOp", "dedupe"]


Stop = Callable[[], "str | None"]
"""Asked before each call of a bounded run: None to go on, or why to stop."""

PACED_CAP = 0.2
"""The longest backoff between rounds (s) when a pacer paces them; 2 s without one."""


def _partition(ops: Sequence[WriteOp]) -> str | None:
    """The partition key all of ``ops`` share (one user's items: always), else None."""
    first = ops[0].ident[0]
    if all(op.ident[0] == first for op in ops):
        return first if isinstance(first, str) else repr(first)
    return None


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
        # With a pacer the limiter paces the next round (it has heard of the refusal, and cuts
        # for a capacity): the round's own backoff only spreads the writers apart. Growing to
        # seconds, it made a chunk unlucky with noise the tail of a whole load.
        self.backoff = backoff or FullJitter(base=0.05, cap=PACED_CAP if pacer else 2.0)
        self.sleep = sleep
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def write(
        self,
        table: str,
        ops: Iterable[WriteOp],
        *,
        unique_keys: bool = False,
        stop: Stop | None = None,
        deadline: float | None = None,
    ) -> BatchResult:
        """Write every op (last one per key wins); return what happened to each item.
        ``unique_keys``: the caller has de-duplicated ``ops`` already (:func:`dedupe`).
        ``stop`` is asked right before every call: a reason (str) stops the run, and every
        item not yet sent is handed back in ``unprocessed`` with a :class:`StoppedError`;
        ``deadline`` bounds each wait for capacity the same way."""
        unique = list(ops) if unique_keys else dedupe(ops)
        chunks = [
            unique[i : i + BATCH_WRITE_MAX_ITEMS]
            for i in range(0, len(unique), BATCH_WRITE_MAX_ITEMS)
        ]
        result = BatchResult()
        if self.threads > 1 and len(chunks) > 1:
            pool, futures = self._executor(), []
            try:
                for i, c in enumerate(chunks):
                    # The fair share is taken here, in the caller's thread, before a chunk
                    # joins the threads every caller shares: a user held to its share waits in
                    # its own threads, never ahead of another user's chunks in the shared ones.
                    try:
                        if self.pacer is not None:
                            units = float(sum(write_units(op.size) for op in c))
                            self.pacer.admit(table, units, deadline, _partition(c))
                    except errors.StoppedError as exc:
                        result.unprocessed.extend(op for rest in chunks[i:] for op in rest)
                        result.last_error = exc
                        break
                    futures.append(pool.submit(self._write_chunk, table, c, stop, deadline, True))
            finally:
                # Every chunk ends before this returns or raises (Redis gone while admitting
                # included): none may go on writing for a caller that has moved on.
                wait(futures)
            parts = [f.result() for f in futures]
        else:
            parts = [self._write_chunk(table, chunk, stop, deadline) for chunk in chunks]
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

    def _write_chunk(
        self,
        table: str,
        chunk: Sequence[WriteOp],
        stop: Stop | None = None,
        deadline: float | None = None,
        admitted: bool = False,
    ) -> BatchResult:
        result = BatchResult()
        pending = list(chunk)
        rounds = idle = 0
        while pending:
            units = float(sum(write_units(op.size) for op in pending))
            key = _partition(pending)
            try:
                self._go_on(table, stop)  # before taking capacity the run may not use
                if self.pacer is not None:
                    self.pacer.acquire(table, units, deadline, key, admitted=admitted)
                    self._go_on(table, stop)  # the wait may have been long
            except errors.StoppedError as exc:
                if exc.code != "Stopped" and len(pending) > 1:
                    # Too big for the capacity left before the deadline: smaller batches may
                    # fit, so a slow table still makes progress in every bounded run.
                    mid = len(pending) // 2
                    # A chunk's share is taken once (admitted), for its halves and rounds too.
                    result.merge(self._write_chunk(table, pending[:mid], stop, deadline, admitted))
                    result.merge(self._write_chunk(table, pending[mid:], stop, deadline, admitted))
                    break
                result.unprocessed.extend(pending)
                result.last_error = exc
                break
            params: dict[str, Any] = {"RequestItems": {table: [op.request for op in pending]}}
            refused_whole = ""  # the code of a refusal of the whole call (counted by the call)
            if self.dynamo.config.wants_consumed_capacity:
                params["ReturnConsumedCapacity"] = "TOTAL"
            try:
                # With a limiter, a call refused whole for capacity is not retried blindly by
                # the call's policy: the limiter hears of it at once (its reasons say which
                # limit) and paces the next round, as for unprocessed items.
                resp = self.dynamo.call(
                    "BatchWriteItem", table, retry_throttles=self.pacer is None, **params
                )
            except errors.ThrottledError as exc:
                if self.pacer is None:  # the policy has given up already
                    result.throttled_calls += 1
                    result.unprocessed.extend(pending)
                    result.last_error = exc
                    break
                self.pacer.feedback(
                    table, units=0.0, throttled=True, partition=key, reasons=exc.reasons
                )
                resp = {"UnprocessedItems": {table: [op.request for op in pending]}}
                units, refused_whole = 0.0, exc.code or "Throttled"  # nothing consumed
            except errors.ValidationError as exc:
                result.merge(self._isolate(table, pending, exc, stop, deadline, admitted))
                break
            except errors.RetryableError as exc:
                # The single-call policy has given up: hand every pending item back. An outage
                # (5xx, refused or reset connections) must not cut the shared rate to its floor.
                result.throttled_calls += 1
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
            if self.pacer is not None and not refused_whole:
                self.pacer.feedback(table, units=consumed, throttled=bool(left), partition=key)
            if not left:
                break
            pending = [op for op in pending if op.ident in left_ids]
            result.throttled_calls += 1
            if not refused_whole:  # a refused call's throttle is counted by the call itself
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
            RETRIES.labels("BatchWriteItem", table, refused_whole or "UnprocessedItems").inc()
            self.sleep(self.backoff.delay(rounds))
        return result

    @staticmethod
    def _go_on(table: str, stop: Stop | None) -> None:
        reason = stop() if stop is not None else None
        if reason is not None:
            raise errors.StoppedError(
                reason, operation="BatchWriteItem", table=table, code="Stopped"
            )

    def _isolate(
        self,
        table: str,
        pending: list[WriteOp],
        exc: errors.StorageError,
        stop: Stop | None,
        deadline: float | None,
        admitted: bool = False,
    ) -> BatchResult:
        """Split a refused batch in halves until the poison item stands alone."""
        if len(pending) == 1:
            op = pending[0]
            err = type(exc)(
                exc.message, operation="BatchWriteItem", table=table, key=op.key, code=exc.code
            )
            return BatchResult(rejected=[Rejected(op, err)])
        mid = len(pending) // 2
        first = self._write_chunk(table, pending[:mid], stop, deadline, admitted)
        return first.merge(self._write_chunk(table, pending[mid:], stop, deadline, admitted))

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
