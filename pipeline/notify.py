"""Waking a job's waiters the moment it finishes, instead of at their next poll.

The Lua step that makes a job finished (as :attr:`JobStatus.finished` says: a final state, or a
stopped load whose sent segments are all recorded) pushes one element onto the job's finished
list (``keys.job_finished``) in the same atomic step: ``ledger.lua``'s ``finish``, ``seal`` and
``unplan``, ``producer.lua``'s ``stop`` and ``abandon``. Nothing pops it: a waiter blocks on
``BLMOVE list list`` (Redis 6.2 or later) with the same list as source and destination, which
moves the element back onto the list it came from: it stays for every other waiter, and one
who comes later returns at once. Redis wakes every client blocked on the list when the element
is pushed.
The list expires with the job's other keys; a resumed load's ``resume`` deletes it.

The signal only shortens a wait: a waiter still reads the job's status when woken and at least
once per block period, so a missed wake-up (a Redis restart) or a state seen only on reading
(an abandoned producer, marked by whoever reads the status) costs at most one period. Each
block is shorter than the client's socket timeout, so no wait looks like a dead Redis.
"""

from __future__ import annotations

from typing import Any

from pipeline import keys
from pipeline.redis_boundary import Redis, guard, socket_timeout

SHORTEST = 0.01
"""Seconds: the least a block asks Redis for (0 would mean for ever)."""


class FinishedSignal:
    """Blocks until a job's finished signal is set, on a Redis client."""

    def __init__(self, client: Redis[Any]) -> None:
        self.r = client
        limit = socket_timeout(client)
        self.longest = float("inf") if limit is None else max(SHORTEST, limit / 2)
        """The longest one block may last: half the client's socket timeout."""

    def wait(self, job_id: str, seconds: float) -> bool:
        """Block until ``job_id``'s finished signal is set (True; at once if it is already)
        or ``seconds`` pass (False), at most :attr:`longest` (False if cut there)."""
        block = min(max(seconds, SHORTEST), self.longest)
        key = keys.job_finished(job_id)
        with guard("FinishedSignal.wait", self.r):
            return self.r.execute_command("BLMOVE", key, key, "RIGHT", "LEFT", block) is not None
