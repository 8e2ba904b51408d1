"""Streaming readers of load files: JSONL (plain and export format) and CSV.

Memory stays flat whatever the file size: lines are read with a bounded ``readline`` of at most
``max_line`` (default :data:`MAX_LINE_BYTES`, 1 MiB) bytes, a longer line is rejected as a
:class:`BadLine` and the rest of it skipped in 64 KiB chunks, never held whole. Bad lines never
stop a read; they are yielded, with their 1-based line number and a one-line reason, between the
good records. Only a problem with the whole file raises :class:`storage.errors.InputError`
(missing file, CSV without its key column, unknown format).

Keys and values are bytes. A record is rejected up front when DynamoDB would refuse it: an empty
key, a key over ``MAX_SORT_KEY_BYTES`` (1024), or key + value + :data:`ITEM_OVERHEAD_BYTES` over
``MAX_ITEM_BYTES`` (400 KiB). Duplicate keys are all yielded, in file order.
"""

from __future__ import annotations

import base64
import binascii
import csv
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from producers.export_format import (
    ExportVerifier,
    SchemaRecord,
    Trailer,
    parse_schema,
    parse_trailer,
)
from storage.errors import InputError
from storage.limits import MAX_ITEM_BYTES, MAX_SORT_KEY_BYTES, NAMESPACE_RE

__all__ = [
    "ITEM_OVERHEAD_BYTES",
    "MAX_LINE_BYTES",
    "BadLine",
    "ExportVerifier",
    "Parsed",
    "Record",
    "SchemaRecord",
    "Trailer",
    "open_input",
    "read_csv",
    "read_jsonl",
    "read_records",
]

MAX_LINE_BYTES = 1024 * 1024
"""Longest accepted line, newline excluded: room for a 400 KiB item base64- or JSON-encoded."""
ITEM_OVERHEAD_BYTES = 100
"""Item bytes besides key and value: PK with a user id up to 64 bytes, the attribute names and
``Seq`` (87 bytes by ``storage.limits.item_size``), rounded up."""
_SKIP_CHUNK = 64 * 1024
_BOM = b"\xef\xbb\xbf"


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


Parsed = Record | SchemaRecord | Trailer | BadLine
OnLine = Callable[[bytes], None]


def open_input(path_or_dash: str | os.PathLike[str]) -> BinaryIO:
    """Open a load file for binary reading; ``"-"`` is ``sys.stdin.buffer`` (the caller closes
    what it opened, and had better not close stdin).

    Raises :class:`InputError` ("no such file: PATH", "is a directory: PATH", ...).
    """
    if isinstance(path_or_dash, str) and path_or_dash == "-":
        return sys.stdin.buffer
    path = os.fspath(path_or_dash)
    try:
        return open(path, "rb")  # the caller owns and closes it
    except FileNotFoundError:
        raise InputError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise InputError(f"is a directory: {path}") from None
    except PermissionError:
        raise InputError(f"permission denied: {path}") from None
    except OSError as e:
        raise InputError(f"cannot open {path}: {e.strerror or e}") from None


def _lines(
    stream: BinaryIO, max_line: int, on_line: OnLine | None = None
) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, raw bytes with newline)``, or ``None`` for a line over ``max_line``.

    The rest of an over-long line is skipped in bounded chunks, each passed to ``on_line``.
    """
    lineno = 0
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


def _record(line: int, key: bytes, value: bytes, namespace: str | None) -> Record | BadLine:
    if not key:
        return BadLine(line, "empty key")
    if len(key) > MAX_SORT_KEY_BYTES:
        return BadLine(line, f"key is {len(key)} bytes, over the {MAX_SORT_KEY_BYTES}-byte limit")
    if len(key) + len(value) + ITEM_OVERHEAD_BYTES > MAX_ITEM_BYTES:
        return BadLine(
            line, f"value is {len(value)} bytes, item over the {MAX_ITEM_BYTES}-byte limit"
        )
    return Record(line, key, value, namespace)


def _compact(v: Any) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _field(obj: dict[str, Any], name: str) -> bytes | str | None:
    """The bytes of ``name`` (text or JSON) or ``name_b64``; a reason string if bad; None if
    neither is there."""
    plain, b64 = name, f"{name}_b64"
    if plain in obj and b64 in obj:
        return f"both {plain} and {b64}"
    if b64 in obj:
        text = obj[b64]
        if not isinstance(text, str):
            return f"{b64} is not a string"
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            return f"{b64} is not valid base64"
    if plain not in obj:
        return None
    v = obj[plain]
    if name == "key" and not isinstance(v, str):
        return "key is not a string (use key_b64 for raw bytes)"
    try:
        return v.encode("utf-8") if name == "key" else _compact(v)
    except UnicodeEncodeError:
        return f"{name} is not valid Unicode (lone surrogate)"
    except RecursionError:
        return f"{name} is nested too deeply"


def _item(line: int, obj: dict[str, Any], namespace: str | None) -> Record | BadLine:
    key = _field(obj, "key")
    if key is None:
        return BadLine(line, "no key")
    if isinstance(key, str):
        return BadLine(line, key)
    value = _field(obj, "value")
    if value is None:
        return BadLine(line, "no value")
    if isinstance(value, str):
        return BadLine(line, value)
    return _record(line, key, value, namespace)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


def _parse(line: int, raw: bytes) -> Parsed | None:
    """One JSONL line; ``None`` when blank."""
    if line == 1 and raw.startswith(_BOM):
        raw = raw[len(_BOM) :]
    try:
        text = raw.decode("utf-8").rstrip("\r\n")  # so error columns stay on this line
    except UnicodeDecodeError:
        return BadLine(line, "not UTF-8")
    if not text.strip():
        return None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        return BadLine(line, f"not valid JSON ({e.msg} at column {e.colno})")
    except ValueError as e:  # NaN/Infinity, integers over Python's digit limit
        return BadLine(line, f"not valid JSON ({str(e).splitlines()[0][:120]})")
    except RecursionError:
        return BadLine(line, "not valid JSON (nested too deeply)")
    if not isinstance(obj, dict):
        return BadLine(line, f"not a JSON object (got {type(obj).__name__})")
    if "kind" not in obj:
        return _item(line, obj, None)
    kind = obj["kind"]
    if kind == "item":
        ns = obj.get("namespace")
        if not isinstance(ns, str) or not NAMESPACE_RE.fullmatch(ns):
            return BadLine(line, f"invalid namespace {ns!r}"[:200])
        return _item(line, obj, ns)
    parsed = (
        parse_schema(line, obj)
        if kind == "schema"
        else parse_trailer(line, obj)
        if kind == "trailer"
        else f"unknown kind {kind!r}"[:200]
    )
    return BadLine(line, parsed) if isinstance(parsed, str) else parsed


def read_jsonl(
    stream: BinaryIO, *, max_line: int = MAX_LINE_BYTES, on_line: OnLine | None = None
) -> Iterator[Parsed]:
    """Records of a JSONL stream: plain lines and export-format lines (see module docs).

    Plain: ``{"key": text, "value": any JSON}`` (value stored as compact UTF-8 JSON) or
    ``{"key_b64": ..., "value_b64": ...}`` for raw bytes; the forms mix freely. Blank lines are
    skipped. Every problem with a line is a :class:`BadLine`; reading goes on.

    ``on_line`` receives the raw bytes (newline included) of every line except the trailer —
    good, bad or blank — before its record is yielded; an over-long line arrives in chunks.
    Feed an :class:`ExportVerifier` with it. Lines after the trailer are bad lines (they are
    outside the checksum) and still go to ``on_line``, so the verifier notices them.
    """
    trailer_seen = False
    for line, raw in _lines(stream, max_line, on_line):
        if raw is None:
            yield BadLine(line, f"line is over {max_line} bytes")
            continue
        rec = _parse(line, raw)
        if trailer_seen:
            if rec is not None:
                if on_line is not None:
                    on_line(raw)
                yield BadLine(line, "line after the export trailer")
            continue
        if isinstance(rec, Trailer):
            trailer_seen = True
            yield rec
            continue
        if on_line is not None:
            on_line(raw)
        if rec is not None:
            yield rec


class _LineTooLong(Exception):
    def __init__(self, line: int, *, whole_line: bool) -> None:
        self.line = line
        self.whole_line = whole_line  # False: a multi-line record grew too long


class _CsvLines:
    """Decoded, bounded lines for ``csv.reader``; raises :class:`_LineTooLong` (the csv reader
    passes it through and starts afresh on its next call) for a line, or a multi-line record,
    over ``max_line`` bytes."""

    def __init__(self, stream: BinaryIO, max_line: int) -> None:
        self._lines = _lines(stream, max_line)
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
        if self.line == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        return raw.decode("utf-8", "surrogateescape")


def read_csv(
    stream: BinaryIO, *, key_column: str, max_line: int = MAX_LINE_BYTES
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
    lines = _CsvLines(stream, max_line)
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
            value = _compact(dict(zip(header, row, strict=True)))
        except UnicodeEncodeError:
            yield BadLine(start, "not UTF-8")
            continue
        yield _record(start, key, value, None)


def read_records(
    stream: BinaryIO,
    format: str = "jsonl",
    key_column: str | None = None,
    *,
    max_line: int = MAX_LINE_BYTES,
    on_line: OnLine | None = None,
) -> Iterator[Parsed]:
    """Dispatch to :func:`read_jsonl` (``"jsonl"``: plain and export lines) or :func:`read_csv`
    (``"csv"``, needs ``key_column``). Raises :class:`InputError` at once for an unknown format,
    a ``key_column`` with jsonl, ``on_line`` with csv, or a CSV header without the column."""
    if format == "jsonl":
        if key_column is not None:
            raise InputError("key_column applies only to the csv format")
        return read_jsonl(stream, max_line=max_line, on_line=on_line)
    if format == "csv":
        if not key_column:
            raise InputError("the csv format needs a key column")
        if on_line is not None:
            raise InputError("on_line applies only to the jsonl format")
        return read_csv(stream, key_column=key_column, max_line=max_line)
    raise InputError(f"unknown input format {format!r} (use jsonl or csv)")
