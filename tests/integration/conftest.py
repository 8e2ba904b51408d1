"""Fixtures of the pipeline integration tests: a Redis database of their own, workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from producers import Producer
from storage import DynamoConfig
from tests.support.pipeline import PipelineEnv, Worker, fresh_env, start_workers, stop_all
from tests.support.redis_at import redis_url
from tests.support.s3 import moto_server

REDIS_DB = 9
SCRATCH_REDIS_URL = redis_url(12)
"""Tests of producer steps without workers; the queued-bytes budget counts every job there."""


@pytest.fixture(scope="session")
def penv(
    schema_config: DynamoConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PipelineEnv]:
    """The session's pipeline environment; its Redis database is emptied first and after."""
    with fresh_env(schema_config, REDIS_DB, Path(tmp_path_factory.mktemp("worker-logs"))) as e:
        yield e


@pytest.fixture(scope="session")
def workers(penv: PipelineEnv) -> Iterator[list[Worker]]:
    """Two worker processes shared by the tests that just need the pipeline running."""
    ws = start_workers(penv, 2, prefix="shared")
    yield ws
    stop_all(ws)


@pytest.fixture(scope="session")
def producer(penv: PipelineEnv) -> Producer:
    return Producer(penv.dynamo, penv.pipeline_config())


@pytest.fixture
def isolated_penv(penv: PipelineEnv, request: pytest.FixtureRequest) -> Iterator[PipelineEnv]:
    """A pipeline environment on a Redis database no shared worker listens to (DB 10), for
    tests that run workers with their own settings; emptied before and after."""
    iso = PipelineEnv(penv.dynamo, 10, penv.logs)
    r = iso.redis()
    r.flushdb()
    yield iso
    r.flushdb()


@pytest.fixture
def r() -> Iterator[redis.Redis[Any]]:
    """A client of Redis DB 12, emptied before and after the test."""
    client = redis.Redis.from_url(SCRATCH_REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local S3 (moto's server) for the session, stopped at its end."""
    with moto_server(Path(tmp_path_factory.mktemp("s3-logs"))) as url:
        yield url


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, unique: str) -> tuple[Any, str]:
    """A boto3 client of the local S3 and a new bucket in it; ``AWS_ENDPOINT_URL_S3`` points
    this process (and the commands it starts) there, as a user would point it at any store."""
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", s3_endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", region_name="us-east-1")
    bucket = f"ingest-{unique}"
    client.create_bucket(Bucket=bucket)
    return client, bucket
