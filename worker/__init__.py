"""The Celery worker of datafold-dynamo: ``celery -A worker worker``.

Tasks (:mod:`worker.tasks`) are thin adapters over plain services: :mod:`worker.segments`,
:mod:`worker.single`, :mod:`worker.planner`, the ledger and the rate limiter.
"""

from worker.app import app

__all__ = ["app"]
