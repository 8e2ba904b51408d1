"""An erase is final: no write enqueued before ``reset_user`` of its user lands after it.

Every job carries a sequence from the one monotonic source single writes use
(:mod:`pipeline.sequence`), taken when the job is created. ``reset_user`` *marks* its user's
erase with its own sequence before its plan is sent; from then on:

* a delivery of a write (a single write, or a segment of a load, delete or replay) is
  *admitted* before it writes anything: one whose job began before the erase is superseded —
  recorded as such, never written; one that began after waits until the erase is finished, so
  the erase never deletes what was asked for after it;
* an admitted delivery is in flight for its user until it leaves (its lease deadline, renewed
  with the lease, plus the longest its last DynamoDB call may retry, bounds it if the worker
  dies); the erase's planner reads keys only once none admitted before the mark is in flight,
  so nothing older lands behind its deletes.

A load still reading when the erase comes began before it: all of it is superseded.

Erase jobs of a user stay marked until a delivery sees them finished (or gone) and releases
them. The check is atomic in Redis (``lua/erasure.lua``); the user's keys share a hash tag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import keys
from pipeline.redis_boundary import Redis, guard
from pipeline.states import Admission

SCRIPT = Path(__file__).parent / "lua" / "erasure.lua"


def member(seq: int, job: str, segment: str, token: str) -> str:
    """How a delivery in flight is named: its job's sequence, its segment and its delivery's
    token (a stale delivery of the same segment leaving must not unlist the live one)."""
    return f"{seq}|{job}|{segment}|{token}"


class Erasure:
    """Erase marks and writes in flight, per user, in one Redis."""

    def __init__(self, client: Redis[Any], *, ttl: int) -> None:
        self.r = client
        self.ttl = ttl
        self._script = client.register_script(SCRIPT.read_text(encoding="utf-8"))

    def _run(self, user: str, *args: object) -> Any:
        with guard(f"Erasure.{args[0]}", self.r):
            return self._script(
                keys=[keys.user_erased(user), keys.user_erasing(user), keys.user_writing(user)],
                args=list(args),
            )

    def mark(self, user: str, job: str, seq: int) -> None:
        """Erase job ``job`` of sequence ``seq`` exists: older writes of ``user`` are
        superseded, newer ones wait for it. Call before its plan is sent."""
        self._run(user, "mark", job, str(seq), str(self.ttl))

    def admit(self, user: str, seq: int, name: str, term: float) -> tuple[Admission, str]:
        """May the delivery ``name`` (see :func:`member`) of a job of sequence ``seq`` write
        now? When ADMITTED it is in flight for ``term`` seconds (renew it); when WAIT, the
        erase job it waits for is returned too."""
        status, job = self._run(user, "admit", str(seq), name, str(int(term * 1000)))
        return Admission(status.decode()), job.decode()

    def renew(self, user: str, name: str, term: float) -> None:
        self._run(user, "renew", name, str(int(term * 1000)))

    def leave(self, user: str, name: str) -> None:
        self._run(user, "leave", name)

    def pending(self, user: str, grace: float) -> int:
        """Deliveries of ``user`` admitted and still writing — or whose lease ended less than
        ``grace`` seconds ago, the longest a DynamoDB call already sent may go on. Asked once
        an erase is marked, when no more can be admitted: all are older than the erase."""
        return int(self._run(user, "pending", str(int(grace * 1000))))

    def release(self, user: str, job: str) -> None:
        """Erase job ``job`` is finished: writes of ``user`` need not wait for it."""
        self._run(user, "release", job)

    def job_sequence(self, job: str) -> tuple[int, str]:
        """The sequence of ``job`` (0 for a job created without one) and its kind."""
        with guard("Erasure.job_sequence", self.r):
            seq, kind = self.r.hmget(keys.job(job), ["seq", "kind"])
        return int(seq or 0), (kind or b"").decode()
