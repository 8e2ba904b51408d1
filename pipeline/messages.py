"""The JSON task messages of the pipeline (JSON only, never pickle), built and read here only.

A *segment* message names hundreds of items of one job, one target table and one user:
``{"v": 2, "job", "seg", "target": "kv"|"schemas", "ns", "user", "part", "idx", "attempt",
"n", "parent", "idle"}``. Its ``n`` items are in Redis beside it (``pipeline.payloads``:
written once, read once, no base64 or JSON on the way). ``part``/``idx`` place the segment in
its partition's order (segments of one partition run in order, so within a job the last line
for a key wins; ``part`` null means unordered); ``attempt`` counts requeues of unprocessed
leftovers, ``idle`` those in a row that wrote nothing, and ``parent`` names the segment whose
leftovers a requeued child carries.

Each message kind is one Celery task, named here (:data:`SEGMENT_TASK`, :data:`WRITE_TASK`,
:data:`PLAN_TASK`): producers send by name and never import worker code.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any

from pipeline import ids
from pipeline.states import PlanKind, Target

SEGMENT_VERSION = 2
MESSAGE_VERSION = 1  # single writes and plans

SEGMENT_TASK = "datafold.segment"
WRITE_TASK = "datafold.write"
PLAN_TASK = "datafold.plan"
WRITES_QUEUE = "writes"
"""Single writes: a queue of their own, so a big load never starves them."""
BULK_QUEUE = "bulk"
"""Segments and plans."""

Op = tuple[bytes, "bytes | None"]
"""One item: key and value bytes, or key and None for a delete."""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass(frozen=True)
class Segment:
    """One segment. ``ops`` holds its items in memory (when cutting, or once loaded from the
    payload store); the message never carries them, only their count. ``refs``: where they
    came from (``pipeline.refs``), stored beside them when staged; never in the message."""

    job: str
    seg: str
    target: Target
    ns: str | None
    user: str
    ops: list[Op] | None  # None: in the payload store
    part: str | None = None
    idx: int = 0
    attempt: int = 0
    count: int = 0  # items, when ``ops`` is None
    parent: str | None = None
    idle: int = 0  # requeues in a row that made no progress (the bound applies to these)
    refs: bytes | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", Target(self.target))  # ValueError if not a target

    @property
    def n(self) -> int:
        """How many items the segment holds."""
        return self.count if self.ops is None else len(self.ops)

    def to_message(self) -> dict[str, Any]:
        return {
            "v": SEGMENT_VERSION,
            "job": self.job,
            "seg": self.seg,
            "target": str(self.target),
            "ns": self.ns,
            "user": self.user,
            "part": self.part,
            "idx": self.idx,
            "attempt": self.attempt,
            "n": self.n,
            "parent": self.parent,
            "idle": self.idle,
        }

    @classmethod
    def from_message(cls, m: dict[str, Any]) -> Segment:
        """The segment a message names (``ops`` None). ValueError for any other version."""
        if m.get("v") != SEGMENT_VERSION:
            raise ValueError(f"unsupported segment message version {m.get('v')!r}")
        return cls(
            job=m["job"],
            seg=m["seg"],
            target=Target(m["target"]),
            ns=m.get("ns"),
            user=m["user"],
            part=m.get("part"),
            idx=int(m.get("idx", 0)),
            attempt=int(m.get("attempt", 0)),
            ops=None,
            count=int(m.get("n", 0)),
            parent=m.get("parent"),
            idle=int(m.get("idle", 0)),
        )

    def without_ops(self) -> Segment:
        """The same segment, its items (and refs) left to the payload store."""
        return replace(self, ops=None, count=self.n, refs=None)

    @property
    def letter_ns(self) -> str | None:
        """Namespace recorded in dead letters: None marks the schema table."""
        return self.ns if self.target is Target.KV else None

    def child(
        self,
        ops: list[Op],
        holder: int = 1,
        progressed: bool = False,
        rerun: int = 0,
        refs: bytes | None = None,
    ) -> Segment:
        """The requeued remainder: same place in the order, one more attempt. ``holder`` (the
        lease holder's delivery number) and ``rerun`` (its run) name it, so no two runs name
        (and store) the same child; ``progressed``: this attempt wrote something (resets
        ``idle``); ``refs``: where its items came from."""
        attempt = self.attempt + 1
        return replace(
            self,
            seg=ids.requeued(self.seg, attempt, holder, rerun),
            ops=ops,
            count=0,
            attempt=attempt,
            parent=self.seg,
            idle=0 if progressed else self.idle + 1,
            refs=refs,
        )


@dataclass(frozen=True)
class SingleWrite:
    """One ordered put (``value`` bytes) or delete (``value`` None) with its sequence."""

    job: str
    ns: str
    user: str
    key: bytes
    value: bytes | None
    seq: int
    attempt: int = 0

    @property
    def seg(self) -> str:
        """The id the ledger counts this attempt under."""
        return ids.single_write(self.attempt)

    def retry(self) -> SingleWrite:
        """The same write, sent again as its next attempt."""
        return replace(self, attempt=self.attempt + 1)

    def to_message(self) -> dict[str, Any]:
        return {
            "v": MESSAGE_VERSION,
            "job": self.job,
            "ns": self.ns,
            "user": self.user,
            "key": b64(self.key),
            "value": None if self.value is None else b64(self.value),
            "seq": self.seq,
            "attempt": self.attempt,
        }

    @classmethod
    def from_message(cls, m: dict[str, Any]) -> SingleWrite:
        return cls(
            job=m["job"],
            ns=m["ns"],
            user=m["user"],
            key=unb64(m["key"]),
            value=None if m["value"] is None else unb64(m["value"]),
            seq=int(m["seq"]),
            attempt=int(m.get("attempt", 0)),
        )


@dataclass(frozen=True)
class Plan:
    """A bulk delete the worker plans by reading keys (:class:`PlanKind`)."""

    job: str
    what: PlanKind
    user: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "what", PlanKind(self.what))  # ValueError if unknown

    @property
    def seg(self) -> str:
        """The id the ledger counts the planning step under."""
        return ids.PLAN

    def to_message(self) -> dict[str, Any]:
        return {"v": MESSAGE_VERSION, "job": self.job, "what": str(self.what), "user": self.user}

    @classmethod
    def from_message(cls, m: dict[str, Any]) -> Plan:
        """ValueError for a plan kind this version does not know."""
        return cls(job=m["job"], what=PlanKind(m["what"]), user=m["user"])


def journal_id(task: str, message: dict[str, Any]) -> str | None:
    """The id under which a message of ``task`` is journalled and counted (None: not ours)."""
    if task == SEGMENT_TASK:
        return str(message["seg"])
    if task == WRITE_TASK:
        return ids.single_write(int(message.get("attempt", 0)))
    if task == PLAN_TASK:
        return ids.PLAN
    return None
