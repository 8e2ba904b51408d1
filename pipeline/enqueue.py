"""The enqueue protocol: how services and producers send the pipeline's messages, and its
Celery implementation (by task name: senders need no worker code).

Every message is journalled before it is sent (``pipeline.payloads``): one lost after that — in
the broker, or by a task that failed — is found again by the worker's sweeper. A segment's
items go to the payload store in the same round trip as its journal entry: a message never
names items that are not stored yet. If sending fails, the journal entry is simply sent by the
sweeper, and an orphan payload expires with the job's results.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from celery import Celery
from kombu.exceptions import OperationalError

from pipeline.messages import (
    BULK_QUEUE,
    PLAN_TASK,
    SEGMENT_TASK,
    WRITE_TASK,
    WRITES_QUEUE,
    Plan,
    Segment,
    SingleWrite,
)
from pipeline.payloads import PayloadStore
from pipeline.redis_boundary import guard
from storage.errors import BackendUnavailableError

Message = Segment | SingleWrite | Plan
"""Every kind of message the pipeline sends; each names the id it is journalled under (``seg``)."""


class Enqueuer(Protocol):
    """How services send messages (Celery in production, a list in unit tests)."""

    def stage(self, m: Message, countdown: float = 0.0) -> None:
        """Journal ``m`` (a segment's items stored with it), due after ``countdown``, without
        sending it: :meth:`send` sends it, or the sweeper when nothing does."""

    def send(self, m: Message, countdown: float = 0.0) -> None:
        """Send the message of a staged ``m``."""

    def segment(self, seg: Segment, countdown: float = 0.0) -> None:
        """Stage and send a segment."""

    def single(self, write: SingleWrite, countdown: float = 0.0) -> None:
        """Stage and send a single write."""

    def plan(self, plan: Plan) -> None:
        """Stage and send a plan."""


_ROUTE = {
    Segment: (SEGMENT_TASK, BULK_QUEUE),
    SingleWrite: (WRITE_TASK, WRITES_QUEUE),
    Plan: (PLAN_TASK, BULK_QUEUE),
}


SERVICE_STEPS = ((2, 0), (8, 3), (32, 6))
"""(segments a job's partition has had before, broker priority): kombu's Redis transport keeps
one list per priority step (0 is served first) and a message without one goes to step 0."""


def segment_priority(idx: int) -> int:
    """The broker priority of a job partition's ``idx``-th segment: least attained service first.

    A job's first segments go ahead of another job's later ones, so a 1,000-item job queued
    behind a 1,000,000-item one starts at once instead of after it, while jobs of like size
    interleave and each partition's segments keep their order (a later one never ranks
    higher). Single writes and plans carry none: step 0.
    """
    for before, step in SERVICE_STEPS:
        if idx < before:
            return step
    return 9


def _message(m: Message) -> dict[str, Any]:
    return m.without_ops().to_message() if isinstance(m, Segment) else m.to_message()


class CeleryEnqueuer:
    """:class:`Enqueuer` over a Celery app's broker; journal and items in ``payloads``."""

    def __init__(self, app: Celery, payloads: PayloadStore) -> None:
        self.app = app
        self.payloads = payloads

    def _send(self, name: str, message: dict[str, Any], queue: str, countdown: float) -> None:
        priority = segment_priority(int(message.get("idx", 0))) if name == SEGMENT_TASK else 0
        try:
            # kombu wraps connection errors as OperationalError, not a Redis reply error (OOM
            # under noeviction, READONLY after a failover): the guard takes those.
            with guard("Enqueue"):
                self.app.send_task(
                    name,
                    args=[message],
                    queue=queue,
                    countdown=countdown if countdown > 0 else None,
                    priority=priority,
                    serializer="json",
                )
        except OperationalError as exc:
            raise BackendUnavailableError(
                f"broker unreachable: {type(exc).__name__}",
                operation="Enqueue",
                code="BrokerUnavailable",
            ) from None

    def stage(self, m: Message, countdown: float = 0.0) -> None:
        task, _ = _ROUTE[type(m)]
        ops, refs = (m.ops, m.refs) if isinstance(m, Segment) else (None, None)
        due = time.time() + countdown
        self.payloads.sent(m.job, m.seg, _message(m), due, ops=ops, task=task, refs=refs)

    def send(self, m: Message, countdown: float = 0.0) -> None:
        task, queue = _ROUTE[type(m)]
        self._send(task, _message(m), queue, countdown)

    def segment(self, seg: Segment, countdown: float = 0.0) -> None:
        self.stage(seg, countdown)
        self.send(seg, countdown)

    def single(self, write: SingleWrite, countdown: float = 0.0) -> None:
        self.stage(write, countdown)
        self.send(write, countdown)

    def plan(self, plan: Plan) -> None:
        self.stage(plan)
        self.send(plan)
