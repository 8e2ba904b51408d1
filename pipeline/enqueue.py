"""The enqueue protocol: how services and producers send the pipeline's messages, and its
Celery implementation (by task name: senders need no worker code).

A segment's items go to the payload store with its journal entry first, in one round trip,
then its message: a message never names items that are not stored yet, and one lost after this
is found again by the worker's sweeper. If sending fails, the orphan payload expires with the
job's results and the journal entry is simply sent by the sweeper.
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

    def segment(self, seg: Segment, countdown: float = 0.0) -> None: ...
    def single(self, write: SingleWrite, countdown: float = 0.0) -> None: ...
    def plan(self, plan: Plan) -> None: ...


class CeleryEnqueuer:
    """:class:`Enqueuer` over a Celery app's broker; segment items go to ``payloads``."""

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
        """Store the segment's items (when it carries them), journal it, send its message."""
        message = seg.without_ops().to_message()
        self.payloads.sent(seg.job, seg.seg, message, time.time() + countdown, ops=seg.ops)
        self._send(SEGMENT_TASK, message, BULK_QUEUE, countdown)

    def single(self, write: SingleWrite, countdown: float = 0.0) -> None:
        self._send(WRITE_TASK, write.to_message(), WRITES_QUEUE, countdown)

    def plan(self, plan: Plan) -> None:
        self._send(PLAN_TASK, plan.to_message(), BULK_QUEUE, 0.0)
