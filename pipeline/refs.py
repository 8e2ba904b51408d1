"""Where a segment's items came from: the input and line of each, so a dead letter can name them.

A load from files (one, standard input, S3 objects, many as one job) stores beside each
segment's payload a compact *refs* value under ``pipeline.keys.segment_refs``, written in the
same round trip as the payload and deleted with it:

    b"DFR1", the length of a JSON object (4 bytes, big-endian), the object ``{"index": name}``
    of the inputs its items come from, then per item in payload order one 8-byte big-endian
    ref: ``index << 40 | line`` (line 1-based, below 2**40; index below 2**24).

Workers read it only when they are about to dead-letter items (or requeue leftovers, whose child
segment carries the refs of its items). Items not from a file have no refs value at all.
"""

from __future__ import annotations

import json
import struct
import sys
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pipeline.messages import Op
from storage.redact import scrub

MAGIC = b"DFR1"
LINE_BITS = 40
LINE_MASK = (1 << LINE_BITS) - 1
_LEN = struct.Struct(">I")
_SWAP = sys.byteorder == "little"


class RefsError(ValueError):
    """A refs value that is not well formed."""


def ref(index: int, line: int) -> int:
    """The ref of line ``line`` of input ``index``."""
    return index << LINE_BITS | line


@dataclass(frozen=True)
class Refs:
    """The input names a segment's refs use, and one ref per item in payload order."""

    names: Mapping[int, str]
    refs: Sequence[int]

    def where(self, r: int | None) -> tuple[str | None, int | None]:
        """(input name, line) of ref ``r`` (None: nothing known)."""
        if r is None:
            return None, None
        return self.names.get(r >> LINE_BITS), r & LINE_MASK

    def encode(self) -> bytes:
        return encode(self.names, self.refs)

    def of(self, ops: Sequence[Op], wanted: Sequence[Op]) -> list[int | None]:
        """See :func:`placed`."""
        return placed(ops, self.refs, wanted)


def encode(names: Mapping[int, str], refs: Sequence[int]) -> bytes:
    """The stored form of ``refs``, with ``names`` (the inputs they use, scrubbed: no credential
    value is ever stored)."""
    a = array("Q", refs)
    if _SWAP:
        a.byteswap()
    table = json.dumps({str(i): scrub(name) for i, name in names.items()}).encode("utf-8")
    return b"".join((MAGIC, _LEN.pack(len(table)), table, a.tobytes()))


def used(inputs: Sequence[str], refs: Sequence[int]) -> dict[int, str]:
    """The names of ``inputs`` that ``refs`` (in input order, as a feed makes them) use."""
    if not refs:
        return {}
    first, last = refs[0] >> LINE_BITS, refs[-1] >> LINE_BITS
    idx = {first} if first == last else {r >> LINE_BITS for r in refs}
    return {i: inputs[i] for i in sorted(idx) if i < len(inputs)}


def decode(blob: bytes) -> Refs:
    """The refs of :func:`encode`'s output; :class:`RefsError` if it is anything else."""
    if blob[:4] != MAGIC or len(blob) < 8:
        raise RefsError("not a refs value (bad magic)")
    (n,) = _LEN.unpack_from(blob, 4)
    body = blob[8 + n :]
    if len(blob) < 8 + n or len(body) % 8:
        raise RefsError("refs value truncated")
    try:
        table = json.loads(blob[8 : 8 + n])
        names = {int(i): str(name) for i, name in table.items()}
    except (ValueError, AttributeError) as exc:
        raise RefsError(f"refs names unreadable: {exc}") from None
    a = array("Q")
    a.frombytes(body)
    if _SWAP:
        a.byteswap()
    return Refs(names, a)


def placed(ops: Sequence[Op], refs: Sequence[int], wanted: Sequence[Op]) -> list[int | None]:
    """The ref of each item of ``wanted``, items of ``ops`` (whose refs are ``refs``, in order).

    ``wanted`` may name an item once per occurrence (poison items) or once for all (after
    de-duplication the last line for a key is the one written): ``c`` wanted items alike (same
    key and value) among ``m`` such items of ``ops`` take the refs of the last ``c``, in order.
    None where nothing matches."""
    keys = {k for k, _ in wanted}
    where: dict[Op, list[int]] = {}
    for i, op in enumerate(ops):
        if op[0] in keys:
            where.setdefault(op, []).append(refs[i])
    count: dict[Op, int] = {}
    for op in wanted:
        count[op] = count.get(op, 0) + 1
    seen: dict[Op, int] = {}
    out: list[int | None] = []
    for op in wanted:
        found = where.get(op, [])
        i = len(found) - count[op] + seen.get(op, 0)
        seen[op] = seen.get(op, 0) + 1
        out.append(found[i] if 0 <= i < len(found) else None)
    return out
