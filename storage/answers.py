"""Is this DynamoDB's answer? One check for the wire path and botocore's client alike.

DynamoDB always answers a 200 with a JSON object and an ``x-amz-crc32`` of its body. An empty
200, JSON that is not an object, or a checksum header that is missing its number or does not
match is someone else's answer — a proxy, a cut connection — and says nothing about what was
written: it is a retryable :class:`~storage.errors.TransientError`, never "all written" (an empty
``UnprocessedItems`` read from nothing would count every item of a batch as written).

botocore's client gets the same check from a ``before-parse`` hook (:func:`install`), so the
raw body is seen before its parser turns an empty one into ``{}``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any

from storage import errors


def _bad(why: str, code: str, operation: str, table: str | None) -> errors.TransientError:
    return errors.TransientError(why, operation=operation, table=table, code=code)


def check(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    operation: str,
    table: str | None = None,
) -> None:
    """TransientError if a 200 is empty or not a JSON object, or any answer's checksum header
    is malformed or wrong. Cheap: the body is not parsed (its first and last bytes tell an
    object; what then does not parse, botocore's parser refuses)."""

    def bad(why: str, code: str) -> errors.TransientError:
        return _bad(why, code, operation, table)

    crc = headers.get("x-amz-crc32")
    if crc is not None:
        try:
            expected = int(crc)
        except ValueError:
            raise bad(f"malformed x-amz-crc32 header {crc[:40]!r}", "CRC32Malformed") from None
        if expected != zlib.crc32(content):
            raise bad("response CRC32 does not match its body", "CRC32Mismatch")
    if status == 200:
        body = content.strip()
        if not body:
            raise bad(f"{operation} answered 200 with an empty body", "BadResponse")
        if not (body.startswith(b"{") and body.endswith(b"}")):
            raise bad(
                f"{operation} answered 200 with a body that is not a JSON object", "BadResponse"
            )


def parse(
    status: int,
    headers: Mapping[str, str],
    content: bytes,
    *,
    operation: str,
    table: str | None = None,
) -> Any:
    """:func:`check`, then the answer's JSON (``{}`` for an error body that is not JSON)."""
    check(status, headers, content, operation=operation, table=table)
    try:
        parsed: Any = json.loads(content) if content else {}
    except ValueError:
        if status == 200:
            raise _bad(
                f"{operation} answered 200 without JSON", "BadResponse", operation, table
            ) from None
        parsed = {}
    if not isinstance(parsed, dict):
        if status == 200:
            why = f"{operation} answered 200 with JSON that is not an object"
            raise _bad(why, "BadResponse", operation, table)
        parsed = {}
    return parsed


def _before_parse(operation_model: Any, response_dict: Mapping[str, Any], **_: Any) -> None:
    body = response_dict.get("body")
    if isinstance(body, (bytes, bytearray)):
        headers = {str(k).lower(): str(v) for k, v in (response_dict.get("headers") or {}).items()}
        check(
            int(response_dict.get("status_code") or 0),
            headers,
            bytes(body),
            operation=str(operation_model.name),
        )


def install(client: Any) -> None:
    """Check every answer of ``client`` (a DynamoDB client) before botocore parses it."""
    client.meta.events.register("before-parse.dynamodb", _before_parse)
