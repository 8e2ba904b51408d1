"""Runs one segment of a bulk job: the service behind the ``datafold.segment`` task.

Steps (``docs/design.md``, "Retry layers"): skip if already counted; wait for the segment's turn in
its partition; count the delivery (a segment delivered too often — a worker keeps dying on it —
is dead-lettered, not looped); drop superseded duplicates (last line wins); cut 25-item batches
and run them in parallel threads under the global limiter, with a short bounded in-task round
for unprocessed items; requeue what is left as a *new* message with exponential backoff plus
jitter, up to ``max_requeues``, then dead-letter it with the reason; dead-letter poison items
alone. The requeued child is enqueued *before* the segment is recorded, so a crash in between
can only duplicate work (idempotent), never lose it; the ledger counts each segment once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace

from pipeline.config import PipelineConfig
from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger
from pipeline.messages import Segment
from pipeline.payloads import LOST, PayloadError, PayloadStore
from pipeline.states import Outcome, Target
from pipeline.status import DeadLetter
from storage import errors
from storage.batch import BatchResult, Rejected, WriteOp, dedupe
from storage.namespaced import DynamoNamespacedStore
from worker.delivery import Delivery, requeue_delay
from worker.metrics import ITEMS, SEGMENTS

log = logging.getLogger(__name__)

ORDER_POLL_SECONDS = 2.0
ORDER_DEFER_SECONDS = 1.0


def letter(op: WriteOp, reason: str, code: str, ns: str | None) -> DeadLetter:
    key = op.key if isinstance(op.key, bytes) else op.key.encode("utf-8")
    return DeadLetter(key, op.value, reason, code, ns)


class SegmentRunner:
    def __init__(
        self,
        *,
        store: DynamoNamespacedStore,
        ledger: Ledger,
        enqueue: Enqueuer,
        cfg: PipelineConfig,
        payloads: PayloadStore,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.payloads = payloads
        self.ledger = ledger
        self.enqueue = enqueue
        self.cfg = cfg
        self.rng = rng or random.Random()
        self.sleep = sleep
        self.clock = clock

    def _ready(self, seg: Segment) -> bool:
        """Whether the segment's partition has reached it; polls briefly before giving up."""
        if seg.part is None:
            return True
        deadline = self.clock() + ORDER_POLL_SECONDS
        delay = 0.02
        while True:
            nxt = self.ledger.next_index(seg.job, seg.part)
            if nxt >= seg.idx:
                return True
            if self.clock() >= deadline:
                return False
            self.sleep(delay)
            delay = min(delay * 2, 0.25)

    def _load(self, seg: Segment) -> tuple[Segment, str | None]:
        """The segment with its items from the payload store, or why they cannot be had."""
        try:
            ops = self.payloads.get(seg.job, seg.seg)
        except PayloadError as exc:
            return seg, f"segment payload unreadable: {exc}"
        if ops is None:
            return seg, (
                f"segment payload of {seg.n} items is gone from Redis before they were "
                "written (evicted? Redis must run with maxmemory-policy noeviction)"
            )
        return replace(seg, ops=ops), None

    def _ops(self, seg: Segment) -> tuple[str, list[WriteOp], list[Rejected]]:
        ops: list[WriteOp] = []
        bad: list[Rejected] = []
        assert seg.ops is not None
        if seg.target is Target.SCHEMAS:
            table = self.store.config.schema_table
            for key, _ in seg.ops:
                name = key.decode("utf-8")
                ops.append(
                    WriteOp(
                        name,
                        None,
                        {"DeleteRequest": {"Key": {"PK": {"S": seg.user}, "SK": {"S": name}}}},
                        0,
                    )
                )
            return table, ops, bad
        if seg.ns is None:
            raise errors.InputError("segment without a namespace", operation="Segment")
        kv = self.store.for_user(seg.user).open_namespace(seg.ns)
        for key, value in seg.ops:
            try:
                ops.append(kv.put_op(key, value) if value is not None else kv.delete_op(key))
            except errors.StorageError as exc:
                bad.append(Rejected(WriteOp(key, value, {}, 0), exc))
        return kv.table, ops, bad

    def run(self, seg: Segment, delivery: Delivery | None = None) -> Outcome:
        """Process one delivery of ``seg``; return the outcome (for logs and metrics).

        ``delivery`` is shared by the re-runs of one message delivery (after a Redis outage),
        so they count as one delivery."""
        outcome = self._run(seg, delivery or Delivery())
        SEGMENTS.labels(outcome).inc()
        return outcome

    def _run(self, seg: Segment, delivery: Delivery) -> Outcome:
        if self.ledger.is_done(seg.job, seg.seg):
            return Outcome.DUPLICATE
        if not self._ready(seg):
            self.enqueue.segment(seg, countdown=ORDER_DEFER_SECONDS)
            return Outcome.DEFERRED
        deliveries = delivery.count(lambda: self.ledger.deliver(seg.job, seg.seg))
        seg, missing = self._load(seg)
        if missing is not None:
            if self.ledger.is_done(seg.job, seg.seg):
                return Outcome.DUPLICATE  # another delivery finished it (and removed the payload)
            # The items cannot be named: one dead letter, keyed by the segment, says how many.
            lost = DeadLetter(seg.seg.encode(), None, missing, LOST, seg.letter_ns)
            self._finish(seg, BatchResult(), [lost], superseded=0, child=None)
            log.error("job %s segment %s: %s", seg.job, seg.seg, missing)
            return Outcome.DEAD
        assert seg.ops is not None
        try:
            table, ops, bad = self._ops(seg)
        except errors.RetryableError as exc:
            # The table could not even be opened (DynamoDB unreachable): the whole segment is
            # left over, and goes the same way as unprocessed items.
            left = [WriteOp(k, v, {}, 0) for k, v in seg.ops]
            return self._leftovers(seg, BatchResult(unprocessed=left, last_error=exc), [], 0)
        dead = [letter(r.op, str(r.error), r.error.code or "Invalid", seg.letter_ns) for r in bad]
        if deliveries > self.cfg.max_deliveries:
            reason = (
                f"segment delivered {deliveries} times without finishing "
                "(a worker died on it each time)"
            )
            dead += [letter(op, reason, "TooManyDeliveries", seg.letter_ns) for op in ops]
            self._finish(seg, BatchResult(), dead, superseded=0, child=None)
            log.error("job %s segment %s dead-lettered: %s", seg.job, seg.seg, reason)
            return Outcome.DEAD
        unique = dedupe(ops)
        superseded = len(ops) - len(unique)
        result = self.store.writer.write(table, unique, unique_keys=True)
        dead += [
            letter(r.op, str(r.error), r.error.code or "Rejected", seg.letter_ns)
            for r in result.rejected
        ]
        return self._leftovers(seg, result, dead, superseded)

    def _leftovers(
        self, seg: Segment, result: BatchResult, dead: list[DeadLetter], superseded: int
    ) -> Outcome:
        """Requeue what is left (bounded, with backoff) or dead-letter it; record the segment."""
        child: Segment | None = None
        if result.unprocessed:
            left = [
                (op.key if isinstance(op.key, bytes) else op.key.encode("utf-8"), op.value)
                for op in result.unprocessed
            ]
            if seg.attempt < self.cfg.max_requeues:
                child = seg.child(left)
                self.enqueue.segment(
                    child, countdown=requeue_delay(seg.attempt, self.cfg, self.rng)
                )
            else:
                reason = f"still unprocessed after {seg.attempt} requeues: {result.last_error}"
                code = (result.last_error.code if result.last_error else None) or "Unprocessed"
                dead += [letter(op, reason, code, seg.letter_ns) for op in result.unprocessed]
        self._finish(seg, result, dead, superseded=superseded, child=child)
        if dead:
            log.warning("job %s segment %s: %d items dead-lettered", seg.job, seg.seg, len(dead))
        return Outcome.REQUEUED if child else (Outcome.DEAD if dead else Outcome.DONE)

    def _finish(
        self,
        seg: Segment,
        result: BatchResult,
        dead: list[DeadLetter],
        *,
        superseded: int,
        child: Segment | None,
    ) -> None:
        first = self.ledger.finish(
            seg.job,
            seg.seg,
            written=result.written,
            deleted=result.deleted,
            superseded=superseded,
            dead=dead,
            child=child.seg if child else None,
            partition=seg.part,
            next_index=seg.idx + 1,
        )
        self.payloads.delete(seg.job, seg.seg)
        if first:
            ITEMS.labels("written").inc(result.written)
            ITEMS.labels("deleted").inc(result.deleted)
            ITEMS.labels("superseded").inc(superseded)
            ITEMS.labels("dead_lettered").inc(len(dead))
