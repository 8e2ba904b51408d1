"""Sending the pipeline's messages through Celery (by task name: producers need no worker code)."""

from __future__ import annotations

import time
from typing import Any

from celery import Celery
from kombu.exceptions import OperationalError

from storage.errors import BackendUnavailableError
from worker.messages import Plan, Segment, SingleWrite
from worker.payloads import PayloadStore

SEGMENT_TASK = "datafold.segment"
WRITE_TASK = "datafold.write"
PLAN_TASK = "datafold.plan"


class CeleryEnqueuer:
    """:class:`worker.segments.Enqueuer` over a Celery app's broker. With ``payloads``, a
    segment's items are stored there first and the message only names them."""

    def __init__(self, app: Celery, payloads: PayloadStore | None = None) -> None:
        self.app = app
        self.payloads = payloads

    def _send(self, name: str, message: dict[str, Any], queue: str, countdown: float) -> None:
        try:
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
        if self.payloads is None:
            self._send(SEGMENT_TASK, seg.to_message(), "bulk", countdown)
            return
        ops, message = seg.ops, seg.without_ops().to_message()
        # Payload and journal first, in one round trip: a message never names items that are
        # not stored yet, and one lost after this is found again (worker.sweeper). If sending
        # fails, the orphan payload expires with the job's results and the journal entry is
        # simply sent by the sweeper.
        self.payloads.sent(seg.job, seg.seg, message, time.time() + countdown, ops=ops)
        self._send(SEGMENT_TASK, message, "bulk", countdown)

    def single(self, write: SingleWrite, countdown: float = 0.0) -> None:
        self._send(WRITE_TASK, write.to_message(), "writes", countdown)

    def plan(self, plan: Plan) -> None:
        self._send(PLAN_TASK, plan.to_message(), "bulk", 0.0)
