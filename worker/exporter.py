"""Queue depth and job states, read from Redis at scrape time: in every worker's ``/metrics``,
and standalone so a dashboard works with zero workers running::

    python -m worker.exporter --port 9108 --addr 0.0.0.0     # or: datafold-exporter ...

Metrics (gauges; labels are bounded: queue names and job states only):

* ``datafold_queue_depth{queue}``: messages waiting in ``writes`` / ``bulk`` (LLEN of the
  queue's list plus kombu's priority sub-lists).
* ``datafold_queue_unacked``: messages handed to a worker and not yet acknowledged (running,
  prefetched, or held until their requeue countdown), all queues together.
* ``datafold_jobs{state}``: jobs per state among the ``job_limit`` most recent (the ledger's
  index; finished jobs leave it when their results expire, ``DATAFOLD_RESULT_TTL``).
* ``datafold_queued_bytes``: segment payload bytes queued and not yet recorded, over every job
  (what producers hold under ``DATAFOLD_MAX_QUEUED_BYTES``).
* ``datafold_redis_up``: 1 if the last scrape read Redis, else 0 (and the gauges above are left
  out rather than reported as zero).

Every worker and the standalone exporter report the same values: aggregate with ``max``, never
``sum``, in queries. Cost per scrape: one pipelined round trip to the broker (8 LLEN + HLEN), one
ZREVRANGE and one pipelined HGET per job in the ledger (10,000 jobs: a few ms of Redis time), one
HVALS of the queued bytes.
Redis calls time out after ``REDIS_TIMEOUT_SECONDS`` so a scrape never hangs.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from types import FrameType
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline import keys
from pipeline.broker import QUEUES
from pipeline.config import PipelineConfig
from pipeline.ledger import Ledger
from pipeline.redis_boundary import Redis, connect, guard
from storage.errors import BackendUnavailableError

DEFAULT_PORT = 9108
DEFAULT_JOB_LIMIT = 10_000
REDIS_TIMEOUT_SECONDS = 3.0


class PipelineCollector(Collector):
    """A custom collector: reads Redis on each ``collect()`` (each scrape), keeps no state."""

    def __init__(
        self,
        broker: Redis[Any],
        ledger: Ledger,
        *,
        queues: Sequence[str] = QUEUES,
        job_limit: int = DEFAULT_JOB_LIMIT,
    ) -> None:
        self.broker = broker
        self.ledger = ledger
        self.queues = tuple(queues)
        self.job_limit = job_limit

    @classmethod
    def from_config(cls, cfg: PipelineConfig) -> PipelineCollector:
        """Broker lists from ``broker_url``, the ledger from ``redis_url`` (often the same)."""
        broker = connect(cfg.broker_url, cfg, timeout=REDIS_TIMEOUT_SECONDS)
        ledger_client = (
            broker
            if cfg.redis_url == cfg.broker_url
            else connect(cfg.redis_url, cfg, timeout=REDIS_TIMEOUT_SECONDS)
        )
        return cls(
            broker, Ledger(ledger_client, ttl=cfg.result_ttl, producer_timeout=cfg.producer_timeout)
        )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        """Names only, so registering the collector does not read Redis."""
        return [self._depth(), self._unacked(), self._jobs(), self._queued(), self._up()]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        start = time.perf_counter()
        try:
            depths, unacked = self._read_broker()
            states = self.ledger.count_by_state(self.job_limit)
            queued = self.ledger.producing.queued_bytes()
        except BackendUnavailableError:
            yield self._up(0.0)
            return
        depth = self._depth()
        for queue, n in depths.items():
            depth.add_metric([queue], n)
        jobs = self._jobs()
        for state, n in sorted(states.items()):
            jobs.add_metric([state], n)
        yield depth
        yield self._unacked(unacked)
        yield jobs
        yield self._queued(queued)
        yield self._up(1.0)
        yield GaugeMetricFamily(
            "datafold_exporter_scrape_seconds",
            "Time the last scrape spent reading Redis, seconds.",
            value=time.perf_counter() - start,
        )

    def _read_broker(self) -> tuple[dict[str, int], int]:
        pipe = self.broker.pipeline(transaction=False)
        for q in self.queues:
            for name in keys.broker_queue_lists(q):
                pipe.llen(name)
        pipe.hlen(keys.broker_unacked())
        with guard("Exporter.queues", self.broker):
            replies = pipe.execute()
        per = len(keys.broker_queue_lists(""))
        depths = {q: sum(replies[i * per : (i + 1) * per]) for i, q in enumerate(self.queues)}
        return depths, int(replies[-1])

    @staticmethod
    def _depth() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "datafold_queue_depth",
            "Messages waiting in a Celery queue (not yet taken by a worker).",
            labels=["queue"],
        )

    @staticmethod
    def _unacked(value: float | None = None) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "datafold_queue_unacked",
            "Messages taken by workers and not yet acknowledged (running, "
            "prefetched or waiting for a requeue countdown).",
            value=value,
        )

    @staticmethod
    def _queued(value: float | None = None) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "datafold_queued_bytes",
            "Segment payload bytes queued and not yet recorded, over every job "
            "(held under DATAFOLD_MAX_QUEUED_BYTES by the producers).",
            value=value,
        )

    @staticmethod
    def _jobs() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "datafold_jobs",
            "Jobs per state among the most recent ones the ledger still holds.",
            labels=["state"],
        )

    @staticmethod
    def _up(value: float | None = None) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "datafold_redis_up",
            "1 if the last scrape could read Redis (queues and ledger), 0 if not.",
            value=value,
        )


def serve(cfg: PipelineConfig, port: int, addr: str) -> tuple[Any, threading.Thread]:
    """Serve only the pipeline collector on ``addr:port`` (a daemon thread); returns the
    server (``.shutdown()`` stops it) and its thread. Raises OSError if the port is taken."""
    registry = CollectorRegistry()
    registry.register(PipelineCollector.from_config(cfg))
    return start_http_server(port, addr=addr, registry=registry)


def main(argv: Sequence[str] | None = None) -> int:
    """``datafold-exporter``: serve until SIGTERM or SIGINT; exit 0."""
    cfg = PipelineConfig.from_env()
    ap = argparse.ArgumentParser(
        prog="datafold-exporter",
        description="Queue depth and job "
        "states of datafold-dynamo for Prometheus (no worker needed).",
    )
    ap.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    ap.add_argument(
        "--addr",
        default=cfg.metrics_addr,
        help="address to bind (default DATAFOLD_METRICS_ADDR, 127.0.0.1)",
    )
    a = ap.parse_args(argv)
    server, _ = serve(cfg, a.port, a.addr)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print(f"datafold-exporter: serving http://{a.addr}:{server.server_port}/metrics", flush=True)
    stop.wait()
    server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
