"""What applications and operators call: :class:`Producer` enqueues work and returns a
:class:`Job`; the ``datafold`` command line (:mod:`producers.cli`) is built on it."""

from producers.api import Producer
from producers.job import DeadLetter, Job, JobStatus

__all__ = ["DeadLetter", "Job", "JobStatus", "Producer"]
