"""Ordered single-key writes: the service behind the ``datafold.write`` task.

Each write carries a producer-assigned sequence (Redis INCR, so later-enqueued means larger);
the store's conditional put/tombstone makes an older write lose to a newer one whatever order
the workers run them in — a late, older put cannot resurrect a deleted key. A write that lost
is counted ``superseded``; one that finds its own sequence already stored (an earlier attempt
landed but its answer or its recording was lost) is counted as it landed. Retryable failures
are requeued with backoff up to the bound, then dead-lettered with the reason.
"""

from __future__ import annotations

import random

from pipeline.config import PipelineConfig
from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger
from pipeline.messages import SingleWrite
from pipeline.payloads import PayloadStore
from pipeline.states import Outcome
from pipeline.status import DeadLetter, Recorded
from storage import errors
from storage.namespaced import DynamoNamespacedStore
from worker.delivery import Delivery, requeue_delay
from worker.metrics import ITEMS


class SingleWriteRunner:
    def __init__(
        self,
        *,
        store: DynamoNamespacedStore,
        ledger: Ledger,
        enqueue: Enqueuer,
        cfg: PipelineConfig,
        payloads: PayloadStore,
        rng: random.Random | None = None,
    ) -> None:
        self.payloads = payloads
        self.store = store
        self.ledger = ledger
        self.enqueue = enqueue
        self.cfg = cfg
        self.rng = rng or random.Random()

    def run(self, w: SingleWrite, delivery: Delivery | None = None) -> Outcome:
        seg = w.seg
        if self.ledger.is_done(w.job, seg):
            self.payloads.delete(w.job, seg)  # its journal entry, should it be left
            return Outcome.DUPLICATE
        deliveries = (delivery or Delivery()).count(lambda: self.ledger.deliver(w.job, seg))
        counts = {"written": 0, "deleted": 0, "superseded": 0}
        dead: list[DeadLetter] = []
        child: str | None = None
        try:
            if deliveries > self.cfg.max_deliveries:
                raise errors.PermanentError(
                    f"delivered {deliveries} times without finishing",
                    operation="Write",
                    code="TooManyDeliveries",
                )
            kv = self.store.for_user(w.user).open_namespace(w.ns)
            landed = "deleted" if w.value is None else "written"
            try:
                if w.value is None:
                    kv.delete(w.key, seq=w.seq)
                else:
                    kv.put(w.key, w.value, seq=w.seq)
                counts[landed] = 1
            except errors.ConditionFailedError:
                # Our own earlier attempt (its answer lost, or a redelivery) holds the same
                # sequence: it landed. Anything else is a newer write: this one lost.
                counts[landed if kv.seq_of(w.key) == w.seq else "superseded"] = 1
        except errors.RetryableError as exc:
            if w.attempt < self.cfg.max_requeues:
                nxt = w.retry()
                self.enqueue.single(nxt, countdown=requeue_delay(w.attempt, self.cfg, self.rng))
                child = nxt.seg
            else:
                dead.append(
                    DeadLetter(
                        w.key,
                        w.value,
                        f"gave up after {w.attempt} requeues: {exc}",
                        exc.code or "Retryable",
                        w.ns,
                    )
                )
        except errors.StorageError as exc:
            dead.append(DeadLetter(w.key, w.value, str(exc), exc.code or "Permanent", w.ns))
        recorded = self.ledger.finish(
            w.job,
            seg,
            dead=dead,
            child=child,
            written=counts["written"],
            deleted=counts["deleted"],
            superseded=counts["superseded"],
        )
        self.payloads.delete(w.job, seg)
        if recorded is Recorded.FIRST:
            for name, n in counts.items():
                ITEMS.labels(name).inc(n)
            ITEMS.labels("dead_lettered").inc(len(dead))
        return Outcome.REQUEUED if child else (Outcome.DEAD if dead else Outcome.DONE)
