"""A bulk job fed from iterables (``Producer.load``, ``delete_keys``, replays): one job, its
pairs cut into segments per target and namespace, planned as the job's producer under the
queued-bytes budget. An iterable that raises (or Ctrl-C) leaves the job ``incomplete``; an
iterable cannot be resumed (a file can: ``Producer.load_file``)."""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.config import PipelineConfig
from pipeline.enqueue import Enqueuer
from pipeline.ids import new_job_id
from pipeline.ledger import Ledger
from pipeline.segmenter import Segmenter
from pipeline.states import JobKind, Target
from producers.session import BudgetGate, OnProgress, ProducerSession

Group = tuple[Target, str | None, Iterable[tuple[bytes, bytes | None]]]
"""A target table, a namespace (None: the schema table) and the pairs to write there
(``(key, None)``: a delete)."""


def bulk_job(
    ledger: Ledger,
    enqueue: Enqueuer,
    config: PipelineConfig,
    partitions: int,
    kind: JobKind,
    groups: Iterable[Group],
    user: str,
    namespace: str | None,
    on_progress: OnProgress | None = None,
    extra: dict[str, str] | None = None,
) -> str:
    """Create the job, feed every group, seal it; returns the job id. Segments of
    ``config.segment_size`` items in ``partitions`` partitions, under
    ``config.max_queued_bytes``."""
    job_id, token = new_job_id(), ProducerSession.new_token()
    ledger.create(
        job_id, kind=kind, namespace=namespace or "", user_id=user, producer=token, extra=extra
    )
    with ProducerSession(ledger, job_id, token=token) as session:
        gate = BudgetGate(session, config.max_queued_bytes, on_progress=on_progress)
        session.describe = lambda: f"{gate.items} items enqueued (an iterable cannot resume)"
        for target, ns, pairs in groups:
            seg = Segmenter(
                job=job_id,
                ns=ns,
                user=user,
                ledger=ledger,
                enqueue=enqueue,
                segment_size=config.segment_size,
                partitions=partitions,
                target=target,
                gate=gate,
            )
            seg.add_all(pairs)
            seg.close()
        ledger.seal(job_id, producer=token)
    return job_id
