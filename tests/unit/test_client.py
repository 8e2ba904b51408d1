"""The client: knobs reach botocore, botocore makes one attempt, our layer retries and meters."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from botocore.stub import Stubber

from storage import Dynamo, DynamoConfig, errors, make_client
from storage.retry import FullJitter
from tests.doubles import FakeClock, metric

CONFIG = DynamoConfig(region="us-east-1", endpoint_url="http://127.0.0.1:9", max_attempts=4)


def test_botocore_retries_are_set_explicitly_to_one_attempt() -> None:
    retries = make_client(CONFIG).meta.config.retries
    assert retries == {"mode": "standard", "total_max_attempts": 1}


def test_pool_size_and_timeouts_come_from_the_config() -> None:
    config = replace(CONFIG, max_connections=7, connect_timeout=1.25, read_timeout=4.5)
    for client in (make_client(config), Dynamo(config).client):
        bc = client.meta.config
        assert (bc.max_pool_connections, bc.connect_timeout, bc.read_timeout) == (7, 1.25, 4.5)
        assert client.meta.region_name == "us-east-1"
        assert client.meta.endpoint_url == "http://127.0.0.1:9"


def test_the_knobs_come_all_the_way_from_the_environment() -> None:
    config = DynamoConfig.from_env(
        {
            "DATAFOLD_DYNAMODB_REGION": "eu-west-1",
            "DATAFOLD_DYNAMODB_MAX_CONNECTIONS": "11",
            "DATAFOLD_DYNAMODB_CONNECT_TIMEOUT": "0.5",
            "DATAFOLD_DYNAMODB_READ_TIMEOUT": "2",
            "DATAFOLD_DYNAMODB_MAX_ATTEMPTS": "5",
        }
    )
    dynamo = Dynamo(config)
    bc = dynamo.client.meta.config
    assert (bc.max_pool_connections, bc.connect_timeout, bc.read_timeout) == (11, 0.5, 2.0)
    assert dynamo.policy.max_attempts == 5


# -- a real HTTP round trip: how many requests reach the wire? -------------------------------
class ThrottlingServer(BaseHTTPRequestHandler):
    """Answers every DynamoDB request with a throttling error, counting the requests."""

    requests: list[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ThrottlingServer.requests.append(self.headers.get("X-Amz-Target", ""))
        body = json.dumps(
            {
                "__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                "message": "Rate of requests exceeds the allowed throughput.",
            }
        )
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def throttling_endpoint() -> Iterator[str]:
    ThrottlingServer.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), ThrottlingServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_layers_do_not_multiply_on_the_wire(throttling_endpoint: str) -> None:
    config = replace(CONFIG, endpoint_url=throttling_endpoint, max_attempts=3)
    clock = FakeClock()
    dynamo = Dynamo(config, sleep=clock.sleep, clock=clock)
    with pytest.raises(errors.ThrottledError):
        dynamo.once("GetItem", "wire", b"k", Key={"PK": {"S": "u"}, "SK": {"B": b"k"}})
    assert len(ThrottlingServer.requests) == 1  # botocore itself does not retry
    with pytest.raises(errors.ThrottledError):
        dynamo.call("GetItem", "wire", b"k", Key={"PK": {"S": "u"}, "SK": {"B": b"k"}})
    assert len(ThrottlingServer.requests) == 1 + 3  # our 3 attempts, not 3 x botocore's
    assert ThrottlingServer.requests[-1] == "DynamoDB_20120810.GetItem"
    assert len(clock.sleeps) == 2


# -- Stubber: our layer's behaviour on canned responses ----------------------------------------
@pytest.fixture
def stubbed() -> Iterator[tuple[Dynamo, Stubber, FakeClock]]:
    client = make_client(CONFIG)
    clock = FakeClock()
    dynamo = Dynamo(
        CONFIG, client, sleep=clock.sleep, clock=clock, backoff=FullJitter(rng=random.Random(0))
    )
    with Stubber(client) as stub:
        yield dynamo, stub, clock
        stub.assert_no_pending_responses()


KEY = {"PK": {"S": "u"}, "SK": {"B": b"k"}}


def test_throttling_then_success_is_retried_by_our_layer_and_counted(
    stubbed: tuple[Dynamo, Stubber, FakeClock],
) -> None:
    dynamo, stub, clock = stubbed
    labels = {"operation": "GetItem", "table": "stub-throttle"}
    before_retries = metric("datafold_dynamodb_retries_total", **labels, code="ThrottlingException")
    before_throttles = metric("datafold_dynamodb_throttles_total", **labels)
    stub.add_client_error(
        "get_item",
        service_error_code="ThrottlingException",
        http_status_code=400,
        expected_params={"TableName": "stub-throttle", "Key": KEY},
    )
    stub.add_response(
        "get_item",
        {"Item": {**KEY, "Value": {"B": b"v"}}},
        expected_params={"TableName": "stub-throttle", "Key": KEY},
    )
    resp = dynamo.call("GetItem", "stub-throttle", b"k", Key=KEY)
    assert resp["Item"]["Value"] == {"B": b"v"}
    assert len(clock.sleeps) == 1
    assert (
        metric("datafold_dynamodb_retries_total", **labels, code="ThrottlingException")
        == before_retries + 1
    )
    assert metric("datafold_dynamodb_throttles_total", **labels) == before_throttles + 1
    assert metric("datafold_dynamodb_errors_total", **labels, code="ThrottlingException") >= 1
    assert metric("datafold_dynamodb_request_seconds_count", **labels) >= 2


def test_a_validation_exception_is_raised_once_with_context(
    stubbed: tuple[Dynamo, Stubber, FakeClock],
) -> None:
    dynamo, stub, clock = stubbed
    stub.add_client_error(
        "put_item",
        service_error_code="ValidationException",
        service_message="One or more parameter values were invalid",
        http_status_code=400,
    )
    with pytest.raises(errors.ValidationError) as info:
        dynamo.call("PutItem", "stub-valid", b"user/7", Item={**KEY, "Value": {"B": b"v"}})
    err = info.value
    assert (err.operation, err.table, err.code) == ("PutItem", "stub-valid", "ValidationException")
    assert str(err) == (
        "PutItem on table 'stub-valid', key 'user/7': "
        "[ValidationException] One or more parameter values were invalid"
    )
    assert clock.sleeps == []
    assert (
        metric(
            "datafold_dynamodb_retries_total",
            operation="PutItem",
            table="stub-valid",
            code="ValidationException",
        )
        == 0
    )


def test_a_5xx_is_retried_until_max_attempts(stubbed: tuple[Dynamo, Stubber, FakeClock]) -> None:
    dynamo, stub, clock = stubbed
    for _ in range(CONFIG.max_attempts):
        stub.add_client_error(
            "query", service_error_code="InternalServerError", http_status_code=500
        )
    with pytest.raises(errors.TransientError) as info:
        dynamo.call(
            "Query",
            "stub-5xx",
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": "u"}},
        )
    assert info.value.code == "InternalServerError"
    assert len(clock.sleeps) == CONFIG.max_attempts - 1
    assert (
        metric(
            "datafold_dynamodb_errors_total",
            operation="Query",
            table="stub-5xx",
            code="InternalServerError",
        )
        == CONFIG.max_attempts
    )


@pytest.mark.parametrize(
    ("first", "status", "unknown"),
    [("InternalServerError", 500, True), ("ThrottlingException", 400, False), (None, 0, False)],
)
def test_a_failed_condition_says_whether_an_earlier_attempt_may_have_landed(
    stubbed: tuple[Dynamo, Stubber, FakeClock], first: str | None, status: int, unknown: bool
) -> None:
    """A 5xx (like a timeout) may have been applied; a throttle was not; no retry, nothing."""
    dynamo, stub, _ = stubbed
    if first:
        stub.add_client_error("put_item", service_error_code=first, http_status_code=status)
    old = {**KEY, "Seq": {"N": "3"}}
    stub.add_client_error(
        "put_item",
        service_error_code="ConditionalCheckFailedException",
        http_status_code=400,
        modeled_fields={"Item": old},
    )
    with pytest.raises(errors.ConditionFailedError) as info:
        dynamo.call("PutItem", "stub-cond", b"k", Item=KEY)
    assert (info.value.after_unknown, info.value.item) == (unknown, old)


def test_the_table_name_is_filled_in_except_for_multi_table_operations(
    stubbed: tuple[Dynamo, Stubber, FakeClock],
) -> None:
    dynamo, stub, _ = stubbed
    stub.add_response(
        "describe_table", {"Table": {"TableName": "xyz"}}, expected_params={"TableName": "xyz"}
    )
    stub.add_response(
        "batch_write_item",
        {"UnprocessedItems": {}},
        expected_params={"RequestItems": {"xyz": [{"DeleteRequest": {"Key": KEY}}]}},
    )
    dynamo.call("DescribeTable", "xyz")
    dynamo.call("BatchWriteItem", "xyz", RequestItems={"xyz": [{"DeleteRequest": {"Key": KEY}}]})
