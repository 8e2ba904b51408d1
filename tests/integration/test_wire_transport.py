"""Bulk writes take the client's own transport: behind a mandatory proxy (``HTTPS_PROXY``) and a
TLS endpoint whose CA only ``AWS_CA_BUNDLE`` knows, BatchWriteItem goes through the proxy's
tunnels and trusts that bundle, fast path or not; without the bundle it fails at that endpoint
with a storage error naming the operation, never by going around the proxy.

DynamoDB Local sits behind a `TlsFront` (a CA of its own) reached through a `ConnectProxy`."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from storage import Dynamo, DynamoConfig, DynamoNamespacedStore, errors
from tests.faults import ConnectProxy, TlsFront

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PROXY_VARIABLES = (
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "AWS_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
)


@dataclass
class Route:
    front: TlsFront
    proxy: ConnectProxy
    ca_bundle: Path
    config: DynamoConfig


@pytest.fixture
def route(
    dynamo_config: DynamoConfig, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Route]:
    """DynamoDB Local behind TLS of a CA of its own, reachable through an HTTP proxy that
    ``HTTPS_PROXY`` names (and no ``NO_PROXY`` exempts it from); ``AWS_CA_BUNDLE`` is the CA."""
    with TlsFront(dynamo_config.endpoint_url or "") as front, ConnectProxy() as proxy:
        for name in PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        bundle = front.ca_bundle(tmp_path)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(bundle))
        yield Route(front, proxy, bundle, replace(dynamo_config, endpoint_url=front.endpoint_url))


def record_batch_writes(dynamo: Dynamo, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Body sizes of the BatchWriteItem requests the client's HTTP session sends from now on
    (the fast path and the client's own calls share that session)."""
    session = dynamo.client._endpoint.http_session
    sizes: list[int] = []
    send = session.send

    def recording(request: Any) -> Any:
        headers = {k.lower(): v for k, v in request.headers.items()}
        target = headers.get("x-amz-target")
        if (target.decode() if isinstance(target, bytes) else target or "").endswith(
            "BatchWriteItem"
        ):
            sizes.append(len(request.body))
        return send(request)

    monkeypatch.setattr(session, "send", recording)
    return sizes


@pytest.mark.parametrize("fast", [True, False], ids=["fast-writes", "client-writes"])
def test_bulk_writes_go_through_the_proxy_and_trust_the_ca_bundle(
    fast: bool, route: Route, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = DynamoNamespacedStore(replace(route.config, fast_writes=fast), f"tls{unique}")
    kv = store.open_namespace("bulk")
    try:
        assert (kv.dynamo.wire is not None) == fast
        sizes = record_batch_writes(kv.dynamo, monkeypatch)
        rng = random.Random(3)
        items = [(b"k%04d" % i, rng.randbytes(rng.randint(1, 600))) for i in range(300)]
        before = route.proxy.stats()
        result = kv.batch_put(items)
        after = route.proxy.stats()
        assert result.written == 300 and result.complete
        assert len(sizes) >= 12  # 25 items per call
        assert after.bytes_up - before.bytes_up >= sum(sizes)
        assert after.tunnels >= 1 and set(after.targets) == {f"localhost:{route.front.port}"}
        assert route.front.stats().failures == {}
        assert dict(kv.scan_prefix(b"")) == dict(items)  # read back the same way
    finally:
        store.delete_namespace("bulk")


def test_without_the_ca_bundle_bulk_writes_fail_at_the_endpoint_not_around_the_proxy(
    route: Route, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_CA_BUNDLE")
    config = replace(route.config, max_attempts=2, retry_max_seconds=1)
    dynamo = Dynamo(config, sleep=lambda s: None)
    assert dynamo.wire is not None
    request = {"PutRequest": {"Item": {"PK": {"S": "u"}, "SK": {"B": b"k"}, "Value": {"B": b"v"}}}}
    with pytest.raises(errors.TransientError) as info:
        dynamo.call("BatchWriteItem", "t", RequestItems={"t": [request]})
    err = info.value
    assert (err.operation, err.table, err.code) == ("BatchWriteItem", "t", "ConnectionError")
    assert "SSLError" in str(err) and "\n" not in str(err)
    stats = route.proxy.stats()
    assert stats.tunnels == 2 and set(stats.targets) == {f"localhost:{route.front.port}"}
    deadline = time.monotonic() + 5
    while route.front.stats().failures["handshake"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    front = route.front.stats()
    assert front.failures["handshake"] == 2 and front.kinds["tls"] == 0  # nothing reached DynamoDB


def test_an_http_endpoint_is_reached_through_http_proxy(
    dynamo_config: DynamoConfig, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConnectProxy() as proxy:
        for name in PROXY_VARIABLES:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        store = DynamoNamespacedStore(dynamo_config, f"fwd{unique}")
        kv = store.open_namespace("bulk")
        try:
            assert kv.dynamo.wire is not None
            sizes = record_batch_writes(kv.dynamo, monkeypatch)
            items = [(b"k%03d" % i, b"v" * i) for i in range(100)]
            before = proxy.stats()
            assert kv.batch_put(items).written == 100
            after = proxy.stats()
            assert len(sizes) >= 4 and after.bytes_up - before.bytes_up >= sum(sizes)
            assert after.kinds["forward"] >= 1 and after.tunnels == 0
            assert dict(kv.scan_prefix(b"")) == dict(items)
        finally:
            store.delete_namespace("bulk")
