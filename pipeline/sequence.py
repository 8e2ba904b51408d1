"""Sequences of single-key writes: of the puts and deletes of one key, the one with the higher
sequence wins (the workers' conditional writes compare them).

A sequence is one more than the last and never below Redis's clock in microseconds
(``lua/sequence.lua``): losing the counter — a failover to a lagging replica, an AOF that missed
its last second, a ``FLUSHDB``, a new Redis in front of existing tables — cannot send
sequences backwards, so a later write never loses to an earlier one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline import keys
from pipeline.redis_boundary import Redis, guard

SCRIPT = Path(__file__).parent / "lua" / "sequence.lua"


class Sequencer:
    """Hands out write sequences from one Redis."""

    def __init__(self, client: Redis[Any]) -> None:
        self.r = client
        self._script = client.register_script(SCRIPT.read_text(encoding="utf-8"))

    def next(self, operation: str = "Producer.sequence") -> int:
        """The next sequence; a Redis failure is an error of ``operation``."""
        with guard(operation, self.r):
            raw = self._script(keys=[keys.write_sequence()])
        return int(raw)
