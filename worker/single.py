"""Ordered single-key writes: the service behind the ``datafold.write`` task.

Each write carries a producer-assigned sequence (Redis INCR, so later-enqueued means larger);
the store's conditional put/tombstone makes an older write lose to a newer one whatever order
the workers run them in — a late, older put cannot resurrect a deleted key. A write that lost
is counted ``superseded``; one that finds itself already stored (an earlier attempt landed but
its answer or its recording was lost: the store recognises it) is counted as it landed.
Retryable failures are requeued with backoff up to the bound, then dead-lettered with the reason.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

from pipeline import ids
from pipeline.config import PipelineConfig
from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger
from pipeline.messages import SingleWrite
from pipeline.payloads import PayloadStore
from pipeline.states import Admission, Outcome
from pipeline.status import DeadLetter, LeaseStatus, Recorded
from storage import errors
from storage.limits import write_units
from storage.namespaced import DynamoNamespacedStore
from storage.writes import WriteOp
from worker.admission import Gate
from worker.delivery import Delivery, requeue_delay
from worker.lease import LeaseKeeper
from worker.limiter import RateLimiter
from worker.metrics import ITEMS

log = logging.getLogger(__name__)


def _superseded() -> tuple[dict[str, int], list[DeadLetter], SingleWrite | None]:
    return {"written": 0, "deleted": 0, "superseded": 1}, [], None


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
        limiter: RateLimiter | None = None,
    ) -> None:
        self.payloads = payloads
        self.limiter = limiter
        self.store = store
        self.ledger = ledger
        self.enqueue = enqueue
        self.cfg = cfg
        self.rng = rng or random.Random()
        self.gate = Gate(ledger, cfg.lease_seconds)

    def run(self, w: SingleWrite, delivery: Delivery | None = None) -> Outcome:
        """One delivery of ``w``, under the lease of its id like a segment: a duplicate defers
        or does nothing, a retry is staged before recording and sent after, and a retry its
        parent was recorded without never runs."""
        delivery = delivery or Delivery()
        seg = w.seg
        parent = ids.single_write(w.attempt - 1) if w.attempt else None
        asked = time.monotonic()
        lease = self.ledger.take(w.job, seg, delivery.token, self.cfg.lease_seconds, parent)
        if lease.status in (LeaseStatus.RECORDED, LeaseStatus.ORPHAN):
            self.payloads.delete(w.job, seg)  # its journal entry, should it be left
            return Outcome.DUPLICATE
        if lease.status is not LeaseStatus.TAKEN:  # held, or its parent not recorded yet
            self.enqueue.single(w, countdown=max(1.0, lease.expires_in))
            return Outcome.DEFERRED
        admitted = self.gate.enter(w.job, seg, w.user, delivery.token, w.seq)
        if admitted.admission is Admission.WAIT:  # an erase of the user is under way
            self.ledger.release(w.job, seg, delivery.token)
            self.enqueue.single(w, countdown=1.0)
            return Outcome.DEFERRED
        keeper = LeaseKeeper(
            self.ledger,
            w.job,
            seg,
            delivery.token,
            self.cfg.lease_seconds,
            since=asked,
            on_renew=admitted.renew,
        )
        with keeper:
            if admitted.admission is Admission.SUPERSEDED:  # enqueued before an erase
                counts, dead, nxt = _superseded()
            else:
                try:
                    counts, dead, nxt = self._write(w, lease.deliveries)
                finally:
                    admitted.leave()
            delay = requeue_delay(w.attempt, self.cfg, self.rng)
            if nxt is not None:
                self.enqueue.stage(nxt, countdown=delay)
            recorded = self.ledger.finish(
                w.job,
                seg,
                dead=dead,
                child=nxt.seg if nxt else None,
                written=counts["written"],
                deleted=counts["deleted"],
                superseded=counts["superseded"],
                token=delivery.token,
            )
        if recorded is Recorded.FENCED:
            if nxt is not None:
                self.payloads.delete(nxt.job, nxt.seg)
            self.enqueue.single(w, countdown=self.cfg.lease_seconds)  # round again
            return Outcome.FENCED
        self.payloads.delete(w.job, seg)
        if recorded is not Recorded.FIRST:
            if nxt is not None:
                self.payloads.delete(nxt.job, nxt.seg)
            return Outcome.DUPLICATE
        if nxt is not None:
            self.enqueue.send(nxt, countdown=delay)
        for name, n in counts.items():
            ITEMS.labels(name).inc(n)
        ITEMS.labels("dead_lettered").inc(len(dead))
        return Outcome.REQUEUED if nxt else (Outcome.DEAD if dead else Outcome.DONE)

    def _pace(self, table: str, op: WriteOp) -> Callable[[bool, tuple[str, ...]], None] | None:
        """Take the limiter for ``op`` with priority, ahead of the bulk bookings
        (:mod:`worker.limiter.shares`); the feedback to give once it is sent. None without
        the limiter's per-user layer (one bucket per table): single writes go unpaced."""
        limiter = self.limiter
        if limiter is None or not limiter.partitions:
            return None
        units, pk = float(write_units(op.size)), str(op.ident[0])
        limiter.acquire(table, units, priority=True)

        def feedback(throttled: bool, reasons: tuple[str, ...]) -> None:
            used = 0.0 if throttled else units
            limiter.feedback(table, units=used, throttled=throttled, partition=pk, reasons=reasons)

        return feedback

    def _write(
        self, w: SingleWrite, deliveries: int
    ) -> tuple[dict[str, int], list[DeadLetter], SingleWrite | None]:
        """Write ``w``: what it counts, its dead letter, or the retry to send."""
        counts = {"written": 0, "deleted": 0, "superseded": 0}
        try:
            if deliveries > self.cfg.max_deliveries:
                raise errors.PermanentError(
                    f"taken by {deliveries} deliveries without finishing",
                    operation="Write",
                    code="TooManyDeliveries",
                )
            kv = self.store.for_user(w.user).open_namespace(w.ns)
            pace = self._pace(kv.table, kv.put_op(w.key, w.value or b""))
            try:
                # The store recognises our own earlier landing (its answer lost, or a
                # redelivery) and reports it as landed; what it refuses is a newer write's.
                if w.value is None:
                    kv.delete(w.key, seq=w.seq)
                else:
                    kv.put(w.key, w.value, seq=w.seq)
                counts["deleted" if w.value is None else "written"] = 1
            except errors.ConditionFailedError:
                counts["superseded"] = 1
            except errors.ThrottledError as exc:
                if pace is not None:
                    pace(True, exc.reasons)
                raise
            if pace is not None:
                try:
                    pace(False, ())
                except errors.BackendUnavailableError as exc:  # landed: the outcome stands
                    log.warning("single write %s: limiter feedback lost: %s", w.job, exc)
        except errors.BackendUnavailableError:
            raise  # Redis is gone: the step is run again once it is back, no attempt spent
        except errors.RetryableError as exc:
            if w.attempt < self.cfg.max_requeues:
                return counts, [], w.retry()
            reason = f"gave up after {w.attempt} requeues: {exc}"
            return counts, [DeadLetter(w.key, w.value, reason, exc.code or "Retryable", w.ns)], None
        except errors.StorageError as exc:
            return (
                counts,
                [DeadLetter(w.key, w.value, str(exc), exc.code or "Permanent", w.ns)],
                None,
            )
        return counts, [], None
