"""``KvStore`` on one DynamoDB namespace table: binary keys and values, one user's partition.

Item layout: ``PK`` (S) = user id, ``SK`` (B) = key bytes, ``Value`` (B) = value bytes — lossless
for any bytes (upstream's UTF-8 decode corrupted binary keys). Every read and write names the
store's user id as partition key, so one user can never see or touch another's items, whatever
key or prefix is asked for.

Ordered single writes (the write pipeline's ``put``/``delete`` with a producer sequence ``seq``)
carry ``Seq`` (N) and are conditional: an older write never overwrites a newer one. A sequenced
delete leaves a *tombstone* (``Tomb``, no ``Value``, expiring via TTL attribute ``ExpiresAt``) so a
late, older put cannot resurrect the key; every read treats a tombstone as absent. A tombstone
records in ``Had`` whether it replaced a value, and an unsequenced delete briefly leaves one
marked ``DelId`` before removing the item, so that every single write is safe to retry
(:mod:`storage.single_writes`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from storage import errors
from storage.batch import BatchResult, BatchWriter, Rejected, WriteOp
from storage.client import Dynamo
from storage.limits import (
    MAX_ITEM_BYTES,
    MAX_SORT_KEY_BYTES,
    check_item,
    check_key,
    kv_item_size,
)
from storage.metrics import BATCH_ITEMS
from storage.single_writes import delete_sequenced, delete_unsequenced, put_sequenced

TOMBSTONE_TTL_SECONDS = 7 * 24 * 3600


class KvStore(Protocol):
    """The interface both the DynamoDB and the in-memory stores implement."""

    def get(self, key: bytes) -> bytes | None: ...
    def put(self, key: bytes, value: bytes, *, seq: int | None = None) -> None: ...
    def delete(self, key: bytes, *, seq: int | None = None) -> bool: ...
    def exists(self, key: bytes) -> bool: ...
    def seq_of(self, key: bytes) -> int | None: ...
    def scan_prefix(
        self, prefix: bytes, *, limit: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]: ...
    def scan_keys(self, prefix: bytes = b"") -> Iterator[bytes]: ...
    def batch_put(
        self, items: Iterable[tuple[bytes, bytes]], *, raise_on_incomplete: bool = True
    ) -> BatchResult: ...
    def batch_delete(
        self, keys: Iterable[bytes], *, raise_on_incomplete: bool = True
    ) -> BatchResult: ...
    def flush(self) -> None: ...


class DynamoKvStore:
    """One namespace table seen through one user's partition. Thread-safe; cheap to create."""

    def __init__(
        self,
        dynamo: Dynamo,
        table: str,
        user_id: str,
        writer: BatchWriter,
        *,
        consistent_reads: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        self.dynamo = dynamo
        self.table = table
        self.user_id = user_id
        self.writer = writer
        self.consistent_reads = consistent_reads
        self.clock = clock
        self._pk: dict[str, Any] = {"S": user_id}  # shared by its requests; never mutated
        self._pk_size = kv_item_size(user_id, 0, 0)

    # -- keys and items -------------------------------------------------------------------
    def _key(self, key: bytes) -> dict[str, Any]:
        return {"PK": self._pk, "SK": {"B": bytes(key)}}

    def put_op(self, key: bytes, value: bytes) -> WriteOp:
        """A validated put request; raises InvalidKeyError / ItemTooLargeError."""
        if type(key) is not bytes or type(value) is not bytes:  # bytearray, or not bytes at all
            check_key(key, table=self.table, operation="PutItem")
            if not isinstance(value, (bytes, bytearray)):
                raise errors.ValidationError(
                    f"values are bytes, got {type(value).__name__}",
                    operation="PutItem",
                    table=self.table,
                    key=key,
                )
            key, value = bytes(key), bytes(value)
        elif not 0 < len(key) <= MAX_SORT_KEY_BYTES:
            check_key(key, table=self.table, operation="PutItem")  # raises
        # This runs once per item of every bulk load: the layout is fixed, so its size is
        # arithmetic (names "PK" "SK" "Value" = 9 bytes) and the partition value is shared.
        item: dict[str, Any] = {"PK": self._pk, "SK": {"B": key}, "Value": {"B": value}}
        size = self._pk_size + len(key) + len(value)
        if size > MAX_ITEM_BYTES:
            check_item(item, key=key, table=self.table, operation="PutItem")  # raises
        return WriteOp(key, value, {"PutRequest": {"Item": item}}, size)

    def delete_op(self, key: bytes) -> WriteOp:
        check_key(key, table=self.table, operation="DeleteItem")
        k = self._key(key)
        return WriteOp(bytes(key), None, {"DeleteRequest": {"Key": k}}, 0)

    # -- reads ----------------------------------------------------------------------------
    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` or None. One GetItem (strongly consistent by default: 1 RCU
        per 4 KB; eventually consistent halves it). Retries throttling/5xx/timeouts."""
        check_key(key, table=self.table, operation="GetItem")
        resp = self.dynamo.call(
            "GetItem",
            self.table,
            key,
            Key=self._key(key),
            ProjectionExpression="#v",
            ExpressionAttributeNames={"#v": "Value"},
            ConsistentRead=self.consistent_reads,
        )
        value = resp.get("Item", {}).get("Value")
        return bytes(value["B"]) if value else None

    def exists(self, key: bytes) -> bool:
        """Whether ``key`` holds a value. One GetItem projecting only key and tombstone marker,
        so the value is never transferred."""
        item = self._projected(key, "SK, Tomb", consistent=self.consistent_reads)
        return item is not None and bool(item) and "Tomb" not in item

    def seq_of(self, key: bytes) -> int | None:
        """The sequence of the last ordered write of ``key`` (put or tombstone), None if it has
        none: one strongly consistent GetItem projecting ``Seq``."""
        seq = (self._projected(key, "Seq", consistent=True) or {}).get("Seq")
        return None if seq is None else int(seq["N"])

    def _projected(self, key: bytes, attributes: str, *, consistent: bool) -> dict[str, Any] | None:
        """One GetItem of ``key`` returning only ``attributes``; None if there is no item."""
        check_key(key, table=self.table, operation="GetItem")
        resp = self.dynamo.call(
            "GetItem",
            self.table,
            key,
            Key=self._key(key),
            ProjectionExpression=attributes,
            ConsistentRead=consistent,
        )
        item: dict[str, Any] | None = resp.get("Item")
        return item

    def _query(self, prefix: bytes, **extra: Any) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": self.user_id}},
            "ConsistentRead": self.consistent_reads,
            **extra,
        }
        if prefix:
            params["KeyConditionExpression"] += " AND begins_with(SK, :p)"
            params["ExpressionAttributeValues"][":p"] = {"B": bytes(prefix)}
        while True:
            page = self.dynamo.call("Query", self.table, prefix or None, **params)
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return
            params["ExclusiveStartKey"] = start

    def scan_prefix(
        self, prefix: bytes, *, limit: int | None = None, page_size: int | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with ``prefix``, sorted by key bytes.

        A paginated Query on this user's partition (never a Scan), fetched lazily page by page
        (1 MB per page); tombstones are filtered out server-side. ``limit`` caps the number
        of pairs yielded (0 yields none). ``page_size`` also caps the items per page (Query
        ``Limit``), so memory stays small with many small items (a 1 MB page can hold tens of
        thousands); more pages means more calls."""
        if limit is not None and limit <= 0:
            return
        count = 0
        extra: dict[str, Any] = {"Limit": page_size} if page_size else {}
        for item in self._query(
            prefix,
            FilterExpression="attribute_exists(#v)",
            ExpressionAttributeNames={"#v": "Value"},
            **extra,
        ):
            if "Value" not in item:
                continue
            yield bytes(item["SK"]["B"]), bytes(item["Value"]["B"])
            count += 1
            if limit is not None and count >= limit:
                return

    def scan_keys(self, prefix: bytes = b"") -> Iterator[bytes]:
        """Every key of this user under ``prefix`` (tombstones included), keys only: a
        paginated Query projecting SK, for deletes that must leave nothing behind."""
        for item in self._query(prefix, ProjectionExpression="SK"):
            yield bytes(item["SK"]["B"])

    # -- single writes --------------------------------------------------------------------
    def put(self, key: bytes, value: bytes, *, seq: int | None = None) -> None:
        """Store ``value`` under ``key``: one PutItem, ceil(size/1 KB) WCU.

        With ``seq`` the write is conditional on no newer write of the key having landed;
        otherwise :class:`ConditionFailedError` (the write is superseded). Safe to retry: a
        write finding itself stored (same sequence and value: an earlier attempt whose answer
        was lost, a redelivery) succeeds (:mod:`storage.single_writes`)."""
        op = self.put_op(key, value)
        item = op.request["PutRequest"]["Item"]
        if seq is None:
            self.dynamo.call("PutItem", self.table, key, Item=item)
            return
        item = {**item, "Seq": {"N": str(seq)}}
        # The sequence attribute counts towards the 400 KB too: check before any call.
        check_item(item, key=key, table=self.table, operation="PutItem")
        put_sequenced(self.dynamo, self.table, bytes(key), item, seq)

    def delete(self, key: bytes, *, seq: int | None = None) -> bool:
        """Remove ``key``; return whether it held a value. With ``seq``, a tombstone replaces
        the item unless a newer write landed (:class:`ConditionFailedError`: superseded).

        Safe to retry, and exact: an attempt whose answer was lost is recognised by the
        retry, which reports what it found (:mod:`storage.single_writes`). Costs one
        UpdateItem (plus one DeleteItem without ``seq`` when there is an item, or a second
        UpdateItem with ``seq`` when there is no value)."""
        check_key(key, table=self.table, operation="DeleteItem")
        expires = int(self.clock()) + TOMBSTONE_TTL_SECONDS
        if seq is None:
            return delete_unsequenced(self.dynamo, self.table, key, self._key(key), expires)
        return delete_sequenced(self.dynamo, self.table, key, self._key(key), seq, expires)

    # -- batches --------------------------------------------------------------------------
    def _batch(self, ops: Iterable[WriteOp | Rejected], raise_on_incomplete: bool) -> BatchResult:
        valid: list[WriteOp] = []
        bad: list[Rejected] = []
        for op in ops:
            (bad if isinstance(op, Rejected) else valid).append(op)  # type: ignore[arg-type]
        result = self.writer.write(self.table, valid)
        result.rejected[:0] = bad
        if bad:  # refused before any call: still a batch outcome worth counting
            BATCH_ITEMS.labels(self.table, "rejected").inc(len(bad))
        if raise_on_incomplete:
            result.raise_if_incomplete(self.table)
        return result

    def batch_put(
        self, items: Iterable[tuple[bytes, bytes]], *, raise_on_incomplete: bool = True
    ) -> BatchResult:
        """Write many items: 25 per BatchWriteItem, last value per key wins, unprocessed items
        retried for bounded rounds, poison items isolated. Raises BatchIncompleteError (with the
        items left) unless ``raise_on_incomplete`` is False, when they are in the result."""

        def ops() -> Iterator[WriteOp | Rejected]:
            for key, value in items:
                try:
                    yield self.put_op(key, value)
                except errors.StorageError as exc:
                    yield Rejected(WriteOp(key, value, {}, 0), exc)

        return self._batch(ops(), raise_on_incomplete)

    def batch_delete(
        self, keys: Iterable[bytes], *, raise_on_incomplete: bool = True
    ) -> BatchResult:
        """Delete many keys, 25 per BatchWriteItem; same guarantees as :meth:`batch_put`."""

        def ops() -> Iterator[WriteOp | Rejected]:
            for key in keys:
                try:
                    yield self.delete_op(key)
                except errors.StorageError as exc:
                    yield Rejected(WriteOp(key, None, {"DeleteRequest": {}}, 0), exc)

        return self._batch(ops(), raise_on_incomplete)

    def flush(self) -> None:
        """Nothing to do: every write has reached DynamoDB when its call returns."""
