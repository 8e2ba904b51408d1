"""Segment payloads: a segment's items travel beside its task message, in Redis, as one binary
value written once and read once (the "claim check" pattern).

Why: a JSON task message carries bytes as base64 inside JSON strings, and kombu encodes each
message twice on the way out (the body, then the envelope around it), once more on delivery
(the unacknowledged copy ``acks_late`` keeps) and decodes it twice. With 4 KB items that was
most of the pipeline's CPU per item (BENCHMARKS.md). Now the task message (JSON, small) names
the segment; its items are one Redis string under ``pipeline.keys.segment_payload``:

    b"DFP1" then, per item: key length and value length (4 bytes each, big-endian; a value
    length of 0xFFFFFFFF marks a delete), the key, the value.

Nothing in it is executable: it is parsed by length, never unpickled or evaluated, and a value
that does not parse exactly is refused (:class:`PayloadError`). The payload expires with the
job's results (``DATAFOLD_RESULT_TTL``) and is deleted once its segment is recorded finished;
a segment whose payload is gone (Redis evicted it: run Redis with ``noeviction``, as the broker
needs anyway) is dead-lettered with that reason, never silently dropped. A segment loaded from
files has its items' refs (``pipeline.refs``) beside the payload, stored and deleted with it.

Every message the pipeline sends (segments, single writes, plans) is journalled before it is
sent (:meth:`PayloadStore.sent`, with a segment's payload in the same round trip): its task, the
message and when it is due, until it is recorded. ``worker.sweeper`` reads the journal to send
again a message the broker lost on its way to a worker, or one a failed task gave up on.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

from pipeline import keys
from pipeline.messages import SEGMENT_TASK, Op
from pipeline.redis_boundary import Redis, guard

MAGIC = b"DFP1"
LOST = "PayloadLost"
"""Dead-letter code of a segment whose payload could not be had: keyed by the segment id, it
names no item, so it is never replayed."""
DELETE = 0xFFFFFFFF
_HEAD = struct.Struct(">II")


class PayloadError(ValueError):
    """A payload that is not a well-formed list of items."""


def payload_size(items: int, data_bytes: int) -> int:
    """Length of :func:`encode`'s output for ``items`` items whose keys and values hold
    ``data_bytes`` bytes together (what a segment counts against the queued-bytes budget)."""
    return len(MAGIC) + _HEAD.size * items + data_bytes


def encode(ops: Sequence[Op]) -> bytes:
    """The binary form of a segment's items."""
    pack = _HEAD.pack
    parts = [MAGIC]
    for key, value in ops:
        if value is None:
            parts += (pack(len(key), DELETE), key)
        else:
            parts += (pack(len(key), len(value)), key, value)
    return b"".join(parts)


def decode(blob: bytes) -> list[Op]:
    """The items of :func:`encode`'s output; :class:`PayloadError` if it is anything else."""
    if blob[:4] != MAGIC:
        raise PayloadError("not a segment payload (bad magic)")
    unpack = _HEAD.unpack_from
    out: list[Op] = []
    pos, end = 4, len(blob)
    try:
        while pos < end:
            klen, vlen = unpack(blob, pos)
            pos += 8
            key = blob[pos : pos + klen]
            pos += klen
            if vlen == DELETE:
                out.append((key, None))
                continue
            out.append((key, blob[pos : pos + vlen]))
            pos += vlen
    except struct.error:
        raise PayloadError("segment payload truncated") from None
    if pos != end:
        raise PayloadError("segment payload truncated")
    return out


def journal_member(job: str, seg: str) -> str:
    """The journal's name for the message ``seg`` of ``job``."""
    return json.dumps([job, seg])


class PayloadStore:
    """Segment payloads in Redis, keyed by job and segment id."""

    def __init__(self, client: Redis[Any], *, ttl: int) -> None:
        self.r = client
        self.ttl = ttl

    def sent(
        self,
        job: str,
        seg: str,
        message: dict[str, Any],
        due: float,
        ops: Sequence[Op] | None = None,
        *,
        task: str = SEGMENT_TASK,
        refs: bytes | None = None,
    ) -> None:
        """Journal a message of ``task`` (sent, or about to be) under its id ``seg``, due at
        ``due`` (epoch s), and store a segment's items first when given, with their ``refs``
        (``pipeline.refs``) if any: one round trip. Stored items must match the message's
        count: a payload is written once per id."""
        member = journal_member(job, seg)
        entry = json.dumps([task, message], separators=(",", ":"))
        # One transaction: a payload is never stored without its journal entry (a resumed
        # load and the ledger's ``unplan`` take one for the other).
        pipe = self.r.pipeline(transaction=True)
        if ops is not None:
            pipe.set(keys.segment_payload(job, seg), encode(ops), ex=self.ttl)
            if refs is not None:
                pipe.set(keys.segment_refs(job, seg), refs, ex=self.ttl)
        pipe.hset(keys.segment_messages(), member, entry)
        pipe.zadd(keys.segments_due(), {member: due})
        self._do("journal", pipe.execute)

    def overdue(self, before: float, limit: int) -> list[tuple[str, str, str, dict[str, Any]]]:
        """Journalled messages due before ``before``: (job, id, task, message), oldest first."""
        members = self._do(
            "journal",
            lambda: self.r.zrangebyscore(keys.segments_due(), "-inf", before, start=0, num=limit),
        )
        if not members:
            return []
        raws = self._do("journal", lambda: self.r.hmget(keys.segment_messages(), members))
        out = []
        for member, raw in zip(members, raws, strict=True):
            if raw is not None:
                job, seg = json.loads(member)
                task, message = json.loads(raw)
                out.append((job, seg, task, message))
        return out

    def get(self, job: str, seg: str) -> list[Op] | None:
        """The segment's items, or None if its payload is gone."""
        blob = self._do("get", lambda: self.r.get(keys.segment_payload(job, seg)))
        return None if blob is None else decode(blob)

    def refs(self, job: str, seg: str) -> bytes | None:
        """The stored refs of the segment's items (None: not from files, or gone)."""
        blob: bytes | None = self._do("refs", lambda: self.r.get(keys.segment_refs(job, seg)))
        return blob

    def forget_older(self, before: float) -> int:
        """Drop journal entries due before ``before`` (their job's results have expired)."""
        members = self._do(
            "journal", lambda: self.r.zrangebyscore(keys.segments_due(), "-inf", before)
        )
        if members:
            pipe = self.r.pipeline(transaction=False)
            pipe.zrem(keys.segments_due(), *members)
            pipe.hdel(keys.segment_messages(), *members)
            self._do("journal", pipe.execute)
        return len(members)

    def delete(self, job: str, seg: str) -> None:
        """Forget a recorded message: its journal entry, and its payload (and refs) if any."""
        member = journal_member(job, seg)
        pipe = self.r.pipeline(transaction=False)
        pipe.delete(keys.segment_payload(job, seg), keys.segment_refs(job, seg))
        pipe.zrem(keys.segments_due(), member)
        pipe.hdel(keys.segment_messages(), member)
        self._do("delete", pipe.execute)

    def _do(self, what: str, fn: Any) -> Any:
        with guard(f"Payload.{what}", self.r):
            return fn()
