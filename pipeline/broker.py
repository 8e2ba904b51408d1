"""Celery over the broker: every Celery setting of the project, and the app producers send with.

Delivery is at-least-once: ``acks_late`` + ``task_reject_on_worker_lost`` + prefetch 1, and the
ledger makes redelivery harmless. The Redis ``visibility_timeout`` (``DATAFOLD_VISIBILITY_TIMEOUT``,
default 300 s) is the recovery time after a worker dies: its unacknowledged messages go back to
the queue when it expires, plus at most 5 s (the restore interval below). It exceeds the longest
countdown (``DATAFOLD_REQUEUE_MAX_DELAY``, 60 s).
JSON only, no pickle: any other content type is refused (``accept_content``), logged, never run.

Nothing here reads the environment at import: :func:`settings` builds the configuration from a
:class:`PipelineConfig`, and both :func:`sender_app` (producers) and ``worker.celery_app`` (workers)
call it, so the two sides always agree.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from kombu.entity import Exchange, Queue

from pipeline.config import PipelineConfig
from pipeline.messages import BULK_QUEUE, PLAN_TASK, SEGMENT_TASK, WRITE_TASK, WRITES_QUEUE

QUEUES = (WRITES_QUEUE, BULK_QUEUE)


def settings(cfg: PipelineConfig) -> dict[str, Any]:
    """The whole Celery configuration for ``cfg``: the same for producers and workers."""
    return {
        "broker_url": cfg.broker_url,
        "broker_connection_retry_on_startup": True,
        "broker_transport_options": {
            "visibility_timeout": cfg.visibility_timeout,
            "socket_timeout": cfg.redis_timeout,
            "socket_connect_timeout": cfg.redis_connect_timeout,
            "health_check_interval": 10,
            # Sweep for expired unacknowledged messages every 5 s (kombu's default is about
            # 100 s), so recovery after a worker dies is visibility_timeout + at most 5 s.
            "unacked_restore_interval": 5,
            "unacked_restore_throttle": 1,
            # The body is JSON text already: kombu's default base64 layer on top cost a
            # worker ~30 us of CPU per 4 KB item and grew every message by a third (bench/).
            "body_encoding": "utf-8",
        },
        # JSON only, no pickle.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "event_serializer": "json",
        # No result backend: the job ledger in Redis holds every outcome.
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_pool": cfg.worker_pool,
        "worker_concurrency": cfg.worker_concurrency,
        # Single writes and bulk work on separate queues: a big load never starves single
        # writes (a worker consumes both fairly; `-Q writes` runs a writes-only worker).
        "task_queues": tuple(Queue(q, Exchange(q, type="direct"), routing_key=q) for q in QUEUES),
        "task_default_queue": BULK_QUEUE,
        "task_default_exchange": BULK_QUEUE,
        "task_default_routing_key": BULK_QUEUE,
        "task_routes": {
            WRITE_TASK: {"queue": WRITES_QUEUE, "routing_key": WRITES_QUEUE},
            SEGMENT_TASK: {"queue": BULK_QUEUE, "routing_key": BULK_QUEUE},
            PLAN_TASK: {"queue": BULK_QUEUE, "routing_key": BULK_QUEUE},
        },
        # Events for Flower.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
    }


def sender_app(cfg: PipelineConfig) -> Celery:
    """A Celery app that only sends (producers): configured like the workers' app, but it
    registers no task and starts nothing."""
    app = Celery("datafold")
    app.conf.update(settings(cfg))
    return app
