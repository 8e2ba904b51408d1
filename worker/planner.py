"""Plans bulk deletes by reading keys: ``clear_all_schemas`` and ``reset_user``.

The planner reads keys with paginated key-only Queries (never a Scan) and cuts them into
unordered delete segments with the same segmenter producers use; the segment runner deletes
them 25 per BatchWriteItem in parallel. Segment ids carry the planner's delivery number
(:func:`pipeline.ids.planned_scope`): a planner redelivered after a crash plans afresh (keys
already deleted are simply not found again) and nothing is left behind; items planned by the
lost delivery and deleted are still counted where they were.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from pipeline import ids
from pipeline.config import PipelineConfig
from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger
from pipeline.messages import Plan
from pipeline.payloads import PayloadStore
from pipeline.segmenter import Segmenter
from pipeline.states import PlanKind, Target
from pipeline.status import LeaseStatus, Recorded
from storage import errors
from storage.namespaced import DynamoNamespacedStore
from storage.schema import DynamoSchemaStore
from worker.delivery import Delivery
from worker.lease import LOST, LeaseKeeper

log = logging.getLogger(__name__)

ERASE_WAIT_SECONDS = 1.0


class Planner:
    def __init__(
        self,
        *,
        store: DynamoNamespacedStore,
        ledger: Ledger,
        enqueue: Enqueuer,
        cfg: PipelineConfig,
        payloads: PayloadStore,
    ) -> None:
        self.payloads = payloads
        self.store = store
        self.ledger = ledger
        self.enqueue = enqueue
        self.cfg = cfg

    def _schema_names(self, user: str) -> Iterator[bytes]:
        try:
            schemas = DynamoSchemaStore(
                self.store.config, user, dynamo=self.store.dynamo, writer=self.store.writer
            )
        except errors.TableNotFoundError:
            return
        for op in schemas.delete_ops():
            yield str(op.key).encode("utf-8")

    def _emit(
        self,
        job: str,
        scope: str,
        target: Target,
        ns: str | None,
        user: str,
        keys: Iterable[bytes],
        keeper: LeaseKeeper,
    ) -> int:
        cut = Segmenter(
            job=job,
            ns=ns,
            user=user,
            ledger=self.ledger,
            enqueue=self.enqueue,
            segment_size=self.cfg.segment_size,
            partitions=1,
            target=target,
            scope=f"{scope}{target}:{ns or ''}",
            ordered=False,
        )
        for i, key in enumerate(keys):
            if i % self.cfg.segment_size == 0 and keeper.lost:
                raise errors.StoppedError(LOST, operation="Plan", code="Stopped")
            cut.add(key, None)
        cut.close()
        return cut.items

    def run(self, plan: Plan, delivery: Delivery | None = None) -> int:
        """Plan every delete of ``plan`` under its lease; return how many keys were planned.

        A second delivery waits while the first plans; one whose holder vanished plans afresh
        under new segment ids (keys already deleted are simply not found again). A failure no
        retry can help (access denied, a table gone), and a plan whose holders kept vanishing,
        end the planning with the reason in the job (``failures``, ``error``); the segments
        already planned still run. Retryable errors propagate: the message is delivered again
        (or sent again by the sweeper from its journal)."""
        delivery = delivery or Delivery()
        delivery.runs += 1
        if self._writes_before(plan):
            self._again(plan, ERASE_WAIT_SECONDS)
            return 0
        asked = time.monotonic()
        lease = self.ledger.take(plan.job, ids.PLAN, delivery.token, self.cfg.lease_seconds)
        if lease.status in (LeaseStatus.RECORDED, LeaseStatus.ORPHAN):
            self.payloads.delete(plan.job, ids.PLAN)
            return 0
        if lease.status is not LeaseStatus.TAKEN:
            self._again(plan, max(1.0, lease.expires_in))
            return 0
        n = lease.deliveries
        keeper = LeaseKeeper(
            self.ledger, plan.job, ids.PLAN, delivery.token, self.cfg.lease_seconds, since=asked
        )
        total, failure = 0, ""
        with keeper:
            try:
                if n > self.cfg.max_deliveries:
                    raise errors.PermanentError(
                        f"planning taken by {n} deliveries without finishing",
                        operation="Plan",
                        code="TooManyDeliveries",
                    )
                total = self._plan(plan, ids.planned_scope(n, delivery.runs - 1), keeper)
            except errors.StoppedError:
                self._again(plan, self.cfg.lease_seconds)  # the lease is lost: round again
                return 0
            except errors.RetryableError:
                raise
            except errors.StorageError as exc:
                failure = f"[{exc.code or type(exc).__name__}] {exc}"
                log.error("job %s: planning %s failed: %s", plan.job, plan.what, exc)
            recorded = self.ledger.finish(plan.job, ids.PLAN, failure=failure, token=delivery.token)
        if recorded is Recorded.FENCED:
            self._again(plan, self.cfg.lease_seconds)
            return 0
        self.ledger.seal(plan.job)
        self.payloads.delete(plan.job, ids.PLAN)
        log.info("job %s: planned %d deletes (%s)", plan.job, total, plan.what)
        return total

    def _writes_before(self, plan: Plan) -> int:
        """Deliveries of the erased user admitted before the mark and possibly still writing:
        their items could land behind the deletes, so the erase reads keys only once they are
        over (none can be admitted any more: pipeline/erasure.py)."""
        if plan.what is not PlanKind.RESET_USER:
            return 0
        c = self.store.config  # a call already sent may retry this long past its lease
        return self.ledger.erasure.pending(plan.user, c.retry_max_seconds + c.read_timeout)

    def _again(self, plan: Plan, countdown: float) -> None:
        self.enqueue.stage(plan, countdown)
        self.enqueue.send(plan, countdown)

    def _plan(self, plan: Plan, scope: str, keeper: LeaseKeeper) -> int:
        names = self._schema_names(plan.user)
        total = self._emit(plan.job, scope, Target.SCHEMAS, None, plan.user, names, keeper)
        if plan.what is PlanKind.RESET_USER:
            user_store = self.store.for_user(plan.user)
            for ns in user_store.list_namespaces():
                kv = user_store.open_namespace(ns, create=False)
                keys = kv.scan_keys()
                total += self._emit(plan.job, scope, Target.KV, ns, plan.user, keys, keeper)
        return total
