"""The end of one held delivery of a segment: requeue what is left, record, count.

Leftovers become a child segment staged (items and journal entry) *before* the segment is
recorded and sent only after the recording planned it; a recording refused (the lease was
lost, or another delivery recorded first) leaves the staged child to be deleted, never sent.

The refs of a segment loaded from files (``pipeline.refs``) are read only here, when items are
dead-lettered (each letter names its input and line) or left over (the child carries theirs).
"""

from __future__ import annotations

import logging
import random
from dataclasses import replace

from pipeline.config import PipelineConfig
from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger
from pipeline.messages import Op, Segment
from pipeline.payloads import PayloadStore
from pipeline.refs import Refs, RefsError, decode, encode
from pipeline.states import Outcome
from pipeline.status import DeadLetter, Recorded
from storage.batch import BatchResult, WriteOp
from worker.delivery import Delivery, requeue_delay
from worker.metrics import ITEMS

log = logging.getLogger(__name__)


def letter(op: WriteOp, reason: str, code: str, ns: str | None) -> DeadLetter:
    key = op.key if isinstance(op.key, bytes) else op.key.encode("utf-8")
    return DeadLetter(key, op.value, reason, code, ns)


class Recording:
    """The end of one held delivery of a segment: requeue its leftovers, record it, count."""

    def __init__(
        self,
        ledger: Ledger,
        enqueue: Enqueuer,
        payloads: PayloadStore,
        cfg: PipelineConfig,
        rng: random.Random,
        seg: Segment,
        deliveries: int,
        delivery: Delivery,
    ) -> None:
        self.ledger, self.enqueue, self.payloads = ledger, enqueue, payloads
        self.cfg, self.rng = cfg, rng
        self.seg, self.deliveries, self.delivery = seg, deliveries, delivery
        self._refs: Refs | None = None
        self._read = False

    def refs(self) -> Refs | None:
        """Where the segment's items came from, read once (None: not from files, or unknown)."""
        seg = self.seg
        if self._read or seg.ops is None:
            return self._refs
        self._read = True
        blob = self.payloads.refs(seg.job, seg.seg)
        if blob is None:
            return None
        try:
            refs = decode(blob)
        except RefsError as exc:
            log.warning("job %s segment %s: refs ignored: %s", seg.job, seg.seg, exc)
            return None
        if len(refs.refs) != len(seg.ops):
            log.warning("job %s segment %s: refs ignored: not one per item", seg.job, seg.seg)
            return None
        self._refs = refs
        return refs

    def placed(self, dead: list[DeadLetter]) -> list[DeadLetter]:
        """``dead`` naming each item's input and line, when known."""
        refs = self.refs()
        if refs is None or self.seg.ops is None:
            return dead
        at = refs.of(self.seg.ops, [(d.key, d.value) for d in dead])
        out = []
        for d, r in zip(dead, at, strict=True):
            source, line = refs.where(r)
            out.append(replace(d, source=source, line=line))
        return out

    def child_refs(self, left: list[Op]) -> bytes | None:
        """The refs of the leftover items ``left`` (a child's), if the segment has refs."""
        refs = self.refs()
        if refs is None or self.seg.ops is None:
            return None
        at = refs.of(self.seg.ops, left)
        return None if None in at else encode(refs.names, [r for r in at if r is not None])

    def leftovers(self, result: BatchResult, dead: list[DeadLetter], superseded: int) -> Outcome:
        """Requeue what is left (bounded, with backoff) or dead-letter it; record the segment."""
        seg, cfg = self.seg, self.cfg
        child: Segment | None = None
        if result.unprocessed:
            left = [
                (op.key if isinstance(op.key, bytes) else op.key.encode("utf-8"), op.value)
                for op in result.unprocessed
            ]
            progressed = result.written + result.deleted > 0
            if progressed or seg.idle < cfg.max_requeues:
                child = seg.child(
                    left,
                    holder=self.deliveries,
                    progressed=progressed,
                    rerun=self.delivery.runs - 1,
                    refs=self.child_refs(left),
                )
            else:
                reason = f"still unprocessed after {seg.idle} requeues: {result.last_error}"
                code = (result.last_error.code if result.last_error else None) or "Unprocessed"
                dead += [letter(op, reason, code, seg.letter_ns) for op in result.unprocessed]
        return self.record(result, dead, superseded=superseded, child=child)

    def record(
        self,
        result: BatchResult,
        dead: list[DeadLetter],
        *,
        superseded: int = 0,
        child: Segment | None = None,
        dead_items: int | None = None,
    ) -> Outcome:
        seg = self.seg
        if dead and dead_items is None:
            dead = self.placed(dead)
        delay = requeue_delay(seg.idle, self.cfg, self.rng) if child else 0.0
        if child is not None:
            self.enqueue.stage(child, countdown=delay)
        recorded = self.ledger.finish(
            seg.job,
            seg.seg,
            written=result.written,
            deleted=result.deleted,
            superseded=superseded,
            dead=dead,
            dead_items=dead_items,
            child=child.seg if child else None,
            partition=seg.part,
            next_index=seg.idx + 1,
            token=self.delivery.token,
            wcu=result.consumed_wcu,
        )
        if recorded is Recorded.FENCED:
            if child is not None:
                self.payloads.delete(child.job, child.seg)
            return Outcome.FENCED
        self.payloads.delete(seg.job, seg.seg)
        if recorded is not Recorded.FIRST:
            if child is not None:
                self.payloads.delete(child.job, child.seg)
            return Outcome.DUPLICATE
        if child is not None:
            self.enqueue.send(child, countdown=delay)
        n_dead = len(dead) if dead_items is None else dead_items
        ITEMS.labels("written").inc(result.written)
        ITEMS.labels("deleted").inc(result.deleted)
        ITEMS.labels("superseded").inc(superseded)
        ITEMS.labels("dead_lettered").inc(n_dead)
        if dead:
            log.warning("job %s segment %s: %d items dead-lettered", seg.job, seg.seg, n_dead)
        return Outcome.REQUEUED if child else (Outcome.DEAD if dead else Outcome.DONE)
