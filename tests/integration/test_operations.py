"""Operations with real parts: a worker serving /metrics, DynamoDB Local behind the fault proxy
(so throttles, retries and errors really happen), Flower, and headless Chromium.

Regenerate docs/flower.png (the screenshot of Flower's tasks page taken here)::

    DATAFOLD_SCREENSHOT_DIR=docs .venv/bin/pytest tests/integration/test_operations.py -k flower
"""

from __future__ import annotations

import os
import random
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from producers import Producer
from storage import DynamoConfig
from tests.faults import FaultConfig, FaultProxy
from tests.support.ops import (
    PROMETHEUS_OWN,
    REDIS_DB,
    Proc,
    Samples,
    chromium,
    dashboard_exprs,
    free_port,
    refs,
    scrape,
    start_flower,
    table_rows,
    until,
    wait_http,
)
from tests.support.pipeline import PipelineEnv, Worker

FAULTS = FaultConfig(
    throttle_rate={"BatchWriteItem": 0.25}, partial_batch_rate={"BatchWriteItem": 0.25}
)
FLOWER_AUTH = "ops:flower-test-pass"


@dataclass
class Stack:
    penv: PipelineEnv
    proxy: FaultProxy
    worker: Worker
    flower: Proc
    metrics_port: int
    flower_port: int
    producer: Producer

    def scrape_when(
        self, name: str, at_least: float, timeout: float = 10.0, **labels: str
    ) -> Samples:
        """Scrape until ``name{labels}`` reaches ``at_least``: the ledger records a segment
        a moment before the worker's counters move, so a finished job may be ahead of them."""
        for _ in until(timeout, 0.2):
            s = scrape(self.metrics_port)
            if s.value(name, **labels) >= at_least:
                break
        return s


@pytest.fixture(scope="module")
def stack(schema_config: DynamoConfig, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("ops-logs")
    direct = PipelineEnv(schema_config, REDIS_DB, logs)
    direct.redis().flushdb()
    proxy = FaultProxy(
        schema_config.endpoint_url or "", config=FaultConfig(), rng=random.Random(7)
    ).start()
    # The worker talks to DynamoDB through the proxy; a high limiter floor keeps the injected
    # throttles from slowing the small loads down.
    wenv = PipelineEnv(
        replace(schema_config, endpoint_url=proxy.endpoint_url),
        REDIS_DB,
        logs,
        extra={"DATAFOLD_MIN_WRITE_CAPACITY": "2000"},
    )
    mport, fport = free_port(), free_port()
    flower = start_flower(wenv, fport, FLOWER_AUTH)  # first, so it sees every task event
    worker = Worker(wenv, f"ops-{os.getpid()}", DATAFOLD_METRICS_PORT=str(mport))
    try:
        worker.wait_ready()
        wait_http(f"http://127.0.0.1:{mport}/metrics")
        proxy.set_config(FAULTS)
        yield Stack(
            wenv,
            proxy,
            worker,
            flower,
            mport,
            fport,
            Producer(schema_config, direct.pipeline_config()),
        )
    finally:
        worker.stop()
        flower.stop()
        proxy.stop()
        direct.redis().flushdb()


def _load(stack: Stack, ns: str, n: int, *extra: tuple[bytes, bytes]) -> int:
    job = stack.producer.load(
        ns,
        [*((f"key-{i:05d}".encode(), f"value {i}".encode()) for i in range(n)), *extra],
        user_id=f"user-{ns}",
    )
    st = job.wait(timeout=120)
    return st.written


def test_counters_move_by_exactly_the_items_written(stack: Stack, unique: str) -> None:
    n, ns = 300, f"ops{unique}"
    table = f"{stack.producer.dynamo_config.table_prefix}-{ns}"
    before = scrape(stack.metrics_port)
    stack.proxy.reset_stats()
    assert _load(stack, ns, n) == n
    target = before.value("datafold_items_total", outcome="written") + n
    after = stack.scrape_when("datafold_items_total", target, outcome="written")

    assert after.value("datafold_items_total", outcome="written") == target
    assert after.value("datafold_batch_items_total", table=table, outcome="written") == n
    assert after.value("datafold_dynamodb_consumed_wcu_total", table=table) == n  # 1 WCU each
    assert (
        after.value("datafold_jobs", state="succeeded")
        == before.value("datafold_jobs", state="succeeded") + 1
    )
    # Every fault the proxy injected is counted once: a throttled call, or a batch handed back
    # partly unprocessed.
    faults = stack.proxy.stats()
    throttled = faults.op("BatchWriteItem", "throttling")
    partial = faults.op("BatchWriteItem", "partial_batch")
    assert throttled > 0 and partial > 0, faults.to_dict()
    assert (
        after.value("datafold_dynamodb_throttles_total", operation="BatchWriteItem", table=table)
        == throttled + partial
    )
    assert (
        after.value(
            "datafold_dynamodb_errors_total",
            operation="BatchWriteItem",
            table=table,
            code="ThrottlingException",
        )
        == throttled
    )
    assert (
        after.value("datafold_dynamodb_retries_total", operation="BatchWriteItem", table=table)
        >= throttled
    )


def test_every_metric_the_dashboard_queries_is_exported(stack: Stack, unique: str) -> None:
    # A small load with one poison item (a sort key over 1,024 bytes): it is dead-lettered.
    before = scrape(stack.metrics_port).value("datafold_items_total", outcome="dead_lettered")
    assert _load(stack, f"dash{unique}", 40, (b"k" * 1100, b"poison")) == 40
    s = stack.scrape_when("datafold_items_total", before + 1, outcome="dead_lettered")
    missing: list[str] = []
    for expr in dashboard_exprs():
        selectors, grouping = refs(expr)
        ours = [r for r in selectors if r.metric not in PROMETHEUS_OWN]
        for r in ours:
            assert all(op == "=" for _, op, _ in r.matchers), expr
            labels = {k: v for k, _, v in r.matchers}
            if not s.has(r.metric, **labels):
                missing.append(f"{r.metric}{labels} in {expr}")
        known = set().union(*(s.label_names(r.metric) for r in ours)) if ours else set()
        if ours and not grouping <= known:
            missing.append(f"labels {sorted(grouping - known)} in {expr}")
    assert not missing, "\n".join(missing)


def test_flower_shows_the_worker_and_its_finished_tasks(
    stack: Stack, unique: str, tmp_path: Path
) -> None:
    assert _load(stack, f"fl{unique}", 60) == 60
    runs = stack.scrape_when("datafold_segments_total", 1).value("datafold_segments_total")
    base = f"http://{FLOWER_AUTH}@127.0.0.1:{stack.flower_port}"
    with pytest.raises(urllib.error.HTTPError) as refused:  # basic auth is enforced
        urllib.request.urlopen(f"http://127.0.0.1:{stack.flower_port}/tasks", timeout=10)
    assert refused.value.code == 401

    host = f"ops-{os.getpid()}@"
    row: list[str] = []
    for attempt in until(20, 0.5):  # Flower learns of tasks from events, a moment later
        # A message deferred or sent again after the job finished is one more run for both.
        runs = stack.scrape_when("datafold_segments_total", 1).value("datafold_segments_total")
        rows = table_rows(chromium(f"{base}/workers", tmp_path / f"p{attempt}"))
        row = next((r for r in rows if r and r[0].startswith(host)), [])
        # Flower's counters settle event by event: wait until they all agree.
        if row and row[2] == "0" and row[3] == row[5] == str(int(runs)):
            break
    # Worker, Status, Active, Processed, Failed, Succeeded, Load average
    assert row[:6] == [row[0], "Online", "0", str(int(runs)), "0", str(int(runs))], row

    dom = chromium(f"{base}/tasks", tmp_path / "tasks")
    shown = re.search(r"Showing 1 to (\d+) of (\d+) tasks", dom)
    assert shown and int(shown.group(2)) == runs, shown
    tasks = table_rows(dom)
    assert len(tasks) == int(shown.group(1)) > 0
    for t in tasks:
        assert (t[0], t[2], t[-1].startswith(host)) == ("datafold.segment", "SUCCESS", True), t

    png = tmp_path / "flower.png"
    chromium(f"{base}/tasks", tmp_path / "shot", screenshot=png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    out = os.environ.get("DATAFOLD_SCREENSHOT_DIR")
    if out:
        shutil.copyfile(png, Path(out) / "flower.png")
