"""The limiter's metrics: waits, shared rates and cuts, per table and per refused partition.

Labels are bounded: a table name, and a partition only as its hash modulo
:data:`LABEL_BUCKETS` — never a key or a user id.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

WAIT_SECONDS = Histogram(
    "datafold_limiter_wait_seconds",
    "Time one acquire waited for write capacity (includes the Redis round trip), by table.",
    ["table"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
RATE_WCU = Gauge(
    "datafold_limiter_rate_wcu",
    "Current shared write rate of a table's limiter, WCU per second.",
    ["table"],
    # Under the prefork pool (multiprocess mode) every process sees the same shared rate:
    # serve the latest value, not one series per pid.
    multiprocess_mode="mostrecent",
)
THROTTLE_CUTS = Counter(
    "datafold_limiter_throttle_cuts_total",
    "Multiplicative cuts of a table's shared rate after throttled or partly refused writes.",
    ["table"],
)

LABEL_BUCKETS = 16
"""Partitions are labelled in metrics by their hash modulo this: bounded, and no user id."""

PARTITION_CUTS = Counter(
    "datafold_limiter_partition_cuts_total",
    "Cuts of a partition key's own rate (refusals of its key range), by table and hashed "
    "partition index (0-15).",
    ["table", "partition"],
)
PARTITION_RATE = Gauge(
    "datafold_limiter_partition_rate_wcu",
    "Rate of a refused partition key's own bucket, WCU/s, by table and hashed partition index.",
    ["table", "partition"],
    multiprocess_mode="mostrecent",
)
HOT_PARTITIONS = Gauge(
    "datafold_limiter_hot_partitions",
    "Partition keys with a bucket of their own (refused lately), in this process, by table.",
    ["table"],
    multiprocess_mode="max",
)
FAIR_LEVEL = Gauge(
    "datafold_limiter_fair_share_wcu",
    "The rate each user wanting more than an equal split is held to while the table is the "
    "bottleneck, WCU/s, by table (the whole rate when no one is held).",
    ["table"],
    multiprocess_mode="mostrecent",
)
ACTIVE_USERS = Gauge(
    "datafold_limiter_active_users",
    "Users sharing a table's rate while it is the bottleneck (asked within the last 2 s).",
    ["table"],
    multiprocess_mode="mostrecent",
)
