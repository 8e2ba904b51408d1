"""Prometheus metrics of the storage layer (names per Prometheus conventions, bounded labels).

Labels are operation names, table names and DynamoDB error codes: all bounded sets. A key, a
value, a user id or a job id is never a label.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_SECONDS = Histogram(
    "datafold_dynamodb_request_seconds",
    "Latency of one DynamoDB call (one attempt), by operation and table.",
    ["operation", "table"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
ERRORS = Counter(
    "datafold_dynamodb_errors_total",
    "DynamoDB calls that failed (one attempt), by operation, table and error code.",
    ["operation", "table", "code"],
)
THROTTLES = Counter(
    "datafold_dynamodb_throttles_total",
    "Throttled DynamoDB calls plus batches that came back with unprocessed items.",
    ["operation", "table"],
)
RETRIES = Counter(
    "datafold_dynamodb_retries_total",
    "Retries made by the storage retry policy and the batch unprocessed-item rounds.",
    ["operation", "table", "code"],
)
BATCH_ITEMS = Counter(
    "datafold_batch_items_total",
    "Items handled by batch writes, by outcome: written, deleted, unprocessed (left after the "
    "bounded rounds), rejected (poison items). Dead letters: datafold_items_total.",
    ["table", "outcome"],
)
CONSUMED_WCU = Counter(
    "datafold_dynamodb_consumed_wcu_total",
    "Write capacity units consumed by batch writes: DynamoDB's figure when "
    "DATAFOLD_DYNAMODB_CONSUMED_CAPACITY is on, else estimated from item sizes.",
    ["table"],
)
