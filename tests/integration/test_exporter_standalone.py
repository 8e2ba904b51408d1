"""`python -m worker.exporter` with zero workers running: queue depth and job states from Redis."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from producers import Producer
from storage import DynamoConfig
from tests.support.ops import REDIS_DB, free_port, scrape, start_exporter
from tests.support.pipeline import PipelineEnv


@pytest.fixture
def penv(schema_config: DynamoConfig, tmp_path: Path) -> Iterator[PipelineEnv]:
    env = PipelineEnv(schema_config, REDIS_DB, tmp_path)
    env.redis().flushdb()
    yield env
    env.redis().flushdb()


def test_exporter_counts_queued_messages_and_jobs_without_workers(
    penv: PipelineEnv, unique: str
) -> None:
    port = free_port()
    exporter = start_exporter(penv, port)
    try:
        before = scrape(port)
        assert before.value("datafold_redis_up") == 1.0
        assert before.value("datafold_queue_depth", queue="bulk") == 0
        assert before.value("datafold_jobs", state="queued") == 0

        producer = Producer(penv.dynamo, penv.pipeline_config())
        load = producer.load(
            f"exp{unique}", ((f"k{i}".encode(), b"v") for i in range(100)), user_id=f"u{unique}"
        )
        producer.put(f"exp{unique}", b"one", b"1", user_id=f"u{unique}")
        done = "manual" + unique  # a job taken to the end through the ledger itself
        producer.ledger.create(done, kind="load")
        producer.ledger.plan(done, "s0", 3)
        producer.ledger.seal(done)
        producer.ledger.take(done, "s0", "holder", 30.0)
        producer.ledger.finish(done, "s0", written=3, token="holder")
        assert producer.ledger.status(done).state == "succeeded"

        after = scrape(port)
        planned = load.status().segments_planned
        assert planned >= 2
        assert after.value("datafold_queue_depth", queue="bulk") == planned
        assert after.value("datafold_queue_depth", queue="writes") == 1
        assert after.value("datafold_queue_unacked") == 0  # nobody took anything
        assert after.value("datafold_jobs", state="queued") == 2
        assert after.value("datafold_jobs", state="succeeded") == 1
        assert after.value("datafold_jobs", state="running") == 0
        assert after.value("datafold_redis_up") == 1.0
    finally:
        exporter.proc.send_signal(signal.SIGTERM)
        code = exporter.stop()
    assert code == 0, exporter.log_tail()
