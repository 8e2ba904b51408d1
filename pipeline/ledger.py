"""The job ledger in Redis: state, exact totals, timestamps, dead letters.

Exactness under at-least-once delivery: a segment is counted by one atomic Lua step that first
checks the set of finished segment ids, so a redelivered segment is never counted twice; segment
ids are deterministic, and planning one is idempotent. A job is complete when it is sealed (all
segments planned) and as many segments are done as were planned; requeued children are planned
inside the same atomic step that finishes their parent. Everything expires ``ttl`` seconds after
the job's last change. What it reports is :mod:`pipeline.status`.

Planning a segment is also where backpressure and resumption live: with a budget, a segment is
planned only while the payload bytes queued by every job leave room for it (its bytes leave
the budget when it is recorded); with a producer token, only by the job's current producer
(:mod:`pipeline.producing`); with a checkpoint, the checkpoint is stored in the same step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from pipeline import keys
from pipeline.erasure import Erasure
from pipeline.payloads import journal_member
from pipeline.producing import Producing
from pipeline.redis_boundary import Redis, guard
from pipeline.sequence import Sequencer
from pipeline.states import JobKind, JobState
from pipeline.status import DeadLetter, JobStatus, Lease, LeaseStatus, Planned, PlanStatus, Recorded
from storage.errors import JobNotFoundError, ProducerFencedError
from storage.redact import scrub


class Ledger:
    """Job bookkeeping on a Redis client (``decode_responses=False``)."""

    def __init__(
        self,
        client: Redis[Any],
        *,
        ttl: int = 7 * 24 * 3600,
        clock: Callable[[], float] = time.time,
        producer_timeout: float = 60.0,
    ) -> None:
        self.r = client
        self.ttl = ttl
        self.clock = clock
        source = (Path(__file__).parent / "lua" / "ledger.lua").read_text(encoding="utf-8")
        self._script = client.register_script(source)
        self.producing = Producing(client, timeout=producer_timeout, ttl=ttl, clock=clock)
        self.erasure, self.sequencer = Erasure(client, ttl=ttl), Sequencer(client)

    def _keys(self, job_id: str, segment: str = "") -> list[str]:
        return [
            keys.job(job_id),
            keys.job_done_segments(job_id),
            keys.job_planned_segments(job_id),
            keys.job_dead_letters(job_id),
            keys.job_order(job_id),
            keys.job_deliveries(job_id),
            keys.job_holders(job_id),
            keys.segment_lease(job_id, segment),
            keys.job_sizes(job_id),
            keys.queued_bytes(),
            keys.producing(),
            keys.segment_payload(job_id, segment),
            keys.segment_messages(),
            keys.job_finished(job_id),
        ]

    def _run(self, job_id: str, op: str, *args: Any, segment: str = "") -> Any:
        with guard(f"Ledger.{op}", self.r):
            return self._script(keys=self._keys(job_id, segment), args=[op, *args])

    def _guard(self, fn: Callable[[], Any], op: str = "read") -> Any:
        with guard(f"Ledger.{op}", self.r):
            return fn()

    def create(
        self,
        job_id: str,
        *,
        kind: JobKind,
        namespace: str = "",
        user_id: str = "",
        producer: str = "",
        seq: int = 0,
        extra: dict[str, str] | None = None,
    ) -> int:
        """A new job; with ``producer`` (a token), held by that producer from now on (its
        heartbeat starts: see :mod:`pipeline.producing`). Returns its sequence, ``seq`` or a
        new one: its place among writes and erases (:mod:`pipeline.erasure`)."""
        now, seq = self.clock(), seq or self.sequencer.next("Ledger.create")
        fields: dict[str | bytes, str] = {
            "id": job_id,
            "seq": str(seq),
            "state": JobState.QUEUED,
            "kind": kind,
            "namespace": namespace,
            "user_id": user_id,
            "created_at": repr(now),
            **{f"x_{k}": v for k, v in (extra or {}).items()},
        }

        def go() -> None:
            pipe = self.r.pipeline()
            pipe.hset(keys.job(job_id), mapping=fields)
            pipe.expire(keys.job(job_id), self.ttl)
            pipe.zadd(keys.jobs_index(), {job_id: now})
            pipe.zremrangebyscore(keys.jobs_index(), 0, now - self.ttl)
            if producer:
                self.producing.begin(job_id, producer, pipe)
            pipe.execute()

        self._guard(go, "create")
        return seq

    def plan(
        self,
        job_id: str,
        segment: str,
        items: int,
        *,
        size: int = 0,
        budget: int = 0,
        producer: str = "",
        checkpoint: str = "",
        lines: int = 0,
    ) -> Planned:
        """Register a segment of ``items`` items and ``size`` payload bytes (idempotent).
        With ``budget`` > 0, only if the queued bytes of every job leave room (else FULL:
        nothing done, wait for workers); with ``producer``, only by the job's producer (else
        ProducerFencedError); ``checkpoint`` (with the input ``lines`` it covers) is stored in
        the same step."""
        args = (segment, items, self.ttl, size, budget, producer, checkpoint, lines)
        status, queued = self._run(job_id, "plan", *args)
        answer = Planned(PlanStatus(int(status)), int(queued))
        if answer.status is PlanStatus.FENCED:
            raise ProducerFencedError(
                f"job {job_id} is no longer this producer's (marked abandoned, or resumed "
                "elsewhere): stopped",
                operation="Plan",
            )
        return answer

    def seal(self, job_id: str, rejected: int = 0, *, producer: str = "") -> None:
        """Every segment is planned; ``rejected`` input lines were refused. With ``producer``,
        only by the job's producer (else ProducerFencedError)."""
        if self._run(job_id, "seal", rejected, repr(self.clock()), self.ttl, producer) == -1:
            raise ProducerFencedError(
                f"job {job_id} is no longer this producer's: not sealed", operation="Seal"
            )

    def unplan_unsent(self, job_id: str) -> int:
        """Take back the planned segments of a stopped job that were never staged (its producer
        stopped between planning and staging): nothing would run them, so they would hold
        budget and keep the job from finishing. A resume cuts them again. Returns how many."""
        pending = self._guard(
            lambda: self.r.sdiff(keys.job_planned_segments(job_id), keys.job_done_segments(job_id))
        )
        n = 0
        for raw in pending:
            seg = raw.decode()
            n += int(self._run(job_id, "unplan", seg, journal_member(job_id, seg), segment=seg))
        return n

    def is_done(self, job_id: str, segment: str) -> bool:
        return bool(self._guard(lambda: self.r.sismember(keys.job_done_segments(job_id), segment)))

    def next_index(self, job_id: str, partition: str) -> int:
        raw = self._guard(lambda: self.r.hget(keys.job_order(job_id), partition))
        return int(raw or 0)

    def take(
        self, job_id: str, segment: str, token: str, lease_seconds: float, parent: str | None = None
    ) -> Lease:
        """Try to take ``segment``'s lease for the delivery ``token`` (see :class:`Lease`);
        ``parent``: the segment whose leftovers a requeued child carries."""
        raw_status, n = self._run(
            job_id,
            "take",
            segment,
            token,
            max(1, round(lease_seconds * 1000)),
            repr(self.clock()),
            self.ttl,
            parent or "",
            segment=segment,
        )
        status = LeaseStatus(int(raw_status))
        if status is LeaseStatus.HELD:
            return Lease(status, expires_in=max(0, int(n)) / 1000)
        return Lease(status, deliveries=int(n))

    def renew(self, job_id: str, segment: str, token: str, lease_seconds: float) -> bool:
        """Extend the lease ``token`` holds; False if it no longer holds it."""
        ms = max(1, round(lease_seconds * 1000))
        return bool(self._run(job_id, "renew", segment, token, ms, segment=segment))

    def release(self, job_id: str, segment: str, token: str) -> None:
        """Give the lease back unrecorded: the next delivery takes it without counting one."""
        self._run(job_id, "release", segment, token, segment=segment)

    def finish(
        self,
        job_id: str,
        segment: str,
        *,
        written: int = 0,
        deleted: int = 0,
        superseded: int = 0,
        dead: Iterable[DeadLetter] = (),
        dead_items: int | None = None,
        failure: str = "",
        child: str | None = None,
        partition: str | None = None,
        next_index: int = 0,
        token: str = "",
        wcu: float = 0.0,
    ) -> Recorded:
        """Record a finished segment exactly once. With ``token``, only while that delivery
        holds the segment's lease (else FENCED: nothing is recorded), and the lease is freed.
        ``dead_items`` counts the items dead-lettered (default: one per letter; a lost payload's
        letter stands for all its items); ``failure`` marks a step that failed without items
        (a plan), so the job cannot end ``succeeded``; ``wcu``: capacity units it consumed."""
        letters = [d.to_json() for d in dead]
        res = self._run(
            job_id,
            "finish",
            segment,
            written,
            deleted,
            superseded,
            child or "",
            partition or "",
            next_index,
            repr(self.clock()),
            self.ttl,
            token,
            len(letters) if dead_items is None else dead_items,
            scrub(failure),
            repr(float(wcu)),
            *letters,
            segment=segment,
        )
        return Recorded(int(res))

    def status(self, job_id: str) -> JobStatus:
        """The job now. A job whose producer went silent past the timeout is marked
        abandoned first: what this reports is true even with no worker running."""
        st = self._status(job_id)
        live = st.state in (JobState.QUEUED, JobState.RUNNING) and st.fed
        if live and self.producing.abandon_if_stale(job_id):
            self.unplan_unsent(job_id)
            st = self._status(job_id)
        return st

    def _status(self, job_id: str) -> JobStatus:
        def go() -> tuple[dict[bytes, bytes], int, int]:
            pipe = self.r.pipeline()
            pipe.hgetall(keys.job(job_id))
            pipe.scard(keys.job_planned_segments(job_id))
            pipe.scard(keys.job_done_segments(job_id))
            h, planned, done = pipe.execute()
            return h, planned, done

        h, planned, done = self._guard(go)
        if not h:
            raise JobNotFoundError(
                f"no job {job_id!r} (unknown, or its results expired)", operation="JobStatus"
            )
        return JobStatus.from_hash(job_id, h, planned=planned, done=done)

    def dead_letters(self, job_id: str, *, batch: int = 500) -> Iterator[DeadLetter]:
        start = 0
        while True:
            chunk = self._guard(
                partial(self.r.lrange, keys.job_dead_letters(job_id), start, start + batch - 1)
            )
            for raw in chunk:
                yield DeadLetter.from_json(raw)
            if len(chunk) < batch:
                return
            start += batch

    def count_by_state(self, limit: int = 10000) -> dict[str, int]:
        """Jobs per state among the most recent ``limit`` (for the exporter)."""
        ids = self._guard(lambda: self.r.zrevrange(keys.jobs_index(), 0, limit - 1))
        pipe = self.r.pipeline()
        for i in ids:
            pipe.hget(keys.job(i.decode()), "state")
        counts: dict[str, int] = dict.fromkeys(JobState, 0)
        for st in self._guard(pipe.execute):
            if st is not None:
                counts[st.decode()] = counts.get(st.decode(), 0) + 1
        return counts
