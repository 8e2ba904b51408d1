"""Cuts a stream of writes into segments: one implementation for producers and the planner.

Each key always lands in the same partition (CRC-32 of the key). In an *ordered* stream (a
load) the segments of one partition carry consecutive indexes that workers run in order, while
partitions run in parallel: within a job the last line for a key wins even when its lines fall
in different segments. An unordered stream (deletes planned by the worker) runs every segment
at once. Memory is bounded: at most ``partitions`` buffers of ``segment_size`` items or
``segment_bytes`` bytes each, whatever the input size.

A feed from files names its inputs (``inputs``) and gives each item its ref (input and line,
:func:`pipeline.refs.ref`): each segment then carries its items' refs, stored beside them.

Each segment is registered in the ledger (``plan``, idempotent) before its message is sent;
a :class:`PlanGate` may take over that step (a producer's: backpressure, its token and its
resume checkpoint, see ``producers.session``).
"""

from __future__ import annotations

import zlib
from array import array
from collections.abc import Iterable, Sequence
from typing import Protocol

from pipeline import ids
from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger
from pipeline.messages import Op, Segment
from pipeline.payloads import payload_size
from pipeline.refs import encode, used
from pipeline.states import Target

DEFAULT_PARTITIONS = 32
SEGMENT_MAX_BYTES = 2 * 1024 * 1024


class PlanGate(Protocol):
    """Plans a cut segment in the ledger in place of the plain ``Ledger.plan`` (which must
    happen before its message is sent); may block (backpressure) or raise (fenced)."""

    def plan(self, cutter: Segmenter, p: int, seg: Segment, size: int) -> None:
        """Plan ``seg``, partition ``p``'s next segment, of ``size`` payload bytes."""


class Segmenter:
    """Segments of one job, target, namespace and user; ids under ``scope`` (default: the
    namespace), see :mod:`pipeline.ids`."""

    def __init__(
        self,
        *,
        job: str,
        ns: str | None,
        user: str,
        ledger: Ledger,
        enqueue: Enqueuer,
        segment_size: int,
        partitions: int = DEFAULT_PARTITIONS,
        segment_bytes: int = SEGMENT_MAX_BYTES,
        target: Target = Target.KV,
        scope: str | None = None,
        ordered: bool = True,
        gate: PlanGate | None = None,
        start: Sequence[int] | None = None,
        inputs: Sequence[str] | None = None,
    ) -> None:
        """``start``: each partition's first segment index (a resumed load goes on from its
        checkpoint); ``gate``: see :class:`PlanGate`; ``inputs``: the names of the inputs
        read so far (the feed appends to it), when every item comes with its ref."""
        self.job, self.ns, self.user, self.target = job, ns, user, target
        self.ledger = ledger
        self.enqueue = enqueue
        self.segment_size = segment_size
        self.segment_bytes = segment_bytes
        self.partitions = partitions
        self.scope = (ns or "") if scope is None else scope
        self.ordered = ordered
        self.gate = gate
        self._buf: list[list[Op]] = [[] for _ in range(partitions)]
        self._bytes = [0] * partitions
        self.inputs = inputs
        self._refs = [array("Q") for _ in range(partitions)] if inputs is not None else None
        self._next = list(start) if start is not None else [0] * partitions
        if len(self._next) != partitions:
            raise ValueError(f"start has {len(self._next)} indexes for {partitions} partitions")
        self.items = 0
        self.segments = 0

    def partition_of(self, key: bytes) -> int:
        return zlib.crc32(key) % self.partitions

    def buffered(self, p: int) -> int:
        """Items waiting in partition ``p``'s buffer."""
        return len(self._buf[p])

    def next_indexes(self) -> list[int]:
        """Each partition's index of its next segment."""
        return list(self._next)

    def add(self, key: bytes, value: bytes | None) -> None:
        self.add_to(zlib.crc32(key) % self.partitions, key, value)

    def add_to(self, p: int, key: bytes, value: bytes | None, ref: int = 0) -> None:
        """:meth:`add` to partition ``p``, which must be :meth:`partition_of` ``key``; ``ref``:
        the item's input and line, kept if the segmenter has ``inputs``."""
        self._buf[p].append((key, value))
        if self._refs is not None:
            self._refs[p].append(ref)
        self._bytes[p] += len(key) + (len(value) if value else 0)
        self.items += 1
        if len(self._buf[p]) >= self.segment_size or self._bytes[p] >= self.segment_bytes:
            self._flush(p)

    def add_all(self, ops: Iterable[Op]) -> None:
        for key, value in ops:
            self.add(key, value)

    def _flush(self, p: int) -> None:
        ops = self._buf[p]
        if not ops:
            return
        idx = self._next[p]
        refs = None
        if self._refs is not None and self.inputs is not None:
            r, self._refs[p] = self._refs[p], array("Q")
            refs = encode(used(self.inputs, r), r)
        seg = Segment(
            job=self.job,
            seg=ids.segment(self.scope, p, idx),
            target=self.target,
            ns=self.ns,
            user=self.user,
            ops=ops,
            part=ids.partition(self.scope, p) if self.ordered else None,
            idx=idx,
            refs=refs,
        )
        self._buf[p] = []
        self._next[p] = idx + 1
        if self.gate is None:
            self.ledger.plan(self.job, seg.seg, len(ops))
        else:
            self.gate.plan(self, p, seg, payload_size(len(ops), self._bytes[p]))
        self._bytes[p] = 0
        self.enqueue.segment(seg)
        self.segments += 1

    def close(self) -> None:
        """Send every partly filled buffer."""
        for p in range(self.partitions):
            self._flush(p)
