"""The Celery worker of datafold-dynamo: ``celery -A worker worker``.

Tasks (:mod:`worker.tasks`) are thin adapters over plain services: :mod:`worker.segments`,
:mod:`worker.single`, :mod:`worker.planner`, the ledger and the rate limiter
(:mod:`worker.limiter`), wired once per process by :mod:`worker.runtime`. The Celery app
(:mod:`worker.celery_app`) is built when ``worker.app`` is first asked for, as
``celery -A worker`` does, not when a submodule such as ``worker.limiter`` is imported.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name == "app":
        from worker.celery_app import app

        return app
    raise AttributeError(f"module 'worker' has no attribute {name!r}")
