"""Every setting of the project, read from the environment here and nowhere else.

Each group of settings is a frozen dataclass validated when built. ``from_env()`` reads the
process environment (or a mapping passed in for tests); a malformed value raises
:class:`~storage.errors.ConfigError` naming the variable. Credentials are *not* settings: they
come from boto3's default chain, and nothing here reads, stores or prints them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from storage.errors import ConfigError

T = TypeVar("T")

DEFAULT_SCHEMA_TABLE = "DataFoldSchemas"
DEFAULT_TABLE_PREFIX = "DataFoldStorage"
DEFAULT_USER_ID = "default"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _read(
    env: Mapping[str, str], name: str, parse: Callable[[str], T], default: T, check: str = ""
) -> T:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = parse(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a valid {parse.__name__} value") from None
    if check == "positive" and not value > 0:  # type: ignore[operator]
        raise ConfigError(f"{name}={raw!r} must be greater than 0")
    if check == "non-negative" and value < 0:  # type: ignore[operator]
        raise ConfigError(f"{name}={raw!r} must be 0 or more")
    return value


def _bool(raw: str) -> bool:
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_bool.__name__ = "boolean"


def _optional_bool(raw: str) -> bool | None:
    return None if raw.lower() == "auto" else _bool(raw)


_optional_bool.__name__ = "boolean (or auto)"


@dataclass(frozen=True)
class DynamoConfig:
    """Where DynamoDB is and how the client talks to it.

    ``max_attempts`` is the number of tries of *one* call by storage's retry policy (botocore's
    own retries are switched off so the layers never multiply); ``retry_max_seconds`` bounds the
    total time one call may spend retrying. ``fast_writes`` sends BatchWriteItem, the call that
    carries every bulk item, through :mod:`storage.wire` instead of botocore's generic path.
    ``consumed_capacity`` (None = auto): see :attr:`wants_consumed_capacity`.
    """

    region: str
    endpoint_url: str | None = None
    schema_table: str = DEFAULT_SCHEMA_TABLE
    user_id: str = DEFAULT_USER_ID
    table_prefix: str = DEFAULT_TABLE_PREFIX
    max_connections: int = 50
    connect_timeout: float = 3.0
    read_timeout: float = 10.0
    max_attempts: int = 8
    retry_max_seconds: float = 30.0
    batch_rounds: int = 6
    fast_writes: bool = True
    consumed_capacity: bool | None = None

    def __post_init__(self) -> None:
        if not self.region:
            raise ConfigError("a DynamoDB region is required")
        for name in ("max_connections", "max_attempts", "batch_rounds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"DynamoConfig.{name} must be at least 1")
        for name in ("connect_timeout", "read_timeout", "retry_max_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"DynamoConfig.{name} must be greater than 0")
        if not self.user_id:
            raise ConfigError("DATAFOLD_DYNAMODB_USER_ID must not be empty")

    @property
    def wants_consumed_capacity(self) -> bool:
        """Whether batch writes ask DynamoDB for the capacity they consumed. Unset: yes against
        AWS (it costs nothing there), no against a custom endpoint such as DynamoDB Local, which
        spends ~30 % more CPU per item computing it (bench/: sizes are estimated instead)."""
        if self.consumed_capacity is None:
            return self.endpoint_url is None
        return self.consumed_capacity

    @property
    def where(self) -> str:
        """Human description of the endpoint, for error messages (no credentials in it)."""
        return f"endpoint {self.endpoint_url}" if self.endpoint_url else f"region {self.region}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DynamoConfig:
        e = os.environ if env is None else env
        region = (
            e.get("DATAFOLD_DYNAMODB_REGION") or e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION")
        )
        if not region:
            raise ConfigError(
                "no DynamoDB region: set DATAFOLD_DYNAMODB_REGION "
                "(or AWS_REGION / AWS_DEFAULT_REGION)"
            )
        return cls(
            region=region.strip(),
            endpoint_url=(e.get("DATAFOLD_DYNAMODB_ENDPOINT") or "").strip() or None,
            schema_table=_read(e, "DATAFOLD_DYNAMODB_TABLE", str, DEFAULT_SCHEMA_TABLE),
            user_id=_read(e, "DATAFOLD_DYNAMODB_USER_ID", str, DEFAULT_USER_ID),
            table_prefix=_read(e, "DATAFOLD_TABLE_PREFIX", str, DEFAULT_TABLE_PREFIX),
            max_connections=_read(e, "DATAFOLD_DYNAMODB_MAX_CONNECTIONS", int, 50, "positive"),
            connect_timeout=_read(e, "DATAFOLD_DYNAMODB_CONNECT_TIMEOUT", float, 3.0, "positive"),
            read_timeout=_read(e, "DATAFOLD_DYNAMODB_READ_TIMEOUT", float, 10.0, "positive"),
            max_attempts=_read(e, "DATAFOLD_DYNAMODB_MAX_ATTEMPTS", int, 8, "positive"),
            retry_max_seconds=_read(e, "DATAFOLD_DYNAMODB_RETRY_SECONDS", float, 30.0, "positive"),
            batch_rounds=_read(e, "DATAFOLD_BATCH_ROUNDS", int, 6, "positive"),
            fast_writes=_read(e, "DATAFOLD_DYNAMODB_FAST_WRITES", _bool, True),
            consumed_capacity=_read(e, "DATAFOLD_DYNAMODB_CONSUMED_CAPACITY", _optional_bool, None),
        )


@dataclass(frozen=True)
class PipelineConfig:
    """The write pipeline: Redis, rate limiting, segments, requeues, result expiry.

    ``visibility_timeout`` (seconds) bounds how long the unacknowledged messages of a worker that
    died wait before Redis hands them to another worker: it is the recovery time after a crash.
    It must exceed the longest countdown (``requeue_max_delay``) and the longest segment run.
    ``metrics_port`` > 0 makes each worker serve ``/metrics`` on ``metrics_addr`` (default
    loopback only); ``metrics_multiproc_dir`` (``PROMETHEUS_MULTIPROC_DIR``) switches on
    prometheus_client's multiprocess mode, needed by the prefork pool (``worker.observability``).
    """

    redis_url: str = DEFAULT_REDIS_URL
    broker_url: str = DEFAULT_REDIS_URL
    write_capacity: float = 0.0
    max_write_capacity: float = 40000.0
    min_write_capacity: float = 25.0
    segment_size: int = 500
    batch_threads: int = 8
    max_requeues: int = 8
    requeue_base_delay: float = 1.0
    requeue_max_delay: float = 60.0
    max_deliveries: int = 5
    visibility_timeout: int = 300
    result_ttl: int = 7 * 24 * 3600
    metrics_port: int = 0
    metrics_addr: str = "127.0.0.1"
    metrics_multiproc_dir: str = ""
    worker_pool: str = "threads"
    worker_concurrency: int = 8
    sweep_interval: float = 60.0
    sweep_grace: float = 60.0

    def __post_init__(self) -> None:
        if self.visibility_timeout <= self.requeue_max_delay:
            raise ConfigError(
                "DATAFOLD_VISIBILITY_TIMEOUT must exceed DATAFOLD_REQUEUE_MAX_DELAY "
                f"({self.visibility_timeout} <= {self.requeue_max_delay})"
            )
        if not 1 <= self.segment_size <= 10000:
            raise ConfigError("DATAFOLD_SEGMENT_SIZE must be between 1 and 10000")
        if self.worker_pool not in ("threads", "prefork", "solo"):
            raise ConfigError("DATAFOLD_WORKER_POOL must be threads, prefork or solo")
        if not 0 <= self.metrics_port <= 65535:
            raise ConfigError("DATAFOLD_METRICS_PORT must be 0 (off) or a TCP port (1-65535)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PipelineConfig:
        e = os.environ if env is None else env
        redis_url = _read(e, "DATAFOLD_REDIS_URL", str, DEFAULT_REDIS_URL)
        return cls(
            redis_url=redis_url,
            broker_url=_read(e, "CELERY_BROKER_URL", str, redis_url),
            write_capacity=_read(e, "DATAFOLD_WRITE_CAPACITY", float, 0.0, "non-negative"),
            max_write_capacity=_read(e, "DATAFOLD_MAX_WRITE_CAPACITY", float, 40000.0, "positive"),
            min_write_capacity=_read(e, "DATAFOLD_MIN_WRITE_CAPACITY", float, 25.0, "positive"),
            segment_size=_read(e, "DATAFOLD_SEGMENT_SIZE", int, 500, "positive"),
            batch_threads=_read(e, "DATAFOLD_BATCH_THREADS", int, 8, "positive"),
            max_requeues=_read(e, "DATAFOLD_MAX_REQUEUES", int, 8, "non-negative"),
            requeue_base_delay=_read(e, "DATAFOLD_REQUEUE_BASE_DELAY", float, 1.0, "positive"),
            requeue_max_delay=_read(e, "DATAFOLD_REQUEUE_MAX_DELAY", float, 60.0, "positive"),
            max_deliveries=_read(e, "DATAFOLD_MAX_DELIVERIES", int, 5, "positive"),
            visibility_timeout=_read(e, "DATAFOLD_VISIBILITY_TIMEOUT", int, 300, "positive"),
            result_ttl=_read(e, "DATAFOLD_RESULT_TTL", int, 7 * 24 * 3600, "positive"),
            metrics_port=_read(e, "DATAFOLD_METRICS_PORT", int, 0, "non-negative"),
            metrics_addr=_read(e, "DATAFOLD_METRICS_ADDR", str, "127.0.0.1"),
            # Read by prometheus_client itself at import; here so the worker knows the mode.
            metrics_multiproc_dir=_read(e, "PROMETHEUS_MULTIPROC_DIR", str, ""),
            worker_pool=_read(e, "DATAFOLD_WORKER_POOL", str, "threads"),
            worker_concurrency=_read(e, "DATAFOLD_WORKER_CONCURRENCY", int, 8, "positive"),
            sweep_interval=_read(e, "DATAFOLD_SWEEP_INTERVAL", float, 60.0, "non-negative"),
            sweep_grace=_read(e, "DATAFOLD_SWEEP_GRACE", float, 60.0, "non-negative"),
        )
