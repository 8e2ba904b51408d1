"""The JSON task messages of the pipeline (JSON only, no pickle), built and read here only.

A *segment* names hundreds of items of one job, one target table and one user:
``{"job", "seg", "target": "kv"|"schemas", "ns", "user", "part", "idx", "attempt", "n"}``; its
items are in Redis beside the message (``worker.payloads``: written once, read once, no base64
or JSON on the way). A message may instead carry them inline as ``"ops"``, a list of
``[key_b64, value_b64 | null]`` (null = delete): the form of version 1, still read.
``part``/``idx`` place the segment in its partition's order (segments of one partition run in
order, so within a job the last line for a key wins); ``attempt`` counts requeues of
unprocessed leftovers.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from typing import Any

SEGMENT_VERSION = 2
READABLE_SEGMENT_VERSIONS = (1, 2)
MESSAGE_VERSION = 1  # single writes and plans


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    return base64.b64decode(text.encode("ascii"), validate=True)


@dataclass(frozen=True)
class Segment:
    job: str
    seg: str
    target: str  # "kv" (a namespace table) or "schemas" (the schema table)
    ns: str | None
    user: str
    ops: list[tuple[bytes, bytes | None]] | None  # None: in the payload store
    part: str | None = None
    idx: int = 0
    attempt: int = 0
    count: int = 0  # items, when ``ops`` is None

    @property
    def n(self) -> int:
        """How many items the segment holds."""
        return self.count if self.ops is None else len(self.ops)

    def to_message(self) -> dict[str, Any]:
        m = {
            "v": SEGMENT_VERSION,
            "job": self.job,
            "seg": self.seg,
            "target": self.target,
            "ns": self.ns,
            "user": self.user,
            "part": self.part,
            "idx": self.idx,
            "attempt": self.attempt,
            "n": self.n,
        }
        if self.ops is not None:
            m["ops"] = [[b64(k), None if v is None else b64(v)] for k, v in self.ops]
        return m

    @classmethod
    def from_message(cls, m: dict[str, Any]) -> Segment:
        if m.get("v") not in READABLE_SEGMENT_VERSIONS:
            raise ValueError(f"unsupported segment message version {m.get('v')!r}")
        ops = (
            None
            if m.get("ops") is None
            else [(unb64(k), None if v is None else unb64(v)) for k, v in m["ops"]]
        )
        return cls(
            job=m["job"],
            seg=m["seg"],
            target=m["target"],
            ns=m.get("ns"),
            user=m["user"],
            part=m.get("part"),
            idx=int(m.get("idx", 0)),
            attempt=int(m.get("attempt", 0)),
            ops=ops,
            count=int(m.get("n", 0)) if ops is None else 0,
        )

    def without_ops(self) -> Segment:
        """The same segment, its items left to the payload store."""
        return replace(self, ops=None, count=self.n)

    @property
    def letter_ns(self) -> str | None:
        """Namespace recorded in dead letters: None marks the schema table."""
        return self.ns if self.target == "kv" else None

    def child(self, ops: list[tuple[bytes, bytes | None]]) -> Segment:
        """The requeued remainder: same place in the order, one more attempt."""
        return replace(
            self, seg=f"{self.seg}.r{self.attempt + 1}", ops=ops, attempt=self.attempt + 1
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
    """A bulk delete to plan by reading keys: ``what`` is "clear_schemas" or "reset_user"."""

    job: str
    what: str
    user: str

    def to_message(self) -> dict[str, Any]:
        return {"v": MESSAGE_VERSION, "job": self.job, "what": self.what, "user": self.user}

    @classmethod
    def from_message(cls, m: dict[str, Any]) -> Plan:
        return cls(job=m["job"], what=m["what"], user=m["user"])
