"""Every Redis key the pipeline uses, built here and nowhere else (Lua scripts get them as KEYS).

All keys live under ``datafold:``. Job keys share a ``{job_id}`` hash tag so a Redis Cluster
keeps one job's keys in one slot (the ledger's Lua touches several at once).
"""

from __future__ import annotations

PREFIX = "datafold"


def limiter_bucket(table: str) -> str:
    """Hash: the token bucket and adaptive rate of one table."""
    return f"{PREFIX}:limiter:{table}"


def limiter_shares(table: str) -> str:
    """Hash: each user's fair share of one table's rate (fields: hashed partition keys)."""
    return f"{PREFIX}:limiter-shares:{table}"


def job(job_id: str) -> str:
    """Hash: a job's state, totals, timestamps and description."""
    return f"{PREFIX}:job:{{{job_id}}}"


def job_done_segments(job_id: str) -> str:
    """Set: ids of the job's finished segments (a redelivered one is never counted twice)."""
    return f"{PREFIX}:job:{{{job_id}}}:done"


def job_planned_segments(job_id: str) -> str:
    """Set: ids of every segment planned for the job, requeued children included."""
    return f"{PREFIX}:job:{{{job_id}}}:planned"


def job_order(job_id: str) -> str:
    """Hash: partition -> index of the next segment allowed to run (in-job ordering)."""
    return f"{PREFIX}:job:{{{job_id}}}:order"


def job_deliveries(job_id: str) -> str:
    """Hash: segment id -> deliveries so far (a segment that keeps killing workers stops)."""
    return f"{PREFIX}:job:{{{job_id}}}:deliveries"


def job_holders(job_id: str) -> str:
    """Hash: segment id -> token of the delivery that last took its lease and has neither
    recorded nor released it (a holder that vanished is seen here when its lease expired)."""
    return f"{PREFIX}:job:{{{job_id}}}:holders"


def job_finished(job_id: str) -> str:
    """List: one element once the job is finished, pushed by the Lua step that finishes it and
    never popped (waiters rotate it onto itself: ``pipeline.notify``); gone when it resumes."""
    return f"{PREFIX}:job:{{{job_id}}}:finished"


def segment_lease(job_id: str, segment: str) -> str:
    """String: the token of the delivery allowed to write ``segment`` (expiring; renewed)."""
    return f"{PREFIX}:job:{{{job_id}}}:lease:{segment}"


def job_dead_letters(job_id: str) -> str:
    """List: the job's dead letters, one JSON object each (key, reason, code)."""
    return f"{PREFIX}:job:{{{job_id}}}:dead"


def job_rejected(job_id: str) -> str:
    """List: rejected input lines, one JSON object each (line, reason), capped."""
    return f"{PREFIX}:job:{{{job_id}}}:rejected"


def job_sizes(job_id: str) -> str:
    """Hash: segment id -> payload bytes of each planned segment not yet recorded (what the
    job holds of the queued-bytes budget)."""
    return f"{PREFIX}:job:{{{job_id}}}:sizes"


def segment_payload(job_id: str, segment: str) -> str:
    """String: the items of one segment (``pipeline.payloads``), until the segment is finished."""
    return f"{PREFIX}:job:{{{job_id}}}:payload:{segment}"


def segment_refs(job_id: str, segment: str) -> str:
    """String: the input and line of each item of a segment loaded from files
    (``pipeline.refs``), beside its payload and deleted with it."""
    return f"{PREFIX}:job:{{{job_id}}}:refs:{segment}"


def segments_due() -> str:
    """Sorted set: journalled segments (``["job", "segment"]``) by when their message became
    due; removed when the segment is recorded (``worker.sweeper`` finds lost messages)."""
    return f"{PREFIX}:segments:due"


def segment_messages() -> str:
    """Hash: journalled segment (as in :func:`segments_due`) -> its task message (JSON)."""
    return f"{PREFIX}:segments:messages"


def sweeper_turn() -> str:
    """String: held by the worker sweeping this interval (SET NX with expiry)."""
    return f"{PREFIX}:sweeper:turn"


def jobs_index() -> str:
    """Sorted set: job ids by creation time, for listing and the jobs-by-state exporter."""
    return f"{PREFIX}:jobs"


def queued_bytes() -> str:
    """Hash: job id -> payload bytes its planned, unrecorded segments hold in Redis; their sum
    is held under ``DATAFOLD_MAX_QUEUED_BYTES`` by every producer (backpressure)."""
    return f"{PREFIX}:queued"


def producing() -> str:
    """Sorted set: jobs a producer is still feeding, by its last heartbeat (Redis ``TIME``,
    ms); one silent longer than ``DATAFOLD_PRODUCER_TIMEOUT`` is marked abandoned."""
    return f"{PREFIX}:producing"


def write_sequence() -> str:
    """String: the last sequence handed to a single-key write (``pipeline.sequence``)."""
    return f"{PREFIX}:seq"


def user_erased(user: str) -> str:
    """String: the highest sequence of an erase (``reset_user``) of ``user``; a write of that
    user whose job began before it never lands (``pipeline.erasure``). Keys of one user share
    a ``{user}`` hash tag."""
    return f"{PREFIX}:user:{{{user}}}:erased"


def user_erasing(user: str) -> str:
    """Sorted set: erase jobs of ``user`` not yet seen finished -> their sequence (new writes
    of the user wait for them)."""
    return f"{PREFIX}:user:{{{user}}}:erasing"


def user_writing(user: str) -> str:
    """Sorted set: ``seq|job|segment|token`` of each delivery writing for ``user`` -> its lease
    deadline in ms (an erase waits for the older ones to end)."""
    return f"{PREFIX}:user:{{{user}}}:writing"


# -- the broker's keys (kombu's Redis transport names them; listed here so nothing else does) --
BROKER_PRIORITY_SEP = "\x06\x16"
BROKER_PRIORITY_STEPS = (0, 3, 6, 9)


def broker_queue_lists(queue: str) -> tuple[str, ...]:
    """Lists holding a Celery queue's waiting messages: the queue's own name, plus kombu's
    priority sub-queues (``bulk\\x06\\x163`` ...), empty unless priorities are used."""
    return tuple(
        queue if p == 0 else f"{queue}{BROKER_PRIORITY_SEP}{p}" for p in BROKER_PRIORITY_STEPS
    )


def broker_unacked() -> str:
    """Hash: messages delivered to a worker and not yet acknowledged (running, prefetched, or
    waiting for their countdown), over every queue."""
    return "unacked"
