"""Builds the services of one worker process once, from the environment, and reuses them.

One DynamoDB client (one connection pool), one batch writer thread pool, one Redis client, one
rate limiter and one ledger per process.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from pipeline.config import PipelineConfig, check_run_bound
from pipeline.enqueue import CeleryEnqueuer
from pipeline.ledger import Ledger
from pipeline.payloads import PayloadStore
from pipeline.redis_boundary import Redis, connect
from storage.errors import BackendUnavailableError
from storage.namespaced import DynamoNamespacedStore
from storage.settings import DynamoConfig
from worker.celery_app import app
from worker.limiter import COALESCE_SECONDS, RateLimiter, RedisBucketBackend
from worker.planner import Planner
from worker.segments import SegmentRunner
from worker.single import SingleWriteRunner
from worker.sweeper import Sweeper

log = logging.getLogger(__name__)
T = TypeVar("T")
REDIS_PATIENCE_SECONDS = 120.0


@dataclass
class Runtime:
    cfg: PipelineConfig
    dynamo_cfg: DynamoConfig
    redis: Redis[Any]
    ledger: Ledger
    limiter: RateLimiter
    store: DynamoNamespacedStore
    segments: SegmentRunner
    singles: SingleWriteRunner
    planner: Planner
    sweeper: Sweeper


_BUILD_LOCK = threading.Lock()


def runtime() -> Runtime:
    """The process's services, built on first use. Under a lock: the first tasks of a thread
    pool arrive together, and each building its own boto3 client (~0.3 s of CPU apiece, the
    service model is parsed from JSON) slowed a worker's first segments (bench/)."""
    with _BUILD_LOCK:
        return _build()


@functools.lru_cache(maxsize=1)
def _build() -> Runtime:
    cfg = PipelineConfig.from_env()
    dcfg = DynamoConfig.from_env()
    check_run_bound(cfg, dcfg)
    r = connect(cfg.redis_url, cfg)
    ledger = Ledger(r, ttl=cfg.result_ttl, producer_timeout=cfg.producer_timeout)
    limiter = RateLimiter.from_config(RedisBucketBackend(r), cfg, coalesce_seconds=COALESCE_SECONDS)
    store = DynamoNamespacedStore(dcfg, pacer=limiter, batch_threads=cfg.batch_threads)
    payloads = PayloadStore(r, ttl=cfg.result_ttl)
    enq = CeleryEnqueuer(app, payloads)
    # Lost messages exist only on a Redis broker (kombu's BRPOP; see worker.sweeper).
    broker = (
        connect(cfg.broker_url, cfg)
        if cfg.broker_url.startswith(("redis://", "rediss://", "unix://"))
        else None
    )
    sweeper = Sweeper(
        payloads=payloads,
        ledger=ledger,
        enqueue=enq,
        broker=broker,
        interval=cfg.sweep_interval,
        grace=cfg.sweep_grace,
    )
    return Runtime(
        cfg,
        dcfg,
        r,
        ledger,
        limiter,
        store,
        SegmentRunner(store=store, ledger=ledger, enqueue=enq, cfg=cfg, payloads=payloads),
        SingleWriteRunner(
            store=store, ledger=ledger, enqueue=enq, cfg=cfg, payloads=payloads, limiter=limiter
        ),
        Planner(store=store, ledger=ledger, enqueue=enq, cfg=cfg, payloads=payloads),
        sweeper,
    )


def patiently(
    fn: Callable[[], T],
    *,
    budget: float = REDIS_PATIENCE_SECONDS,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """Run ``fn``, retrying while Redis is unreachable (a restart), up to ``budget`` seconds.

    Every service step is idempotent, so running it again after a Redis outage is safe. If we
    give up, Celery acknowledges the failed task, and the sweeper sends its message again from
    the journal once Redis is back."""
    deadline = clock() + budget
    delay = 0.5
    while True:
        try:
            return fn()
        except BackendUnavailableError as exc:
            if clock() >= deadline:
                raise
            log.warning("%s (cause: %r); retrying in %.1fs", exc, exc.__cause__, delay)
            sleep(delay)
            delay = min(delay * 2, 10.0)
