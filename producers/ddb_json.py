"""The DynamoDB-JSON line format: what DynamoDB's export to S3 writes, one item a line,
``{"Item": {"PK": {"S": "..."}, "n": {"N": "12"}, ...}}`` (:func:`read_ddb_json`).

The record's key is the attribute named ``key_attribute`` (default ``PK``): an S is its UTF-8
bytes, an N its number text, a B its base64-decoded bytes; any other type is a bad line. The
record's value is the whole item as compact DynamoDB JSON (UTF-8), attribute types included,
so nothing of it is lost and it can be loaded back into a DynamoDB table as it was. Lines are
bounded and numbered like JSONL (:mod:`producers.records`); every problem is a
:class:`~producers.records.BadLine` with its line number and reading goes on.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterator
from decimal import Decimal, InvalidOperation
from typing import Any

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

DEFAULT_KEY_ATTRIBUTE = "PK"
TYPES = frozenset({"S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS", "L", "M"})


def _bad_attribute(name: str, value: Any) -> str | None:
    """Why ``value`` is not a DynamoDB-JSON attribute value (top level only), or None."""
    if not isinstance(value, dict) or len(value) != 1:
        return f'attribute {name!r} is not a one-type object like {{"S": ...}}'[:200]
    (kind,) = value
    if kind not in TYPES:
        return f"attribute {name!r} has unknown type {kind!r}"[:200]
    return None


def _key(name: str, value: dict[str, Any]) -> bytes | str:
    """The key bytes of attribute ``name``, or why it cannot be a key."""
    ((kind, v),) = value.items()
    if kind == "S" and isinstance(v, str):
        try:
            return v.encode("utf-8")
        except UnicodeEncodeError:
            return f"key attribute {name!r} is not valid Unicode"
    if kind == "N" and isinstance(v, str):
        try:
            if not Decimal(v).is_finite():
                raise InvalidOperation
        except InvalidOperation:
            return f"key attribute {name!r} is not a number: {v!r}"[:200]
        return v.encode("ascii")
    if kind == "B" and isinstance(v, str):
        try:
            return base64.b64decode(v, validate=True)
        except (binascii.Error, ValueError):
            return f"key attribute {name!r} is not valid base64"
    if kind in ("S", "N", "B"):
        return f"key attribute {name!r} of type {kind} is not a string"
    return f"key attribute {name!r} is of type {kind}; a key is S, N or B"


def parse_ddb_line(line: int, raw: bytes, key_attribute: str) -> Record | BadLine | None:
    """One DynamoDB-JSON line (``None`` when blank)."""
    if line == 1 and raw.startswith(BOM):
        raw = raw[len(BOM) :]
    try:
        text = raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return BadLine(line, "not UTF-8")
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return BadLine(line, f"not valid JSON ({e.msg} at column {e.colno})")
    except (ValueError, RecursionError):
        return BadLine(line, "not valid JSON")
    if not isinstance(obj, dict) or not isinstance(obj.get("Item"), dict):
        return BadLine(line, 'not a DynamoDB-JSON line (expected {"Item": {...}})')
    item: dict[str, Any] = obj["Item"]
    for name, value in item.items():
        why = _bad_attribute(name, value)
        if why:
            return BadLine(line, why)
    if key_attribute not in item:
        return BadLine(line, f"no key attribute {key_attribute!r}"[:200])
    key = _key(key_attribute, item[key_attribute])
    if isinstance(key, str):
        return BadLine(line, key)
    try:
        value_bytes = compact_json(item)
    except (UnicodeEncodeError, RecursionError):
        return BadLine(line, "item is not valid Unicode or nested too deeply")
    return item_record(line, key, value_bytes, None)


def read_ddb_json(
    stream: LineSource,
    *,
    key_attribute: str = DEFAULT_KEY_ATTRIBUTE,
    max_line: int = MAX_LINE_BYTES,
    start_line: int = 0,
) -> Iterator[Record | BadLine]:
    """Records of a DynamoDB-JSON stream (see the module docs); blank lines are skipped.
    ``start_line``: lines before the stream's start (a resumed load), for line numbers."""
    for line, raw in bounded_lines(stream, max_line, start_line=start_line):
        if raw is None:
            yield BadLine(line, f"line is over {max_line} bytes")
            continue
        rec = parse_ddb_line(line, raw, key_attribute)
        if rec is not None:
            yield rec
