"""Who feeds a job, seen from Redis: a producer's heartbeat, how it stops, and who resumes it.

A producer holds its job by a random token from creation (``Ledger.create(producer=...)``)
until it seals it (``Ledger.seal``), hands it off (a plan job: the worker's planner seals it),
or stops before the end of its input. Only the token's holder may plan segments or seal: a
producer that was marked abandoned, or whose job another producer resumed, is fenced off and
cannot count anything twice. States it leaves behind (``pipeline.states.JobState``):

- ``incomplete``: the producer stopped and said why (interrupted, its input raised, a bad
  file) — :meth:`Producing.stop`;
- ``abandoned``: the producer went silent (killed, machine lost, broker unreachable) for longer
  than ``DATAFOLD_PRODUCER_TIMEOUT`` — :meth:`Producing.abandon_stale` (the worker's sweeper)
  and :meth:`Producing.abandon_if_stale` (anyone reading the job's status).

Heartbeats are Redis ``TIME``: no two machines' clocks are compared. The steps are
``lua/producer.lua``; the queued-bytes budget they share with segments is in ``ledger.lua``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipeline import keys
from pipeline.redis_boundary import Redis, guard
from storage.errors import NotResumableError
from storage.redact import scrub

SCRIPT = Path(__file__).parent / "lua" / "producer.lua"
MAX_REJECTED_KEPT = 1000


class Producing:
    """The producer steps of ``lua/producer.lua`` on a Redis client."""

    def __init__(
        self,
        client: Redis[Any],
        *,
        timeout: float,
        ttl: int = 7 * 24 * 3600,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.r = client
        self.timeout = timeout
        self.ttl = ttl
        self.clock = clock
        self._script = client.register_script(SCRIPT.read_text(encoding="utf-8"))

    @staticmethod
    def _keys(job_id: str) -> list[str]:
        return [
            keys.job(job_id),
            keys.producing(),
            keys.job_done_segments(job_id),
            keys.job_planned_segments(job_id),
            keys.job_finished(job_id),
        ]

    def _run(self, job_id: str, op: str, *args: Any) -> Any:
        with guard(f"Producing.{op}", self.r):
            return self._script(keys=self._keys(job_id), args=[op, *args])

    def begin(self, job_id: str, token: str, pipe: Any) -> None:
        """Queue on ``pipe`` (the job's creation) the first heartbeat of producer ``token``."""
        args = ["begin", token, self._timeout_ms]
        self._script(keys=self._keys(job_id), args=args, client=pipe)

    def beat(self, job_id: str, token: str) -> bool:
        """The producer ``token`` is alive; False if it no longer holds the job."""
        return bool(self._run(job_id, "beat", token, self._timeout_ms))

    def stop(self, job_id: str, token: str, reason: str) -> bool:
        """Mark the job ``incomplete``: its input was not read to the end, because ``reason``."""
        return bool(self._run(job_id, "stop", token, scrub(reason)[:500], repr(self.clock())))

    def handoff(self, job_id: str, token: str) -> None:
        """The producer's part is done; the job is sealed by someone else (the planner)."""
        self._run(job_id, "handoff", token)

    @property
    def _timeout_ms(self) -> int:
        return max(1, round(self.timeout * 1000))

    def abandon_if_stale(self, job_id: str) -> bool:
        """Mark the job ``abandoned`` if its producer is past its deadline (its last heartbeat
        plus the producer's own timeout)."""
        return bool(self._run(job_id, "abandon", job_id, repr(self.clock())))

    def abandon_stale(self, limit: int = 1000) -> list[str]:
        """Mark ``abandoned`` every job whose producer is past its deadline (each checked again
        atomically); returns their ids."""
        with guard("Producing.stale", self.r):
            secs, micros = self.r.time()
            now_ms = secs * 1000 + micros // 1000
            stale = self.r.zrangebyscore(keys.producing(), "-inf", now_ms, start=0, num=limit)
        ids = [raw.decode() if isinstance(raw, bytes) else str(raw) for raw in stale]
        return [job_id for job_id in ids if self.abandon_if_stale(job_id)]

    def resume(self, job_id: str, token: str) -> str:
        """Take over an ``incomplete`` or ``abandoned`` job (one whose producer is silent past
        the timeout is marked abandoned first); returns its checkpoint (JSON, or "" if it has
        none). NotResumableError if the job is sealed, finished or still fed by its producer."""
        self.abandon_if_stale(job_id)
        ok, what = self._run(job_id, "resume", token, self._timeout_ms)
        text = what.decode() if isinstance(what, bytes) else str(what)
        if not ok:
            state = text or "unknown"
            why = (
                "its producer is still feeding it"
                if state in ("queued", "running")
                else "its input was read to the end"
            )
            raise NotResumableError(
                f"job {job_id} is {state}: {why}; only an incomplete or abandoned load resumes",
                operation="Resume",
            )
        return text

    def checkpoint(self, job_id: str) -> str:
        """The job's last checkpoint (JSON), or "" if it has none."""
        with guard("Producing.checkpoint", self.r):
            raw = self.r.hget(keys.job(job_id), "checkpoint")
        return "" if raw is None else raw.decode()

    def sent(self, job_id: str, segment: str) -> bool:
        """Whether ``segment`` is recorded, or planned and staged (its payload stored): one
        planned by a producer that died before staging it, or taken back since
        (``Ledger.unplan_unsent``), is neither."""
        with guard("Producing.sent", self.r):
            pipe = self.r.pipeline(transaction=True)
            pipe.sismember(keys.job_done_segments(job_id), segment)
            pipe.sismember(keys.job_planned_segments(job_id), segment)
            pipe.exists(keys.segment_payload(job_id, segment))
            done, planned, stored = pipe.execute()
        return bool(done) or (bool(planned) and bool(stored))

    def reject_lines(self, job_id: str, lines: Iterable[tuple[int, str]]) -> None:
        """Keep (at most 1000) rejected input lines for display."""
        payload = [json.dumps({"line": n, "reason": r}) for n, r in lines]
        if payload:

            def go() -> None:
                pipe = self.r.pipeline()
                pipe.rpush(keys.job_rejected(job_id), *payload)
                pipe.ltrim(keys.job_rejected(job_id), 0, MAX_REJECTED_KEPT - 1)
                pipe.expire(keys.job_rejected(job_id), self.ttl)
                pipe.execute()

            with guard("Producing.reject_lines", self.r):
                go()

    def rejected_lines(self, job_id: str) -> list[tuple[int, str]]:
        with guard("Producing.rejected", self.r):
            raw = self.r.lrange(keys.job_rejected(job_id), 0, -1)
        return [(d["line"], d["reason"]) for d in map(json.loads, raw)]

    def keep_rejected_through(self, job_id: str, line: int) -> None:
        """Forget the rejected lines shown for lines after ``line`` (a resumed load reads them
        again and rejects them again)."""
        key = keys.job_rejected(job_id)
        with guard("Producing.rejected", self.r):
            raw = self.r.lrange(key, 0, -1)
            kept = sum(1 for r in raw if json.loads(r)["line"] <= line)  # kept in line order
            if kept < len(raw):
                self.r.ltrim(key, 0, kept - 1) if kept else self.r.delete(key)

    def queued_bytes(self) -> int:
        """Payload bytes queued and unfinished, over every job on this Redis."""
        with guard("Producing.queued", self.r):
            return sum(int(v) for v in self.r.hvals(keys.queued_bytes()))

    def heal_queued(self) -> int:
        """Drop from the queued-bytes budget every job whose results expired (its segments can
        no longer run); returns how many. Run by the sweeper."""
        with guard("Producing.heal", self.r):
            fields = [f.decode() for f in self.r.hkeys(keys.queued_bytes())]
            if not fields:
                return 0
            pipe = self.r.pipeline(transaction=False)
            for job_id in fields:
                pipe.exists(keys.job(job_id))
            gone = [f for f, alive in zip(fields, pipe.execute(), strict=True) if not alive]
            if gone:
                self.r.hdel(keys.queued_bytes(), *gone)
        return len(gone)
