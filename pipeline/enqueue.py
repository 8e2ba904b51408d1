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


class Enqueuer(Protocol):
    """How services send messages (Celery in production, a list in unit tests)."""

    def segment(self, seg: Segment, countdown: float = 0.0) -> None:
        """Stage and send a segment."""

    def stage(self, seg: Segment, countdown: float = 0.0) -> None:
        """Store a segment's items and journal it, due after ``countdown``, without sending:
        :meth:`send` sends it, or the sweeper when nothing does."""

    def send(self, seg: Segment, countdown: float = 0.0) -> None:
        """Send the message of a staged segment."""

    def single(self, write: SingleWrite, countdown: float = 0.0) -> None: ...
    def plan(self, plan: Plan) -> None: ...


class CeleryEnqueuer:
    """:class:`Enqueuer` over a Celery app's broker; journal and items in ``payloads``."""

    def __init__(self, app: Celery, payloads: PayloadStore) -> None:
        self.app = app
        self.payloads = payloads

    def _send(self, name: str, message: dict[str, Any], queue: str, countdown: float) -> None:
        try:
            # kombu wraps connection errors as OperationalError, not a Redis reply error (OOM
            # under noeviction, READONLY after a failover): the guard takes those.
            with guard("Enqueue"):
                self.app.send_task(
                    name,
                    args=[message],
                    queue=queue,
                    countdown=countdown if countdown > 0 else None,
                    serializer="json",
                )
        except OperationalError as exc:
            raise BackendUnavailableError(
                f"broker unreachable: {type(exc).__name__}",
                operation="Enqueue",
                code="BrokerUnavailable",
            ) from None

    def segment(self, seg: Segment, countdown: float = 0.0) -> None:
        self.stage(seg, countdown)
        self.send(seg, countdown)

    def stage(self, seg: Segment, countdown: float = 0.0) -> None:
        message = seg.without_ops().to_message()
        self.payloads.sent(seg.job, seg.seg, message, time.time() + countdown, ops=seg.ops)

    def send(self, seg: Segment, countdown: float = 0.0) -> None:
        self._send(SEGMENT_TASK, seg.without_ops().to_message(), BULK_QUEUE, countdown)

    def single(self, write: SingleWrite, countdown: float = 0.0) -> None:
        message = write.to_message()
        due = time.time() + countdown
        self.payloads.sent(write.job, write.seg, message, due, task=WRITE_TASK)
        self._send(WRITE_TASK, message, WRITES_QUEUE, countdown)

    def plan(self, plan: Plan) -> None:
        message = plan.to_message()
        self.payloads.sent(plan.job, plan.seg, message, time.time(), task=PLAN_TASK)
        self._send(PLAN_TASK, message, BULK_QUEUE, 0.0)
