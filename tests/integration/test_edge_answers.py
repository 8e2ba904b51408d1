"""Answers that are not DynamoDB's are retryable errors naming the table, never "all written".

The fault proxy answers some BatchWriteItem calls itself, without forwarding them (so nothing of
them is written): a 200 with an empty body, a 200 whose JSON is not an object, or a plausible
``{"UnprocessedItems": {}}`` under an ``x-amz-crc32`` that is no number. A client that took any
of these for "all written" would lose those items. Through the fast wire path and through
botocore's client alike, every item must end written, each such answer counted in
``datafold_dynamodb_errors_total`` with its code, and no raw ``ValueError`` reach the caller.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace

import pytest

from storage import DynamoConfig, DynamoNamespacedStore, errors
from storage.metrics import ERRORS
from tests.faults import FaultConfig, FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

KINDS = {  # FaultConfig rate -> (the error code expected, the proxy's counter)
    "empty_answer_rate": ("BadResponse", "empty_answer"),
    "non_object_answer_rate": ("BadResponse", "non_object_answer"),
    "bad_crc32_rate": ("CRC32Malformed", "malformed_crc32"),
}


@pytest.fixture
def proxy(dynamo_config: DynamoConfig) -> Iterator[FaultProxy]:
    upstream = dynamo_config.endpoint_url or "http://127.0.0.1:8000"
    with FaultProxy(upstream, rng=random.Random(2)) as p:
        yield p


@pytest.mark.parametrize("fast", [True, False], ids=["wire", "client"])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_answer_that_is_not_dynamodbs_is_retried_never_counted_written(
    dynamo_config: DynamoConfig, proxy: FaultProxy, unique: str, kind: str, fast: bool
) -> None:
    config = replace(dynamo_config, endpoint_url=proxy.endpoint_url, fast_writes=fast)
    store = DynamoNamespacedStore(config, f"edge{unique}")
    direct = DynamoNamespacedStore(dynamo_config, f"edge{unique}")
    kv = store.open_namespace("edges")
    proxy.set_config(FaultConfig(**{kind: {"BatchWriteItem": 0.3}}))
    code, counter = KINDS[kind]
    before = ERRORS.labels("BatchWriteItem", kv.table, code)._value.get()
    items = [(b"k%04d" % i, b"value %d" % i) for i in range(400)]
    try:
        result = kv.batch_put(items)
    except errors.StorageError as exc:  # only if the retries ran out: still never a ValueError
        pytest.fail(f"gave up: {exc}")
    finally:
        proxy.set_config(FaultConfig())
    assert result.written == len(items) and result.complete
    assert dict(direct.open_namespace("edges").scan_prefix(b"")) == dict(items)
    injected = proxy.stats().total(counter)
    counted = ERRORS.labels("BatchWriteItem", kv.table, code)._value.get() - before
    assert injected > 0 and counted == injected, (injected, counted)
    direct.delete_namespace("edges")
