"""The queue/job collector and the worker's metrics server, without services (fake Redis)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import redis
from kombu.transport import redis as kombu_redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline import keys
from pipeline.config import PipelineConfig
from storage.errors import BackendUnavailableError, ConfigError
from tests.support.ops import free_port, scrape
from worker import observability
from worker.exporter import PipelineCollector


class FakePipe:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.replies: list[int] = []

    def llen(self, name: str) -> None:
        self.replies.append(len(self.broker.lists.get(name, [])))

    def hlen(self, name: str) -> None:
        self.replies.append(len(self.broker.hashes.get(name, {})))

    def execute(self) -> list[int]:
        if self.broker.down:
            raise redis.ConnectionError("Connection refused")
        return self.replies


class FakeBroker:
    def __init__(self) -> None:
        self.lists: dict[str, list[bytes]] = {}
        self.hashes: dict[str, dict[str, bytes]] = {}
        self.down = False
        self.calls = 0

    def pipeline(self, transaction: bool = True) -> FakePipe:
        self.calls += 1
        return FakePipe(self)


class FakeLedger:
    def __init__(self, counts: dict[str, int] | None = None, down: bool = False) -> None:
        self.counts = counts or {}
        self.down = down
        self.limits: list[int] = []
        self.producing = self
        self.queued = 3_000_000

    def queued_bytes(self) -> int:
        return self.queued

    def count_by_state(self, limit: int = 10000) -> dict[str, int]:
        self.limits.append(limit)
        if self.down:
            raise BackendUnavailableError("ledger unreachable", operation="Ledger")
        return dict(self.counts)


def _collect(collector: Any) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    reg = CollectorRegistry()
    reg.register(collector)
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_queue_depth_counts_priority_sublists_unacked_and_job_states() -> None:
    b = FakeBroker()
    b.lists = {
        "bulk": [b"m"] * 3,
        f"bulk{keys.BROKER_PRIORITY_SEP}3": [b"m"] * 2,
        "writes": [b"m"],
        "other": [b"m"] * 9,
    }
    b.hashes = {"unacked": {"t1": b"x", "t2": b"x"}}
    ledger = FakeLedger({"queued": 2, "running": 1, "succeeded": 7})
    got = _collect(PipelineCollector(b, ledger, job_limit=50))  # type: ignore[arg-type]
    assert got["datafold_queue_depth"] == {(("queue", "writes"),): 1.0, (("queue", "bulk"),): 5.0}
    assert got["datafold_queue_unacked"] == {(): 2.0}
    assert got["datafold_jobs"] == {
        (("state", "queued"),): 2.0,
        (("state", "running"),): 1.0,
        (("state", "succeeded"),): 7.0,
    }
    assert got["datafold_queued_bytes"] == {(): 3_000_000.0}
    assert got["datafold_redis_up"] == {(): 1.0}
    assert ledger.limits == [50]
    assert b.calls == 1  # one pipelined round trip to the broker per scrape


@pytest.mark.parametrize("where", ["broker", "ledger"])
def test_redis_down_reports_up_0_and_leaves_the_gauges_out(where: str) -> None:
    b = FakeBroker()
    b.down = where == "broker"
    got = _collect(PipelineCollector(b, FakeLedger(down=where == "ledger")))  # type: ignore[arg-type]
    assert got["datafold_redis_up"] == {(): 0.0}
    assert "datafold_queue_depth" not in got and "datafold_jobs" not in got


def test_registering_does_not_read_redis() -> None:
    b = FakeBroker()
    ledger = FakeLedger()
    CollectorRegistry(auto_describe=True).register(PipelineCollector(b, ledger))  # type: ignore[arg-type]
    assert b.calls == 0 and ledger.limits == []


def test_broker_key_names_match_kombu() -> None:
    chan = kombu_redis.Channel
    assert chan.sep == keys.BROKER_PRIORITY_SEP
    assert list(keys.BROKER_PRIORITY_STEPS) == list(kombu_redis.PRIORITY_STEPS)
    assert keys.broker_unacked() == chan.unacked_key
    assert keys.broker_queue_lists("bulk")[0] == "bulk"
    assert keys.broker_queue_lists("bulk")[1:] == tuple(f"bulk{chan.sep}{p}" for p in (3, 6, 9))


@pytest.mark.parametrize(
    ("pool", "name"),
    [
        ("threads", "threads"),
        ("prefork", "prefork"),
        ("solo", "solo"),
        ("processes", "prefork"),
        ("celery.concurrency.prefork:TaskPool", "prefork"),
    ],
)
def test_pool_name_of_aliases(pool: str, name: str) -> None:
    assert observability.pool_name(pool) == name


def test_pool_name_of_classes() -> None:
    from celery.concurrency import prefork, thread

    assert observability.pool_name(thread.TaskPool) == "threads"
    assert observability.pool_name(prefork.TaskPool) == "prefork"


def test_clear_multiproc_dir_deletes_only_value_files(tmp_path: Path) -> None:
    d = tmp_path / "prom"
    assert observability.clear_multiproc_dir(d) == 0 and d.is_dir()
    (d / "counter_123.db").write_bytes(b"x")
    (d / "histogram_9.db").write_bytes(b"x")
    (d / "README").write_text("keep")
    assert observability.clear_multiproc_dir(d) == 2
    assert [p.name for p in d.iterdir()] == ["README"]


def test_metrics_server_serves_process_metrics_and_redis_state() -> None:
    assert observability.start(PipelineConfig(metrics_port=0)) is None
    port = free_port()
    closed = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens: the collector says so
    cfg = PipelineConfig(redis_url=closed, broker_url=closed, metrics_port=port)
    server = observability.start(cfg)
    try:
        assert observability.start(cfg) is server  # at most one server per process
        s = scrape(port)
        assert s.value("datafold_redis_up") == 0.0
        assert s.has("process_cpu_seconds_total") or s.has("python_info")
    finally:
        observability.stop()
    # Stopped: the port is free again and the collector is gone from the default registry.
    server2 = observability.start(cfg)
    observability.stop()
    assert server2 is not server


def test_metrics_settings_from_env() -> None:
    cfg = PipelineConfig.from_env(
        {
            "DATAFOLD_METRICS_PORT": "9100",
            "DATAFOLD_METRICS_ADDR": "0.0.0.0",
            "PROMETHEUS_MULTIPROC_DIR": "/tmp/prom",
        }
    )
    assert (cfg.metrics_port, cfg.metrics_addr, cfg.metrics_multiproc_dir) == (
        9100,
        "0.0.0.0",
        "/tmp/prom",
    )
    assert PipelineConfig.from_env({}).metrics_addr == "127.0.0.1"
    with pytest.raises(ConfigError, match="DATAFOLD_METRICS_PORT"):
        PipelineConfig.from_env({"DATAFOLD_METRICS_PORT": "70000"})
