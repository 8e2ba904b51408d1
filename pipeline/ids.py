"""Segment ids and partition names: every format built here, nowhere else.

A segment id names one unit the ledger counts exactly once, so every id is deterministic: a
redelivered message, or a producer cutting the same input again, names the same segment.

============================  =================================================================
``{scope}/p{p}.{idx}``        segment ``idx`` of partition ``p`` of a producer's stream
                              (``scope`` is the namespace; a replay of schemas has scope "")
``{scope}/{p}``               the partition itself: its segments run in ``idx`` order
``d{n}:{target}:{ns}``        scope of delivery ``n`` of a bulk delete's planner
``{id}.r{attempt}``           the requeued leftovers of segment ``id`` (attempt 1, 2, ...),
                              cut by its first lease holder; ``{id}.r{attempt}h{n}`` when
                              cut by the ``n``-th (an earlier holder vanished)
``w``, ``w.r{attempt}``       a single write, and its requeued attempts
``plan``                      the planner's own step of a bulk delete
============================  =================================================================
"""

from __future__ import annotations

SINGLE_WRITE = "w"
PLAN = "plan"


def segment(scope: str, partition: int, index: int) -> str:
    """Segment ``index`` of ``partition`` within ``scope``."""
    return f"{scope}/p{partition}.{index}"


def partition(scope: str, partition: int) -> str:
    """The name under which the ledger keeps a partition's next index."""
    return f"{scope}/{partition}"


def planned_scope(delivery: int, target: str, ns: str | None) -> str:
    """Scope of the delete segments planned by a planner's ``delivery``-th delivery: a
    redelivered planner plans afresh under new ids, and nothing is counted twice."""
    return f"d{delivery}:{target}:{ns or ''}"


def requeued(parent: str, attempt: int, holder: int = 1) -> str:
    """The id of the leftovers of ``parent`` sent again for the ``attempt``-th time by its
    ``holder``-th lease holder. Requeues of a requeue append again: the chain stays readable in
    logs and dead letters."""
    return f"{parent}.r{attempt}" if holder <= 1 else f"{parent}.r{attempt}h{holder}"


def single_write(attempt: int) -> str:
    """The id a single write is counted under: ``w`` first, ``w.r{attempt}`` when requeued."""
    return SINGLE_WRITE if attempt == 0 else requeued(SINGLE_WRITE, attempt)
