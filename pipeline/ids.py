"""Segment ids and partition names: every format built here, nowhere else.

A segment id names one unit the ledger counts exactly once, so every id is deterministic: a
redelivered message, or a producer cutting the same input again, names the same segment.

============================  =================================================================
``{scope}/p{p}.{idx}``        segment ``idx`` of partition ``p`` of a producer's stream
                              (``scope`` is the namespace; a replay of schemas has scope "")
``{scope}/{p}``               the partition itself: its segments run in ``idx`` order
``d{n}:{target}:{ns}``        scope of the segments planned by a plan's ``n``-th holder
                              (``d{n}x{k}:...`` by its ``k``-th re-run)
``{id}.r{attempt}``           the requeued leftovers of segment ``id`` (attempt 1, 2, ...),
                              cut by its first lease holder in its first run;
                              ``{id}.r{attempt}h{n}`` when cut by the ``n``-th holder (an
                              earlier one vanished), ``...x{k}`` by the holder's ``k``-th
                              re-run (after a Redis outage): no two runs share a child
``w``, ``w.r{attempt}``       a single write, and its requeued attempts
``plan``                      the planner's own step of a bulk delete
============================  =================================================================
"""

from __future__ import annotations

import uuid

SINGLE_WRITE = "w"
PLAN = "plan"


def segment(scope: str, partition: int, index: int) -> str:
    """Segment ``index`` of ``partition`` within ``scope``."""
    return f"{scope}/p{partition}.{index}"


def partition(scope: str, partition: int) -> str:
    """The name under which the ledger keeps a partition's next index."""
    return f"{scope}/{partition}"


def planned_scope(holder: int, rerun: int = 0) -> str:
    """Prefix of the delete segments planned by a plan's ``holder``-th lease holder in its
    ``rerun``-th re-run, to which the planner adds ``{target}:{ns}``: a plan taken over plans
    afresh under new ids, and no id is planned twice with different keys."""
    return f"d{holder}:" if rerun == 0 else f"d{holder}x{rerun}:"


def requeued(parent: str, attempt: int, holder: int = 1, rerun: int = 0) -> str:
    """The id of the leftovers of ``parent`` sent again for the ``attempt``-th time by its
    ``holder``-th lease holder in its ``rerun``-th re-run. Requeues of a requeue append again:
    the chain stays readable in logs and dead letters."""
    tag = (f"h{holder}" if holder > 1 else "") + (f"x{rerun}" if rerun > 0 else "")
    return f"{parent}.r{attempt}{tag}"


def single_write(attempt: int) -> str:
    """The id a single write is counted under: ``w`` first, ``w.r{attempt}`` when requeued."""
    return SINGLE_WRITE if attempt == 0 else requeued(SINGLE_WRITE, attempt)


def new_job_id() -> str:
    """A new job's id: 16 random hex digits."""
    return uuid.uuid4().hex[:16]
