"""The KV store on DynamoDB Local: the shared contract, plus what only the real thing shows —
lazy pagination over > 1 MB, DynamoDB's own size counting at the boundary, request shapes and
metrics."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from storage import (
    MAX_ITEM_BYTES,
    Dynamo,
    DynamoConfig,
    DynamoKvStore,
    DynamoNamespacedStore,
    errors,
    make_client,
)
from tests.contract_kv import KvContract, kv_item_overhead
from tests.doubles import RecordingClient, calls_of, metric


class TestDynamoKvContract(KvContract):
    @pytest.fixture
    def stores(
        self, dynamo_config: DynamoConfig, unique: str
    ) -> tuple[DynamoNamespacedStore, DynamoNamespacedStore]:
        alice = DynamoNamespacedStore(dynamo_config, f"alice{unique}")
        return alice, alice.for_user(f"bob{unique}")

    @pytest.fixture
    def ns_name(self, stores: tuple[DynamoNamespacedStore, Any], unique: str) -> Iterator[str]:
        name = f"kv{unique}"
        yield name
        stores[0].delete_namespace(name)


@pytest.fixture
def recorded(
    dynamo_config: DynamoConfig, unique: str
) -> Iterator[tuple[DynamoKvStore, RecordingClient]]:
    """A fresh namespace, opened through a client that records every call."""
    client = RecordingClient(make_client(dynamo_config))
    store = DynamoNamespacedStore(dynamo_config, "u", dynamo=Dynamo(dynamo_config, client))
    kv = store.open_namespace(f"rec{unique}")
    client.clear()
    yield kv, client
    store.delete_namespace(f"rec{unique}")


def test_scan_prefix_pages_lazily_over_more_than_a_megabyte(
    recorded: tuple[DynamoKvStore, RecordingClient],
) -> None:
    kv, client = recorded
    value = b"\xab" * 60_000
    items = [(b"big/%03d" % i, value) for i in range(45)]  # ~2.7 MB: three 1 MB pages or more
    kv.batch_put(items)
    client.clear()
    it = kv.scan_prefix(b"big/")
    first = next(it)
    assert first == items[0]
    assert client.ops() == ["Query"]  # the first item came before any further page
    rest = list(it)
    assert [first, *rest] == items
    queries = client.params("Query")
    assert len(queries) >= 3
    assert all("ExclusiveStartKey" in q for q in queries[1:])
    assert "Scan" not in client.ops()


def test_keys_only_reads_transfer_no_values(
    recorded: tuple[DynamoKvStore, RecordingClient],
) -> None:
    kv, client = recorded
    kv.put(b"k", b"v" * 1000)
    client.clear()
    assert kv.exists(b"k") and list(kv.scan_keys()) == [b"k"]
    get, query = client.params("GetItem")[0], client.params("Query")[0]
    projected = [get["ProjectionExpression"], *get.get("ExpressionAttributeNames", {}).values()]
    assert not any("Value" in p for p in projected)
    assert query["ProjectionExpression"] == "SK"
    # ... and what DynamoDB sends back has no value in it
    raw = kv.dynamo.call(
        "GetItem",
        kv.table,
        Key={"PK": {"S": "u"}, "SK": {"B": b"k"}},
        **{k: v for k, v in get.items() if k not in ("TableName", "Key")},
    )
    assert "Value" not in raw["Item"]


def test_the_400_kb_boundary_is_where_dynamodb_puts_it(
    recorded: tuple[DynamoKvStore, RecordingClient],
) -> None:
    kv, client = recorded
    fits = b"f" * (MAX_ITEM_BYTES - kv_item_overhead("u", b"edge"))
    kv.put(b"edge", fits)
    assert kv.get(b"edge") == fits
    client.clear()
    over = fits + b"f"
    with pytest.raises(errors.ItemTooLargeError) as info:
        kv.put(b"edge", over)
    assert client.ops() == []  # refused before any call
    assert "'edge'" in str(info.value) and f"{MAX_ITEM_BYTES + 1} bytes" in str(info.value)
    # ... and DynamoDB itself refuses exactly that item: our count is DynamoDB's
    with pytest.raises(errors.ValidationError) as raw:
        kv.dynamo.call(
            "PutItem",
            kv.table,
            b"edge",
            Item={"PK": {"S": "u"}, "SK": {"B": b"edge"}, "Value": {"B": over}},
        )
    assert raw.value.code == "ValidationException"


@pytest.mark.parametrize(
    "number", ["0", "1", "100", "-5", "1.5", "0.001", "12345678901234567890", "1E+5"]
)
def test_number_sizes_agree_with_dynamodb(
    recorded: tuple[DynamoKvStore, RecordingClient], number: str
) -> None:
    from storage.limits import item_size

    kv, _ = recorded
    base: dict[str, Any] = {
        "PK": {"S": "u"},
        "SK": {"B": b"n"},
        "Num": {"N": number},
        "Value": {"B": b""},
    }
    pad = MAX_ITEM_BYTES - item_size(base)
    kv.dynamo.call("PutItem", kv.table, Item={**base, "Value": {"B": b"x" * pad}})
    with pytest.raises(errors.ValidationError):
        kv.dynamo.call("PutItem", kv.table, Item={**base, "Value": {"B": b"x" * (pad + 1)}})


def test_key_length_limits_are_checked_before_any_call(
    recorded: tuple[DynamoKvStore, RecordingClient],
) -> None:
    kv, client = recorded
    kv.put(b"\xff" * 1024, b"v")
    assert kv.get(b"\xff" * 1024) == b"v"
    client.clear()
    for op in (
        lambda: kv.put(b"\xff" * 1025, b"v"),
        lambda: kv.get(b"\xff" * 1025),
        lambda: kv.put(b"", b"v"),
        lambda: kv.exists(b""),
    ):
        with pytest.raises(errors.InvalidKeyError):
            op()
    assert client.ops() == []


def test_metrics_latency_by_operation_and_table_and_errors_by_code(
    recorded: tuple[DynamoKvStore, RecordingClient],
) -> None:
    kv, _ = recorded
    table = kv.table
    before = {op: calls_of(op, table) for op in ("PutItem", "GetItem", "Query", "DeleteItem")}
    kv.put(b"k", b"v", seq=2)
    kv.get(b"k")
    list(kv.scan_prefix(b""))
    kv.delete(b"k")
    for op in before:
        assert calls_of(op, table) == before[op] + 1, op
    assert (
        metric(
            "datafold_dynamodb_request_seconds_bucket", operation="GetItem", table=table, le="+Inf"
        )
        >= 1
    )
    assert metric("datafold_dynamodb_request_seconds_sum", operation="GetItem", table=table) > 0

    code = "ConditionalCheckFailedException"
    errs = metric("datafold_dynamodb_errors_total", operation="PutItem", table=table, code=code)
    kv.put(b"s", b"v", seq=5)
    with pytest.raises(errors.ConditionFailedError) as info:
        kv.put(b"s", b"old", seq=4)
    assert (
        metric("datafold_dynamodb_errors_total", operation="PutItem", table=table, code=code)
        == errs + 1
    )
    assert str(info.value).startswith(f"PutItem on table '{table}', key 's': [{code}]")


def test_batch_outcomes_are_counted(recorded: tuple[DynamoKvStore, RecordingClient]) -> None:
    kv, _ = recorded

    def outcome(name: str) -> float:
        return metric("datafold_batch_items_total", table=kv.table, outcome=name)

    written, deleted, rejected = outcome("written"), outcome("deleted"), outcome("rejected")
    batches = calls_of("BatchWriteItem", kv.table)
    kv.batch_put(
        [(b"k%02d" % i, b"v") for i in range(30)] + [(b"", b"bad")], raise_on_incomplete=False
    )
    kv.batch_delete([b"k%02d" % i for i in range(10)])
    assert outcome("written") == written + 30
    assert outcome("deleted") == deleted + 10
    assert outcome("rejected") == rejected + 1
    assert calls_of("BatchWriteItem", kv.table) == batches + 3
    assert metric("datafold_dynamodb_consumed_wcu_total", table=kv.table) >= 40
