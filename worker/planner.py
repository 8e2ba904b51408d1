"""Plans bulk deletes by reading keys: ``clear_all_schemas`` and ``reset_user``.

The planner reads keys with paginated key-only Queries (never a Scan) and enqueues delete
segments of ``segment_size`` keys; the segment runner deletes them 25 per BatchWriteItem in
parallel. Segment ids include the planner's delivery number: if the planner is redelivered after
a crash it plans afresh (keys already deleted are simply not found again) and nothing is left
behind; items planned by the lost delivery and deleted are still counted where they were.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator

from storage import errors
from storage.namespaced import DynamoNamespacedStore
from storage.schema import DynamoSchemaStore
from storage.settings import PipelineConfig
from worker.ledger import Ledger
from worker.messages import Plan, Segment
from worker.segments import Enqueuer

log = logging.getLogger(__name__)


def chunked(it: Iterable[bytes], size: int) -> Iterator[list[bytes]]:
    buf: list[bytes] = []
    for x in it:
        buf.append(x)
        if len(buf) >= size:
            yield buf
            buf = []
    if buf:
        yield buf


class Planner:
    def __init__(
        self,
        *,
        store: DynamoNamespacedStore,
        ledger: Ledger,
        enqueue: Enqueuer,
        cfg: PipelineConfig,
    ) -> None:
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
        self, job: str, prefix: str, target: str, ns: str | None, user: str, keys: Iterable[bytes]
    ) -> int:
        n = 0
        for i, chunk in enumerate(chunked(keys, self.cfg.segment_size)):
            seg = Segment(
                job=job,
                seg=f"{prefix}:{target}:{ns or ''}:{i}",
                target=target,
                ns=ns,
                user=user,
                ops=[(k, None) for k in chunk],
            )
            self.ledger.plan(job, seg.seg, len(chunk))
            self.enqueue.segment(seg)
            n += len(chunk)
        return n

    def run(self, plan: Plan) -> int:
        """Plan every delete of ``plan``; return how many keys were planned."""
        if self.ledger.is_done(plan.job, "plan"):
            return 0
        delivery = self.ledger.deliver(plan.job, "plan")
        prefix = f"d{delivery}"
        total = self._emit(
            plan.job, prefix, "schemas", None, plan.user, self._schema_names(plan.user)
        )
        if plan.what == "reset_user":
            user_store = self.store.for_user(plan.user)
            for ns in user_store.list_namespaces():
                kv = user_store.open_namespace(ns, create=False)
                total += self._emit(plan.job, prefix, "kv", ns, plan.user, kv.scan_keys())
        elif plan.what != "clear_schemas":
            raise errors.InputError(f"unknown plan {plan.what!r}", operation="Plan")
        self.ledger.finish(plan.job, "plan")
        self.ledger.seal(plan.job)
        log.info("job %s: planned %d deletes (%s)", plan.job, total, plan.what)
        return total
