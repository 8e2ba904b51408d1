"""The pipeline's settings: Redis, the Celery pool, rate limits, segments, requeues, sweeping.

Read from the environment by :meth:`PipelineConfig.from_env`, with the same reader and rules as
``storage.settings`` (a malformed value raises :class:`~storage.errors.ConfigError` naming the
variable). Producers and workers read the same variables, so both sides agree on them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from storage.errors import ConfigError
from storage.settings import DynamoConfig, env_bool, env_value

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
WORKER_POOLS = ("threads", "prefork", "solo")


@dataclass(frozen=True)
class PipelineConfig:
    """The write pipeline: Redis, rate limiting, segments, requeues, result expiry.

    ``visibility_timeout`` (seconds) bounds how long the unacknowledged messages of a worker that
    died wait before Redis hands them to another worker: it is the recovery time after a crash.
    It must exceed the longest countdown (``requeue_max_delay``) and the longest segment run:
    ``segment_seconds`` (no batch starts later; what is left is requeued) plus one DynamoDB
    call (:func:`check_run_bound`). ``lease_seconds`` is the term of a segment's lease, renewed
    every third of it while the segment runs: a holder that vanished is replaced after it.
    ``metrics_port`` > 0 makes each worker serve ``/metrics`` on ``metrics_addr`` (default
    loopback only); ``metrics_multiproc_dir`` (``PROMETHEUS_MULTIPROC_DIR``) switches on
    prometheus_client's multiprocess mode, needed by the prefork pool (``worker.observability``).
    ``redis_timeout`` / ``redis_connect_timeout`` (seconds) bound every Redis call and connect
    (``pipeline.redis_boundary``). ``max_queued_bytes`` bounds the segment payloads every
    producer on this Redis together keeps queued and unfinished (backpressure: a producer waits
    for workers, never refuses); ``producer_timeout`` is how long a producer may go without a
    heartbeat before its unfinished job is marked abandoned. ``limit_partitions`` (default on)
    gives the rate limiter its per-user layer: buckets for hot partition keys, max-min fair
    shares between users and a reserve for single writes; off, one bucket per table.
    """

    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str = DEFAULT_REDIS_URL
    write_capacity: float = 0.0
    max_write_capacity: float = 40000.0
    min_write_capacity: float = 25.0
    limit_partitions: bool = True
    segment_size: int = 500
    batch_threads: int = 8
    max_requeues: int = 8
    requeue_base_delay: float = 1.0
    requeue_max_delay: float = 60.0
    max_deliveries: int = 5
    visibility_timeout: int = 80
    result_ttl: int = 7 * 24 * 3600
    metrics_port: int = 0
    metrics_addr: str = "127.0.0.1"
    metrics_multiproc_dir: str = ""
    worker_pool: str = "threads"
    worker_concurrency: int = 8
    sweep_interval: float = 60.0
    sweep_grace: float = 60.0
    redis_timeout: float = 10.0
    redis_connect_timeout: float = 5.0
    segment_seconds: float = 30.0
    lease_seconds: float = 15.0
    max_queued_bytes: int = 256 * 1024 * 1024
    producer_timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.visibility_timeout <= self.requeue_max_delay:
            raise ConfigError(
                "DATAFOLD_VISIBILITY_TIMEOUT must exceed DATAFOLD_REQUEUE_MAX_DELAY "
                f"({self.visibility_timeout} <= {self.requeue_max_delay})"
            )
        if not self.lease_seconds < self.visibility_timeout:
            raise ConfigError(
                "DATAFOLD_LEASE_SECONDS must be under DATAFOLD_VISIBILITY_TIMEOUT "
                f"({self.lease_seconds} >= {self.visibility_timeout})"
            )
        if not (self.segment_seconds > 0 and self.lease_seconds > 0):
            raise ConfigError("DATAFOLD_SEGMENT_SECONDS and DATAFOLD_LEASE_SECONDS must be > 0")
        if not 1 <= self.segment_size <= 10000:
            raise ConfigError("DATAFOLD_SEGMENT_SIZE must be between 1 and 10000")
        if self.worker_pool not in WORKER_POOLS:
            raise ConfigError("DATAFOLD_WORKER_POOL must be threads, prefork or solo")
        if not (self.redis_timeout > 0 and self.redis_connect_timeout > 0):
            raise ConfigError("DATAFOLD_REDIS_TIMEOUT and _CONNECT_TIMEOUT must be greater than 0")
        if self.max_queued_bytes < 1 or not self.producer_timeout > 0:
            raise ConfigError(
                "DATAFOLD_MAX_QUEUED_BYTES and DATAFOLD_PRODUCER_TIMEOUT must be greater than 0"
            )
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("DATAFOLD_METRICS_PORT must be 0 (off) or a TCP port (1-65535)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PipelineConfig:
        e = os.environ if env is None else env
        redis_url = env_value(e, "DATAFOLD_REDIS_URL", str, DEFAULT_REDIS_URL)
        return cls(
            redis_url=redis_url,
            broker_url=env_value(e, "CELERY_BROKER_URL", str, redis_url),
            write_capacity=env_value(e, "DATAFOLD_WRITE_CAPACITY", float, 0.0, "non-negative"),
            max_write_capacity=env_value(
                e, "DATAFOLD_MAX_WRITE_CAPACITY", float, 40000.0, "positive"
            ),
            min_write_capacity=env_value(e, "DATAFOLD_MIN_WRITE_CAPACITY", float, 25.0, "positive"),
            limit_partitions=env_value(e, "DATAFOLD_LIMIT_PARTITIONS", env_bool, True),
            segment_size=env_value(e, "DATAFOLD_SEGMENT_SIZE", int, 500, "positive"),
            batch_threads=env_value(e, "DATAFOLD_BATCH_THREADS", int, 8, "positive"),
            max_requeues=env_value(e, "DATAFOLD_MAX_REQUEUES", int, 8, "non-negative"),
            requeue_base_delay=env_value(e, "DATAFOLD_REQUEUE_BASE_DELAY", float, 1.0, "positive"),
            requeue_max_delay=env_value(e, "DATAFOLD_REQUEUE_MAX_DELAY", float, 60.0, "positive"),
            max_deliveries=env_value(e, "DATAFOLD_MAX_DELIVERIES", int, 5, "positive"),
            visibility_timeout=env_value(e, "DATAFOLD_VISIBILITY_TIMEOUT", int, 80, "positive"),
            segment_seconds=env_value(e, "DATAFOLD_SEGMENT_SECONDS", float, 30.0, "positive"),
            lease_seconds=env_value(e, "DATAFOLD_LEASE_SECONDS", float, 15.0, "positive"),
            result_ttl=env_value(e, "DATAFOLD_RESULT_TTL", int, 7 * 24 * 3600, "positive"),
            metrics_port=env_value(e, "DATAFOLD_METRICS_PORT", int, 0, "non-negative"),
            metrics_addr=env_value(e, "DATAFOLD_METRICS_ADDR", str, "127.0.0.1"),
            # Read by prometheus_client itself at import; here so the worker knows the mode.
            metrics_multiproc_dir=env_value(e, "PROMETHEUS_MULTIPROC_DIR", str, ""),
            worker_pool=env_value(e, "DATAFOLD_WORKER_POOL", str, "threads"),
            worker_concurrency=env_value(e, "DATAFOLD_WORKER_CONCURRENCY", int, 8, "positive"),
            sweep_interval=env_value(e, "DATAFOLD_SWEEP_INTERVAL", float, 60.0, "non-negative"),
            sweep_grace=env_value(e, "DATAFOLD_SWEEP_GRACE", float, 60.0, "non-negative"),
            redis_timeout=env_value(e, "DATAFOLD_REDIS_TIMEOUT", float, 10.0, "positive"),
            max_queued_bytes=env_value(
                e, "DATAFOLD_MAX_QUEUED_BYTES", int, 256 * 1024 * 1024, "positive"
            ),
            producer_timeout=env_value(e, "DATAFOLD_PRODUCER_TIMEOUT", float, 60.0, "positive"),
            redis_connect_timeout=env_value(
                e, "DATAFOLD_REDIS_CONNECT_TIMEOUT", float, 5.0, "positive"
            ),
        )


def check_run_bound(cfg: PipelineConfig, dynamo: DynamoConfig) -> None:
    """ConfigError unless a segment's longest run ends before its message is handed to another
    worker: ``segment_seconds`` plus one DynamoDB call started just before it (its retries
    bounded by ``DATAFOLD_DYNAMODB_RETRY_SECONDS``, plus one read timeout)."""
    longest = cfg.segment_seconds + dynamo.retry_max_seconds + dynamo.read_timeout
    if not cfg.visibility_timeout > longest:
        raise ConfigError(
            f"DATAFOLD_VISIBILITY_TIMEOUT={cfg.visibility_timeout} is too short: a segment may "
            f"run {longest:g}s (DATAFOLD_SEGMENT_SECONDS {cfg.segment_seconds:g} + "
            f"DATAFOLD_DYNAMODB_RETRY_SECONDS {dynamo.retry_max_seconds:g} + "
            f"DATAFOLD_DYNAMODB_READ_TIMEOUT {dynamo.read_timeout:g}); raise it or lower those"
        )
