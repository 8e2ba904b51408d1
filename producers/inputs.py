"""Streaming readers of load files: JSONL (plain and export format) here, CSV in
:mod:`producers.csv_input`; their record types and bounds are in :mod:`producers.records`.

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
import json
import os
import sys
from collections.abc import Iterator
from typing import Any, BinaryIO

from producers.csv_input import read_csv
from producers.ddb_json import read_ddb_json
from producers.export_format import (
    ExportVerifier,
    SchemaRecord,
    Trailer,
    parse_schema,
    parse_trailer,
)
from producers.records import (
    BOM,
    ITEM_OVERHEAD_BYTES,
    MAX_LINE_BYTES,
    BadLine,
    LineSource,
    OnLine,
    Record,
    bounded_lines,
    compact_json,
    item_record,
)
from storage.errors import InputError
from storage.limits import NAMESPACE_RE

__all__ = [
    "FORMATS",
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

Parsed = Record | SchemaRecord | Trailer | BadLine
FORMATS = ("jsonl", "csv", "ddb-json")


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
        return v.encode("utf-8") if name == "key" else compact_json(v)
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
    return item_record(line, key, value, namespace)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
"""One decoder for every line (``json.loads`` with an argument builds one per call)."""


def _parse(line: int, raw: bytes) -> Parsed | None:
    """One JSONL line; ``None`` when blank."""
    if line == 1 and raw.startswith(BOM):
        raw = raw[len(BOM) :]
    try:
        text = raw.decode("utf-8").rstrip("\r\n")  # so error columns stay on this line
    except UnicodeDecodeError:
        return BadLine(line, "not UTF-8")
    if not text.strip():
        return None
    try:
        obj = _DECODER.decode(text)
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
    stream: LineSource,
    *,
    max_line: int = MAX_LINE_BYTES,
    on_line: OnLine | None = None,
    start_line: int = 0,
) -> Iterator[Parsed]:
    """Records of a JSONL stream: plain lines and export-format lines (see module docs).

    Plain: ``{"key": text, "value": any JSON}`` (value stored as compact UTF-8 JSON) or
    ``{"key_b64": ..., "value_b64": ...}`` for raw bytes; the forms mix freely. Blank lines are
    skipped. Every problem with a line is a :class:`BadLine`; reading goes on.

    ``on_line`` receives the raw bytes (newline included) of every line except the trailer —
    good, bad or blank — before its record is yielded; an over-long line arrives in chunks.
    Feed an :class:`ExportVerifier` with it. Lines after the trailer are bad lines (they are
    outside the checksum) and still go to ``on_line``, so the verifier notices them.
    ``start_line``: lines before the stream's start (a resumed load), for line numbers.
    """
    trailer_seen = False
    for line, raw in bounded_lines(stream, max_line, on_line, start_line=start_line):
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


def read_records(
    stream: LineSource,
    format: str = "jsonl",
    key_column: str | None = None,
    *,
    max_line: int = MAX_LINE_BYTES,
    on_line: OnLine | None = None,
    start_line: int = 0,
    header_rows: bytes | None = None,
) -> Iterator[Parsed]:
    """Dispatch to :func:`read_jsonl` (``"jsonl"``: plain and export lines), :func:`read_csv`
    (``"csv"``, needs ``key_column``) or :func:`~producers.ddb_json.read_ddb_json`
    (``"ddb-json"``: ``key_column`` names the key attribute, default ``PK``). Raises
    :class:`InputError` at once for an unknown format, a ``key_column`` with jsonl, ``on_line``
    with csv or ddb-json, or a CSV header without the column.
    A resumed load reads from line ``start_line + 1`` on, a CSV one with its ``header`` line
    read before."""
    if format == "jsonl":
        if key_column is not None:
            raise InputError("key_column applies only to the csv format")
        return read_jsonl(stream, max_line=max_line, on_line=on_line, start_line=start_line)
    if format == "csv":
        if not key_column:
            raise InputError("the csv format needs a key column")
        if on_line is not None:
            raise InputError("on_line applies only to the jsonl format")
        return read_csv(
            stream,
            key_column=key_column,
            max_line=max_line,
            start_line=start_line,
            header_rows=header_rows,
        )
    if format == "ddb-json":
        if on_line is not None:
            raise InputError("on_line applies only to the jsonl format")
        attr = key_column or "PK"
        return read_ddb_json(stream, key_attribute=attr, max_line=max_line, start_line=start_line)
    raise InputError(f"unknown input format {format!r} (use {', '.join(FORMATS)})")
