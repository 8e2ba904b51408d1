"""The CSV reader of load files: a header row, then one record per row (:func:`read_csv`).

A row is bounded like a JSONL line, and so is a quoted field spanning lines: the bound counts
every physical line of the row, so a runaway quote is a bad row, not a file held in memory.
"""

from __future__ import annotations

import csv
import itertools
import re
from collections import Counter
from collections.abc import Iterator

from producers.records import (
    BOM,
    MAX_LINE_BYTES,
    BadLine,
    LineSource,
    Record,
    bounded_lines,
    compact_json,
    item_record,
)
from storage.errors import InputError


class _LineTooLong(Exception):
    def __init__(self, line: int, *, whole_line: bool) -> None:
        self.line = line
        self.whole_line = whole_line  # False: a multi-line record grew too long


class _CsvLines:
    """Decoded, bounded lines for ``csv.reader``; raises :class:`_LineTooLong` (the csv reader
    passes it through and starts afresh on its next call) for a line, or a multi-line record,
    over ``max_line`` bytes."""

    def __init__(
        self, stream: LineSource, max_line: int, start_line: int = 0, header: bytes | None = None
    ) -> None:
        lines = bounded_lines(stream, max_line, start_line=start_line)
        if header is not None:  # a resumed load: the header's rows, then on from ``start_line``
            rows = re.findall(rb"[^\n]*\n|[^\n]+", header)
            lines = itertools.chain(enumerate(rows, 1), lines)
        self._lines = lines
        self.max_line = max_line
        self.line = 0
        self.record_bytes = 0

    def __iter__(self) -> _CsvLines:
        return self

    def __next__(self) -> str:
        self.line, raw = next(self._lines)
        if raw is None:
            raise _LineTooLong(self.line, whole_line=True)
        if self.record_bytes + len(raw) > self.max_line + 2:
            raise _LineTooLong(self.line, whole_line=False)
        self.record_bytes += len(raw)
        if self.line == 1 and raw.startswith(BOM):
            raw = raw[len(BOM) :]
        return raw.decode("utf-8", "surrogateescape")


def read_csv(
    stream: LineSource,
    *,
    key_column: str,
    max_line: int = MAX_LINE_BYTES,
    start_line: int = 0,
    header_rows: bytes | None = None,
) -> Iterator[Record | BadLine]:
    """Records of a CSV stream with a header row; the header is read at once, here.

    Each row becomes key = its ``key_column`` field (UTF-8) and value = the row as a compact
    JSON object of strings keyed by header names. Blank lines are skipped. Bad rows (wrong field
    count, not UTF-8, over ``max_line`` bytes, malformed quoting, key or item rules) are
    :class:`BadLine` at the physical line where the row starts. Raises :class:`InputError` if the
    header is unreadable, repeats a name or lacks ``key_column``; an empty stream yields nothing.
    Side effect: raises ``csv.field_size_limit`` (process-wide) to at least ``max_line``.
    """
    csv.field_size_limit(max(csv.field_size_limit(), max_line))
    lines = _CsvLines(stream, max_line, start_line, header_rows)
    reader = csv.reader(lines)
    header: list[str] | None = []
    try:
        while header == []:  # blank lines before the header
            lines.record_bytes = 0
            header = next(reader, None)
    except (_LineTooLong, csv.Error) as e:
        raise InputError(
            f"CSV header is unreadable ({_csv_reason(e, max_line)})", line=lines.line
        ) from None
    if header is None:
        return iter(())
    try:
        for name in header:
            name.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError("CSV header is not UTF-8", line=lines.line) from None
    dupes = sorted(name for name, n in Counter(header).items() if n > 1)
    if dupes:
        raise InputError(f"CSV header repeats column {dupes[0]!r}", line=lines.line)
    if key_column not in header:
        shown = ", ".join(header[:20]) + (f", … ({len(header)} in all)" if len(header) > 20 else "")
        raise InputError(f"CSV has no column {key_column!r} (columns: {shown})", line=lines.line)
    if lines.line < start_line:
        lines.line = start_line  # a resumed load: rows are numbered from where it goes on
    return _csv_rows(reader, lines, header, header.index(key_column))


def _csv_reason(e: Exception, max_line: int, start: int | None = None) -> str:
    if isinstance(e, _LineTooLong):
        if e.whole_line:
            return f"line is over {max_line} bytes"
        return f"row is over {max_line} bytes (lines {start}-{e.line})"
    return f"bad CSV ({str(e)[:120]})"


def _csv_rows(
    reader: Iterator[list[str]], lines: _CsvLines, header: list[str], key_index: int
) -> Iterator[Record | BadLine]:
    while True:
        start, lines.record_bytes = lines.line + 1, 0
        try:
            row = next(reader)
        except StopIteration:
            return
        except _LineTooLong as e:
            yield BadLine(start, _csv_reason(e, lines.max_line, start))
            continue
        except csv.Error as e:
            if lines.line < start:  # nothing consumed: the reader cannot move on
                raise InputError(_csv_reason(e, lines.max_line), line=start) from None
            yield BadLine(start, _csv_reason(e, lines.max_line))
            continue
        if not row:
            continue
        if len(row) != len(header):
            yield BadLine(start, f"row has {len(row)} fields, header has {len(header)}")
            continue
        try:
            key = row[key_index].encode("utf-8")
            value = compact_json(dict(zip(header, row, strict=True)))
        except UnicodeEncodeError:
            yield BadLine(start, "not UTF-8")
            continue
        yield item_record(start, key, value, None)
