"""Cuts a stream of writes into segments: one implementation for producers and the planner.

Each key always lands in the same partition (CRC-32 of the key). In an *ordered* stream (a
load) the segments of one partition carry consecutive indexes that workers run in order, while
partitions run in parallel: within a job the last line for a key wins even when its lines fall
in different segments. An unordered stream (deletes planned by the worker) runs every segment
at once. Memory is bounded: at most ``partitions`` buffers of ``segment_size`` items or
``segment_bytes`` bytes each, whatever the input size.

Each segment is registered in the ledger (``plan``, idempotent) before its message is sent.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from pipeline import ids
from pipeline.enqueue import Enqueuer
from pipeline.ledger import Ledger
from pipeline.messages import Op, Segment
from pipeline.states import Target

DEFAULT_PARTITIONS = 32
SEGMENT_MAX_BYTES = 2 * 1024 * 1024


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
    ) -> None:
        self.job, self.ns, self.user, self.target = job, ns, user, target
        self.ledger = ledger
        self.enqueue = enqueue
        self.segment_size = segment_size
        self.segment_bytes = segment_bytes
        self.partitions = partitions
        self.scope = (ns or "") if scope is None else scope
        self.ordered = ordered
        self._buf: list[list[Op]] = [[] for _ in range(partitions)]
        self._bytes = [0] * partitions
        self._next = [0] * partitions
        self.items = 0
        self.segments = 0

    def add(self, key: bytes, value: bytes | None) -> None:
        p = zlib.crc32(key) % self.partitions
        self._buf[p].append((key, value))
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
        seg = Segment(
            job=self.job,
            seg=ids.segment(self.scope, p, idx),
            target=self.target,
            ns=self.ns,
            user=self.user,
            ops=ops,
            part=ids.partition(self.scope, p) if self.ordered else None,
            idx=idx,
        )
        self.ledger.plan(self.job, seg.seg, len(ops))
        self.enqueue.segment(seg)
        self._buf[p] = []
        self._bytes[p] = 0
        self._next[p] = idx + 1
        self.segments += 1

    def close(self) -> None:
        """Send every partly filled buffer."""
        for p in range(self.partitions):
            self._flush(p)
