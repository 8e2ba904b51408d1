"""The requests the stores send, seen through a scripted client: key-only reads project the key,
listings are paginated Queries (never Scans) fetched lazily, every request names the user."""

from __future__ import annotations

import ast
import pathlib
from typing import Any

import pytest

import storage
from storage import (
    BatchWriter,
    Dynamo,
    DynamoConfig,
    DynamoKvStore,
    DynamoSchemaStore,
    Schema,
    errors,
)
from storage.schema import UPDATED_INDEX
from tests.doubles import FakeClient, FakeClock

CONFIG = DynamoConfig(region="us-east-1", schema_table="Schemas")


def kv_with(handlers: dict[str, Any], user: str = "alice") -> tuple[DynamoKvStore, FakeClient]:
    fake = FakeClient(handlers)
    dynamo = Dynamo(CONFIG, fake)
    return DynamoKvStore(dynamo, "Tbl", user, BatchWriter(dynamo)), fake


def pages(n: int, per_page: int = 2) -> Any:
    """A Query handler answering ``n`` pages of ``per_page`` items, chained by LastEvaluatedKey."""

    def query(**params: Any) -> dict[str, Any]:
        start = params.get("ExclusiveStartKey", {}).get("page", {"N": "0"})["N"]
        page = int(start)
        items = [
            {"SK": {"B": b"k%d-%d" % (page, i)}, "Value": {"B": b"v"}} for i in range(per_page)
        ]
        resp: dict[str, Any] = {"Items": items}
        if page + 1 < n:
            resp["LastEvaluatedKey"] = {"page": {"N": str(page + 1)}}
        return resp

    return query


def test_scan_prefix_fetches_pages_lazily() -> None:
    kv, fake = kv_with({"Query": pages(3)})
    it = kv.scan_prefix(b"k")
    assert fake.ops() == []
    assert next(it) == (b"k0-0", b"v")
    assert fake.ops() == ["Query"]
    assert next(it) == (b"k0-1", b"v")
    assert fake.ops() == ["Query"]
    assert next(it) == (b"k1-0", b"v")
    assert fake.ops() == ["Query", "Query"]
    assert len(list(it)) == 3
    second, third = fake.params("Query")[1:]
    assert second["ExclusiveStartKey"] == {"page": {"N": "1"}}
    assert third["ExclusiveStartKey"] == {"page": {"N": "2"}}


def test_scan_prefix_with_a_limit_stops_fetching() -> None:
    kv, fake = kv_with({"Query": pages(5)})
    assert len(list(kv.scan_prefix(b"k", limit=3))) == 3
    assert fake.ops() == ["Query", "Query"]


def test_scan_prefix_is_a_query_on_the_users_partition() -> None:
    kv, fake = kv_with({"Query": pages(1)})
    list(kv.scan_prefix(b"\xffp"))
    (params,) = fake.params("Query")
    assert params["TableName"] == "Tbl"
    assert params["KeyConditionExpression"] == "PK = :pk AND begins_with(SK, :p)"
    assert params["ExpressionAttributeValues"] == {":pk": {"S": "alice"}, ":p": {"B": b"\xffp"}}


def test_exists_projects_the_key_never_the_value() -> None:
    kv, fake = kv_with({"GetItem": lambda **p: {"Item": {"SK": {"B": b"k"}}}})
    assert kv.exists(b"k") is True
    (params,) = fake.params("GetItem")
    assert params["Key"] == {"PK": {"S": "alice"}, "SK": {"B": b"k"}}
    projected = params["ProjectionExpression"]
    names = params.get("ExpressionAttributeNames", {})
    assert "Value" not in projected and "Value" not in names.values()


def test_scan_keys_projects_the_key_only() -> None:
    kv, fake = kv_with({"Query": lambda **p: {"Items": [{"SK": {"B": b"a"}}]}})
    assert list(kv.scan_keys(b"a")) == [b"a"]
    assert fake.params("Query")[0]["ProjectionExpression"] == "SK"


def test_get_reads_the_value_of_the_users_key() -> None:
    kv, fake = kv_with({"GetItem": lambda **p: {"Item": {"Value": {"B": b"\x00v"}}}}, "bob")
    assert kv.get(b"k") == b"\x00v"
    assert fake.params("GetItem")[0]["Key"] == {"PK": {"S": "bob"}, "SK": {"B": b"k"}}


def test_sequenced_put_counts_the_sequence_towards_the_size_limit() -> None:
    kv, fake = kv_with({"PutItem": lambda **p: {}})
    value = b"x" * (storage.MAX_ITEM_BYTES - (2 + 5 + 2 + 1 + 5))  # exactly 400 KB unsequenced
    kv.put(b"k", value)
    with pytest.raises(errors.ItemTooLargeError):
        kv.put(b"k", value, seq=7)
    assert len(fake.params("PutItem")) == 1


# -- the schema store ----------------------------------------------------------------------------
def schema_store(handlers: dict[str, Any]) -> tuple[DynamoSchemaStore, FakeClient]:
    fake = FakeClient(
        {"DescribeTable": lambda **p: {"Table": {"TableStatus": "ACTIVE"}}, **handlers}
    )
    return DynamoSchemaStore(CONFIG, "alice", dynamo=Dynamo(CONFIG, fake)), fake


def test_schema_exists_projects_the_key_only() -> None:
    store, fake = schema_store({"GetItem": lambda **p: {}})
    assert store.schema_exists("s") is False
    assert fake.params("GetItem")[0]["ProjectionExpression"] == "SK"


def test_list_schema_names_is_a_key_only_paginated_query() -> None:
    answers = iter(
        [
            {"Items": [{"SK": {"S": "a"}}], "LastEvaluatedKey": {"x": {"S": "a"}}},
            {"Items": [{"SK": {"S": "b"}}]},
        ]
    )
    store, fake = schema_store({"Query": lambda **p: next(answers)})
    assert store.list_schema_names() == ["a", "b"]
    first, second = fake.params("Query")
    assert first["ProjectionExpression"] == "SK"
    assert first["ExpressionAttributeValues"] == {":pk": {"S": "alice"}}
    assert second["ExclusiveStartKey"] == {"x": {"S": "a"}}


def test_updated_since_is_a_query_on_the_updated_at_index() -> None:
    store, fake = schema_store(
        {"Query": lambda **p: {"Items": [{"SK": {"S": "b"}}, {"SK": {"S": "a"}}]}}
    )
    assert store.list_schema_names(updated_since=1234.9) == ["a", "b"]
    (params,) = fake.params("Query")
    assert params["IndexName"] == UPDATED_INDEX
    assert params["KeyConditionExpression"] == "PK = :pk AND UpdatedAt >= :t"
    assert params["ExpressionAttributeValues"] == {":pk": {"S": "alice"}, ":t": {"N": "1234"}}


def test_put_schema_is_one_update_item_setting_created_at_once() -> None:
    def update(**p: Any) -> dict[str, Any]:
        return {
            "Attributes": {
                "SK": {"S": "s"},
                "SchemaJson": {"S": "{}"},
                "CreatedAt": {"N": "5"},
                "UpdatedAt": {"N": "9"},
                "Version": {"N": "2"},
            }
        }

    clock = FakeClock(9.7)
    fake = FakeClient({"DescribeTable": lambda **p: {"Table": {}}, "UpdateItem": update})
    store = DynamoSchemaStore(CONFIG, "alice", dynamo=Dynamo(CONFIG, fake), clock=clock)
    stored = store.put_schema(Schema("s", {}))
    assert fake.ops() == ["DescribeTable", "UpdateItem"]
    (params,) = fake.params("UpdateItem")
    assert "CreatedAt = if_not_exists(CreatedAt, :now)" in params["UpdateExpression"]
    assert "UpdatedAt = :now" in params["UpdateExpression"]
    assert params["ExpressionAttributeValues"][":now"] == {"N": "9"}
    assert (stored.created_at, stored.updated_at, stored.version) == (5, 9, 2)


def test_clear_all_schemas_deletes_in_batches_not_one_by_one() -> None:
    names = [f"s{i:03d}" for i in range(60)]

    def query(**p: Any) -> dict[str, Any]:
        return {"Items": [{"PK": {"S": "alice"}, "SK": {"S": n}} for n in names]}

    store, fake = schema_store(
        {"Query": query, "BatchWriteItem": lambda **p: {"UnprocessedItems": {}}}
    )
    assert store.clear_all_schemas() == 60
    batches = fake.params("BatchWriteItem")
    assert sorted(len(b["RequestItems"]["Schemas"]) for b in batches) == [10, 25, 25]
    assert "DeleteItem" not in fake.ops()
    deleted = sorted(
        r["DeleteRequest"]["Key"]["SK"]["S"] for b in batches for r in b["RequestItems"]["Schemas"]
    )
    assert deleted == names
    assert fake.params("Query")[0]["ProjectionExpression"] == "PK, SK"


# -- no Scan anywhere, in the source -----------------------------------------------------------
def storage_sources() -> list[pathlib.Path]:
    return sorted(pathlib.Path(storage.__file__).parent.glob("*.py"))


def scan_uses(source: str, name: str = "<src>") -> list[str]:
    """Every "Scan"/"scan" string and every ``.scan`` attribute in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, ast.Constant) and node.value in ("Scan", "scan"):
            found.append(f"{name}:{node.lineno}: string {node.value!r}")
        if isinstance(node, ast.Attribute) and node.attr in ("scan", "Scan"):
            found.append(f"{name}:{node.lineno}: attribute .{node.attr}")
    return found


def test_no_scan_in_the_storage_source() -> None:
    sources = storage_sources()
    assert len(sources) >= 10
    assert [hit for path in sources for hit in scan_uses(path.read_text(), path.name)] == []


def test_the_scan_check_would_see_a_scan() -> None:
    src = 'x = dynamo.call("Scan", t)\ny = client.scan(TableName=t)\nz = getattr(c, "scan")\n'
    assert len(scan_uses(src)) == 3
    assert scan_uses("kv.scan_prefix(b'a')\nkv.scan_keys()\n") == []


@pytest.mark.parametrize(
    ("item", "what"),
    [
        ({"PK": {"S": "alice"}, "SK": {"S": "people"}}, "no attribute 'SchemaJson'"),
        (
            {
                "PK": {"S": "alice"},
                "SK": {"S": "people"},
                "SchemaJson": {"S": "{not json"},
                "CreatedAt": {"N": "1"},
                "UpdatedAt": {"N": "1"},
                "Version": {"N": "1"},
            },
            "Expecting property name",
        ),
        (
            {
                "PK": {"S": "alice"},
                "SK": {"S": "people"},
                "SchemaJson": {"S": "[1, 2]"},
                "CreatedAt": {"N": "1"},
                "UpdatedAt": {"N": "1"},
                "Version": {"N": "1"},
            },
            "not a JSON object",
        ),
    ],
)
def test_a_schema_item_that_does_not_decode_is_an_error_naming_table_and_key(
    item: dict[str, Any], what: str
) -> None:
    store, _ = schema_store({"GetItem": lambda **p: {"Item": item}})
    with pytest.raises(errors.CorruptItemError) as info:
        store.get_schema("people")
    text = str(info.value)
    assert what in text and "GetItem" in text and store.table in text and "'people'" in text


def test_put_schema_refuses_if_not_exists_with_an_expected_version() -> None:
    store, client = schema_store({})
    with pytest.raises(errors.ValidationError, match="contradict"):
        store.put_schema(Schema("people", {"a": 1}), if_not_exists=True, expected_version=3)
    assert "UpdateItem" not in client.ops()  # refused before any write (the store was opened)
