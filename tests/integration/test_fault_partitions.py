"""The fault proxy's partition-key limits against DynamoDB Local, and the throttling reasons they
send reaching `storage.Dynamo` by both its paths (botocore's client and the wire writer).

The proxy runs on a clock that only the test moves, so what each partition admits is exact.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from botocore.exceptions import ClientError

from storage import Dynamo, DynamoConfig, errors, make_client
from tests.faults import FaultConfig, FaultProxy, item_size, write_units

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KEY_RANGE = "TableWriteKeyRangeThroughputExceeded"
PTEE = "ProvisionedThroughputExceededException"
BIG = "x" * 9_900  # an item of 10 WCU


@pytest.fixture(scope="module")
def table(dynamo_config: DynamoConfig) -> Iterator[str]:
    """A table of this module's own with the project's key (PK, SK), deleted afterwards."""
    client = make_client(dynamo_config)
    name = f"{dynamo_config.table_prefix}-parts-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "PK", "KeyType": "HASH"},
            {"AttributeName": "SK", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "PK", "AttributeType": "S"},
            {"AttributeName": "SK", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=name)
    yield name
    client.delete_table(TableName=name)


def put(user: str, i: int, value: str = "v") -> dict[str, Any]:
    return {"PutRequest": {"Item": {"PK": {"S": user}, "SK": {"S": f"{i:05d}"}, "V": {"S": value}}}}


def stored(dynamo_config: DynamoConfig, table: str, user: str) -> int:
    pages = (
        make_client(dynamo_config)
        .get_paginator("query")
        .paginate(
            TableName=table,
            KeyConditionExpression="PK = :u",
            ExpressionAttributeValues={":u": {"S": user}},
            Select="COUNT",
            ConsistentRead=True,
        )
    )
    return sum(page["Count"] for page in pages)


def test_two_users_writing_at_once_each_get_their_partition_rate(
    dynamo_config: DynamoConfig, table: str
) -> None:
    assert write_units(item_size(put("u", 0, BIG)["PutRequest"]["Item"])) == 10
    now = [0.0]
    config = FaultConfig(capacity_wcu=3000, partition_wcu=1000)
    users = [f"alice-{uuid.uuid4().hex[:6]}", f"bob-{uuid.uuid4().hex[:6]}"]
    with FaultProxy(dynamo_config.endpoint_url or "", config=config, clock=lambda: now[0]) as p:
        cfg = replace(dynamo_config, endpoint_url=p.endpoint_url)
        client = make_client(cfg)  # botocore's own retries off: every refusal reaches us
        seen: dict[str, list[str]] = {user: [] for user in users}

        def offer(user: str, start: int) -> None:
            """24-item batches (240 WCU) until one is refused whole; what each call got."""
            for j in range(start, start + 1000, 24):
                batch = [put(user, i, BIG) for i in range(j, j + 24)]
                try:
                    out = client.batch_write_item(RequestItems={table: batch})
                except ClientError as exc:
                    assert exc.response["Error"]["Code"] == PTEE
                    reasons = exc.response["ThrottlingReasons"]  # type: ignore[typeddict-item]
                    seen[user].append(",".join(r["reason"] for r in reasons))
                    return
                left = out.get("UnprocessedItems", {}).get(table, [])
                assert left == batch[24 - len(left) :]  # the rest, in order
                seen[user].append(f"{24 - len(left)} written")

        def both(start: int) -> None:
            threads = [threading.Thread(target=offer, args=(u, start)) for u in users]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)

        both(0)  # the burst: 1 s of 1,000 WCU/s = 100 items each
        for user in users:
            assert seen[user] == ["24 written"] * 4 + ["4 written", KEY_RANGE]
            seen[user].clear()
        now[0] += 0.5  # half a second more for each: 500 WCU = 50 items
        both(10_000)
        for user in users:
            assert seen[user] == ["24 written", "24 written", "2 written", KEY_RANGE]
        stats = p.stats()
    for user in users:
        assert stats.partition(table, user, "wcu_admitted") == 1500
        assert stats.partition(table, user, "items_unprocessed") == 20 + 22
        assert stored(dynamo_config, table, user) == 150
    assert stats.reason(KEY_RANGE) == 4 and stats.table(table, "wcu_admitted") == 3000
    assert stats.table(table, "items_unprocessed_partition") == 2 * (20 + 22)


@pytest.mark.parametrize("fast_writes", [True, False])
def test_throttled_error_names_the_limit_by_either_path(
    dynamo_config: DynamoConfig, table: str, fast_writes: bool
) -> None:
    now = [0.0]
    config = FaultConfig(capacity_wcu=2, partition_wcu=1, refuse_whole=True)
    with FaultProxy(dynamo_config.endpoint_url or "", config=config, clock=lambda: now[0]) as p:
        cfg = replace(
            dynamo_config, endpoint_url=p.endpoint_url, fast_writes=fast_writes, max_attempts=2
        )
        dynamo = Dynamo(cfg, sleep=lambda s: None)
        assert (dynamo.wire is not None) is fast_writes
        user = f"u-{uuid.uuid4().hex[:6]}"
        dynamo.call("BatchWriteItem", table, RequestItems={table: [put(user, 0)]})
        with pytest.raises(errors.ThrottledError) as hot:
            dynamo.call("BatchWriteItem", table, RequestItems={table: [put(user, 1)]})
        assert hot.value.code == PTEE and hot.value.reasons == (KEY_RANGE,)
        other = f"v-{uuid.uuid4().hex[:6]}"
        dynamo.call("BatchWriteItem", table, RequestItems={table: [put(other, 0)]})
        p.configure(on_demand=True)  # the table's 2 WCU are spent: the table limit refuses
        with pytest.raises(errors.ThrottledError) as full:
            dynamo.call("BatchWriteItem", table, RequestItems={table: [put(f"w{user}", 0)]})
        assert full.value.code == "ThrottlingException"
        assert full.value.reasons == ("TableWriteMaxOnDemandThroughputExceeded",)
        stats = p.stats()
    assert stats.reason(KEY_RANGE) == 2 and stats.table(table, "requests_throttled") == 4


def test_refuse_whole_off_returns_everything_unprocessed(
    dynamo_config: DynamoConfig, table: str
) -> None:
    now = [0.0]
    config = FaultConfig(partition_wcu=1, refuse_whole=False)
    with FaultProxy(dynamo_config.endpoint_url or "", config=config, clock=lambda: now[0]) as p:
        client = make_client(replace(dynamo_config, endpoint_url=p.endpoint_url))
        user = f"u-{uuid.uuid4().hex[:6]}"
        batch = [put(user, i) for i in range(3)]
        assert client.batch_write_item(RequestItems={table: batch})["UnprocessedItems"] == {
            table: batch[1:]
        }
        out = client.batch_write_item(RequestItems={table: batch[1:]})
        assert out["UnprocessedItems"] == {table: batch[1:]} and "ThrottlingReasons" not in out
    assert stored(dynamo_config, table, user) == 1
