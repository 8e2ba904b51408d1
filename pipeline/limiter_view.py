"""A read-only look at the global rate limiter from outside the workers: a table's current
shared write rate, as ``worker/limiter/token_bucket.lua`` keeps it (field ``rate``, WCU/s)."""

from __future__ import annotations

from typing import Any

from pipeline import keys
from pipeline.redis_boundary import Redis, guard


def current_rate(client: Redis[Any], table: str) -> float | None:
    """The limiter's rate for ``table`` now (WCU/s), or None if no worker has written to it
    lately (its bucket expired or never existed). BackendUnavailableError if Redis is gone."""
    with guard("LimiterRate", client, table=table):
        raw = client.hget(keys.limiter_bucket(table), "rate")
    return float(raw) if raw else None
