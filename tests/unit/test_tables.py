"""Table lifecycle with a scripted client: creation races, waiting for ACTIVE, SSE, deletion,
validation, and namespace listing across ListTables pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from botocore.stub import Stubber

from storage import Dynamo, DynamoConfig, DynamoNamespacedStore, errors, make_client
from storage.schema import SCHEMA_TABLE_SPEC, UPDATED_INDEX, create_schema_table
from storage.tables import KV_TABLE_SPEC, delete_table, ensure_table, require_table, wait_active
from tests.doubles import FakeClient, FakeClock, client_error

CONFIG = DynamoConfig(region="us-east-1", endpoint_url="http://dynamo.test:8000")


class Lifecycle:
    """A scripted table: DescribeTable answers from ``states`` in turn (None = not found)."""

    def __init__(
        self,
        states: list[str | None],
        *,
        create_error: str | None = None,
        delete_errors: list[str] | None = None,
    ) -> None:
        self.states = states
        self.create_error = create_error
        self.delete_errors = list(delete_errors or [])

    def describe_table(self, TableName: str) -> dict[str, Any]:
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if state is None:
            raise client_error("ResourceNotFoundException", "DescribeTable")
        return {"Table": {"TableName": TableName, "TableStatus": state}}

    def create_table(self, **params: Any) -> dict[str, Any]:
        if self.create_error:
            raise client_error(self.create_error, "CreateTable")
        return {"TableDescription": {"TableName": params["TableName"], "TableStatus": "CREATING"}}

    def delete_table(self, **params: Any) -> dict[str, Any]:
        if self.delete_errors:
            raise client_error(self.delete_errors.pop(0), "DeleteTable")
        return {"TableDescription": {"TableStatus": "DELETING"}}

    def client(self) -> FakeClient:
        return FakeClient(
            {
                "DescribeTable": self.describe_table,
                "CreateTable": self.create_table,
                "DeleteTable": self.delete_table,
                "UpdateTimeToLive": lambda **p: {},
            }
        )


def dynamo_for(
    life: Lifecycle, config: DynamoConfig = CONFIG
) -> tuple[Dynamo, FakeClient, FakeClock]:
    clock = FakeClock()
    fake = life.client()
    return Dynamo(config, fake, sleep=clock.sleep, clock=clock), fake, clock


def test_creates_a_missing_table_encrypted_on_demand_and_waits_for_active() -> None:
    life = Lifecycle([None, "CREATING", "CREATING", "ACTIVE"])
    dynamo, fake, clock = dynamo_for(life)
    assert (
        ensure_table(dynamo, "T-ns", KV_TABLE_SPEC, ttl_attribute="ExpiresAt", sleep=clock.sleep)
        is True
    )
    (create,) = fake.params("CreateTable")
    assert "SSESpecification" not in create  # DATAFOLD_SSE=owned: the free AWS-owned key
    assert create["BillingMode"] == "PAY_PER_REQUEST"
    assert create["KeySchema"] == [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": "SK", "KeyType": "RANGE"},
    ]
    assert {"AttributeName": "SK", "AttributeType": "B"} in create["AttributeDefinitions"]
    assert fake.ops() == [
        "DescribeTable",
        "CreateTable",
        "DescribeTable",
        "DescribeTable",
        "DescribeTable",
        "UpdateTimeToLive",
    ]
    assert fake.params("UpdateTimeToLive")[0]["TimeToLiveSpecification"] == {
        "Enabled": True,
        "AttributeName": "ExpiresAt",
    }
    assert len(clock.sleeps) == 2


def test_losing_the_creation_race_is_success_after_waiting_for_active() -> None:
    life = Lifecycle([None, "CREATING", "ACTIVE"], create_error="ResourceInUseException")
    dynamo, fake, clock = dynamo_for(life)
    assert (
        ensure_table(dynamo, "T-ns", KV_TABLE_SPEC, ttl_attribute="ExpiresAt", sleep=clock.sleep)
        is False
    )
    assert fake.ops() == ["DescribeTable", "CreateTable", "DescribeTable", "DescribeTable"]
    assert len(clock.sleeps) == 1  # returned only once the table was ACTIVE


def test_a_table_seen_creating_is_waited_for() -> None:
    life = Lifecycle(["CREATING", "CREATING", "ACTIVE"])
    dynamo, fake, clock = dynamo_for(life)
    assert ensure_table(dynamo, "T-ns", KV_TABLE_SPEC, sleep=clock.sleep) is False
    assert "CreateTable" not in fake.ops()
    assert fake.ops().count("DescribeTable") == 3


def test_an_active_table_costs_one_describe() -> None:
    dynamo, fake, clock = dynamo_for(Lifecycle(["ACTIVE"]))
    assert ensure_table(dynamo, "T-ns", KV_TABLE_SPEC, sleep=clock.sleep) is False
    assert fake.ops() == ["DescribeTable"]


def test_other_creation_errors_are_raised() -> None:
    dynamo, _, clock = dynamo_for(Lifecycle([None], create_error="AccessDeniedException"))
    with pytest.raises(errors.PermanentError) as info:
        ensure_table(dynamo, "T-ns", KV_TABLE_SPEC, sleep=clock.sleep)
    assert info.value.code == "AccessDeniedException" and "T-ns" in str(info.value)


def test_waiting_for_active_is_bounded() -> None:
    dynamo, _, clock = dynamo_for(Lifecycle(["CREATING"]))
    with pytest.raises(errors.TransientError, match="not ACTIVE after 10s"):
        wait_active(dynamo, "T-ns", timeout=10, sleep=clock.sleep, clock=clock)
    assert 10 <= sum(clock.sleeps) <= 13


def test_active_means_its_indexes_too() -> None:
    states = iter(["CREATING", "ACTIVE"])

    def describe(TableName: str) -> dict[str, Any]:
        return {
            "Table": {
                "TableStatus": "ACTIVE",
                "GlobalSecondaryIndexes": [{"IndexName": "i", "IndexStatus": next(states)}],
            }
        }

    clock = FakeClock()
    dynamo = Dynamo(CONFIG, FakeClient({"DescribeTable": describe}), sleep=clock.sleep)
    wait_active(dynamo, "T", sleep=clock.sleep, clock=clock)
    assert len(clock.sleeps) == 1


def test_delete_waits_until_the_table_is_gone() -> None:
    life = Lifecycle(["DELETING", "DELETING", None])
    dynamo, fake, clock = dynamo_for(life)
    assert delete_table(dynamo, "T-ns", sleep=clock.sleep, clock=clock) is True
    assert fake.ops() == ["DeleteTable", "DescribeTable", "DescribeTable", "DescribeTable"]
    assert len(clock.sleeps) == 2


def test_deleting_a_missing_table_is_false() -> None:
    life = Lifecycle([None], delete_errors=["ResourceNotFoundException"])
    dynamo, _, clock = dynamo_for(life)
    assert delete_table(dynamo, "T-ns", sleep=clock.sleep, clock=clock) is False


def test_deleting_a_table_still_creating_waits_and_deletes_it() -> None:
    life = Lifecycle(["CREATING", "ACTIVE", None], delete_errors=["ResourceInUseException"])
    dynamo, fake, clock = dynamo_for(life)
    assert delete_table(dynamo, "T-ns", sleep=clock.sleep, clock=clock, timeout=30) is True
    assert fake.ops().count("DeleteTable") == 2
    assert sum(clock.sleeps) < 30


def test_require_table_names_table_and_endpoint() -> None:
    dynamo, _, _ = dynamo_for(Lifecycle([None]))
    with pytest.raises(errors.TableNotFoundError) as info:
        require_table(dynamo, "MySchemas")
    text = str(info.value)
    assert "'MySchemas'" in text and "http://dynamo.test:8000" in text
    assert info.value.code == "ResourceNotFoundException"


def test_require_table_names_the_region_without_an_endpoint() -> None:
    config = DynamoConfig(region="eu-central-1")
    dynamo = Dynamo(config, Lifecycle([None]).client())
    with pytest.raises(errors.TableNotFoundError, match="region eu-central-1"):
        require_table(dynamo, "MySchemas")


def test_the_schema_table_has_the_updated_at_index_and_encryption() -> None:
    life = Lifecycle([None, "ACTIVE"])
    dynamo, fake, _ = dynamo_for(life)
    assert create_schema_table(CONFIG, dynamo) is True
    (create,) = fake.params("CreateTable")
    assert create["TableName"] == CONFIG.schema_table
    assert "SSESpecification" not in create
    (gsi,) = create["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == UPDATED_INDEX
    assert gsi["KeySchema"] == [
        {"AttributeName": "PK", "KeyType": "HASH"},
        {"AttributeName": "UpdatedAt", "KeyType": "RANGE"},
    ]
    assert {"AttributeName": "UpdatedAt", "AttributeType": "N"} in create["AttributeDefinitions"]
    assert create["GlobalSecondaryIndexes"] == SCHEMA_TABLE_SPEC["GlobalSecondaryIndexes"]


# -- the namespaced store over a scripted client ------------------------------------------------
@pytest.fixture
def stubbed_store() -> Iterator[tuple[DynamoNamespacedStore, Stubber]]:
    client = make_client(CONFIG)
    store = DynamoNamespacedStore(CONFIG, "u", dynamo=Dynamo(CONFIG, client))
    with Stubber(client) as stub:
        yield store, stub
        stub.assert_no_pending_responses()


def test_list_namespaces_follows_list_tables_pages(
    stubbed_store: tuple[DynamoNamespacedStore, Stubber],
) -> None:
    store, stub = stubbed_store
    pre = CONFIG.table_prefix
    stub.add_response(
        "list_tables",
        {"TableNames": [f"{pre}-b", "Other", f"{pre}-a"], "LastEvaluatedTableName": f"{pre}-a"},
        {},
    )
    stub.add_response(
        "list_tables",
        {"TableNames": [f"{pre}X-c", f"{pre}-c"], "LastEvaluatedTableName": f"{pre}-c"},
        {"ExclusiveStartTableName": f"{pre}-a"},
    )
    stub.add_response(
        "list_tables", {"TableNames": [f"{pre}-0"]}, {"ExclusiveStartTableName": f"{pre}-c"}
    )
    assert store.list_namespaces() == ["0", "a", "b", "c"]


def test_open_namespace_without_create_checks_the_table(
    stubbed_store: tuple[DynamoNamespacedStore, Stubber],
) -> None:
    store, stub = stubbed_store
    stub.add_client_error(
        "describe_table",
        "ResourceNotFoundException",
        expected_params={"TableName": f"{CONFIG.table_prefix}-gone"},
    )
    with pytest.raises(errors.TableNotFoundError, match=re.escape("http://dynamo.test:8000")):
        store.open_namespace("gone", create=False)


def test_an_opened_namespace_is_remembered(
    stubbed_store: tuple[DynamoNamespacedStore, Stubber],
) -> None:
    store, stub = stubbed_store
    table = f"{CONFIG.table_prefix}-ns"
    stub.add_response(
        "describe_table",
        {"Table": {"TableName": table, "TableStatus": "ACTIVE"}},
        {"TableName": table},
    )
    first = store.open_namespace("ns")
    second = store.for_user("v").open_namespace("ns")  # no second DescribeTable
    assert (first.table, first.user_id, second.user_id) == (table, "u", "v")


@pytest.mark.parametrize(
    ("sse", "spec"),
    [
        ("kms", {"Enabled": True, "SSEType": "KMS"}),
        (
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab",
            {
                "Enabled": True,
                "SSEType": "KMS",
                "KMSMasterKeyId": "arn:aws:kms:eu-west-1:123456789012:key/"
                "1234abcd-12ab-34cd-56ef-1234567890ab",
            },
        ),
    ],
)
def test_datafold_sse_chooses_the_kms_key_of_new_tables(sse: str, spec: dict[str, Any]) -> None:
    life = Lifecycle([None, "ACTIVE"])
    dynamo, fake, clock = dynamo_for(life, replace(CONFIG, sse=sse))
    ensure_table(dynamo, "T-ns", KV_TABLE_SPEC, sleep=clock.sleep)
    (create,) = fake.params("CreateTable")
    assert create["SSESpecification"] == spec


def _described(keys: list[tuple[str, str, str]]) -> dict[str, Any]:
    return {
        "Table": {
            "TableStatus": "ACTIVE",
            "KeySchema": [{"AttributeName": n, "KeyType": k} for n, k, _ in keys],
            "AttributeDefinitions": [{"AttributeName": n, "AttributeType": t} for n, _, t in keys],
        }
    }


@pytest.mark.parametrize(
    ("spec", "keys", "named"),
    [
        (KV_TABLE_SPEC, [("PK", "HASH", "S"), ("SK", "RANGE", "S")], "a string sort key"),
        (SCHEMA_TABLE_SPEC, [("SchemaName", "HASH", "S")], "keyed by SchemaName"),
        (KV_TABLE_SPEC, [("id", "HASH", "N")], "this project needs PK (S HASH), SK (B RANGE)"),
    ],
)
def test_a_table_with_another_key_is_refused_naming_what_it_is(
    spec: dict[str, Any], keys: list[tuple[str, str, str]], named: str
) -> None:
    fake = FakeClient({"DescribeTable": lambda **p: _described(keys)})
    dynamo = Dynamo(CONFIG, fake, sleep=lambda s: None)
    for open_it in (
        lambda: ensure_table(dynamo, "T-x", spec, sleep=lambda s: None),
        lambda: require_table(dynamo, "T-x", spec),
    ):
        with pytest.raises(errors.IncompatibleTableError) as info:
            open_it()
        assert named in str(info.value) and "T-x" in str(info.value)
    assert "CreateTable" not in fake.ops()


def test_a_table_with_this_projects_key_opens() -> None:
    keys = [("PK", "HASH", "S"), ("SK", "RANGE", "B")]
    fake = FakeClient({"DescribeTable": lambda **p: _described(keys)})
    dynamo = Dynamo(CONFIG, fake, sleep=lambda s: None)
    assert ensure_table(dynamo, "T-x", KV_TABLE_SPEC, sleep=lambda s: None) is False
