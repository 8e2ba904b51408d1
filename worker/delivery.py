"""What one delivery of a message is, and how long a requeued message waits.

Shared by the segment runner and the single-write runner.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable

from pipeline.config import PipelineConfig


class Delivery:
    """One delivery of a message: its delivery number is taken from the ledger once, however
    often the service re-runs it (a re-run after a Redis outage is the same delivery), and its
    ``token`` names it as a segment's lease holder."""

    def __init__(self) -> None:
        self.number: int | None = None
        self.token = uuid.uuid4().hex
        self.runs = 0  # how often the service ran it (re-runs after a Redis outage)

    def count(self, take: Callable[[], int]) -> int:
        if self.number is None:
            self.number = take()
        return self.number


def requeue_delay(attempt: int, cfg: PipelineConfig, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped; never 0."""
    d = min(cfg.requeue_max_delay, cfg.requeue_base_delay * (2**attempt))
    return float(d / 2 + rng.uniform(0, d / 2))
