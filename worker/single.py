"""Ordered single-key writes: the service behind the ``datafold.write`` task.

Each write carries a producer-assigned sequence (Redis INCR, so later-enqueued means larger);
the store's conditional put/tombstone makes an older write lose to a newer one whatever order
the workers run them in — a late, older put cannot resurrect a deleted key. A write that lost
is counted ``superseded``. Retryable failures are requeued with backoff up to the bound, then
dead-lettered with the reason.
"""

from __future__ import annotations

import random

from pipeline.config import PipelineConfig
from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger
from pipeline.messages import SingleWrite
from pipeline.states import Outcome
from pipeline.status import DeadLetter
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
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.ledger = ledger
        self.enqueue = enqueue
        self.cfg = cfg
        self.rng = rng or random.Random()

    def run(self, w: SingleWrite, delivery: Delivery | None = None) -> Outcome:
        seg = w.seg
        if self.ledger.is_done(w.job, seg):
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
            if w.value is None:
                kv.delete(w.key, seq=w.seq)
                counts["deleted"] = 1
            else:
                kv.put(w.key, w.value, seq=w.seq)
                counts["written"] = 1
        except errors.ConditionFailedError:
            counts["superseded"] = 1
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
        if self.ledger.finish(
            w.job,
            seg,
            dead=dead,
            child=child,
            written=counts["written"],
            deleted=counts["deleted"],
            superseded=counts["superseded"],
        ):
            for name, n in counts.items():
                ITEMS.labels(name).inc(n)
            ITEMS.labels("dead_lettered").inc(len(dead))
        return Outcome.REQUEUED if child else (Outcome.DEAD if dead else Outcome.DONE)
