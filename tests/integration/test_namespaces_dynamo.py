"""Namespaces on DynamoDB Local: listing across pages, deletion that waits, encryption, and
the creation race of many processes opening the same new namespace."""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from typing import Any

import pytest

from storage import Dynamo, DynamoConfig, DynamoNamespacedStore, errors, make_client
from tests.doubles import RecordingClient
from tests.integration.race_worker import open_and_write


def test_list_namespaces_follows_list_tables_pagination(
    dynamo_config: DynamoConfig, unique: str
) -> None:
    config = replace(dynamo_config, table_prefix=f"{dynamo_config.table_prefix}L{unique}")
    names = ["one", "two", "three", "four", "five"]
    plain = DynamoNamespacedStore(config)
    for name in names:
        plain.open_namespace(name)
    # Pages of at most 3 tables: the listing must follow LastEvaluatedTableName to the end.
    client = RecordingClient(make_client(config), tweak={"ListTables": lambda p: {**p, "Limit": 3}})
    store = DynamoNamespacedStore(config, dynamo=Dynamo(config, client))
    assert store.list_namespaces() == sorted(names)
    pages = client.params("ListTables")
    assert len(pages) >= 2
    assert all("ExclusiveStartTableName" in p for p in pages[1:])
    for name in names:
        plain.delete_namespace(name)
    assert store.list_namespaces() == []


def test_delete_namespace_waits_until_the_table_is_gone(
    dynamo_config: DynamoConfig, unique: str
) -> None:
    store = DynamoNamespacedStore(dynamo_config, "u")
    name = f"del{unique}"
    store.open_namespace(name).put(b"k", b"v")
    assert store.delete_namespace(name) is True
    raw = make_client(dynamo_config)
    with pytest.raises(raw.exceptions.ResourceNotFoundException):
        raw.describe_table(TableName=store.table_name(name))
    assert name not in store.list_namespaces()
    with pytest.raises(errors.TableNotFoundError):
        store.open_namespace(name, create=False)
    assert store.delete_namespace(name) is False


def test_namespace_tables_are_on_demand_encrypted_with_a_ttl(
    dynamo_config: DynamoConfig, unique: str
) -> None:
    client = RecordingClient(make_client(dynamo_config))
    store = DynamoNamespacedStore(dynamo_config, dynamo=Dynamo(dynamo_config, client))
    table = store.open_namespace(f"sse{unique}").table
    (create,) = client.params("CreateTable")
    # DynamoDB Local accepts SSESpecification but reports no SSEDescription, so the request
    # DynamoDB accepted is what is checked here (tests/unit/test_tables.py checks it too).
    assert "SSESpecification" not in create  # DATAFOLD_SSE=owned (the default)
    assert create["BillingMode"] == "PAY_PER_REQUEST"
    raw = make_client(dynamo_config)
    desc = raw.describe_table(TableName=table)["Table"]
    assert desc["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert desc["TableStatus"] == "ACTIVE"
    ttl = raw.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ExpiresAt")
    store.delete_namespace(f"sse{unique}")


def test_eight_processes_opening_the_same_new_namespace_all_succeed(
    dynamo_config: DynamoConfig, unique: str
) -> None:
    ctx = multiprocessing.get_context("spawn")
    n = 8
    barrier = ctx.Barrier(n)
    results: Any = ctx.Queue()
    namespace = f"race{unique}"
    procs = [
        ctx.Process(
            target=open_and_write, args=(dynamo_config, namespace, f"user{i}", barrier, results)
        )
        for i in range(n)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    failures = [o for o in outcomes if o[1] != "ok"]
    assert failures == []
    assert sorted(o[0] for o in outcomes) == sorted(f"user{i}" for i in range(n))
    assert all(o[2] == o[0].encode() for o in outcomes)  # each first write landed
    create_calls = sum(o[3] for o in outcomes)
    lost_races = sum(o[4] for o in outcomes)
    assert create_calls - lost_races == 1  # exactly one process created the table
    store = DynamoNamespacedStore(dynamo_config)
    for i in range(n):
        assert store.for_user(f"user{i}").open_namespace(namespace).get(b"first") == (
            f"user{i}".encode()
        )
    store.delete_namespace(namespace)


def test_a_namespace_table_of_another_layout_is_refused_before_any_write(
    dynamo_config: DynamoConfig, unique: str
) -> None:
    raw = make_client(dynamo_config)
    name = f"rust{unique}"
    table = f"{dynamo_config.table_prefix}-{name}"
    raw.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
    )
    raw.get_waiter("table_exists").wait(TableName=table)
    store = DynamoNamespacedStore(dynamo_config)
    for create in (True, False):
        with pytest.raises(errors.IncompatibleTableError, match="string sort key") as info:
            store.open_namespace(name, create=create)
        assert table in str(info.value)
    raw.delete_table(TableName=table)


def test_two_deployments_never_list_each_others_tables(
    dynamo_config: DynamoConfig, unique: str
) -> None:
    base = f"{dynamo_config.table_prefix}D{unique}"
    prod = DynamoNamespacedStore(replace(dynamo_config, table_prefix=base))
    staging = DynamoNamespacedStore(replace(dynamo_config, table_prefix=f"{base}_staging"))
    prod.open_namespace("staging-notes")  # a namespace may contain '-'; a prefix may not
    prod.open_namespace("notes")
    staging.open_namespace("notes")
    assert prod.list_namespaces() == ["notes", "staging-notes"]
    assert staging.list_namespaces() == ["notes"]
    # The prefix that would have claimed prod's "staging-notes" table is refused outright.
    with pytest.raises(errors.ConfigError):
        replace(dynamo_config, table_prefix=f"{base}-staging")
    for store, names in ((prod, ("notes", "staging-notes")), (staging, ("notes",))):
        for name in names:
            store.delete_namespace(name)
