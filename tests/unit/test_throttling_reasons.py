"""ThrottledError carries the limits DynamoDB named in its ThrottlingReasons, whichever path the
error came by: botocore's client (its model parses the member) or the wire path (which puts the
member where botocore would)."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from storage import errors
from storage.retry import classify, throttling_reasons
from tests.doubles import client_error
from tests.unit.test_wire import put, wired

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/T"
KEY_RANGE = "TableWriteKeyRangeThroughputExceeded"
PROVISIONED = "TableWriteProvisionedThroughputExceeded"
PTEE = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"


def ctx() -> dict[str, str]:
    return {"operation": "BatchWriteItem", "table": "T", "key": "k"}


def with_reasons(code: str, member: str, *reasons: str) -> ClientError:
    exc = client_error(code, message="slow down")
    exc.response[member] = [{"reason": r, "resource": ARN} for r in reasons]  # type: ignore[literal-required]
    return exc


def test_reasons_are_read_in_order_from_either_spelling() -> None:
    exc = with_reasons("ProvisionedThroughputExceededException", "ThrottlingReasons", KEY_RANGE)
    err = classify(exc, **ctx())
    assert isinstance(err, errors.ThrottledError) and err.reasons == (KEY_RANGE,)
    assert f"(reasons: {KEY_RANGE})" in str(err) and ARN not in str(err)
    on_demand = "TableWriteMaxOnDemandThroughputExceeded"
    exc = with_reasons("ThrottlingException", "throttlingReasons", on_demand, on_demand)
    assert classify(exc, **ctx()).reasons == (on_demand,)  # type: ignore[attr-defined]


def test_no_or_malformed_reasons_give_an_empty_tuple() -> None:
    err = classify(client_error("ProvisionedThroughputExceededException"), **ctx())
    assert isinstance(err, errors.ThrottledError) and err.reasons == ()
    assert "reasons" not in str(err)
    odd: dict[str, Any] = {"ThrottlingReasons": [None, {"reason": 3}, {"resource": ARN}, "x"]}
    assert throttling_reasons(odd) == ()
    assert throttling_reasons({"ThrottlingReasons": {"reason": KEY_RANGE}}) == ()
    assert errors.ThrottledError("m").reasons == ()


def test_botocore_parses_the_modeled_member_into_the_response() -> None:
    client = boto3.client(
        "dynamodb",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    with Stubber(client) as stub:
        stub.add_client_error(
            "batch_write_item",
            service_error_code="ProvisionedThroughputExceededException",
            modeled_fields={
                "ThrottlingReasons": [
                    {"reason": KEY_RANGE, "resource": ARN},
                    {"reason": PROVISIONED, "resource": ARN},
                ]
            },
        )
        request: Any = put(b"k").request
        with pytest.raises(ClientError) as info:
            client.batch_write_item(RequestItems={"T": [request]})
    err = classify(info.value, **ctx())
    assert isinstance(err, errors.ThrottledError)
    assert err.reasons == (KEY_RANGE, PROVISIONED)


def test_the_wire_path_carries_the_reasons_into_its_client_error() -> None:
    answer = {
        "__type": PTEE,
        "message": "slow down",
        "ThrottlingReasons": [{"reason": KEY_RANGE, "resource": ARN}],
    }
    dynamo, http = wired([(400, answer, None)] * 4)
    assert dynamo.wire is not None
    with pytest.raises(ClientError) as raw:
        dynamo.wire.batch_write_item(RequestItems={"t": [put(b"k").request]})
    assert raw.value.response["ThrottlingReasons"] == answer["ThrottlingReasons"]  # type: ignore[typeddict-item]
    with pytest.raises(errors.ThrottledError) as info:
        dynamo.call("BatchWriteItem", "t", b"k", RequestItems={"t": [put(b"k").request]})
    assert info.value.reasons == (KEY_RANGE,) and len(http.sent) == 4
