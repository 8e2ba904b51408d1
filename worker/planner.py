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
from collections.abc import Iterable, Iterator

from pipeline import ids
from pipeline.config import PipelineConfig
from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger
from pipeline.messages import Plan
from pipeline.payloads import PayloadStore
from pipeline.segmenter import Segmenter
from pipeline.states import PlanKind, Target
from storage import errors
from storage.namespaced import DynamoNamespacedStore
from storage.schema import DynamoSchemaStore

log = logging.getLogger(__name__)


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
        delivery: int,
        target: Target,
        ns: str | None,
        user: str,
        keys: Iterable[bytes],
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
            scope=ids.planned_scope(delivery, target, ns),
            ordered=False,
        )
        cut.add_all((k, None) for k in keys)
        cut.close()
        return cut.items

    def run(self, plan: Plan) -> int:
        """Plan every delete of ``plan``; return how many keys were planned.

        A failure no retry can help (access denied, a table gone) and a plan whose workers kept
        vanishing end the planning with the reason in the job (``failures``, ``error``); the
        segments already planned still run. Retryable errors propagate: the message is
        delivered again (or sent again by the sweeper from its journal)."""
        if self.ledger.is_done(plan.job, ids.PLAN):
            self.payloads.delete(plan.job, ids.PLAN)
            return 0
        delivery = self.ledger.deliver(plan.job, ids.PLAN)
        total, failure = 0, ""
        try:
            if delivery > self.cfg.max_deliveries:
                raise errors.PermanentError(
                    f"planning delivered {delivery} times without finishing",
                    operation="Plan",
                    code="TooManyDeliveries",
                )
            total = self._plan(plan, delivery)
        except errors.RetryableError:
            raise
        except errors.StorageError as exc:
            failure = f"[{exc.code or type(exc).__name__}] {exc}"
            log.error("job %s: planning %s failed: %s", plan.job, plan.what, exc)
        self.ledger.finish(plan.job, ids.PLAN, failure=failure)
        self.ledger.seal(plan.job)
        self.payloads.delete(plan.job, ids.PLAN)
        log.info("job %s: planned %d deletes (%s)", plan.job, total, plan.what)
        return total

    def _plan(self, plan: Plan, delivery: int) -> int:
        total = self._emit(
            plan.job, delivery, Target.SCHEMAS, None, plan.user, self._schema_names(plan.user)
        )
        if plan.what is PlanKind.RESET_USER:
            user_store = self.store.for_user(plan.user)
            for ns in user_store.list_namespaces():
                kv = user_store.open_namespace(ns, create=False)
                total += self._emit(plan.job, delivery, Target.KV, ns, plan.user, kv.scan_keys())
        return total
