"""What the ledger reports: a job's status, the dead letters of items it gave up on, and the
answers of its lease and recording steps."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from pipeline.states import JobState
from storage.redact import scrub

COUNTERS = (
    "items",
    "written",
    "deleted",
    "dead_lettered",
    "superseded",
    "rejected",
    "requeues",
    "failures",
)
"""The job hash's counters (HINCRBY in ``ledger.lua``)."""


@dataclass(frozen=True)
class DeadLetter:
    """An item the pipeline gave up on, with why. ``value`` is kept so it can be replayed.
    ``source`` and ``line``: the input (path, ``-`` or S3 URL) and its 1-based line the item
    was read from, for items loaded from files (None otherwise, or when unknown)."""

    key: bytes
    value: bytes | None
    reason: str
    code: str
    namespace: str | None = None
    source: str | None = None
    line: int | None = None

    def to_json(self) -> str:
        d: dict[str, Any] = {
            "key": self.key.hex(),
            "value": None if self.value is None else self.value.hex(),
            "reason": scrub(self.reason),
            "code": self.code,
            "namespace": self.namespace,
        }
        if self.source is not None:
            d["source"] = scrub(self.source)
        if self.line is not None:
            d["line"] = self.line
        return json.dumps(d, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> DeadLetter:
        """The letter of :meth:`to_json`'s output (one written before ``source`` and ``line``
        existed has None for them)."""
        d = json.loads(raw)
        line = d.get("line")
        return cls(
            bytes.fromhex(d["key"]),
            None if d["value"] is None else bytes.fromhex(d["value"]),
            d["reason"],
            d["code"],
            d.get("namespace"),
            d.get("source"),
            None if line is None else int(line),
        )


@dataclass(frozen=True)
class JobStatus:
    """A snapshot of one job. ``items`` = accepted input items; when finished,
    ``items == written + deleted + superseded + dead_lettered`` (superseded: replaced by a later
    line for the same key in the same job, or by a newer single write). ``failures`` counts
    steps that failed without items (a delete's planning), ``error`` says the last one's why.
    ``stopped`` says why a load's input was not read to the end (states ``incomplete`` and
    ``abandoned``); ``lines``: input lines enqueued so far by a resumable load (its last
    checkpoint); ``fed``: a producer still holds the job; ``sealed``: every segment is
    planned (the input was read to the end); ``consumed_wcu``: write capacity units the
    job's bulk writes consumed, as the batch writer charges them (DynamoDB's figure when asked
    for it, else ceil(item size / 1 KB) per item)."""

    id: str
    state: JobState
    kind: str = ""
    namespace: str = ""
    user_id: str = ""
    items: int = 0
    written: int = 0
    deleted: int = 0
    dead_lettered: int = 0
    superseded: int = 0
    rejected: int = 0
    requeues: int = 0
    failures: int = 0
    error: str = ""
    stopped: str = ""
    lines: int = 0
    fed: bool = False
    sealed: bool = False
    consumed_wcu: float = 0.0
    segments_planned: int = 0
    segments_done: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "state", JobState(self.state))

    @property
    def finished(self) -> bool:
        """Nothing more will happen: a final state, or a stopped load whose sent segments
        are all recorded (until it is resumed)."""
        if self.state.stopped:
            return self.segments_done >= self.segments_planned
        return self.state.final

    @property
    def processed(self) -> int:
        return self.written + self.deleted + self.superseded + self.dead_lettered

    @property
    def elapsed(self) -> float:
        end = self.finished_at or time.time()
        return max(0.0, end - (self.started_at or self.created_at or end))

    @classmethod
    def from_hash(cls, job_id: str, h: dict[bytes, bytes], *, planned: int, done: int) -> JobStatus:
        """The status of the job hash ``h`` (and its planned and done segment counts)."""
        d = {k.decode(): v.decode() for k, v in h.items()}

        def num(name: str) -> int:
            return int(d.get(name, "0") or 0)

        def ts(name: str) -> float | None:
            return float(d[name]) if d.get(name) else None

        return cls(
            id=job_id,
            state=JobState(d.get("state", JobState.QUEUED)),
            kind=d.get("kind", ""),
            namespace=d.get("namespace", ""),
            user_id=d.get("user_id", ""),
            **{c: num(c) for c in COUNTERS},
            error=d.get("error", ""),
            stopped=d.get("stopped", ""),
            lines=num("lines"),
            fed="producer" in d,
            sealed=d.get("sealed") == "1",
            consumed_wcu=float(d.get("wcu", "0") or 0),
            segments_planned=planned,
            segments_done=done,
            created_at=ts("created_at") or 0.0,
            started_at=ts("started_at"),
            finished_at=ts("finished_at"),
            extra={k[2:]: v for k, v in d.items() if k.startswith("x_")},
        )

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "extra"}
        d["processed"] = self.processed
        return d


class LeaseStatus(IntEnum):
    """What taking a segment's lease found (``ledger.lua``'s ``take`` answers these numbers)."""

    TAKEN = 0
    RECORDED = 1  # the segment is already recorded: nothing to do
    HELD = 2  # another live delivery holds it
    UNPLANNED = 3  # a requeued child whose parent is not recorded yet: wait
    ORPHAN = 4  # a child its parent was recorded without (or a job gone): never to run


@dataclass(frozen=True)
class Lease:
    """``deliveries``: when TAKEN, this delivery's number (1 + holders that vanished);
    ``expires_in``: when HELD, seconds until the holder's lease runs out unless renewed."""

    status: LeaseStatus
    deliveries: int = 0
    expires_in: float = 0.0


class PlanStatus(IntEnum):
    """What planning a segment did (``ledger.lua``'s ``plan``)."""

    FENCED = -1  # the producer token no longer holds the job: nothing planned
    FULL = 0  # the queued-bytes budget has no room: nothing planned, wait for workers
    PLANNED = 1  # planned (or planned before)


@dataclass(frozen=True)
class Planned:
    """``queued``: payload bytes queued and unfinished over every job, as the step saw them."""

    status: PlanStatus
    queued: int


class Recorded(IntEnum):
    """What recording a segment did (``ledger.lua``'s ``finish``)."""

    UNPLANNED = -2  # a child its parent's recording did not plan: nothing recorded
    FENCED = -1  # this delivery no longer holds the lease: nothing recorded
    ALREADY = 0  # recorded before (by another delivery)
    FIRST = 1
