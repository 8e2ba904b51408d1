"""The BatchWriteItem wire path against DynamoDB Local: what it writes reads back byte for byte
through botocore, and DynamoDB's answers (unprocessed items, throttling, a missing table, a
refused item, a dropped connection) reach the batch writer exactly as botocore's would."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace

import pytest

from storage import BatchWriter, Dynamo, DynamoConfig, DynamoNamespacedStore, errors, make_client
from storage.kv import DynamoKvStore
from tests.faults import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def kv(dynamo_config: DynamoConfig, unique: str) -> Iterator[DynamoKvStore]:
    store = DynamoNamespacedStore(dynamo_config, f"wire{unique}")
    yield store.open_namespace("wire")
    store.delete_namespace("wire")


def botocore_get(dynamo_config: DynamoConfig, kv: DynamoKvStore, key: bytes) -> bytes | None:
    """Read with a plain botocore client (no part of the wire path)."""
    item = (
        make_client(dynamo_config)
        .get_item(
            TableName=kv.table, Key={"PK": {"S": kv.user_id}, "SK": {"B": key}}, ConsistentRead=True
        )
        .get("Item")
    )
    return bytes(item["Value"]["B"]) if item else None


def test_binary_keys_and_values_round_trip(dynamo_config: DynamoConfig, kv: DynamoKvStore) -> None:
    assert kv.dynamo.wire is not None, "the wire path is the default"
    rng = random.Random(7)
    items = [
        (bytes([i]) + rng.randbytes(rng.randint(0, 40)), rng.randbytes(rng.randint(1, 900)))
        for i in range(256)
    ]
    items.append((b"\xff" * 1024, b"\x00" * 390_000))  # largest key, a value near the limit
    result = kv.batch_put(items)
    assert result.written == len(items) and result.complete
    for key, value in items[::17] + items[-1:]:
        assert botocore_get(dynamo_config, kv, key) == value
    assert dict(kv.scan_prefix(b"")) == dict(items)


def test_unprocessed_items_and_throttling_through_a_real_http_exchange(
    dynamo_config: DynamoConfig, kv: DynamoKvStore
) -> None:
    with FaultProxy(dynamo_config.endpoint_url or "", rng=random.Random(11)) as proxy:
        cfg = replace(dynamo_config, endpoint_url=proxy.endpoint_url, max_attempts=12)
        dynamo = Dynamo(cfg, sleep=lambda s: None)
        assert dynamo.wire is not None
        items = [(b"k%04d" % i, b"v%d" % i) for i in range(200)]
        ops = [kv.put_op(k, v) for k, v in items]

        proxy.configure(partial_batch_rate={"BatchWriteItem": 0.5})
        raw = dynamo.wire.batch_write_item(RequestItems={kv.table: [o.request for o in ops[:25]]})
        left = raw["UnprocessedItems"][kv.table]
        assert 0 < len(left) < 25 and all(r in [o.request for o in ops] for r in left)

        proxy.configure(
            partial_batch_rate={"BatchWriteItem": 0.5}, throttle_rate={"BatchWriteItem": 0.2}
        )
        result = BatchWriter(dynamo, threads=4, rounds=20, sleep=lambda s: None).write(
            kv.table, ops
        )
        assert result.complete and result.written == 200 and result.retry_rounds > 0
        stats = proxy.stats()
        assert stats.op("BatchWriteItem", "throttling") > 0

        proxy.configure(partial_batch_rate={}, throttle_rate={})
        with pytest.raises(errors.TableNotFoundError) as missing:
            dynamo.call(
                "BatchWriteItem", "no-such-table", RequestItems={"no-such-table": [ops[0].request]}
            )
        assert missing.value.code == "ResourceNotFoundException"
    assert dict(kv.scan_prefix(b"")) == dict(items)


def test_a_poison_item_is_isolated_by_dynamodbs_own_refusal(kv: DynamoKvStore) -> None:
    good = [kv.put_op(b"g%02d" % i, b"v") for i in range(24)]
    bad = kv.put_op(b"poison", b"v")
    # Made too large behind the pre-flight check's back: DynamoDB refuses it itself.
    bad.request["PutRequest"]["Item"]["Extra"] = {"B": b"x" * 410_000}
    result = BatchWriter(kv.dynamo).write(kv.table, [*good[:10], bad, *good[10:]])
    assert result.written == 24 and [r.op.key for r in result.rejected] == [b"poison"]
    assert result.rejected[0].error.code == "ValidationException"


def test_a_refused_connection_is_a_transient_error(dynamo_config: DynamoConfig) -> None:
    dynamo = Dynamo(
        replace(
            dynamo_config, endpoint_url="http://127.0.0.1:9", max_attempts=2, retry_max_seconds=1
        ),
        sleep=lambda s: None,
    )
    with pytest.raises(errors.TransientError) as info:
        dynamo.call(
            "BatchWriteItem",
            "t",
            RequestItems={"t": [{"DeleteRequest": {"Key": {"PK": {"S": "u"}, "SK": {"B": b"k"}}}}]},
        )
    assert info.value.code == "ConnectionError"
