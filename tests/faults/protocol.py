"""The bits of the DynamoDB JSON protocol (``application/x-amz-json-1.0``) the proxy speaks.

Errors are what botocore's JSON parser reads: HTTP status plus a body
``{"__type": "com.amazonaws.dynamodb.v20120810#<Code>", "message": "..."}``; botocore keeps the
part after ``#`` as ``Error.Code``. Every response carries ``x-amz-crc32`` (CRC32 of the body),
which botocore checks for DynamoDB, so a rewritten body gets a fresh one.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import FaultKind

TARGET_PREFIX = "DynamoDB_20120810."
CONTENT_TYPE = "application/x-amz-json-1.0"
ERROR_PREFIX = "com.amazonaws.dynamodb.v20120810#"
WRITE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "DeleteItem"})

# fault kind -> (HTTP status, error code, message like DynamoDB's)
ERRORS: dict[FaultKind, tuple[int, str, str]] = {
    FaultKind.THROTTLING: (
        400,
        "ThrottlingException",
        "Rate of requests exceeds the allowed throughput.",
    ),
    FaultKind.PROVISIONED: (
        400,
        "ProvisionedThroughputExceededException",
        "The level of configured provisioned throughput for the table was exceeded. "
        "Consider increasing your provisioning level with the UpdateTable API.",
    ),
    FaultKind.REQUEST_LIMIT: (
        400,
        "RequestLimitExceeded",
        "Throughput exceeds the current throughput limit for your account.",
    ),
    FaultKind.INTERNAL_ERROR: (500, "InternalServerError", "Internal server error"),
    FaultKind.UNAVAILABLE: (503, "ServiceUnavailable", "Service unavailable"),
}


@dataclass(frozen=True)
class Response:
    """A complete HTTP response to send (headers exclude Content-Length, added when sent)."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes


def operation_of(target: str | None) -> str:
    """``DynamoDB_20120810.PutItem`` → ``PutItem``; anything else → ``""`` (forwarded as is)."""
    if target and target.startswith(TARGET_PREFIX):
        return target[len(TARGET_PREFIX) :]
    return ""


def crc32(body: bytes) -> str:
    """The ``x-amz-crc32`` header value of `body`."""
    return str(zlib.crc32(body) & 0xFFFFFFFF)


def json_response(status: int, payload: Mapping[str, Any], reason: str = "") -> Response:
    """A DynamoDB-style JSON response with request id and checksum headers."""
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    headers = [
        ("x-amzn-RequestId", str(uuid.uuid4())),
        ("Content-Type", CONTENT_TYPE),
        ("x-amz-crc32", crc32(body)),
    ]
    return Response(status, reason or _REASONS.get(status, ""), headers, body)


def error_response(kind: FaultKind, note: str = "injected by fault proxy") -> Response:
    """The error response of an injected fault of `kind` (not for resets / partial batches)."""
    status, code, message = ERRORS[kind]
    return json_response(status, {"__type": ERROR_PREFIX + code, "message": f"{message} ({note})"})


def edge_answer(kind: FaultKind) -> Response:
    """A 200 that is not DynamoDB's answer: empty, JSON but not an object, or a plausible
    ``{"UnprocessedItems": {}}`` under an ``x-amz-crc32`` that is no number."""
    body = {FaultKind.EMPTY_ANSWER: b"", FaultKind.NON_OBJECT_ANSWER: b"[]"}.get(
        kind, b'{"UnprocessedItems":{}}'
    )
    crc = "not-a-crc" if kind is FaultKind.BAD_CRC32 else crc32(body)
    headers = [("Content-Type", CONTENT_TYPE), ("x-amz-crc32", crc)]
    return Response(200, "OK", headers, body)


EDGE_ANSWERS = frozenset({FaultKind.EMPTY_ANSWER, FaultKind.NON_OBJECT_ANSWER, FaultKind.BAD_CRC32})


def with_body(response: Response, payload: Mapping[str, Any]) -> Response:
    """`response` with a new JSON body, its checksum and encoding headers replaced."""
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    drop = {"x-amz-crc32", "content-encoding", "content-length"}
    headers = [(k, v) for k, v in response.headers if k.lower() not in drop]
    headers.append(("x-amz-crc32", crc32(body)))
    return Response(response.status, response.reason, headers, body)


_REASONS = {200: "OK", 400: "Bad Request", 500: "Internal Server Error", 503: "Service Unavailable"}

WriteRequest = tuple[str, dict[str, Any]]
"""One BatchWriteItem write request: (table name, ``{"PutRequest": ...}`` or DeleteRequest)."""


def batch_requests(body: Mapping[str, Any]) -> list[WriteRequest]:
    """The write requests of a BatchWriteItem body, in order, each with its table."""
    items: Mapping[str, list[dict[str, Any]]] = body.get("RequestItems") or {}
    return [(table, request) for table, requests in items.items() for request in requests]


def group(requests: list[WriteRequest]) -> dict[str, list[dict[str, Any]]]:
    """Write requests back into the ``RequestItems`` / ``UnprocessedItems`` shape."""
    out: dict[str, list[dict[str, Any]]] = {}
    for table, request in requests:
        out.setdefault(table, []).append(request)
    return out


def merge_unprocessed(upstream: Mapping[str, Any], kept_back: list[WriteRequest]) -> dict[str, Any]:
    """A BatchWriteItem response body with `kept_back` added to its ``UnprocessedItems``.

    Requests the upstream itself left unprocessed come first, per table; ``ConsumedCapacity``
    and ``ItemCollectionMetrics`` are kept as they are.
    """
    merged = dict(upstream)
    unprocessed: dict[str, list[dict[str, Any]]] = {
        table: list(requests)
        for table, requests in (upstream.get("UnprocessedItems") or {}).items()
    }
    for table, request in kept_back:
        unprocessed.setdefault(table, []).append(request)
    merged["UnprocessedItems"] = unprocessed
    return merged


def unprocessed_count(body: Mapping[str, Any]) -> int:
    """Number of write requests in a BatchWriteItem response's ``UnprocessedItems``."""
    return sum(len(v) for v in (body.get("UnprocessedItems") or {}).values())


def request_kind(request: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """``("PutRequest", {...})`` or ``("DeleteRequest", {...})`` of one write request."""
    for kind in ("PutRequest", "DeleteRequest"):
        if kind in request:
            return kind, request[kind]
    return "", {}
