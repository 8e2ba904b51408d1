"""The wire path rides on the botocore client's own transport: its endpoint, its HTTP session
(proxies, CA bundle, client certificate, timeouts, pool) and its credentials object, frozen per
call so that expiring credentials are refreshed; a client without them is refused, never
bypassed with a transport of its own."""

from __future__ import annotations

import datetime
import json
import logging
from typing import Any

import boto3
import botocore
import botocore.config
import botocore.session
import pytest
from botocore.credentials import CredentialProvider, Credentials, RefreshableCredentials

from storage import Dynamo, errors, make_client
from storage import client as client_module
from storage.settings import DynamoConfig
from storage.wire import WireWriter
from tests.doubles import FakeClient
from tests.unit.test_wire import NOW, URL, FakeHttp, botocore_authorization, put

CONFIG = DynamoConfig(region="eu-west-1", endpoint_url=URL)


def test_the_writer_is_the_clients_endpoint_session_and_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDCLIENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    client = make_client(CONFIG)
    wire = WireWriter.from_client(client)
    assert wire.url == URL + "/"
    assert wire.http is client._endpoint.http_session
    assert wire.credentials is client._request_signer._credentials
    assert (wire.signer.region, wire.signer.service, wire.signer.host) == (
        "eu-west-1",
        "dynamodb",
        "dynamodb.eu-west-1.amazonaws.com",
    )
    dynamo = Dynamo(CONFIG)
    assert dynamo.wire is not None and dynamo.wire.http is dynamo.client._endpoint.http_session


def test_a_client_without_its_transport_is_refused_and_the_client_sends_instead(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(errors.ConfigError) as info:
        WireWriter.from_client(FakeClient({}))
    assert info.value.code == "WireUnavailable" and info.value.operation == "BatchWriteItem"
    assert "_endpoint.http_session.send" in str(info.value) and "\n" not in str(info.value)

    stub = FakeClient({"BatchWriteItem": lambda **p: {"UnprocessedItems": {}}})
    monkeypatch.setattr(client_module, "make_client", lambda config: stub)
    with caplog.at_level(logging.WARNING, logger="storage.client"):
        dynamo = Dynamo(CONFIG, sleep=lambda s: None)
    assert dynamo.wire is None and "fast BatchWriteItem is off" in caplog.text
    dynamo.call("BatchWriteItem", "t", RequestItems={"t": [put(b"k").request]})
    assert [op for op, _ in stub.calls] == ["BatchWriteItem"]


def test_a_client_that_does_not_sign_with_sigv4_is_refused() -> None:
    client = boto3.session.Session().client(
        "dynamodb",
        region_name="eu-west-1",
        config=botocore.config.Config(signature_version=botocore.UNSIGNED),
    )
    with pytest.raises(errors.ConfigError, match="not SigV4"):
        WireWriter.from_client(client)


def refreshing() -> tuple[RefreshableCredentials, list[str]]:
    """Credentials that expire within botocore's mandatory refresh window: every freeze
    refreshes them, and each refresh hands out the next key (AKID1, AKID2, ...)."""
    issued: list[str] = []

    def refresh() -> dict[str, Any]:
        issued.append(f"AKIDROLE{len(issued) + 1}")
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=2)
        return {
            "access_key": issued[-1],
            "secret_key": f"secret-{len(issued)}",
            "token": f"token-{len(issued)}",
            "expiry_time": expiry.isoformat(),
        }

    creds = RefreshableCredentials.create_from_metadata(
        metadata=refresh(), refresh_using=refresh, method="sts-assume-role"
    )
    return creds, issued


def test_expiring_credentials_of_the_client_are_refreshed_between_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    creds, issued = refreshing()
    session = botocore.session.Session()

    class Role(CredentialProvider):  # first in the default chain, as a role or SSO would be
        METHOD = "test-role"

        def load(self) -> RefreshableCredentials:
            return creds

    session.get_component("credential_provider").insert_before("env", Role())
    client = session.create_client("dynamodb", region_name="eu-west-1", endpoint_url=URL)
    wire = WireWriter.from_client(client)
    assert wire.credentials is creds
    http = FakeHttp([(200, {}, None), (200, {}, None)])
    wire.http, wire.now = http, lambda: NOW

    params = {"RequestItems": {"t": [put(b"k").request]}}
    wire.batch_write_item(**params)
    wire.batch_write_item(**params)

    first, second = http.sent
    assert issued[:3] == ["AKIDROLE1", "AKIDROLE2", "AKIDROLE3"]
    assert "Credential=AKIDROLE2/" in first.headers["authorization"]
    assert "Credential=AKIDROLE3/" in second.headers["authorization"]
    assert second.headers["x-amz-security-token"] == "token-3"
    # The second call is signed with the refreshed secret exactly as botocore would sign it.
    fresh = Credentials("AKIDROLE3", "secret-3", "token-3")
    assert json.loads(second.body) == json.loads(first.body)
    theirs = botocore_authorization(second.body, fresh, monkeypatch)
    assert second.headers["authorization"] == theirs["authorization"]
