"""What one delivery of a message is, and how long a requeued message waits.

Shared by the segment runner, the single-write runner and the planner.
"""

from __future__ import annotations

import random
import uuid

from pipeline.config import PipelineConfig


class Delivery:
    """One delivery of a message, however often the service re-runs it (a re-run after a Redis
    outage is the same delivery): its ``token`` names it as the lease holder, ``runs`` counts
    the runs so each names its requeued leftovers apart."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex
        self.runs = 0  # how often the service ran it (re-runs after a Redis outage)


def requeue_delay(attempt: int, cfg: PipelineConfig, rng: random.Random) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, capped; never 0."""
    d = min(cfg.requeue_max_delay, cfg.requeue_base_delay * (2**attempt))
    return float(d / 2 + rng.uniform(0, d / 2))
