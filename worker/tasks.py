"""Celery tasks: thin adapters from JSON messages to the plain services of :mod:`worker`."""

from __future__ import annotations

import gc
import logging
from typing import Any

from celery.signals import worker_init, worker_process_init, worker_ready

from pipeline.config import PipelineConfig, check_run_bound
from pipeline.messages import PLAN_TASK, SEGMENT_TASK, WRITE_TASK, Plan, Segment, SingleWrite
from storage.errors import ConfigError
from storage.settings import DynamoConfig
from worker.celery_app import app
from worker.delivery import Delivery
from worker.runtime import patiently, runtime

log = logging.getLogger(__name__)


@app.task(name=SEGMENT_TASK)
def segment(message: dict[str, Any]) -> str:
    """Write or delete one segment of a bulk job (queue ``bulk``)."""
    seg, delivery = Segment.from_message(message), Delivery()
    return patiently(lambda: runtime().segments.run(seg, delivery))


@app.task(name=WRITE_TASK)
def write(message: dict[str, Any]) -> str:
    """One ordered single-key put or delete (queue ``writes``)."""
    w, delivery = SingleWrite.from_message(message), Delivery()
    return patiently(lambda: runtime().singles.run(w, delivery))


@app.task(name=PLAN_TASK)
def plan(message: dict[str, Any]) -> int:
    """Read the keys of a bulk delete and enqueue its segments (queue ``bulk``)."""
    p, delivery = Plan.from_message(message), Delivery()
    return patiently(lambda: runtime().planner.run(p, delivery))


@worker_init.connect
def _refuse_unsafe_settings(**_: Any) -> None:
    """A worker whose segments could outlive their visibility timeout does not start: one line
    naming the settings, exit 2 (SystemExit passes Celery's signal dispatch)."""
    try:
        check_run_bound(PipelineConfig.from_env(), DynamoConfig.from_env())
    except ConfigError as exc:
        log.critical("worker refuses to start: %s", exc)
        raise SystemExit(2) from None


@worker_ready.connect
def _sweep(**_: Any) -> None:
    """Start this worker's sweeper thread (one per worker, not per pool process)."""
    try:
        rt = runtime()
    except Exception:
        log.exception("sweeper not started: the worker's services could not be built")
        return
    if rt.cfg.sweep_interval > 0:
        rt.sweeper.start()


@worker_ready.connect
@worker_process_init.connect
def _warm(**_: Any) -> None:
    """Build the services when a worker (or a prefork child) starts, not inside the first
    task: the first segments of a job no longer wait for boto3's client to be built; then
    freeze the heap for the garbage collector.
    Best effort: if Redis or DynamoDB is down now, the first task builds them instead."""
    try:
        runtime()
    except Exception:  # the task path retries and reports properly
        return
    # Everything built so far (Celery, kombu, botocore's service model: ~10^5 objects) lives
    # as long as the process: move it out of the cyclic GC's reach. Otherwise each full
    # collection walks it again, which cost ~40 % of the time spent building write requests
    # (bench/, BENCHMARKS.md).
    gc.collect()
    gc.freeze()
