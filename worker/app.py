"""The Celery application, configured from :mod:`celeryconfig` only."""

from __future__ import annotations

from celery import Celery

app = Celery("datafold")
app.config_from_object("celeryconfig")
app.conf.include = ["worker.tasks"]
