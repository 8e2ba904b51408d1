"""Where a load file's reading stands, so an interrupted load can go on from there.

A checkpoint is stored with every segment the load plans (the same atomic step: see
``Ledger.plan``). It says, per namespace and partition, the index of the next segment and the
last input line already in a planned segment (``through``), and a *resume point*: the byte
offset and line number before which every record is in a planned segment (or was rejected:
``rejected`` counts those), with the input's size and a BLAKE2b digest of every byte before
it. A resumed load (:func:`producers.file_load.FileLoader.load` with ``resume``) checks size and
digest, reads on from the resume point, skips the records of each partition up to its
``through`` line, and cuts the same segments, under the same ids, that an uninterrupted load
would have cut: every item is counted once and the last line per key still wins.

The resume point is the first buffered record of any partition, and also the first record of
the segment being planned: a producer killed after planning a segment and before sending it
leaves that segment planned without a message, and the resumed load cuts it again
(``last``: its partition and the ``through`` line before it).
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

from pipeline.segmenter import Segmenter
from storage.errors import NotResumableError

VERSION = 1
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Mark:
    """A point between two records: byte offset, lines before it, digest of the bytes before."""

    offset: int
    line: int
    digest: Any  # a hashlib object (copied)


class TrackedInput:
    """A binary input read through ``readline``/``read`` whose bytes are counted and hashed
    as the reader *commits* them (after each record), so :meth:`mark` is always a point
    between records however far the reader has read into the next one. Committed bytes are
    hashed in batches, when a mark is asked for or past ``PENDING_MAX`` of them; past
    ``PENDING_MAX`` uncommitted bytes (a huge line being skipped) they are hashed at once into
    a copy of the digest instead of kept: memory stays bounded."""

    PENDING_MAX = 4 * 1024 * 1024

    def __init__(self, raw: BinaryIO) -> None:
        self.raw = raw
        self._hash = hashlib.blake2b(digest_size=20)  # every byte before the chunks below
        self._chunks: list[bytes] = []  # read, not hashed yet: the first _done are committed
        self._done = 0
        self._done_bytes = 0
        self._ahead: Any = None  # the digest with every byte read in it, once they are many
        self._pending_bytes = 0
        self._pending_lines = 0
        self.offset = 0  # committed bytes
        self.lines = 0  # committed lines

    def _took(self, data: bytes) -> bytes:
        self._pending_bytes += len(data)
        self._pending_lines += data.count(b"\n")
        if self._ahead is not None:
            self._ahead.update(data)
        elif self._pending_bytes > self.PENDING_MAX:
            self._hash_committed()
            self._ahead = self._hash.copy()
            self._ahead.update(b"".join(self._chunks))
            self._ahead.update(data)
            self._chunks.clear()
        else:
            self._chunks.append(data)
        return data

    def _hash_committed(self) -> None:
        if self._done:
            self._hash.update(b"".join(self._chunks[: self._done]))
            del self._chunks[: self._done]
            self._done = self._done_bytes = 0

    def readline(self, size: int = -1) -> bytes:
        return self._took(self.raw.readline(size))

    def read(self, size: int = -1) -> bytes:
        return self._took(self.raw.read(size))

    @property
    def position(self) -> int:
        """Bytes read so far, committed or not."""
        return self.offset + self._pending_bytes

    def commit(self) -> None:
        """Everything read so far belongs to records already handled."""
        if self._ahead is not None:
            self._hash, self._ahead = self._ahead, None
        else:
            self._done = len(self._chunks)
            self._done_bytes += self._pending_bytes
        self.offset += self._pending_bytes
        self.lines += self._pending_lines
        self._pending_bytes = self._pending_lines = 0
        if self._done_bytes > self.PENDING_MAX:
            self._hash_committed()

    def mark(self) -> Mark:
        self._hash_committed()
        return Mark(self.offset, self.lines, self._hash.copy())

    def skip_to(self, offset: int, keep: int = 0) -> bytes:
        """Read and commit the first ``offset`` bytes unparsed (fewer at end of input);
        returns the first ``keep`` of them (a CSV header's rows)."""
        kept = b""
        while self.offset < offset:
            data = self.read(min(_CHUNK, offset - self.offset))
            if not data:
                break
            if len(kept) < keep:
                kept += data[: keep - len(kept)]
            self.commit()
        return kept


@dataclass
class Checkpoint:
    """A load's checkpoint (see the module docs); ``scopes``: namespace -> per partition
    ``[next segment index, through line]``."""

    format: str
    key_column: str | None
    namespace: str | None
    size: int | None
    cut: tuple[int, int, int] = (0, 0, 0)  # partitions, segment size, segment bytes
    header_end: int = 0  # a CSV's header rows end here
    offset: int = 0
    line: int = 0
    digest: str = ""
    rejected: int = 0
    scopes: dict[str, list[list[int]]] = field(default_factory=dict)
    last: tuple[str, int, int] | None = None  # scope, partition, its through line before

    def to_json(self) -> str:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return json.dumps({"v": VERSION, **d}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        try:
            d = json.loads(text)
            if d.pop("v") != VERSION:
                raise ValueError("version")
            last, cut = d.pop("last"), d.pop("cut")
            return cls(**d, cut=tuple(cut), last=tuple(last) if last else None)
        except (ValueError, TypeError, KeyError) as exc:
            raise NotResumableError(
                f"the job's checkpoint is unreadable ({exc})", operation="Resume"
            ) from None


class Checkpointer:
    """Keeps a load's reading position per partition and writes the checkpoint of each
    planned segment (a ``BudgetGate`` checkpoint function)."""

    def __init__(self, tracker: TrackedInput, base: Checkpoint) -> None:
        self.tracker = tracker
        self.base = base
        self.first: dict[tuple[str, int], Mark] = {}
        self.last_line: dict[str, list[int]] = {}
        self.through: dict[str, list[int]] = {s: [t for _, t in v] for s, v in base.scopes.items()}
        self.segmenters: dict[str, Segmenter] = {}
        self._bad: deque[int] = deque()
        self.rejected_before = base.rejected

    def skips(self, scope: str, p: int, line: int) -> bool:
        """Already in a planned segment (a resumed load reading again what it had read)."""
        through = self.through.get(scope)
        return through is not None and line <= through[p]

    def add(self, s: Segmenter, p: int, line: int) -> None:
        """Note a record of ``line`` about to go to ``s``'s partition ``p``."""
        if s.buffered(p) == 0:
            self.first[(s.scope, p)] = self.tracker.mark()
        lines = self.last_line.get(s.scope)
        if lines is None:
            self.segmenters[s.scope] = s
            lines = self.last_line[s.scope] = [0] * s.partitions
            self.through.setdefault(s.scope, [0] * s.partitions)
        lines[p] = line

    def bad(self, line: int) -> None:
        """Note a rejected line (counted in the job when sealed, and in each checkpoint)."""
        self._bad.append(line)

    @property
    def rejected_total(self) -> int:
        """Rejected lines of the whole input so far (those before a resume point included)."""
        return self.rejected_before + len(self._bad)

    def __call__(self, s: Segmenter, p: int) -> tuple[str, int]:
        flushing = self.first.pop((s.scope, p))
        before = self.through[s.scope][p]
        self.through[s.scope][p] = self.last_line[s.scope][p]
        point = min([flushing, *self.first.values()], key=lambda m: m.offset)
        while self._bad and self._bad[0] <= point.line:
            self._bad.popleft()
            self.rejected_before += 1
        scopes = dict(self.base.scopes)
        for scope, seg in self.segmenters.items():
            scopes[scope] = [
                list(x) for x in zip(seg.next_indexes(), self.through[scope], strict=True)
            ]
        cp = replace(
            self.base,
            offset=point.offset,
            line=point.line,
            digest=point.digest.hexdigest(),
            rejected=self.rejected_before,
            scopes=scopes,
            last=(s.scope, p, before),
        )
        return cp.to_json(), point.line
