"""``SchemaStore`` on DynamoDB: one table, one partition per user, one item per schema.

Item layout: ``PK`` (S) = user id, ``SK`` (S) = schema name, ``SchemaJson`` (S),
``MutationMappers`` (S, JSON map), ``CreatedAt`` / ``UpdatedAt`` (N, unix seconds), ``Version``
(N, 1 on creation, +1 per put), ``WriteId`` (S, the token of the put that wrote it) and, while a
delete is under way, ``DelId`` (S). A GSI ``ByUpdatedAt`` (PK, UpdatedAt) makes
``list_schema_names(updated_since=...)`` a Query. Nothing here ever Scans.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from storage import errors
from storage.batch import BatchWriter, Rejected, WriteOp
from storage.client import Dynamo
from storage.limits import MAX_SORT_KEY_BYTES, check_item, check_partition
from storage.schema_item import Schema, schema_from_item
from storage.settings import DynamoConfig
from storage.single_writes import delete_marked
from storage.tables import SCHEMA_TABLE_SPEC, UPDATED_INDEX, ensure_table, require_table


def create_schema_table(config: DynamoConfig, dynamo: Dynamo | None = None) -> bool:
    """Create the schema table (with the UpdatedAt GSI) if missing; wait for ACTIVE.
    True if this call created it."""
    d = dynamo or Dynamo(config)
    return ensure_table(d, config.schema_table, SCHEMA_TABLE_SPEC)


class DynamoSchemaStore:
    """Schemas of one user (``user_id``, else the config's) in the schema table.

    Construction checks the table exists (one DescribeTable) and raises
    :class:`TableNotFoundError` naming table and endpoint/region otherwise."""

    def __init__(
        self,
        config: DynamoConfig,
        user_id: str | None = None,
        *,
        dynamo: Dynamo | None = None,
        writer: BatchWriter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.table = config.schema_table
        self.user_id = user_id if user_id is not None else config.user_id
        check_partition(self.user_id, table=self.table, operation="OpenSchemaStore")
        self.dynamo = dynamo or Dynamo(config)
        self.writer = writer or BatchWriter(self.dynamo, rounds=config.batch_rounds, threads=4)
        self.clock = clock
        require_table(self.dynamo, self.table, SCHEMA_TABLE_SPEC)

    def for_user(self, user_id: str) -> DynamoSchemaStore:
        """The same store (same client) seen as another user; no extra DescribeTable."""
        other = object.__new__(DynamoSchemaStore)
        other.__dict__.update(self.__dict__)
        check_partition(user_id, table=self.table, operation="OpenSchemaStore")
        other.user_id = user_id
        return other

    def _key(self, name: str, operation: str) -> dict[str, Any]:
        size = len(name.encode("utf-8")) if isinstance(name, str) else 0
        if not name or not isinstance(name, str) or size > MAX_SORT_KEY_BYTES:
            raise errors.InvalidKeyError(
                f"schema name is {size} bytes; it must be 1 to {MAX_SORT_KEY_BYTES}",
                operation=operation,
                table=self.table,
                key=name,
            )
        return {"PK": {"S": self.user_id}, "SK": {"S": name}}

    def get_schema(self, name: str) -> Schema | None:
        """One strongly consistent GetItem; None if absent."""
        resp = self.dynamo.call(
            "GetItem", self.table, name, Key=self._key(name, "GetItem"), ConsistentRead=True
        )
        item = resp.get("Item")
        return schema_from_item(item, self.table, "GetItem") if item else None

    def schema_exists(self, name: str) -> bool:
        """One GetItem projecting the key only."""
        resp = self.dynamo.call(
            "GetItem",
            self.table,
            name,
            Key=self._key(name, "GetItem"),
            ProjectionExpression="SK",
            ConsistentRead=True,
        )
        return "Item" in resp

    def put_schema(
        self,
        schema: Schema,
        mutation_mappers: dict[str, Any] | None = None,
        *,
        if_not_exists: bool = False,
        expected_version: int | None = None,
    ) -> Schema:
        """Create or replace a schema in one UpdateItem: ``CreatedAt`` is set only the first time
        (``if_not_exists``), ``UpdatedAt`` every time, ``Version`` incremented.

        ``if_not_exists`` refuses to overwrite; ``expected_version`` refuses unless the stored
        version matches (optimistic locking). Either raises :class:`ConditionFailedError`.
        Item limit 400 KB (:class:`ItemTooLargeError` before any call). Returns the stored
        schema. Both at once contradict each other: ValidationError, before any call.

        Safe to retry: the item records this call's token (``WriteId``) and every attempt is
        conditional on not finding it, so an attempt whose answer was lost is never applied
        twice; the retry finds the token and returns the schema that attempt stored."""
        if if_not_exists and expected_version is not None:
            raise errors.ValidationError(
                "if_not_exists and expected_version contradict each other",
                operation="UpdateItem",
                table=self.table,
                key=schema.name,
            )
        key = self._key(schema.name, "UpdateItem")
        mappers = mutation_mappers if mutation_mappers is not None else schema.mutation_mappers
        now = int(self.clock())
        token = {"S": uuid.uuid4().hex}
        values: dict[str, Any] = {
            ":j": {"S": json.dumps(schema.body, separators=(",", ":"), ensure_ascii=False)},
            ":m": {"S": json.dumps(mappers or {}, separators=(",", ":"), ensure_ascii=False)},
            ":now": {"N": str(now)},
            ":zero": {"N": "0"},
            ":one": {"N": "1"},
            ":w": token,
        }
        check_item(
            {
                **key,
                "SchemaJson": values[":j"],
                "MutationMappers": values[":m"],
                "CreatedAt": values[":now"],
                "UpdatedAt": values[":now"],
                "Version": values[":now"],
                "WriteId": token,
            },
            key=schema.name,
            table=self.table,
            operation="UpdateItem",
        )
        condition = "(attribute_not_exists(WriteId) OR WriteId <> :w)"
        if if_not_exists:
            condition += " AND attribute_not_exists(PK)"
        elif expected_version is not None:
            condition += " AND Version = :ev"
            values[":ev"] = {"N": str(expected_version)}
        try:
            resp = self.dynamo.call(
                "UpdateItem",
                self.table,
                schema.name,
                Key=key,
                ReturnValues="ALL_NEW",
                UpdateExpression="SET SchemaJson = :j, MutationMappers = :m, UpdatedAt = :now, "
                "CreatedAt = if_not_exists(CreatedAt, :now), WriteId = :w, "
                "Version = if_not_exists(Version, :zero) + :one REMOVE DelId",
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except errors.ConditionFailedError as exc:
            if exc.item is not None and exc.item.get("WriteId") == token:
                return schema_from_item(exc.item, self.table, "UpdateItem")  # ours landed
            raise
        return schema_from_item(resp["Attributes"], self.table, "UpdateItem")

    def delete_schema(self, name: str) -> bool:
        """Delete a schema; whether it existed. Safe to retry, and exact: marked, then deleted
        if it still bears the mark (:func:`storage.single_writes.delete_marked`)."""
        return delete_marked(self.dynamo, self.table, name, self._key(name, "DeleteItem"))

    def _restore_op(self, schema: Schema, operation: str) -> WriteOp:
        """A validated put of ``schema`` exactly as given: ``created_at``/``updated_at``/
        ``version`` are written, not computed (None: now, now, 1)."""
        now = int(self.clock())
        item = {
            **self._key(schema.name, operation),
            "SchemaJson": {"S": json.dumps(schema.body, separators=(",", ":"), ensure_ascii=False)},
            "MutationMappers": {
                "S": json.dumps(
                    schema.mutation_mappers or {}, separators=(",", ":"), ensure_ascii=False
                )
            },
            "CreatedAt": {"N": str(now if schema.created_at is None else schema.created_at)},
            "UpdatedAt": {"N": str(now if schema.updated_at is None else schema.updated_at)},
            "Version": {"N": str(1 if schema.version is None else schema.version)},
        }
        size = check_item(item, key=schema.name, table=self.table, operation=operation)
        return WriteOp(schema.name, None, {"PutRequest": {"Item": item}}, size)

    def restore_schema(self, schema: Schema) -> Schema:
        """Write ``schema`` back as exported, timestamps and version included: one
        unconditional PutItem that replaces any schema of that name (unlike
        :meth:`put_schema`, nothing is incremented). For re-importing an export; a later
        ``put_schema`` continues from the restored version. Raises :class:`ItemTooLargeError`
        or :class:`InvalidKeyError` before any call."""
        op = self._restore_op(schema, "PutItem")
        self.dynamo.call("PutItem", self.table, schema.name, Item=op.request["PutRequest"]["Item"])
        return schema_from_item(op.request["PutRequest"]["Item"], self.table, "PutItem")

    def restore_schemas(self, schemas: Iterable[Schema]) -> int:
        """:meth:`restore_schema` for many: 25 per BatchWriteItem, in parallel, last one per name
        wins. The list is materialised: pass bounded chunks. Returns how many were written;
        raises :class:`BatchIncompleteError` naming the schemas not written (refused by the
        size/name checks or left unprocessed after the writer's bounded retries)."""
        ops: list[WriteOp] = []
        bad: list[Rejected] = []
        for schema in schemas:
            try:
                ops.append(self._restore_op(schema, "BatchWriteItem"))
            except errors.StorageError as exc:
                bad.append(Rejected(WriteOp(schema.name, b"", {"PutRequest": {}}, 0), exc))
        result = self.writer.write(self.table, ops)
        result.rejected[:0] = bad
        result.raise_if_incomplete(self.table)
        return result.written

    def _query(self, **extra: Any) -> Iterator[dict[str, Any]]:
        params: dict[str, Any] = {
            "KeyConditionExpression": "PK = :pk",
            "ExpressionAttributeValues": {":pk": {"S": self.user_id}},
            **extra,
        }
        while True:
            page = self.dynamo.call("Query", self.table, **params)
            yield from page.get("Items", [])
            if not page.get("LastEvaluatedKey"):
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def list_schema_names(self, updated_since: int | float | None = None) -> list[str]:
        """Names of this user's schemas, sorted. A paginated key-only Query on the user's
        partition; with ``updated_since`` (unix seconds) a Query on the UpdatedAt index."""
        if updated_since is None:
            return [
                i["SK"]["S"] for i in self._query(ProjectionExpression="SK", ConsistentRead=True)
            ]
        items = self._query(
            IndexName=UPDATED_INDEX,
            KeyConditionExpression="PK = :pk AND UpdatedAt >= :t",
            ExpressionAttributeValues={
                ":pk": {"S": self.user_id},
                ":t": {"N": str(int(updated_since))},
            },
        )
        return sorted(i["SK"]["S"] for i in items)

    def iter_schemas(self) -> Iterator[Schema]:
        """Every schema of this user, lazily, page by page (a paginated Query)."""
        for item in self._query(ConsistentRead=True):
            yield schema_from_item(item, self.table, "Query")

    def get_all_schemas(self) -> list[Schema]:
        return list(self.iter_schemas())

    def delete_ops(self) -> Iterator[WriteOp]:
        """Delete requests for every schema of this user (key-only paginated Query)."""
        for item in self._query(ProjectionExpression="PK, SK", ConsistentRead=True):
            yield WriteOp(item["SK"]["S"], None, {"DeleteRequest": {"Key": item}}, 0)

    def clear_all_schemas(self) -> int:
        """Delete every schema of this user; return how many. A key-only paginated Query, then
        BatchWriteItem deletes 25 at a time in parallel (not one DeleteItem per schema).
        Raises :class:`BatchIncompleteError` with the names left if some could not be deleted."""
        result = self.writer.write(self.table, self.delete_ops())
        result.raise_if_incomplete(self.table)
        return result.deleted
