"""The reading loop of a file load: records into segments per namespace, bad lines into the
job, schema lines restored directly, and the reading position into each segment's checkpoint.
Each item goes with its input and line (``pipeline.refs``), so a dead letter can name them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger
from pipeline.refs import ref
from pipeline.segmenter import Segmenter
from producers.checkpoint import Checkpoint, Checkpointer, TrackedInput
from producers.export import SchemaSink
from producers.inputs import BadLine, Parsed, Record, SchemaRecord
from producers.session import BudgetGate, ProducerSession
from storage import errors
from storage.schema import DynamoSchemaStore

REJECTED_FLUSH = 100


def namespace_problem(
    ns: str | None, valid: set[str], check_namespace: Callable[[str], str]
) -> str | None:
    """Why a record's namespace cannot be loaded (none given, or no table can be named after
    it), or None; ``valid`` caches the good ones."""
    if ns is None:
        return "no namespace (give --namespace)"
    if ns in valid:
        return None
    try:
        check_namespace(ns)
    except errors.InvalidNamespaceError as exc:
        return exc.message[:200]
    valid.add(ns)
    return None


class Feed:
    """One run over a load's records (a whole load, or the rest of a resumed one)."""

    def __init__(
        self,
        ledger: Ledger,
        enqueue: Enqueuer,
        job_id: str,
        user: str,
        namespace: str | None,
        *,
        partitions: int,
        segment_size: int,
        check_namespace: Callable[[str], str],
        schema_store: Callable[[str], DynamoSchemaStore],
    ) -> None:
        self.ledger, self.enqueue = ledger, enqueue
        self.job, self.user, self.namespace = job_id, user, namespace
        self.partitions, self.segment_size = partitions, segment_size
        self.check_namespace = check_namespace
        self.schema_store = schema_store
        self._shown: list[tuple[int, str]] = []
        self.inputs: list[str] = []
        self._base = 0

    def enter(self, name: str) -> None:
        """The records read from now on are lines of the input ``name`` (as given, or as a
        pattern expanded: a path, ``-`` or an S3 URL)."""
        self.inputs.append(name)
        self._base = ref(len(self.inputs) - 1, 0)

    def _reject(self, cp: Checkpointer, line: int, reason: str) -> None:
        cp.bad(line)
        self._shown.append((line, reason))
        if len(self._shown) >= REJECTED_FLUSH:
            self.ledger.producing.reject_lines(self.job, self._shown)
            self._shown = []

    def run(
        self,
        records: Iterable[Parsed],
        tracker: TrackedInput,
        base: Checkpoint,
        gate: BudgetGate,
        session: ProducerSession,
        *,
        sink: SchemaSink | None = None,
    ) -> None:
        """Feed every record, then seal the job (as ``session``'s producer). Anything raised
        leaves the buffered records unsent: a resumed load reads them again."""
        cp = Checkpointer(tracker, base)
        gate.checkpoint = cp
        segs: dict[str, Segmenter] = {}
        valid: set[str] = set()
        resuming = bool(base.scopes)
        try:
            for rec in records:
                if isinstance(rec, BadLine):
                    self._reject(cp, rec.line, rec.reason)
                elif isinstance(rec, SchemaRecord):
                    if sink is None:
                        sink = SchemaSink(self.schema_store(self.user))
                    sink.add(rec)
                elif isinstance(rec, Record):
                    if sink is not None:
                        sink.close()  # schemas read so far are restored before any checkpoint
                    ns = self.namespace or rec.namespace
                    s = segs.get(ns) if ns is not None else None
                    if s is None or ns is None:
                        why = namespace_problem(ns, valid, self.check_namespace)
                        if why is not None or ns is None:
                            self._reject(cp, rec.line, why or "")
                            tracker.commit()
                            continue
                        s = self._segmenter(segs, ns, base, gate)
                    p = s.partition_of(rec.key)
                    if not (resuming and cp.skips(ns, p, rec.line)):
                        cp.add(s, p, rec.line)
                        s.add_to(p, rec.key, rec.value, self._base + rec.line)
                tracker.commit()
            if sink is not None:
                sink.close()
            for s in segs.values():
                s.close()
        finally:
            with contextlib.suppress(errors.BackendUnavailableError):
                self.ledger.producing.reject_lines(self.job, self._shown)
        self.ledger.seal(self.job, rejected=cp.rejected_total, producer=session.token)

    def _segmenter(
        self, segs: dict[str, Segmenter], ns: str, base: Checkpoint, gate: BudgetGate
    ) -> Segmenter:
        done = base.scopes.get(ns)
        s = segs[ns] = Segmenter(
            job=self.job,
            ns=ns,
            user=self.user,
            ledger=self.ledger,
            enqueue=self.enqueue,
            partitions=self.partitions,
            segment_size=self.segment_size,
            gate=gate,
            start=[n for n, _ in done] if done else None,
            inputs=self.inputs,
        )
        return s
