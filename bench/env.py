"""The benchmark's world: DynamoDB Local tables of its own, Redis database 13, its own workers.

Everything the benchmark creates is named under one unique prefix (``bench<hex>``) so it never
touches another session's tables on the shared DynamoDB Local, and :meth:`BenchEnv.close`
deletes exactly those, stops every worker process it started and empties its Redis database.
Worker processes are real ``celery -A worker worker`` processes (``tests.support.pipeline``),
started with the environment of :meth:`BenchEnv.worker_env`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import redis

from producers import Producer
from storage import DynamoConfig, DynamoNamespacedStore, create_schema_table
from storage.client import Dynamo
from storage.tables import KV_TABLE_SPEC, delete_table, ensure_table
from tests.support.pipeline import PipelineEnv, Worker, start_workers, stop_all

REDIS_DB = 13
DEFAULTS = {
    "DATAFOLD_DYNAMODB_ENDPOINT": "http://127.0.0.1:8000",
    "DATAFOLD_DYNAMODB_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "local",  # dummies: DynamoDB Local accepts any
    "AWS_SECRET_ACCESS_KEY": "local",
}
USER = "bench-user"


def raw_client(endpoint: str | None = None, *, pool: int = 64, retries: Any = None) -> Any:
    """A plain boto3 DynamoDB client, as a user would build one (the baselines use it)."""
    for k, v in DEFAULTS.items():
        os.environ.setdefault(k, v)
    mode: Any = retries or {"mode": "standard", "max_attempts": 10}
    cfg = botocore.config.Config(
        region_name=os.environ["DATAFOLD_DYNAMODB_REGION"],
        max_pool_connections=pool,
        retries=mode,
        tcp_keepalive=True,
    )
    return boto3.session.Session().client(
        "dynamodb", endpoint_url=endpoint or os.environ["DATAFOLD_DYNAMODB_ENDPOINT"], config=cfg
    )


@dataclass
class BenchEnv:
    """Names, clients and processes of one benchmark run; a context manager that cleans up."""

    quick: bool = False
    prefix: str = field(default_factory=lambda: f"bench{uuid.uuid4().hex[:6]}")
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-")))
    _workers: list[Worker] = field(default_factory=list)
    _tables: set[str] = field(default_factory=set)
    _pool_env: dict[str, str] = field(default_factory=dict)
    _counter: int = 0

    def __post_init__(self) -> None:
        for k, v in DEFAULTS.items():
            os.environ.setdefault(k, v)
        self.dynamo_config = replace(
            DynamoConfig.from_env(), table_prefix=self.prefix, schema_table=f"{self.prefix}_schemas"
        )
        self.dynamo = Dynamo(self.dynamo_config)
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        self.penv = PipelineEnv(
            self.dynamo_config,
            REDIS_DB,
            self.workdir / "logs",
            extra={
                # Real-life recovery settings (the defaults), not the tests' short ones.
                "DATAFOLD_VISIBILITY_TIMEOUT": "80",
                "DATAFOLD_SEGMENT_SECONDS": "30",
                "DATAFOLD_LEASE_SECONDS": "15",
                "DATAFOLD_DYNAMODB_RETRY_SECONDS": "30",
                "DATAFOLD_DYNAMODB_READ_TIMEOUT": "10",
                "DATAFOLD_REQUEUE_MAX_DELAY": "60",
                "DATAFOLD_REQUEUE_BASE_DELAY": "1",
            },
        )
        self.client = raw_client()
        self.redis().flushdb()

    def __enter__(self) -> BenchEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- names and tables ----------------------------------------------------------------
    def unique(self, what: str) -> str:
        """A fresh name (namespace, user) unique in this run."""
        self._counter += 1
        return f"{what}{self._counter}"

    def kv_table(self, namespace: str) -> str:
        """Create the namespace table ``{prefix}-{namespace}`` (ACTIVE on return)."""
        table = f"{self.prefix}-{namespace}"
        ensure_table(self.dynamo, table, KV_TABLE_SPEC)
        self._tables.add(table)
        return table

    def schema_table(self) -> str:
        create_schema_table(self.dynamo_config, self.dynamo)
        self._tables.add(self.dynamo_config.schema_table)
        return self.dynamo_config.schema_table

    def drop(self, table: str) -> None:
        """Delete one of our tables now (frees DynamoDB Local's memory between runs)."""
        delete_table(self.dynamo, table)
        self._tables.discard(table)

    def store(self, user: str = USER) -> DynamoNamespacedStore:
        return DynamoNamespacedStore(self.dynamo_config, user, dynamo=self.dynamo)

    # -- pipeline ------------------------------------------------------------------------
    def redis(self) -> redis.Redis[bytes]:
        return redis.Redis.from_url(self.penv.redis_url)

    def worker_env(self, **more: str) -> dict[str, str]:
        return self.penv.env(**more)

    def producer(self, **env: str) -> Producer:
        return Producer(self.dynamo_config, self.penv.pipeline_config(**env))

    def pool(self, n: int, **env: str) -> list[Worker]:
        """``n`` running worker processes started with ``env``: the running ones are reused
        when their ``env`` matches (extras stopped, missing ones started), else replaced.
        Worker start-up costs seconds, so sections share workers."""
        if env != self._pool_env:
            self.stop_workers()
            self._pool_env = dict(env)
        while len(self._workers) > n:
            self._workers.pop().stop()
        if len(self._workers) < n:
            self._workers += start_workers(self.penv, n - len(self._workers), prefix="bench", **env)
        return list(self._workers)

    def stop_workers(self) -> None:
        stop_all(self._workers)
        self._workers = []

    # -- cleanup -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop our workers, delete our tables, empty our Redis database. Idempotent."""
        self.stop_workers()
        names: list[str] = []
        params: dict[str, str] = {}
        while True:
            page = self.client.list_tables(**params)
            names += [n for n in page.get("TableNames", []) if n.startswith(self.prefix)]
            if not page.get("LastEvaluatedTableName"):
                break
            params = {"ExclusiveStartTableName": page["LastEvaluatedTableName"]}
        for name in names:
            with contextlib.suppress(Exception):
                delete_table(self.dynamo, name)
        with contextlib.suppress(redis.RedisError):
            self.redis().flushdb()
        shutil.rmtree(self.workdir, ignore_errors=True)
