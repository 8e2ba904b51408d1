"""Prometheus metrics of the write pipeline (storage's own are in ``storage.metrics``).

Labels are bounded: outcomes, states, queue names, table names. Never a key or a job id.
Items per second is ``rate(datafold_items_total[1m])``.
"""

from __future__ import annotations

from prometheus_client import Counter

ITEMS = Counter(
    "datafold_items_total",
    "Items finished by workers, by outcome: written, deleted, superseded (a later line or a "
    "newer single write for the same key won), dead_lettered.",
    ["outcome"],
)
SEGMENTS = Counter(
    "datafold_segments_total",
    "Segment deliveries by outcome: done, requeued (leftovers sent again with backoff), dead "
    "(something dead-lettered), deferred (waiting for its turn or for a lease), duplicate "
    "(already counted), resent (sent again by the sweeper), fenced (stopped: lease lost).",
    ["outcome"],
)
