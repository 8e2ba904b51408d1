"""Real worker processes and a pipeline environment for integration and reliability tests.

Each test session gets its own Redis database (broker, ledger and limiter together) and its own
DynamoDB table names, so nothing collides with other sessions on the same services. Workers are
real ``celery -A worker worker`` processes started with that environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from pipeline.config import PipelineConfig
from storage import DynamoConfig, DynamoNamespacedStore
from tests.support.redis_at import ADDRESS, redis_url

ROOT = Path(__file__).resolve().parents[2]
READY_TIMEOUT = 60.0


@dataclass
class PipelineEnv:
    """Environment variables shared by the test process, producers and workers."""

    dynamo: DynamoConfig
    redis_db: int
    logs: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def redis_url(self) -> str:
        return redis_url(self.redis_db)

    def env(self, **more: str) -> dict[str, str]:
        e = dict(os.environ)
        e.update(
            {
                "DATAFOLD_REDIS_URL": self.redis_url,
                "DATAFOLD_DYNAMODB_ENDPOINT": self.dynamo.endpoint_url or "",
                "DATAFOLD_DYNAMODB_REGION": self.dynamo.region,
                "DATAFOLD_TABLE_PREFIX": self.dynamo.table_prefix,
                "DATAFOLD_DYNAMODB_TABLE": self.dynamo.schema_table,
                "DATAFOLD_VISIBILITY_TIMEOUT": "20",
                # A segment's longest run (5 s + one call: 5 s of retries + a 4 s read) must end
                # before its message goes to another worker.
                "DATAFOLD_SEGMENT_SECONDS": "5",
                "DATAFOLD_DYNAMODB_RETRY_SECONDS": "5",
                "DATAFOLD_DYNAMODB_READ_TIMEOUT": "4",
                "DATAFOLD_LEASE_SECONDS": "3",
                "DATAFOLD_REQUEUE_BASE_DELAY": "0.5",
                "DATAFOLD_REQUEUE_MAX_DELAY": "4",
                "PYTHONPATH": str(ROOT),
            }
        )
        e.update(self.extra)
        e.update(more)
        return e

    def pipeline_config(self, **more: str) -> PipelineConfig:
        return PipelineConfig.from_env(self.env(**more))

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis_url)

    def store(self, user: str) -> DynamoNamespacedStore:
        return DynamoNamespacedStore(self.dynamo, user)


@contextmanager
def fresh_env(dynamo: DynamoConfig, redis_db: int, logs: Path) -> Iterator[PipelineEnv]:
    """A :class:`PipelineEnv` on Redis database ``redis_db``, emptied before and after.
    Fails (never skips) with a hint when Redis is down."""
    r = redis.Redis.from_url(redis_url(redis_db))
    try:
        r.ping()
    except redis.ConnectionError as exc:
        raise RuntimeError(
            f"Redis is not reachable on {ADDRESS} ({exc}); run `make services`"
        ) from None
    r.flushdb()
    try:
        yield PipelineEnv(dynamo, redis_db, logs)
    finally:
        r.flushdb()


class Worker:
    """One worker OS process (thread pool); ``kill()`` sends SIGKILL to the whole process."""

    def __init__(
        self, penv: PipelineEnv, name: str, queues: str = "writes,bulk", **env: str
    ) -> None:
        self.name = name
        self.log_path = penv.logs / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker",
                "worker",
                "-Q",
                queues,
                "--hostname",
                f"{name}@%h",
                "--loglevel",
                "INFO",
                "--without-mingle",
                "--without-gossip",
            ],
            cwd=ROOT,
            env=penv.env(**env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Worker:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b" ready." in self.log_path.read_bytes():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited: {self.log_tail()}")
            time.sleep(0.1)
        raise RuntimeError(f"worker {self.name} not ready in {timeout}s: {self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_bytes()[-n:].decode("utf-8", "replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def start_workers(penv: PipelineEnv, n: int, prefix: str = "w", **env: str) -> list[Worker]:
    ws = [Worker(penv, f"{prefix}{i}-{os.getpid()}-{time.monotonic_ns()}", **env) for i in range(n)]
    for w in ws:
        w.wait_ready()
    return ws


def stop_all(workers: Iterator[Worker] | list[Worker]) -> None:
    for w in workers:
        w.stop()
