"""Re-sends messages that were lost between the broker and a worker, or given up by a task.

kombu's Redis transport takes a message off its queue (``BRPOP``) before it records it as
unacknowledged: a worker killed in that instant loses the message (celery/kombu#305), and its
job would stay ``running`` for ever; a task that fails (Redis gone longer than it waits) is
acknowledged by Celery all the same. So every message — segment, single write, plan — is
journalled before it is sent (``pipeline.payloads``: its task, message and when it became due),
until it is recorded finished. The sweep also marks abandoned the jobs whose producer went
silent (``pipeline.producing``). A sweep, run by one worker at a time every
``DATAFOLD_SWEEP_INTERVAL`` seconds, takes the journalled messages due more than
``DATAFOLD_SWEEP_GRACE`` seconds ago that are neither recorded, nor waiting in a queue, nor
held unacknowledged by a worker, and sends them again. A duplicate is harmless (the ledger
counts each id once; segment leases fence a second delivery; single writes are conditional), so
when in doubt the sweep sends.

Cost: one ``SET NX`` per interval per worker; when something is overdue, one read of the
waiting and unacknowledged messages (small JSON each: the items are in the payloads).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from pipeline import keys
from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger
from pipeline.messages import (
    BULK_QUEUE,
    PLAN_TASK,
    SEGMENT_TASK,
    WRITE_TASK,
    WRITES_QUEUE,
    Plan,
    Segment,
    SingleWrite,
    journal_id,
)
from pipeline.payloads import PayloadStore
from pipeline.redis_boundary import Redis, guard
from pipeline.states import Outcome
from storage.errors import BackendUnavailableError
from worker.metrics import SEGMENTS

log = logging.getLogger(__name__)

SWEPT_QUEUES = (BULK_QUEUE, WRITES_QUEUE)
MAX_PER_SWEEP = 1000


def _named_by(envelope: dict[str, Any]) -> tuple[str, str] | None:
    """(job, id) of a Celery message envelope holding one of our tasks, else None."""
    task = str((envelope.get("headers") or {}).get("task"))
    body: Any = envelope.get("body", "")
    if (envelope.get("properties") or {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    message = json.loads(body)[0][0]
    named = journal_id(task, message)
    return None if named is None else (str(message["job"]), named)


def in_broker(raw_messages: Iterable[bytes], unacked: Iterable[bytes]) -> set[tuple[str, str]]:
    """(job, id) named by waiting messages (queue lists) and unacknowledged ones (kombu keeps
    ``[envelope, exchange, routing_key]``). A message that cannot be read names nothing."""
    found: set[tuple[str, str]] = set()
    for raw, wrapped in [(m, False) for m in raw_messages] + [(m, True) for m in unacked]:
        try:
            doc = json.loads(raw)
            seg = _named_by(doc[0] if wrapped else doc)
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            continue
        if seg is not None:
            found.add(seg)
    return found


class Sweeper:
    def __init__(
        self,
        *,
        payloads: PayloadStore,
        ledger: Ledger,
        enqueue: Enqueuer,
        broker: Redis[Any] | None,
        interval: float,
        grace: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.payloads = payloads
        self.ledger = ledger
        self.enqueue = enqueue
        self.broker = broker
        self.interval = interval
        self.grace = grace
        self.clock = clock
        self._token = uuid.uuid4().hex

    def _broker_segments(self) -> set[tuple[str, str]]:
        assert self.broker is not None
        pipe = self.broker.pipeline(transaction=False)
        for q in SWEPT_QUEUES:
            for name in keys.broker_queue_lists(q):
                pipe.lrange(name, 0, -1)
        pipe.hvals(keys.broker_unacked())
        with guard("Sweeper.broker", self.broker):
            *lists, unacked = pipe.execute()
        return in_broker([m for lst in lists for m in lst], unacked)

    def sweep(self) -> int:
        """One sweep if no other worker holds this interval's turn; the segments sent again."""
        if self.broker is None:
            return 0
        r = self.payloads.r
        turn_ms = max(1, int(self.interval * 1000 * 0.9))
        with guard("Sweeper.turn", r):
            taken = r.set(keys.sweeper_turn(), self._token, nx=True, px=turn_ms)
        if not taken:
            return 0
        now = self.clock()
        self.payloads.forget_older(now - self.payloads.ttl)  # results gone: nothing to finish
        for job in self.ledger.producing.abandon_stale():
            self.ledger.unplan_unsent(job)
            log.warning("job %s: its producer went silent; marked abandoned", job)
        self.ledger.producing.heal_queued()
        overdue = self.payloads.overdue(now - self.grace, MAX_PER_SWEEP)
        if not overdue:
            return 0
        present = self._broker_segments()
        resent = 0
        for job, seg, task, message in overdue:
            if (job, seg) in present:
                continue
            if self.ledger.is_done(job, seg):
                self.payloads.delete(job, seg)
                continue
            try:
                self._resend(task, message)  # journals it as due now
            except (ValueError, KeyError, TypeError) as exc:
                # Not a message this version reads: sending it again would fail again. Drop
                # the entry, loudly; one bad entry must not stop the sweep of the others.
                log.error("job %s %s: journalled message unreadable (%s); dropped", job, seg, exc)
                self.payloads.delete(job, seg)
                continue
            SEGMENTS.labels(Outcome.RESENT).inc()
            resent += 1
            log.warning(
                "job %s %s: its message was lost on the way to a worker or given up; sent again",
                job,
                seg,
            )
        return resent

    def _resend(self, task: str, message: dict[str, Any]) -> None:
        if task == SEGMENT_TASK:
            self.enqueue.segment(Segment.from_message(message))
        elif task == WRITE_TASK:
            self.enqueue.single(SingleWrite.from_message(message))
        elif task == PLAN_TASK:
            self.enqueue.plan(Plan.from_message(message))

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            try:
                self.sweep()
            except BackendUnavailableError as exc:
                log.warning("sweep skipped: %s", exc)
            except Exception:  # a sweep must never take the worker down
                log.exception("sweep failed")

    def start(self) -> threading.Event:
        """Sweep in a daemon thread; set the returned event to stop it."""
        stop = threading.Event()
        threading.Thread(
            target=self.run_forever, args=(stop,), name="datafold-sweeper", daemon=True
        ).start()
        return stop
