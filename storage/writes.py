"""What one batch write is made of and what it reports: write requests, refused items, the
result, and the de-duplication every batch needs (DynamoDB refuses a batch naming a key twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from storage import errors


@dataclass(frozen=True, slots=True)
class WriteOp:
    """One put (``value`` is bytes) or delete (``value`` is None) as a DynamoDB WriteRequest."""

    key: bytes | str
    value: bytes | None
    request: dict[str, Any]
    size: int

    @property
    def ident(self) -> tuple[Any, Any]:
        return request_ident(self.request)

    @property
    def is_delete(self) -> bool:
        return "DeleteRequest" in self.request


def request_ident(request: dict[str, Any]) -> tuple[Any, Any]:
    """(PK, SK) of a WriteRequest: two requests with the same ident may not share a batch."""
    attrs = (
        request["PutRequest"]["Item"]
        if "PutRequest" in request
        else request["DeleteRequest"]["Key"]
    )
    pk, sk = attrs["PK"], attrs["SK"]
    return next(iter(pk.values())), next(iter(sk.values()))


@dataclass(slots=True)
class Rejected:
    """An item DynamoDB (or a pre-flight check) refused on its own: a poison item."""

    op: WriteOp
    error: errors.StorageError


@dataclass
class BatchResult:
    """What a batch write did. ``unprocessed`` and ``rejected`` hold every item not written."""

    written: int = 0
    deleted: int = 0
    unprocessed: list[WriteOp] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    consumed_wcu: float = 0.0
    retry_rounds: int = 0
    throttled_calls: int = 0
    last_error: errors.StorageError | None = None

    @property
    def complete(self) -> bool:
        return not self.unprocessed and not self.rejected

    def merge(self, other: BatchResult) -> BatchResult:
        self.written += other.written
        self.deleted += other.deleted
        self.unprocessed.extend(other.unprocessed)
        self.rejected.extend(other.rejected)
        self.consumed_wcu += other.consumed_wcu
        self.retry_rounds += other.retry_rounds
        self.throttled_calls += other.throttled_calls
        self.last_error = other.last_error or self.last_error
        return self

    def raise_if_incomplete(self, table: str, operation: str = "BatchWriteItem") -> None:
        """Raise :class:`BatchIncompleteError` carrying every item left, if any."""
        if self.complete:
            return
        left: list[Any] = [
            op.key if op.is_delete else (op.key, op.value) for op in self.unprocessed
        ]
        left += [r.op.key if r.op.is_delete else (r.op.key, r.op.value) for r in self.rejected]
        reason = self.last_error or (self.rejected[0].error if self.rejected else None)
        raise errors.BatchIncompleteError(
            f"batch not fully written: {len(self.unprocessed)} unprocessed, "
            f"{len(self.rejected)} rejected; last error: {reason}",
            items=left,
            operation=operation,
            table=table,
            code=reason.code if reason else None,
        )


def dedupe(ops: Iterable[WriteOp]) -> list[WriteOp]:
    """Keep the last request per (PK, SK): DynamoDB refuses a batch naming a key twice."""
    last: dict[tuple[Any, Any], WriteOp] = {}
    for op in ops:
        last.pop(op.ident, None)
        last[op.ident] = op
    return list(last.values())
