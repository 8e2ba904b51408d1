"""What the load-file readers yield, and the bounds they share (:mod:`producers.inputs` for
JSONL, :mod:`producers.csv_input` for CSV); see :mod:`producers.inputs` for the rules."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from storage.limits import MAX_ITEM_BYTES, MAX_SORT_KEY_BYTES

MAX_LINE_BYTES = 1024 * 1024
"""Longest accepted line, newline excluded: room for a 400 KiB item base64- or JSON-encoded."""
ITEM_OVERHEAD_BYTES = 100
"""Item bytes besides key and value: PK with a user id up to 64 bytes, the attribute names and
``Seq`` (87 bytes by ``storage.limits.item_size``), rounded up."""
BOM = b"\xef\xbb\xbf"
_SKIP_CHUNK = 64 * 1024


@dataclass(frozen=True, slots=True)
class Record:
    """One item to write. ``namespace`` is set only by export-format lines."""

    line: int
    key: bytes
    value: bytes
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class BadLine:
    """A rejected input line (1-based) and why, in one line."""

    line: int
    reason: str


OnLine = Callable[[bytes], None]


class LineSource(Protocol):
    """What the readers read from: a binary file, or ``producers.checkpoint.TrackedInput``."""

    def readline(self, size: int = -1, /) -> bytes: ...


def bounded_lines(
    stream: LineSource, max_line: int, on_line: OnLine | None = None, *, start_line: int = 0
) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, raw bytes with newline)``, or ``None`` for a line over ``max_line``;
    the first line read is number ``start_line + 1`` (a resumed load starts mid-file).

    The rest of an over-long line is skipped in bounded chunks, each passed to ``on_line``.
    """
    lineno = start_line
    while raw := stream.readline(max_line + 1):
        lineno += 1
        if raw.endswith(b"\n") or len(raw) <= max_line:
            yield lineno, raw
            continue
        while True:
            if on_line is not None:
                on_line(raw)
            if raw.endswith(b"\n"):
                break
            raw = stream.readline(_SKIP_CHUNK)
            if not raw:
                break
        yield lineno, None


def item_record(line: int, key: bytes, value: bytes, namespace: str | None) -> Record | BadLine:
    """The record, or why DynamoDB would refuse it (empty or too long key, item too big)."""
    if not key:
        return BadLine(line, "empty key")
    if len(key) > MAX_SORT_KEY_BYTES:
        return BadLine(line, f"key is {len(key)} bytes, over the {MAX_SORT_KEY_BYTES}-byte limit")
    if len(key) + len(value) + ITEM_OVERHEAD_BYTES > MAX_ITEM_BYTES:
        return BadLine(
            line, f"value is {len(value)} bytes, item over the {MAX_ITEM_BYTES}-byte limit"
        )
    return Record(line, key, value, namespace)


def compact_json(v: Any) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
