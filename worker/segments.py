"""Runs one segment of a bulk job: the service behind the ``datafold.segment`` task.

Steps (``docs/design.md``, "Retry layers" and "Fencing"): wait for the segment's turn in its
partition; take its lease (a segment already recorded is a duplicate; one leased by a live
delivery is deferred, never run twice at once; a delivery counts toward the bound only when the
previous holder vanished); drop superseded duplicates (last line wins); cut 25-item batches and
run them in parallel threads under the global limiter, asking the lease and the run's deadline
before each; requeue what is left as a new segment with backoff (bounded by requeues that made
no progress), then dead-letter it with the reason; dead-letter poison items alone, and every
item of a segment no retry can help (each names its input and line when the segment's items came
from files: ``worker.recording``). The requeued child is staged (items + journal) before the
segment is recorded and sent after: recording plans it atomically, and a child whose parent
was never recorded by its holder is never run.
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
from pipeline.states import Admission, Outcome, Target
from pipeline.status import DeadLetter, LeaseStatus
from storage import errors
from storage.batch import BatchResult, Rejected, WriteOp, dedupe
from storage.namespaced import DynamoNamespacedStore
from worker.admission import Gate
from worker.delivery import Delivery
from worker.lease import LeaseKeeper
from worker.metrics import SEGMENTS
from worker.recording import Recording, letter

log = logging.getLogger(__name__)

ORDER_POLL_SECONDS = 2.0
ORDER_DEFER_SECONDS = 1.0


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
        self.gate = Gate(ledger, cfg.lease_seconds)

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
        if len(ops) != seg.n:
            return seg, f"segment payload holds {len(ops)} items, its message names {seg.n}"
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

        ``delivery`` is shared by the re-runs of one message delivery (after a Redis outage):
        they are one delivery, holding one lease."""
        delivery = delivery or Delivery()
        delivery.runs += 1
        outcome = self._run(seg, delivery)
        SEGMENTS.labels(outcome).inc()
        return outcome

    def _run(self, seg: Segment, delivery: Delivery) -> Outcome:
        if not self._ready(seg):
            return self._defer(seg, ORDER_DEFER_SECONDS)
        asked = self.clock()
        lease = self.ledger.take(
            seg.job, seg.seg, delivery.token, self.cfg.lease_seconds, parent=seg.parent
        )
        if lease.status is LeaseStatus.RECORDED:
            return Outcome.DUPLICATE
        if lease.status is LeaseStatus.ORPHAN:
            # Cut by a run whose parent was recorded without it: the parent ran again.
            self.payloads.delete(seg.job, seg.seg)
            return Outcome.DUPLICATE
        if lease.status is LeaseStatus.UNPLANNED:
            return self._defer(seg, ORDER_DEFER_SECONDS)  # its parent is being recorded
        if lease.status is LeaseStatus.HELD:
            return self._defer(seg, max(ORDER_DEFER_SECONDS, lease.expires_in))
        admitted = self.gate.enter(seg.job, seg.seg, seg.user, delivery.token)
        if admitted.admission is Admission.WAIT:  # an erase of the user is under way
            self.ledger.release(seg.job, seg.seg, delivery.token)
            return self._defer(seg, ORDER_DEFER_SECONDS)
        keeper = LeaseKeeper(
            self.ledger,
            seg.job,
            seg.seg,
            delivery.token,
            self.cfg.lease_seconds,
            clock=self.clock,
            since=asked,
            on_renew=admitted.renew,
        )
        try:
            with keeper:
                if admitted.admission is Admission.SUPERSEDED:
                    outcome = self._recorder(seg, lease.deliveries, delivery).record(
                        BatchResult(), [], superseded=seg.n
                    )
                else:
                    outcome = self._holding(seg, lease.deliveries, keeper, delivery)
        finally:
            admitted.leave()
        if outcome is Outcome.FENCED:
            # Another delivery holds it, or none does (renewals failed: then give it back, so
            # the next taker does not count this one as vanished). Either way the message goes
            # round again, and whoever holds the lease then finishes it.
            self.ledger.release(seg.job, seg.seg, delivery.token)
            self.enqueue.segment(seg.without_ops(), countdown=self.cfg.lease_seconds)
        return outcome

    def _defer(self, seg: Segment, countdown: float) -> Outcome:
        """Send the message again for later: not its turn, or another delivery holds it."""
        self.enqueue.segment(seg, countdown=countdown)
        return Outcome.DEFERRED

    def _recorder(self, seg: Segment, deliveries: int, delivery: Delivery) -> Recording:
        return Recording(
            self.ledger, self.enqueue, self.payloads, self.cfg, self.rng, seg, deliveries, delivery
        )

    def _holding(
        self, seg: Segment, deliveries: int, keeper: LeaseKeeper, delivery: Delivery
    ) -> Outcome:
        deadline = self.clock() + self.cfg.segment_seconds
        seg, missing = self._load(seg)
        run = self._recorder(seg, deliveries, delivery)
        if missing is not None:
            # The items cannot be named: one dead letter, keyed by the segment, stands for all.
            lost = DeadLetter(seg.seg.encode(), None, missing, LOST, seg.letter_ns)
            log.error("job %s segment %s: %s", seg.job, seg.seg, missing)
            return run.record(BatchResult(), [lost], dead_items=seg.n)
        assert seg.ops is not None
        try:
            table, ops, bad = self._ops(seg)
        except errors.RetryableError as exc:
            # The table could not even be opened (DynamoDB unreachable): the whole segment is
            # left over, and goes the same way as unprocessed items.
            left = [WriteOp(k, v, {}, 0) for k, v in seg.ops]
            return run.leftovers(BatchResult(unprocessed=left, last_error=exc), [], 0)
        except errors.StorageError as exc:
            # No retry can help (access denied, an id DynamoDB refuses): every item says why.
            code = exc.code or type(exc).__name__
            dead = [DeadLetter(k, v, str(exc), code, seg.letter_ns) for k, v in seg.ops]
            log.error("job %s segment %s dead-lettered: %s", seg.job, seg.seg, exc)
            return run.record(BatchResult(), dead)
        dead = [letter(r.op, str(r.error), r.error.code or "Invalid", seg.letter_ns) for r in bad]
        if deliveries > self.cfg.max_deliveries:
            reason = (
                f"segment taken by {deliveries} deliveries without finishing "
                "(its holder vanished each time)"
            )
            dead += [letter(op, reason, "TooManyDeliveries", seg.letter_ns) for op in ops]
            log.error("job %s segment %s dead-lettered: %s", seg.job, seg.seg, reason)
            return run.record(BatchResult(), dead)

        def stop() -> str | None:
            if self.clock() >= deadline:
                return f"segment deadline of {self.cfg.segment_seconds:g}s passed"
            return keeper.stop_reason()

        unique = dedupe(ops)
        result = self.store.writer.write(
            table, unique, unique_keys=True, stop=stop, deadline=deadline
        )
        if keeper.lost:
            return Outcome.FENCED  # the new holder writes and counts it all again
        dead += [
            letter(r.op, str(r.error), r.error.code or "Rejected", seg.letter_ns)
            for r in result.rejected
        ]
        return run.leftovers(result, dead, len(ops) - len(unique))
