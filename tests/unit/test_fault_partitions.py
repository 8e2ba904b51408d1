"""The fault proxy's capacity model with per-partition-key limits, on a fake clock (no sockets).

A write must fit its partition key's bucket and its table's; the limit that refused a whole call
is named in ``ThrottlingReasons`` as DynamoDB names it; a batch only partly refused comes back
with the rest unprocessed and no reason.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.faults import FaultConfig
from tests.faults.__main__ import build_parser, config_changes
from tests.faults.capacity import PARTITION, TABLE, CapacityModel, partition_of
from tests.faults.engine import FaultEngine
from tests.faults.protocol import Response

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t"
KEY_RANGE = "TableWriteKeyRangeThroughputExceeded"
PROVISIONED = "TableWriteProvisionedThroughputExceeded"


def put(user: str, i: int) -> dict[str, Any]:
    """A 1 WCU put of `user`'s item `i`."""
    return {"PutRequest": {"Item": {"PK": {"S": user}, "SK": {"S": f"{i}"}}}}


def batch(*requests: dict[str, Any]) -> bytes:
    return json.dumps({"RequestItems": {"t": list(requests)}}).encode()


def body(response: Response | None) -> dict[str, Any]:
    assert response is not None
    decoded: dict[str, Any] = json.loads(response.body)
    return decoded


def engine(now: list[float], **config: Any) -> FaultEngine:
    return FaultEngine(FaultConfig(**config), clock=lambda: now[0], sleep=lambda s: None)


def test_two_users_each_get_their_partition_rate_plus_a_second_of_burst() -> None:
    now = [0.0]
    model = CapacityModel(FaultConfig(capacity_wcu=3000, partition_wcu=1000), lambda: now[0])
    admitted = {"alice": 0, "bob": 0}
    for _ in range(100):  # both users offer 25-item batches of 1 WCU, interleaved
        for user in admitted:
            admitted[user] += model.decide([("t", user, 1)] * 25).count(None)
    assert admitted == {"alice": 1000, "bob": 1000}  # the burst: 1 s of 1,000 WCU/s each
    for _ in range(20):  # 2 s of 0.1 s steps: each user gets its 1,000 WCU/s, no more
        now[0] += 0.1
        for user in admitted:
            admitted[user] += model.decide([("t", user, 1)] * 200).count(None)
    assert admitted == {"alice": 3000, "bob": 3000}  # the table's 3,000 never binds


def test_the_partition_is_checked_first_and_neither_bucket_pays_for_a_refusal() -> None:
    now = [0.0]
    model = CapacityModel(FaultConfig(capacity_wcu=3, partition_wcu=2), lambda: now[0])
    assert model.decide([("t", "a", 1)] * 3) == [None, None, PARTITION]
    # "a" is out, so "b" still finds the table's last unit; then the table is out.
    assert model.decide([("t", "a", 1), ("t", "b", 1), ("t", "b", 1)]) == [
        PARTITION,
        None,
        TABLE,
    ]
    now[0] += 1.0  # both refill: a refused write took nothing from the bucket that admitted it
    assert model.decide([("t", "b", 2), ("t", "c", 1), ("t", None, 1)]) == [None, None, TABLE]
    assert model.admit([("u", 5)]) == [True]  # a table with no limit at all


def test_unset_partition_limit_keeps_table_only_behaviour() -> None:
    now = [0.0]
    model = CapacityModel(FaultConfig(capacity_wcu={"t": 10}, burst_seconds=2), lambda: now[0])
    assert sum(model.admit([("t", 1)] * 25)) == 20
    assert model.decide([("t", "a", 1)]) == [TABLE]
    assert not CapacityModel(FaultConfig(), lambda: 0.0).limited("t")
    assert CapacityModel(FaultConfig(partition_wcu={"t": 5}), lambda: 0.0).limited("t")


def test_partition_of_reads_item_or_key() -> None:
    assert partition_of({"Item": {"PK": {"S": "alice"}, "SK": {"S": "x"}}}, "PK") == "alice"
    assert partition_of({"Key": {"PK": {"B": "AAE="}}}, "PK") == "AAE="
    assert partition_of({"Item": {"pk": {"S": "a"}}}, "PK") is None


def test_a_single_write_refused_names_the_key_range_with_the_table_arn() -> None:
    now = [0.0]
    eng = engine(now, capacity_wcu=3000, partition_wcu=1)
    item = json.dumps({"TableName": "t", "Item": {"PK": {"S": "a"}, "SK": {"S": "1"}}}).encode()
    assert eng.plan("PutItem", item).response is None
    refused = eng.plan("PutItem", item).response
    assert refused is not None and refused.status == 400
    assert body(refused)["__type"].endswith("#ProvisionedThroughputExceededException")
    assert body(refused)["ThrottlingReasons"] == [{"reason": KEY_RANGE, "resource": ARN}]
    stats = eng.stats.snapshot()
    assert stats.reason(KEY_RANGE) == 1 and stats.table("t", "requests_throttled") == 1
    assert stats.partition("t", "a", "requests_throttled") == 1
    assert stats.partition("t", "a", "wcu_admitted") == 1
    assert stats.to_dict()["reasons"] == {KEY_RANGE: 1}


def test_a_batch_of_which_nothing_fits_is_refused_whole_naming_each_limit() -> None:
    now = [0.0]
    eng = engine(now, capacity_wcu=1, partition_wcu=1, region="eu-west-1")
    assert eng.plan("BatchWriteItem", batch(put("a", 0))).response is None
    refused = body(eng.plan("BatchWriteItem", batch(put("a", 1), put("b", 1))).response)
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/t"
    assert refused["ThrottlingReasons"] == [
        {"reason": KEY_RANGE, "resource": arn},
        {"reason": PROVISIONED, "resource": arn},
    ]
    assert eng.stats.snapshot().reasons == {KEY_RANGE: 1, PROVISIONED: 1}


def test_a_batch_partly_refused_returns_the_rest_unprocessed_without_a_reason() -> None:
    now = [0.0]
    eng = engine(now, capacity_wcu=3000, partition_wcu=2)
    requests = [put("a", 0), put("a", 1), put("a", 2), put("b", 0)]
    plan = eng.plan("BatchWriteItem", batch(*requests))
    assert plan.response is None and plan.kept_back == [("t", put("a", 2))]
    forwarded = json.loads(plan.body)["RequestItems"]["t"]
    assert forwarded == [put("a", 0), put("a", 1), put("b", 0)]
    upstream = Response(200, "OK", [], b"{}")
    answer = body(eng.finish(plan, upstream))
    assert answer == {"UnprocessedItems": {"t": [put("a", 2)]}}  # no reason anywhere
    stats = eng.stats.snapshot()
    assert stats.table("t", "items_unprocessed_partition") == 1 and not stats.reasons
    assert stats.partition("t", "a", "items_admitted") == 2
    assert stats.partition("t", "a", "items_unprocessed") == 1


def test_without_refuse_whole_nothing_fitting_comes_back_all_unprocessed() -> None:
    now = [0.0]
    eng = engine(now, capacity_wcu=1, refuse_whole=False)
    assert eng.plan("BatchWriteItem", batch(put("a", 0))).response is None
    plan = eng.plan("BatchWriteItem", batch(put("a", 1), put("b", 1)))
    assert plan.response is not None and plan.response.status == 200
    assert body(plan.response) == {"UnprocessedItems": {"t": [put("a", 1), put("b", 1)]}}
    item = json.dumps({"TableName": "t", "Item": {"PK": {"S": "a"}}}).encode()
    single = eng.plan("PutItem", item).response  # a single write can only be refused
    assert single is not None and single.status == 400


def test_on_demand_table_refusals_are_throttling_exceptions() -> None:
    now = [0.0]
    eng = engine(now, capacity_wcu=1, partition_wcu=5, on_demand=True)
    eng.plan("BatchWriteItem", batch(put("a", 0)))
    refused = body(eng.plan("BatchWriteItem", batch(put("a", 1))).response)
    assert refused["__type"].endswith("#ThrottlingException")
    assert refused["throttlingReasons"] == [
        {"reason": "TableWriteMaxOnDemandThroughputExceeded", "resource": ARN}
    ]


def test_new_fields_are_validated_and_have_flags() -> None:
    for bad in (
        {"partition_wcu": -1},
        {"refuse_whole": "yes"},
        {"on_demand": 1},
        {"region": ""},
        {"partition_attribute": 3},
    ):
        with pytest.raises(ValueError):
            FaultConfig.from_dict(bad)
    assert FaultConfig(partition_wcu={"t": 1000, "*": 0}).partition_wcu_for("u") is None
    args = build_parser().parse_args(
        [
            "--upstream",
            "http://x",
            "--partition-wcu",
            "t=1000",
            "--refuse-whole",
            "false",
            "--on-demand",
            "true",
            "--region",
            "eu-west-1",
        ]
    )
    assert config_changes(args) == {
        "partition_wcu": {"t": 1000.0},
        "refuse_whole": False,
        "on_demand": True,
        "region": "eu-west-1",
    }
    defaults = FaultConfig()
    assert (defaults.partition_wcu, defaults.refuse_whole, defaults.burst_seconds) == (
        None,
        True,
        1.0,
    )
