"""The workers' Celery application: the shared settings of :mod:`pipeline.broker`, plus the
tasks and the metrics hooks it runs."""

from __future__ import annotations

from celery import Celery

from pipeline.broker import settings
from pipeline.config import PipelineConfig


def make_app(cfg: PipelineConfig | None = None) -> Celery:
    """The worker app for ``cfg`` (default: the environment). Producers send with
    :func:`pipeline.broker.sender_app`, which registers no task."""
    a = Celery("datafold")
    a.conf.update(settings(cfg or PipelineConfig.from_env()))
    # worker.observability: /metrics of each worker (Celery signals; DATAFOLD_METRICS_PORT).
    a.conf.include = ["worker.tasks", "worker.observability"]
    return a


app = make_app()
