"""The closed vocabularies of the pipeline as ``StrEnum``s: job states and kinds, segment
outcomes, write targets and plan kinds.

They travel as their string values (in Redis hashes, JSON messages, Lua scripts and metric
labels), so a member compares equal to its value and prints as it; code names the member, never
the bare string. ``ledger.lua`` spells the job states itself: the two lists must agree (a unit
test reads the script).
"""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job is. ``queued`` until a worker takes its first message; final states are set by
    the ledger once every planned segment is recorded (see :attr:`final`)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"  # some items written, some dead-lettered or rejected
    FAILED = "failed"  # nothing written, something dead-lettered or rejected
    INCOMPLETE = "incomplete"  # its producer stopped before the end of its input, and said so
    ABANDONED = "abandoned"  # its producer went silent before the end of its input

    @property
    def final(self) -> bool:
        return self in FINAL_STATES

    @property
    def stopped(self) -> bool:
        """Its input was not read to the end: what was sent still runs, nothing more comes
        unless the load is resumed (``datafold load FILE --resume JOB``)."""
        return self in STOPPED_STATES


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.PARTIAL, JobState.FAILED})
STOPPED_STATES = frozenset({JobState.INCOMPLETE, JobState.ABANDONED})


class JobKind(StrEnum):
    """What a job does, as the producer created it."""

    LOAD = "load"
    DELETE = "delete"
    PUT = "put"
    DELETE_KEY = "delete_key"
    CLEAR_SCHEMAS = "clear_schemas"
    RESET_USER = "reset_user"
    REPLAY = "replay"


class Target(StrEnum):
    """The table a segment writes to: a namespace's table, or the schema table."""

    KV = "kv"
    SCHEMAS = "schemas"


class PlanKind(StrEnum):
    """A bulk delete the worker plans by reading keys (``datafold.plan``)."""

    CLEAR_SCHEMAS = "clear_schemas"
    RESET_USER = "reset_user"


class Outcome(StrEnum):
    """What one delivery of a message came to (the ``outcome`` label of
    ``datafold_segments_total``)."""

    DONE = "done"  # every item written or deleted
    REQUEUED = "requeued"  # leftovers sent again as a child, with backoff
    DEAD = "dead"  # something dead-lettered
    DEFERRED = "deferred"  # not its turn in its partition yet: sent again shortly
    DUPLICATE = "duplicate"  # already recorded by another delivery
    RESENT = "resent"  # sent again by the sweeper: its message was lost
    FENCED = "fenced"  # stopped: another delivery took the segment's lease


class Admission(StrEnum):
    """Whether a delivery may write for its user now (``lua/erasure.lua``'s ``admit``)."""

    ADMITTED = "admitted"  # write; registered as in flight until it leaves
    SUPERSEDED = "superseded"  # its job began before an erase of the user: never write
    WAIT = "wait"  # an erase of the user is under way: write after it
