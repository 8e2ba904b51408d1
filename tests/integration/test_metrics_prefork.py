"""A prefork worker (tasks in child processes) serves counters that add up across its children:
prometheus_client's multiprocess mode over PROMETHEUS_MULTIPROC_DIR (worker.observability)."""

from __future__ import annotations

import re
from pathlib import Path

from producers import Producer
from storage import DynamoConfig
from tests.support.ops import REDIS_DB, free_port, scrape, until, wait_http
from tests.support.pipeline import PipelineEnv, Worker


def test_prefork_children_counts_add_up(
    schema_config: DynamoConfig, tmp_path: Path, unique: str
) -> None:
    penv = PipelineEnv(schema_config, REDIS_DB, tmp_path)
    penv.redis().flushdb()
    prom = tmp_path / "prom"
    prom.mkdir()
    (prom / "counter_999999.db").write_bytes(b"stale values of an earlier run")
    port, n, ns = free_port(), 400, f"pf{unique}"
    worker = Worker(
        penv,
        f"prefork-{unique}",
        DATAFOLD_WORKER_POOL="prefork",
        DATAFOLD_WORKER_CONCURRENCY="2",
        DATAFOLD_METRICS_PORT=str(port),
        PROMETHEUS_MULTIPROC_DIR=str(prom),
    )
    try:
        worker.wait_ready()
        wait_http(f"http://127.0.0.1:{port}/metrics")
        assert not (prom / "counter_999999.db").exists()  # cleared when the worker started
        producer = Producer(penv.dynamo, penv.pipeline_config())
        job = producer.load(ns, ((f"k{i}".encode(), b"v") for i in range(n)), user_id="u")
        st = job.wait(timeout=120)
        assert (st.state, st.written) == ("succeeded", n)
        table = f"{penv.dynamo.table_prefix}-{ns}"
        # A waiter wakes as the last segment is recorded; the worker counts it just after.
        for _ in until(10, 0.2):
            s = scrape(port)
            if (
                s.value("datafold_items_total", outcome="written") >= n
                and s.value("datafold_segments_total", outcome="done") >= st.segments_done
            ):
                break
        assert s.value("datafold_items_total", outcome="written") == n
        assert s.value("datafold_batch_items_total", table=table, outcome="written") == n
        assert s.value("datafold_segments_total", outcome="done") == st.segments_done
        assert s.value("datafold_queue_depth", queue="bulk") == 0  # the live collector too
        # The rate gauge is one series per table, not one per child process.
        assert [lab for lab, _ in s.by_name["datafold_limiter_rate_wcu"]] == [{"table": table}]
        # Both children wrote: the sum above is over processes, not one process's count.
        pids = {
            int(m.group(1))
            for f in prom.glob("counter_*.db")
            if (m := re.fullmatch(r"counter_(\d+)\.db", f.name))
        }
        assert len(pids - {worker.proc.pid}) >= 2, pids
    finally:
        worker.stop()
        penv.redis().flushdb()
