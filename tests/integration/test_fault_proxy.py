"""The fault proxy (tests/faults) against a real DynamoDB Local.

Each fault is checked at its configured rate through a real botocore client with retries off, so
every injected fault reaches the test. The proxy's rng is seeded and requests are sequential, so
counts repeat from run to run; the tolerances (5 standard deviations) hold for any seed.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from tests.faults import FaultConfig, FaultProxy, item_size, write_units
from tests.faults.capacity import CapacityModel
from tests.faults.config import parse_rate
from tests.faults.protocol import merge_unprocessed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
else:
    DynamoDBClient = Any

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dynamodb_endpoint() -> str:
    """DynamoDB Local's URL (env DATAFOLD_DYNAMODB_ENDPOINT); fails if nothing listens there."""
    url = os.environ.get("DATAFOLD_DYNAMODB_ENDPOINT", "http://127.0.0.1:8000")
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), 2).close()
    except OSError:
        pytest.fail(f"DynamoDB Local not reachable at {url}: run scripts/dynamodb-local start")
    return url


def make_client(endpoint: str) -> DynamoDBClient:
    """A botocore client that never retries, so each injected fault reaches the caller."""
    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=os.environ.get("DATAFOLD_DYNAMODB_REGION", "us-east-1"),
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
        config=Config(retries={"total_max_attempts": 1}, connect_timeout=5, read_timeout=20),
    )


@pytest.fixture(scope="module")
def direct(dynamodb_endpoint: str) -> DynamoDBClient:
    return make_client(dynamodb_endpoint)


@pytest.fixture(scope="module")
def table(direct: DynamoDBClient) -> Iterator[str]:
    """A table of this module's own (hash key ``pk``), deleted afterwards."""
    name = f"faultproxy-test-{uuid.uuid4().hex[:12]}"
    direct.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    direct.get_waiter("table_exists").wait(TableName=name)
    yield name
    direct.delete_table(TableName=name)


@pytest.fixture
def proxy(dynamodb_endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy(dynamodb_endpoint, rng=random.Random(20240601)) as running:
        yield running


@pytest.fixture
def client(proxy: FaultProxy) -> DynamoDBClient:
    return make_client(proxy.endpoint_url)


def key(prefix: str, i: int) -> dict[str, Any]:
    return {"pk": {"S": f"{prefix}-{i}"}}


def put(prefix: str, i: int, size: int = 10) -> Any:
    return {"PutRequest": {"Item": {**key(prefix, i), "v": {"S": "x" * size}}}}


def exists(direct: DynamoDBClient, table: str, k: dict[str, Any]) -> bool:
    return "Item" in direct.get_item(TableName=table, Key=k, ConsistentRead=True)


def outcome(call: Callable[..., Any], **kwargs: Any) -> str:
    """Call; "ok", the botocore error code with HTTP status, or "connection" (socket dropped)."""
    try:
        call(**kwargs)
    except ClientError as exc:
        status = exc.response["ResponseMetadata"]["HTTPStatusCode"]
        return f"{exc.response['Error']['Code']}/{status}"
    except ConnectionClosedError:
        return "connection"
    return "ok"


def near(seen: int, n: int, rate: float) -> bool:
    """`seen` out of `n` is within 5 standard deviations of n * rate."""
    return abs(seen - n * rate) <= 5 * math.sqrt(n * rate * (1 - rate)) + 1


def test_forwards_signed_requests_transparently(
    proxy: FaultProxy, client: DynamoDBClient, direct: DynamoDBClient, table: str
) -> None:
    client.put_item(TableName=table, Item={**key("plain", 1), "v": {"B": b"\x00\xff"}})
    assert direct.get_item(TableName=table, Key=key("plain", 1))["Item"]["v"]["B"] == b"\x00\xff"
    assert client.describe_table(TableName=table)["Table"]["TableName"] == table
    # An unsigned request gets DynamoDB Local's own answer: the proxy adds and drops nothing.
    req = urllib.request.Request(
        proxy.endpoint_url + "/",
        data=b"{}",
        method="POST",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
        },
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.code == 400 and b"MissingAuthenticationToken" in err.value.read()
    assert proxy.stats().op("PutItem", "forwarded") == 1


def test_error_faults_happen_at_their_rates(
    proxy: FaultProxy, client: DynamoDBClient, table: str
) -> None:
    rates = {
        "ThrottlingException/400": 0.3,
        "ProvisionedThroughputExceededException/400": 0.05,
        "RequestLimitExceeded/400": 0.05,
        "InternalServerError/500": 0.05,
        "ServiceUnavailable/503": 0.05,
    }
    proxy.configure(
        throttle_rate=0.3,
        provisioned_rate=0.05,
        request_limit_rate=0.05,
        internal_error_rate=0.05,
        unavailable_rate=0.05,
    )
    n = 1000
    seen = Counter(outcome(client.get_item, TableName=table, Key=key("none", 0)) for _ in range(n))
    print("error faults seen in", n, "GetItem:", dict(seen))
    assert set(seen) <= {*rates, "ok"}
    for code, rate in rates.items():
        assert near(seen[code], n, rate), (code, seen[code])
    stats = proxy.stats()
    assert stats.op("GetItem", "throttling") == seen["ThrottlingException/400"]
    assert stats.op("GetItem", "service_unavailable") == seen["ServiceUnavailable/503"]
    assert stats.op("GetItem", "forwarded") == seen["ok"]


def test_rate_maps_apply_per_operation(
    proxy: FaultProxy, client: DynamoDBClient, table: str
) -> None:
    proxy.configure(throttle_rate={"PutItem": 0.5}, unavailable_rate={"*": 0.1, "PutItem": 0})
    n = 300
    puts = Counter(outcome(client.put_item, TableName=table, Item=key("map", i)) for i in range(n))
    gets = Counter(outcome(client.get_item, TableName=table, Key=key("map", 0)) for _ in range(n))
    print("rate map: PutItem", dict(puts), "GetItem", dict(gets))
    assert set(puts) == {"ok", "ThrottlingException/400"} and near(
        puts["ThrottlingException/400"], n, 0.5
    )
    assert set(gets) == {"ok", "ServiceUnavailable/503"} and near(
        gets["ServiceUnavailable/503"], n, 0.1
    )


def test_same_seed_same_faults(dynamodb_endpoint: str, table: str) -> None:
    runs = []
    for _ in range(2):
        config = FaultConfig(throttle_rate=0.3, internal_error_rate=0.2)
        with FaultProxy(dynamodb_endpoint, config=config, rng=random.Random(7)) as p:
            c = make_client(p.endpoint_url)
            runs.append(
                [outcome(c.get_item, TableName=table, Key=key("seed", 0)) for _ in range(40)]
            )
    assert runs[0] == runs[1] and len(set(runs[0])) == 3


def test_connection_resets_are_connection_errors(
    proxy: FaultProxy, client: DynamoDBClient, direct: DynamoDBClient, table: str
) -> None:
    proxy.configure(reset_rate=0.2)
    n = 300
    seen = Counter(outcome(client.get_item, TableName=table, Key=key("none", 0)) for _ in range(n))
    print("resets seen in", n, "GetItem:", dict(seen))
    assert set(seen) == {"ok", "connection"} and near(seen["connection"], n, 0.2)
    assert proxy.stats().op("GetItem", "connection_reset") == seen["connection"]
    # Reset before forwarding: nothing written. Reset after: written, but the caller can't know.
    proxy.configure(reset_rate=1.0)
    assert outcome(client.put_item, TableName=table, Item=key("reset", 1)) == "connection"
    assert not exists(direct, table, key("reset", 1))
    proxy.configure(reset_rate=0.0, reset_after_rate=1.0)
    assert outcome(client.put_item, TableName=table, Item=key("reset", 2)) == "connection"
    assert exists(direct, table, key("reset", 2))
    proxy.configure(reset_after_rate=0.0)
    assert outcome(client.put_item, TableName=table, Item=key("reset", 3)) == "ok"


def test_drop_answers_forwards_exactly_the_next_n_calls_and_loses_their_answers(
    proxy: FaultProxy, client: DynamoDBClient, direct: DynamoDBClient, table: str
) -> None:
    proxy.drop_answers("PutItem", 2)
    assert proxy.pending_drops() == {"PutItem": 2}
    assert outcome(client.get_item, TableName=table, Key=key("drop", 0)) == "ok"  # other ops pass
    assert [outcome(client.put_item, TableName=table, Item=key("drop", i)) for i in range(3)] == [
        "connection",
        "connection",
        "ok",
    ]
    assert all(exists(direct, table, key("drop", i)) for i in range(3))  # all three landed
    assert proxy.pending_drops() == {}
    assert proxy.stats().op("PutItem", "connection_reset_after_forward") == 2
    proxy.drop_answers("PutItem", 1)
    proxy.drop_answers("PutItem", 0)  # disarms
    assert outcome(client.put_item, TableName=table, Item=key("drop", 3)) == "ok"
    with pytest.raises(ValueError):
        proxy.drop_answers("PutItem", -1)


def test_latency_is_added(dynamodb_endpoint: str, table: str) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    config = FaultConfig(latency_ms={"GetItem": 150}, latency_jitter_ms=100)
    with FaultProxy(dynamodb_endpoint, config=config, sleep=sleep) as p:
        c = make_client(p.endpoint_url)
        c.describe_table(TableName=table)  # warm the connection
        assert slept == []  # latency only for GetItem
        for _ in range(5):
            started = time.monotonic()
            c.get_item(TableName=table, Key=key("none", 0))
            assert time.monotonic() - started >= 0.15
    print("injected GetItem delays (s):", [round(s, 3) for s in slept])
    assert len(slept) == 5 and all(0.15 <= s <= 0.25 for s in slept)
    assert len({round(s, 4) for s in slept}) > 1  # jitter varies


def test_partial_batch_writes_only_forwarded_items(
    proxy: FaultProxy, client: DynamoDBClient, direct: DynamoDBClient, table: str
) -> None:
    direct.put_item(TableName=table, Item=key("gone", 0))
    proxy.configure(partial_batch_rate={"BatchWriteItem": 1.0}, partial_batch_fraction=0.4)
    requests = [put("partial", i) for i in range(24)] + [{"DeleteRequest": {"Key": key("gone", 0)}}]
    out = client.batch_write_item(RequestItems={table: requests}, ReturnConsumedCapacity="TOTAL")
    unprocessed = out["UnprocessedItems"][table]
    assert len(unprocessed) == 10 and out["ConsumedCapacity"][0]["TableName"] == table
    assert all(r in requests for r in unprocessed)
    for r in requests:
        written = r not in unprocessed
        if "PutRequest" in r:
            k = {"pk": r["PutRequest"]["Item"]["pk"]}
            assert exists(direct, table, k) == written
        else:
            assert exists(direct, table, key("gone", 0)) == (not written)
    stats = proxy.stats()
    assert stats.op("BatchWriteItem", "items_forwarded") == 15
    assert stats.op("BatchWriteItem", "items_kept_back") == 10
    # Everything kept back: 200, all unprocessed, upstream not called.
    proxy.configure(partial_batch_fraction=1.0)
    out = client.batch_write_item(RequestItems={table: [put("all", i) for i in range(5)]})
    assert len(out["UnprocessedItems"][table]) == 5
    assert not any(exists(direct, table, key("all", i)) for i in range(5))
    assert proxy.stats().op("BatchWriteItem", "forwarded") == 1
    # At a rate: about that share of batches come back partial.
    proxy.configure(partial_batch_rate={"BatchWriteItem": 0.3}, partial_batch_fraction=0.5)
    n = 200
    partial = sum(
        bool(
            client.batch_write_item(RequestItems={table: [put(f"rate{j}", i) for i in range(4)]})[
                "UnprocessedItems"
            ]
        )
        for j in range(n)
    )
    print("partial BatchWriteItem responses:", partial, "of", n)
    assert near(partial, n, 0.3)


def test_merge_keeps_upstream_unprocessed_and_capacity() -> None:
    upstream = {"UnprocessedItems": {"t": [put("u", 1)]}, "ConsumedCapacity": [{"x": 1}]}
    merged = merge_unprocessed(upstream, [("t", put("k", 2)), ("s", put("k", 3))])
    assert merged["UnprocessedItems"] == {"t": [put("u", 1), put("k", 2)], "s": [put("k", 3)]}
    assert merged["ConsumedCapacity"] == [{"x": 1}]


def test_capacity_mode_admits_the_configured_rate(
    proxy: FaultProxy, client: DynamoDBClient, direct: DynamoDBClient, table: str
) -> None:
    wcu, burst, seconds = 60.0, 1.0, 3.0
    proxy.configure(capacity_wcu={table: wcu}, burst_seconds=burst)
    size = 1500  # 2 WCU per item
    assert write_units(item_size(put("cap", 0, size)["PutRequest"]["Item"])) == 2
    written, throttled, started, j = 0, 0, time.monotonic(), 0
    while time.monotonic() - started < seconds:
        batch = [put(f"cap{j}", i, size) for i in range(25)]
        j += 1
        try:
            out = client.batch_write_item(RequestItems={table: batch})
            written += 25 - len(out["UnprocessedItems"].get(table, []))
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
            throttled += 1
            time.sleep(0.02)
    elapsed = time.monotonic() - started
    stats = proxy.stats()
    admitted = stats.table(table, "wcu_admitted")
    expected = wcu * (elapsed + burst)
    print(
        f"capacity: {admitted} WCU admitted in {elapsed:.2f}s at {wcu}/s (+{wcu * burst} burst"
        f" -> {admitted / expected:.2f} of expected); {throttled} batches throttled,"
        f" {stats.table(table, 'items_unprocessed')} items returned unprocessed"
    )
    assert 0.75 * expected <= admitted <= wcu * burst + wcu * elapsed + 2
    assert admitted == 2 * written == 2 * stats.table(table, "items_admitted")
    assert throttled == stats.table(table, "requests_throttled") and throttled > 0
    assert stats.table(table, "items_unprocessed") > 0
    pages = direct.get_paginator("scan").paginate(
        TableName=table,
        Select="COUNT",
        ConsistentRead=True,
        FilterExpression="begins_with(pk, :p)",
        ExpressionAttributeValues={":p": {"S": "cap"}},
    )
    assert sum(page["Count"] for page in pages) == written


def test_capacity_single_writes_and_empty_batches_throttle(
    dynamodb_endpoint: str, direct: DynamoDBClient, table: str
) -> None:
    now = [0.0]
    config = FaultConfig(capacity_wcu={table: 5}, burst_seconds=1)
    with FaultProxy(dynamodb_endpoint, config=config, clock=lambda: now[0]) as p:
        c = make_client(p.endpoint_url)
        seen = [outcome(c.put_item, TableName=table, Item=key("one", i)) for i in range(8)]
        assert seen == ["ok"] * 5 + ["ProvisionedThroughputExceededException/400"] * 3
        assert not exists(direct, table, key("one", 5))
        batch = [put("fit", i) for i in range(3)]
        assert outcome(c.batch_write_item, RequestItems={table: batch}) == (
            "ProvisionedThroughputExceededException/400"
        )
        now[0] += 0.2  # one WCU accrues
        out = c.batch_write_item(RequestItems={table: batch})
        assert out["UnprocessedItems"][table] == batch[1:]
        assert exists(direct, table, key("fit", 0)) and not exists(direct, table, key("fit", 1))
        stats = p.stats()
    assert stats.table(table, "wcu_admitted") == 6
    assert stats.table(table, "requests_throttled") == 4
    assert stats.table(table, "items_unprocessed") == 2


def test_control_endpoint_changes_config_at_runtime(
    proxy: FaultProxy, client: DynamoDBClient, table: str
) -> None:
    def call(method: str, path: str, payload: Any = None) -> Any:
        data = None if payload is None else json.dumps(payload).encode()
        req = urllib.request.Request(proxy.endpoint_url + path, data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def get() -> str:
        return outcome(client.get_item, TableName=table, Key=key("none", 0))

    assert get() == "ok"
    assert call("POST", "/__faults__", {"throttle_rate": 1.0})["throttle_rate"] == 1.0
    assert get() == "ThrottlingException/400" and proxy.config.throttle_rate == 1.0
    call("PUT", "/__faults__/config", {"unavailable_rate": {"GetItem": 1.0}})
    assert get() == "ServiceUnavailable/503" and proxy.config.throttle_rate == 0.0
    state = call("GET", "/__faults__")
    assert state["stats"]["operations"]["GetItem"]["service_unavailable"] == 1
    with pytest.raises(urllib.error.HTTPError) as err:
        call("POST", "/__faults__/config", {"throttle_rate": 2})
    assert err.value.code == 400 and "throttle_rate" in json.loads(err.value.read())["error"]
    call("POST", "/__faults__/config", {"unavailable_rate": 0})
    assert call("POST", "/__faults__/drop", {"operation": "GetItem", "count": 1}) == {"GetItem": 1}
    assert call("GET", "/__faults__")["drops"] == {"GetItem": 1}
    with pytest.raises(urllib.error.HTTPError) as err:
        call("POST", "/__faults__/drop", {"operation": "GetItem", "count": "x"})
    assert err.value.code == 400
    call("POST", "/__faults__/reset", {})  # also disarms the drop
    assert get() == "ok" and call("GET", "/__faults__/stats")["operations"]["GetItem"] == {
        "requests": 1,
        "forwarded": 1,
    }


def test_command_line(dynamodb_endpoint: str, table: str) -> None:
    cmd = [sys.executable, "-m", "tests.faults"]
    proc = subprocess.Popen(
        [
            *cmd,
            "--upstream",
            dynamodb_endpoint,
            "--port",
            "0",
            "--seed",
            "1",
            "--throttle-rate",
            "GetItem=1",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().split()[4]
        c = make_client(url)
        assert outcome(c.get_item, TableName=table, Key=key("none", 0)) == (
            "ThrottlingException/400"
        )
        shown = subprocess.run(
            [*cmd, "--control", url, "--throttle-rate", "0", "--drop-answers", "PutItem=1"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        )
        assert json.loads(shown.stdout)["config"]["throttle_rate"] == 0.0
        assert json.loads(shown.stdout)["drops"] == {"PutItem": 1}
        assert outcome(c.get_item, TableName=table, Key=key("none", 0)) == "ok"
        assert outcome(c.put_item, TableName=table, Item=key("cli-drop", 0)) == "connection"
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0 and '"throttling": 1' in out


def test_item_size_config_and_bucket_rules() -> None:
    item: dict[str, Any] = {
        "pk": {"S": "abc"},
        "n": {"N": "123.45"},
        "b": {"B": "AAECAwQ="},
        "ok": {"BOOL": True},
    }
    assert item_size(item) == (2 + 3) + (1 + 4) + (1 + 5) + (2 + 1)
    assert [write_units(s) for s in (0, 1024, 1025)] == [1, 1, 2]
    assert parse_rate("BatchWriteItem=0.3,*=0.1") == {"BatchWriteItem": 0.3, "*": 0.1}
    for bad in ({"throttle_rate": 0.6, "reset_rate": 0.5}, {"nope": 1}, {"throttle_rate": -1}):
        with pytest.raises(ValueError):
            FaultConfig.from_dict(bad)
    now = [0.0]
    model = CapacityModel(FaultConfig(capacity_wcu={"t": 10}, burst_seconds=2), lambda: now[0])
    assert sum(model.admit([("t", 1)] * 25)) == 20  # a full bucket: 2 s of 10 WCU/s
    now[0] += 0.5
    assert model.admit([("t", 2), ("t", 2), ("t", 2), ("u", 99)]) == [True, True, False, True]
    now[0] += 10
    assert model.admit([("t", 50), ("t", 1)]) == [True, False]  # too big: only from full
    now[0] += 3.0
    assert model.admit([("t", 1)]) == [False]  # still paying the debt (-30 + 30)
