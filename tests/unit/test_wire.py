"""The BatchWriteItem wire path: signing identical to botocore's, the body DynamoDB expects,
responses and errors shaped exactly as the botocore client gives them to the retry layers."""

from __future__ import annotations

import base64
import datetime
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import botocore.auth
import botocore.exceptions as bex
import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from storage import BatchWriter, Dynamo, DynamoConfig, errors
from storage.batch import WriteOp
from storage.settings import DynamoConfig as Config
from storage.wire import Signer, WireWriter, decode_unprocessed, encode_body
from tests.doubles import FakeClient, metric

NOW = datetime.datetime(2026, 11, 26, 10, 58, 7, tzinfo=datetime.UTC)
URL = "https://dynamodb.eu-west-1.amazonaws.com"


def botocore_authorization(
    body: bytes, creds: Credentials, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """What botocore's own SigV4 signer puts in the headers of the same request."""
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    req = AWSRequest(
        "POST",
        URL + "/",
        data=body,
        headers={
            "Content-Type": "application/x-amz-json-1.0",
            "X-Amz-Target": "DynamoDB_20120810.BatchWriteItem",
        },
    )
    botocore.auth.SigV4Auth(creds, "dynamodb", "eu-west-1").add_auth(req)
    return {k.lower(): v for k, v in req.headers.items()}


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
def test_signature_is_botocores_byte_for_byte(
    token: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    body = encode_body(
        {
            "RequestItems": {
                "t": [{"PutRequest": {"Item": {"PK": {"S": "ü"}, "SK": {"B": b"\x00\xff"}}}}]
            }
        }
    )
    ours = Signer("eu-west-1", "dynamodb.eu-west-1.amazonaws.com").headers(
        body, creds.get_frozen_credentials(), NOW
    )
    theirs = botocore_authorization(body, creds, monkeypatch)
    assert ours["authorization"] == theirs["authorization"]
    assert ours["x-amz-date"] == theirs["x-amz-date"]
    assert ours.get("x-amz-security-token") == theirs.get("x-amz-security-token")


def test_signing_key_is_cached_per_day_and_secret() -> None:
    s = Signer("eu-west-1", "h")
    creds = Credentials("A", "secret1").get_frozen_credentials()
    a = s.headers(b"{}", creds, NOW)["authorization"]
    assert s.headers(b"{}", creds, NOW)["authorization"] == a
    other_day = s.headers(b"{}", creds, NOW + datetime.timedelta(days=1))["authorization"]
    rotated = s.headers(b"{}", Credentials("A", "secret2").get_frozen_credentials(), NOW)
    assert other_day != a and rotated["authorization"] != a
    assert len(s._keys) == 1


def test_body_is_the_json_of_the_request_whatever_its_shape() -> None:
    params = {
        "RequestItems": {
            "t1": [
                {
                    "PutRequest": {
                        "Item": {
                            "PK": {"S": 'ü "q" \n'},
                            "SK": {"B": b"\x00\xff"},
                            "N": {"N": "-1.5e3"},
                            "Bool": {"BOOL": True},
                            "M": {"M": {"x": {"B": b"\x01"}}},
                            "Odd": {"S": "x", "N": "1"},
                        }
                    }
                }
            ],
            "t2": [{"DeleteRequest": {"Key": {"PK": {"S": "u"}, "SK": {"B": bytearray(b"k")}}}}],
        },
        "ReturnConsumedCapacity": "TOTAL",
    }
    expected = json.loads(json.dumps(params, default=lambda b: base64.b64encode(b).decode()))
    assert json.loads(encode_body(params)) == expected
    assert encode_body(params).isascii()


def test_body_sends_binary_as_base64_and_refuses_unknown_types() -> None:
    body = json.loads(encode_body({"K": {"B": bytes(range(256))}, "N": {"N": "1"}}))
    assert base64.b64decode(body["K"]["B"]) == bytes(range(256)) and body["N"] == {"N": "1"}
    with pytest.raises(TypeError, match="set cannot be sent"):
        encode_body({"K": {"SS": {"a"}}})


def test_unprocessed_items_come_back_as_the_client_returns_them() -> None:
    wire = {
        "t": [
            {
                "PutRequest": {
                    "Item": {
                        "PK": {"S": "u"},
                        "SK": {"B": "AAE="},
                        "V": {"BS": ["/w=="]},
                        "M": {"M": {"x": {"B": "Ag=="}}},
                        "L": {"L": [{"B": "Aw=="}]},
                    }
                }
            },
            {"DeleteRequest": {"Key": {"PK": {"S": "u"}, "SK": {"B": "BA=="}}}},
        ]
    }
    out = decode_unprocessed(wire)
    put, delete = out["t"]
    assert put["PutRequest"]["Item"] == {
        "PK": {"S": "u"},
        "SK": {"B": b"\x00\x01"},
        "V": {"BS": [b"\xff"]},
        "M": {"M": {"x": {"B": b"\x02"}}},
        "L": {"L": [{"B": b"\x03"}]},
    }
    assert delete["DeleteRequest"]["Key"]["SK"] == {"B": b"\x04"}


@dataclass
class FakeResponse:
    status_code: int
    content: bytes
    headers: dict[str, str]


@dataclass
class FakeHttp:
    """Answers every request with the next scripted (status, body, crc) and records requests."""

    answers: list[tuple[int, dict[str, Any] | bytes, int | str | None]]
    sent: list[Any] = field(default_factory=list)

    def send(self, request: Any) -> FakeResponse:
        self.sent.append(request)
        status, body, crc = self.answers.pop(0)
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"x-amzn-requestid": "RID"}
        if isinstance(crc, str):
            headers["x-amz-crc32"] = crc
        else:
            headers["x-amz-crc32"] = str(zlib.crc32(raw) if crc is None else crc)
        return FakeResponse(status, raw, headers)


def wired(
    answers: list[tuple[int, dict[str, Any] | bytes, int | str | None]], **cfg: Any
) -> tuple[Dynamo, FakeHttp]:
    """A Dynamo whose BatchWriteItem goes through a WireWriter on a scripted HTTP session."""
    http = FakeHttp(answers)
    config = DynamoConfig(region="eu-west-1", max_attempts=3, **cfg)
    dynamo = Dynamo(config, client=FakeClient({}), sleep=lambda s: None)
    dynamo.wire = WireWriter(URL, http, Credentials("AKID", "SECRET"), "eu-west-1", now=lambda: NOW)
    return dynamo, http


def put(key: bytes) -> WriteOp:
    return WriteOp(
        key,
        b"v",
        {"PutRequest": {"Item": {"PK": {"S": "u"}, "SK": {"B": key}, "Value": {"B": b"v"}}}},
        10,
    )


def test_a_request_goes_out_signed_as_dynamodb_json() -> None:
    dynamo, http = wired([(200, {}, None)])
    result = BatchWriter(dynamo).write("t", [put(b"\x00k")])
    assert result.written == 1 and result.complete
    (req,) = http.sent
    assert req.method == "POST" and req.url == URL + "/"
    assert req.headers["x-amz-target"] == "DynamoDB_20120810.BatchWriteItem"
    assert req.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/20261126/")
    sent = json.loads(req.body)
    assert sent["RequestItems"]["t"][0]["PutRequest"]["Item"]["SK"] == {"B": "AGs="}
    # Against AWS (no endpoint) the consumed capacity is asked for; DynamoDB Local: estimated.
    assert sent["ReturnConsumedCapacity"] == "TOTAL"
    assert result.consumed_wcu == 1.0  # nothing reported: the estimate


def test_unprocessed_items_from_the_wire_are_resent() -> None:
    left = {
        "t": [
            {
                "PutRequest": {
                    "Item": {"PK": {"S": "u"}, "SK": {"B": "Yg=="}, "Value": {"B": "dg=="}}
                }
            }
        ]
    }
    dynamo, http = wired(
        [
            (
                200,
                {
                    "UnprocessedItems": left,
                    "ConsumedCapacity": [{"TableName": "t", "CapacityUnits": 1}],
                },
                None,
            ),
            (200, {}, None),
        ]
    )
    result = BatchWriter(dynamo, sleep=lambda s: None).write("t", [put(b"a"), put(b"b")])
    assert result.written == 2 and result.retry_rounds == 1 and result.complete
    assert [len(json.loads(r.body)["RequestItems"]["t"]) for r in http.sent] == [2, 1]
    assert result.consumed_wcu == 2.0  # 1 reported, then 1 estimated


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (
            400,
            {
                "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "message": "slow down",
            },
            errors.ThrottledError,
            "ProvisionedThroughputExceededException",
        ),
        (
            400,
            {"__type": "com.amazon.coral.validate#ValidationException", "Message": "bad"},
            errors.ValidationError,
            "ValidationException",
        ),
        (
            400,
            {"__type": "com.amazonaws.dynamodb.v20120810#ResourceNotFoundException"},
            errors.TableNotFoundError,
            "ResourceNotFoundException",
        ),
        (503, b"<html>unavailable</html>", errors.TransientError, "HTTP503"),
    ],
)
def test_errors_are_classified_as_the_client_would(
    status: int, body: Any, kind: type[errors.StorageError], code: str
) -> None:
    dynamo, http = wired([(status, body, None)] * 3)
    with pytest.raises(kind) as info:
        dynamo.call("BatchWriteItem", "t", b"k", RequestItems={"t": [put(b"k").request]})
    assert info.value.code == code and info.value.table == "t"
    assert len(http.sent) == (3 if issubclass(kind, errors.RetryableError) else 1)


def test_a_corrupted_response_is_retried() -> None:
    dynamo, http = wired([(200, {}, 12345), (200, {}, None)])
    assert (
        dynamo.call("BatchWriteItem", "t", RequestItems={"t": [put(b"k").request]})[
            "ResponseMetadata"
        ]["HTTPStatusCode"]
        == 200
    )
    assert len(http.sent) == 2


def test_a_200_that_is_not_json_is_not_taken_for_success() -> None:
    dynamo, http = wired([(200, b"<html>captive portal</html>", None)] * 3)
    with pytest.raises(errors.TransientError) as info:
        dynamo.call("BatchWriteItem", "t", RequestItems={"t": [put(b"k").request]})
    assert info.value.code == "BadResponse" and len(http.sent) == 3


@pytest.mark.parametrize(
    ("body", "crc", "code"),
    [
        (b"", None, "BadResponse"),  # an empty 200 was taken for "all written"
        (b"[]", None, "BadResponse"),  # JSON, but not DynamoDB's object
        (b'"ok"', None, "BadResponse"),
        (b"{}", "not-a-number", "CRC32Malformed"),  # was a ValueError out of the task
    ],
)
def test_an_edge_answer_is_a_retryable_error_naming_the_table_and_counted(
    body: bytes, crc: str | None, code: str
) -> None:
    dynamo, http = wired([(200, body, crc)] * 3)
    labels = {"operation": "BatchWriteItem", "table": "t", "code": code}
    before = metric("datafold_dynamodb_errors_total", **labels)
    with pytest.raises(errors.TransientError) as info:
        dynamo.call("BatchWriteItem", "t", RequestItems={"t": [put(b"k").request]})
    assert info.value.code == code and info.value.table == "t" and len(http.sent) == 3
    assert metric("datafold_dynamodb_errors_total", **labels) - before == 3


def test_missing_credentials_is_a_config_error() -> None:
    dynamo, _ = wired([])
    assert dynamo.wire is not None
    dynamo.wire.credentials = None
    with pytest.raises(errors.ConfigError, match="no AWS credentials"):
        dynamo.call("BatchWriteItem", "t", RequestItems={"t": [put(b"k").request]})
    assert isinstance(bex.NoCredentialsError(), bex.BotoCoreError)


def test_the_wire_path_is_the_default_and_can_be_switched_off() -> None:
    on = Dynamo(Config(region="us-east-1", endpoint_url="http://127.0.0.1:1"))
    off = Dynamo(Config(region="us-east-1", endpoint_url="http://127.0.0.1:1", fast_writes=False))
    injected = Dynamo(Config(region="us-east-1"), client=FakeClient({}))
    assert on.wire is not None and on.wire.url == "http://127.0.0.1:1/"
    assert off.wire is None and injected.wire is None
    aws = Dynamo(Config(region="eu-west-1"))
    assert aws.wire is not None and aws.wire.url == URL + "/"
