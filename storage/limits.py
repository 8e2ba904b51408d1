"""DynamoDB's hard limits, checked before any call so one bad item never costs a round trip.

Sizes are counted as DynamoDB counts them: for each attribute, the UTF-8 length of its name plus
the size of its value (S: UTF-8 bytes, B: raw bytes, N: one byte per base-100 digit pair aligned
on the decimal point, leading and trailing zero pairs trimmed, plus one, plus one more if
negative; BOOL/NULL: one byte). See the DynamoDB developer guide, "Item sizes and formats"; the
number rule is the one DynamoDB Local (the official engine) applies at the 400 KB boundary.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from storage.errors import InvalidKeyError, InvalidNamespaceError, ItemTooLargeError

BATCH_WRITE_MAX_ITEMS = 25
"""BatchWriteItem takes at most 25 put/delete requests per call."""
BATCH_WRITE_MAX_BYTES = 16 * 1024 * 1024
MAX_ITEM_BYTES = 400 * 1024
MAX_PARTITION_KEY_BYTES = 2048
MAX_SORT_KEY_BYTES = 1024
WCU_BYTES = 1024
TABLE_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{3,255}")
NAMESPACE_RE = re.compile(r"[A-Za-z0-9_.-]+")


def attribute_size(value: Mapping[str, Any]) -> int:
    """Size in bytes of one attribute value in DynamoDB's wire form (``{"B": b"..."}`` etc.)."""
    ((kind, v),) = value.items()
    if kind == "S":
        return len(v.encode("utf-8"))
    if kind == "B":
        return len(v)
    if kind == "N":
        return number_size(v)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: x}) for x in v)
    if kind == "L":
        return 3 + sum(attribute_size(x) + 1 for x in v)
    if kind == "M":
        return 3 + sum(len(k.encode()) + attribute_size(x) + 1 for k, x in v.items())
    raise ValueError(f"unknown attribute type {kind}")


def number_size(text: str) -> int:
    """Bytes DynamoDB stores for the number ``text``: its base-100 digit pairs, aligned on the
    decimal point with zero pairs trimmed at both ends, plus one (plus one if negative)."""
    d = Decimal(text)
    if d == 0:
        return 1
    sign, digit_tuple, exponent = d.as_tuple()
    assert isinstance(exponent, int)  # finite: DynamoDB has no NaN or Infinity
    digits = "".join(map(str, digit_tuple))
    if exponent % 2:  # align on an even power of ten, so pairs split at the decimal point
        digits += "0"
    if len(digits) % 2:
        digits = "0" + digits
    pairs = [digits[i : i + 2] for i in range(0, len(digits), 2)]
    while pairs and pairs[0] == "00":
        pairs.pop(0)
    while pairs and pairs[-1] == "00":
        pairs.pop()
    return len(pairs) + 1 + (1 if sign else 0)


def item_size(item: Mapping[str, Mapping[str, Any]]) -> int:
    """Size of an item as DynamoDB counts it: attribute names plus values."""
    return sum(len(name.encode("utf-8")) + attribute_size(v) for name, v in item.items())


def kv_item_size(user_id: str, key_len: int, value_len: int) -> int:
    """Size of a namespace item as :meth:`storage.kv.DynamoKvStore.put_op` writes it: names
    ``PK`` ``SK`` ``Value`` (9 bytes), the user id (S), key and value (B)."""
    return 9 + len(user_id.encode("utf-8")) + key_len + value_len


def write_units(size: int) -> int:
    """Write capacity units one write of an item of ``size`` bytes costs: ceil(size / 1 KB)."""
    return max(1, math.ceil(size / WCU_BYTES))


def check_key(key: bytes, *, table: str, operation: str) -> None:
    """Raise :class:`InvalidKeyError` for an empty sort key or one over 1024 bytes."""
    if not isinstance(key, (bytes, bytearray)):
        raise InvalidKeyError(
            f"keys are bytes, got {type(key).__name__}", operation=operation, table=table
        )
    if len(key) == 0:
        raise InvalidKeyError("empty key", operation=operation, table=table, key=key)
    if len(key) > MAX_SORT_KEY_BYTES:
        raise InvalidKeyError(
            f"key is {len(key)} bytes, over DynamoDB's {MAX_SORT_KEY_BYTES}-byte sort key limit",
            operation=operation,
            table=table,
            key=key,
        )


def check_partition(user_id: str, *, table: str | None = None, operation: str) -> None:
    size = len(user_id.encode("utf-8"))
    if size == 0 or size > MAX_PARTITION_KEY_BYTES:
        raise InvalidKeyError(
            f"user id is {size} bytes; it must be 1 to {MAX_PARTITION_KEY_BYTES}",
            operation=operation,
            table=table,
        )


def check_item(
    item: Mapping[str, Mapping[str, Any]], *, key: bytes | str, table: str, operation: str
) -> int:
    """Return the item's size, or raise :class:`ItemTooLargeError` naming key and size."""
    size = item_size(item)
    if size > MAX_ITEM_BYTES:
        raise ItemTooLargeError(
            f"item is {size} bytes as DynamoDB counts it, over the {MAX_ITEM_BYTES}-byte limit",
            operation=operation,
            table=table,
            key=key,
        )
    return size


def namespace_table(prefix: str, namespace: str) -> str:
    """The table name of a namespace, ``{prefix}-{namespace}``; validated."""
    if not isinstance(namespace, str) or not NAMESPACE_RE.fullmatch(namespace):
        raise InvalidNamespaceError(
            f"invalid namespace name {namespace!r}: use letters, digits, '_', '-' and '.'",
            operation="OpenNamespace",
        )
    name = f"{prefix}-{namespace}"
    if not TABLE_NAME_RE.fullmatch(name):
        raise InvalidNamespaceError(
            f"namespace {namespace!r} makes table name {name!r}, which is not 3-255 characters",
            operation="OpenNamespace",
        )
    return name
