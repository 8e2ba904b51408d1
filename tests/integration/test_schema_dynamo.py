"""The schema store on DynamoDB Local: table validation, timestamps and versions in one
UpdateItem, conditional puts, Query-only listing, batched clearing, per-user isolation."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from storage import (
    MAX_ITEM_BYTES,
    Dynamo,
    DynamoConfig,
    DynamoSchemaStore,
    Schema,
    create_schema_table,
    errors,
    make_client,
)
from storage.schema import UPDATED_INDEX
from tests.doubles import RecordingClient, calls_of


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


Factory = Callable[..., tuple[DynamoSchemaStore, RecordingClient]]


@pytest.fixture
def schemas(schema_config: DynamoConfig, unique: str) -> Factory:
    """Make a schema store for a user unique to this test, over a recording client."""

    def make(
        user: str = "alice",
        clock: Callable[[], float] | None = None,
        tweak: dict[str, Any] | None = None,
    ) -> tuple[DynamoSchemaStore, RecordingClient]:
        client = RecordingClient(make_client(schema_config), tweak=tweak)
        store = DynamoSchemaStore(
            schema_config,
            f"{user}{unique}",
            dynamo=Dynamo(schema_config, client),
            clock=clock or time.time,
        )
        client.clear()
        return store, client

    return make


def test_a_missing_table_is_named_with_the_endpoint(
    dynamo_config: DynamoConfig, unique: str
) -> None:
    config = replace(dynamo_config, schema_table=f"{dynamo_config.table_prefix}_no{unique}")
    with pytest.raises(errors.TableNotFoundError) as info:
        DynamoSchemaStore(config)
    text = str(info.value)
    assert f"'{config.schema_table}'" in text
    assert str(config.endpoint_url) in text


def test_create_schema_table_builds_the_updated_at_index_once(
    dynamo_config: DynamoConfig, unique: str
) -> None:
    config = replace(dynamo_config, schema_table=f"{dynamo_config.table_prefix}_mk{unique}")
    client = RecordingClient(make_client(config))
    assert create_schema_table(config, Dynamo(config, client)) is True
    assert create_schema_table(config, Dynamo(config, client)) is False
    assert client.ops().count("CreateTable") == 1
    assert "SSESpecification" not in client.params("CreateTable")[0]  # the AWS-owned key
    desc = make_client(config).describe_table(TableName=config.schema_table)["Table"]
    (gsi,) = desc["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == UPDATED_INDEX and gsi["IndexStatus"] == "ACTIVE"
    assert [k["AttributeName"] for k in gsi["KeySchema"]] == ["PK", "UpdatedAt"]
    DynamoSchemaStore(config)  # now it validates


def test_put_schema_sets_created_once_updated_always_in_one_update_item(schemas: Factory) -> None:
    clock = Clock(1_000.4)
    store, client = schemas(clock=clock)
    first = store.put_schema(Schema("users", {"fields": ["id"]}), {"id": "uuid"})
    assert (first.created_at, first.updated_at, first.version) == (1000, 1000, 1)
    assert client.ops() == ["UpdateItem"]
    clock.now = 2_000
    second = store.put_schema(Schema("users", {"fields": ["id", "name"]}))
    assert (second.created_at, second.updated_at, second.version) == (1000, 2000, 2)
    assert client.ops() == ["UpdateItem", "UpdateItem"]  # never a read first
    clock.now = 3_000
    store.put_schema(Schema("users", {"fields": []}))
    got = store.get_schema("users")
    assert got is not None
    assert (got.body, got.created_at, got.updated_at, got.version) == (
        {"fields": []},
        1000,
        3000,
        3,
    )


def test_if_not_exists_refuses_to_overwrite(schemas: Factory) -> None:
    store, _ = schemas()
    store.put_schema(Schema("s", {"v": 1}), if_not_exists=True)
    with pytest.raises(errors.ConditionFailedError) as info:
        store.put_schema(Schema("s", {"v": 2}), if_not_exists=True)
    err = info.value
    assert (err.operation, err.table, err.code) == (
        "UpdateItem",
        store.table,
        "ConditionalCheckFailedException",
    )
    assert "key 's'" in str(err)
    got = store.get_schema("s")
    assert got is not None and got.body == {"v": 1} and got.version == 1


def test_expected_version_is_optimistic_locking(schemas: Factory) -> None:
    store, _ = schemas()
    with pytest.raises(errors.ConditionFailedError):
        store.put_schema(Schema("s", {"v": 0}), expected_version=1)  # absent: no version 1
    assert store.get_schema("s") is None
    store.put_schema(Schema("s", {"v": 1}))
    assert store.put_schema(Schema("s", {"v": 2}), expected_version=1).version == 2
    with pytest.raises(errors.ConditionFailedError):
        store.put_schema(Schema("s", {"v": 3}), expected_version=1)
    got = store.get_schema("s")
    assert got is not None and got.body == {"v": 2}


def test_get_exists_delete(schemas: Factory) -> None:
    store, _ = schemas()
    assert store.get_schema("s") is None and store.schema_exists("s") is False
    store.put_schema(Schema("s", {"ü": "✓"}, {"m": {"to": "x"}}))
    got = store.get_schema("s")
    assert got is not None
    assert (got.name, got.body, got.mutation_mappers) == ("s", {"ü": "✓"}, {"m": {"to": "x"}})
    assert store.schema_exists("s") is True
    assert store.delete_schema("s") is True
    assert store.delete_schema("s") is False
    assert store.get_schema("s") is None


def test_list_schema_names_is_a_paginated_query(schemas: Factory) -> None:
    store, client = schemas(tweak={"Query": lambda p: {**p, "Limit": 2}})
    names = ["delta", "alpha", "échec", "charlie", "bravo"]
    for name in names:
        store.put_schema(Schema(name, {}))
    client.clear()
    assert store.list_schema_names() == sorted(names)
    queries = client.params("Query")
    assert len(queries) >= 3 and set(client.ops()) == {"Query"}
    assert all(q["ProjectionExpression"] == "SK" for q in queries)
    assert [s.name for s in store.get_all_schemas()] == sorted(names)


def test_updated_since_queries_the_updated_at_index(schemas: Factory) -> None:
    clock = Clock(100)
    store, client = schemas(clock=clock)
    store.put_schema(Schema("old", {}))
    clock.now = 200
    store.put_schema(Schema("new", {}))
    clock.now = 300
    store.put_schema(Schema("newer", {}))
    client.clear()
    assert store.list_schema_names(updated_since=200) == ["new", "newer"]
    assert store.list_schema_names(updated_since=301) == []
    assert store.list_schema_names(updated_since=0) == ["new", "newer", "old"]
    assert set(client.ops()) == {"Query"}
    assert all(q["IndexName"] == UPDATED_INDEX for q in client.params("Query"))


def test_get_all_schemas_returns_this_users_schemas(schemas: Factory) -> None:
    store, _ = schemas(clock=Clock(50))
    for i in range(3):
        store.put_schema(Schema(f"s{i}", {"i": i}))
    got = store.get_all_schemas()
    assert [(s.name, s.body, s.version, s.created_at) for s in got] == [
        (f"s{i}", {"i": i}, 1, 50) for i in range(3)
    ]


def test_clear_all_schemas_deletes_in_batches_of_25(schemas: Factory) -> None:
    alice, recorder = schemas("alice")
    bob, _ = schemas("bob")
    for i in range(60):
        alice.put_schema(Schema(f"s{i:02d}", {"i": i}))
    for i in range(3):
        bob.put_schema(Schema(f"s{i:02d}", {"bob": True}))
    recorder.clear()
    batches = calls_of("BatchWriteItem", alice.table)
    deletes = calls_of("DeleteItem", alice.table)
    assert alice.clear_all_schemas() == 60
    assert calls_of("BatchWriteItem", alice.table) == batches + 3
    assert calls_of("DeleteItem", alice.table) == deletes
    sizes = sorted(len(p["RequestItems"][alice.table]) for p in recorder.params("BatchWriteItem"))
    assert sizes == [10, 25, 25]
    assert alice.list_schema_names() == []
    assert bob.list_schema_names() == ["s00", "s01", "s02"]  # no other user touched
    assert alice.clear_all_schemas() == 0


def test_one_user_never_sees_another_users_schemas(schemas: Factory) -> None:
    alice, _ = schemas("alice")
    bob, _ = schemas("bob")
    alice.put_schema(Schema("private", {"owner": "alice"}))
    assert bob.get_schema("private") is None
    assert bob.schema_exists("private") is False
    assert bob.list_schema_names() == []
    assert bob.list_schema_names(updated_since=0) == []
    assert bob.get_all_schemas() == []
    assert bob.delete_schema("private") is False
    with pytest.raises(errors.ConditionFailedError):
        bob.put_schema(Schema("private", {}), expected_version=1)
    bob.put_schema(Schema("private", {"owner": "bob"}))
    got = alice.get_schema("private")
    assert got is not None and got.body == {"owner": "alice"} and got.version == 1
    assert alice.for_user(bob.user_id).get_schema("private") is not None


def test_size_rules_before_any_call(schemas: Factory) -> None:
    store, client = schemas()
    with pytest.raises(errors.ItemTooLargeError) as info:
        store.put_schema(Schema("huge", {"blob": "x" * MAX_ITEM_BYTES}))
    assert "'huge'" in str(info.value) and "bytes" in str(info.value)
    with pytest.raises(errors.InvalidKeyError):
        store.put_schema(Schema("n" * 1025, {}))
    with pytest.raises(errors.InvalidKeyError):
        store.get_schema("")
    assert client.ops() == []
    store.put_schema(Schema("n" * 1024, {}))
    assert store.schema_exists("n" * 1024)
