"""The Celery application, configured from :mod:`celeryconfig` only."""

from __future__ import annotations

from celery import Celery

import celeryconfig
from storage.settings import PipelineConfig


def make_app(cfg: PipelineConfig | None = None) -> Celery:
    """A Celery app for ``cfg`` (default: the environment); producers may make their own."""
    a = Celery("datafold")
    a.conf.update(celeryconfig.settings(cfg or PipelineConfig.from_env()))
    # worker.observability: /metrics of each worker (Celery signals; DATAFOLD_METRICS_PORT).
    a.conf.include = ["worker.tasks", "worker.observability"]
    return a


app = make_app()
