"""Retries never double-apply a write (issue 14, point 4), against DynamoDB Local.

Every store call here goes through a fault proxy armed to forward the next call of each write
operation (PutItem, UpdateItem, DeleteItem) and drop its answer: the first attempt of every
write lands, the caller sees a dropped connection and :class:`~storage.client.Dynamo` retries.
The retry must report exactly what one clean attempt would have reported. The state is read
back directly, not through the proxy. Genuine condition failures (another writer's item) must
still be reported, answer dropped or not.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import replace

import pytest

from storage import (
    DynamoConfig,
    DynamoNamespacedStore,
    DynamoSchemaStore,
    Schema,
    errors,
    make_client,
)
from storage.kv import DynamoKvStore
from tests.faults import FaultProxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]
WRITES = ("PutItem", "UpdateItem", "DeleteItem")


@pytest.fixture(scope="module")
def proxy(dynamo_config: DynamoConfig) -> Iterator[FaultProxy]:
    upstream = dynamo_config.endpoint_url or "http://127.0.0.1:8000"
    with FaultProxy(upstream, rng=random.Random(14)) as p:
        yield p


@pytest.fixture(scope="module")
def proxied(dynamo_config: DynamoConfig, proxy: FaultProxy) -> DynamoConfig:
    return replace(dynamo_config, endpoint_url=proxy.endpoint_url, retry_max_seconds=10.0)


@pytest.fixture
def lose_first_answer(proxy: FaultProxy) -> Iterator[FaultProxy]:
    """Arm the proxy: the next call of each write operation lands and loses its answer."""
    for op in WRITES:
        proxy.drop_answers(op, 1)
    yield proxy
    for op in WRITES:
        proxy.drop_answers(op, 0)


def dropped(proxy: FaultProxy) -> int:
    """How many write answers the proxy has dropped so far (one per armed operation used)."""
    return len(WRITES) - len(proxy.pending_drops())


# -- schemas ---------------------------------------------------------------------------------
@pytest.fixture
def schemas(
    schema_config: DynamoConfig, proxied: DynamoConfig, unique: str
) -> tuple[DynamoSchemaStore, DynamoSchemaStore]:
    """(through the proxy, direct) stores of one fresh user."""
    user = f"idem-{unique}"
    return DynamoSchemaStore(proxied, user), DynamoSchemaStore(schema_config, user)


def test_put_schema_whose_answer_was_lost_increments_the_version_once(
    schemas: tuple[DynamoSchemaStore, DynamoSchemaStore], lose_first_answer: FaultProxy
) -> None:
    via, direct = schemas
    direct.put_schema(Schema("s", {"v": 1}))
    got = via.put_schema(Schema("s", {"v": 2}))
    assert dropped(lose_first_answer) >= 1
    stored = direct.get_schema("s")
    assert stored is not None and (stored.version, stored.body) == (2, {"v": 2})
    assert got.version == 2 and got.body == {"v": 2}


def test_put_schema_if_not_exists_whose_answer_was_lost_is_no_false_conflict(
    schemas: tuple[DynamoSchemaStore, DynamoSchemaStore], lose_first_answer: FaultProxy
) -> None:
    via, direct = schemas
    got = via.put_schema(Schema("new", {"v": 1}), if_not_exists=True)
    assert dropped(lose_first_answer) >= 1
    assert (got.version, got.body) == (1, {"v": 1})
    stored = direct.get_schema("new")
    assert stored is not None and stored.version == 1


def test_put_schema_expected_version_whose_answer_was_lost_is_no_false_conflict(
    schemas: tuple[DynamoSchemaStore, DynamoSchemaStore], lose_first_answer: FaultProxy
) -> None:
    via, direct = schemas
    direct.put_schema(Schema("s", {"v": 1}))
    direct.put_schema(Schema("s", {"v": 2}))
    got = via.put_schema(Schema("s", {"v": 3}), expected_version=2)
    assert dropped(lose_first_answer) >= 1
    stored = direct.get_schema("s")
    assert stored is not None and (stored.version, stored.body) == (3, {"v": 3})
    assert got.version == 3


def test_put_schema_genuine_conflicts_are_still_reported(
    schemas: tuple[DynamoSchemaStore, DynamoSchemaStore], lose_first_answer: FaultProxy
) -> None:
    via, direct = schemas
    direct.put_schema(Schema("s", {"v": 1}))
    with pytest.raises(errors.ConditionFailedError) as exists:
        via.put_schema(Schema("s", {"v": "mine"}), if_not_exists=True)
    assert (exists.value.operation, exists.value.key) == ("UpdateItem", "'s'")
    with pytest.raises(errors.ConditionFailedError):
        via.put_schema(Schema("s", {"v": "stale"}), expected_version=5)
    assert dropped(lose_first_answer) >= 1  # the first refusal's answer was lost, too
    stored = direct.get_schema("s")
    assert stored is not None and (stored.version, stored.body) == (1, {"v": 1})


def test_a_retried_put_schema_still_loses_to_a_version_another_writer_moved(
    schemas: tuple[DynamoSchemaStore, DynamoSchemaStore],
) -> None:
    via, direct = schemas
    first = via.put_schema(Schema("s", {"v": 1}))
    direct.put_schema(Schema("s", {"v": "other"}))
    with pytest.raises(errors.ConditionFailedError):
        via.put_schema(Schema("s", {"v": 2}), expected_version=first.version)
    stored = direct.get_schema("s")
    assert stored is not None and (stored.version, stored.body) == (2, {"v": "other"})


def test_delete_schema_whose_answers_were_lost_reports_what_it_deleted(
    schemas: tuple[DynamoSchemaStore, DynamoSchemaStore], lose_first_answer: FaultProxy
) -> None:
    via, direct = schemas
    direct.put_schema(Schema("s", {"v": 1}))
    assert via.delete_schema("s") is True
    assert dropped(lose_first_answer) >= 1
    assert direct.get_schema("s") is None
    for op in WRITES:
        lose_first_answer.drop_answers(op, 1)
    assert via.delete_schema("s") is False
    assert via.delete_schema("never") is False


# -- key-value -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def namespace(dynamo_config: DynamoConfig) -> Iterator[str]:
    name = f"idem{uuid.uuid4().hex[:8]}"
    DynamoNamespacedStore(dynamo_config).open_namespace(name)
    yield name
    DynamoNamespacedStore(dynamo_config).delete_namespace(name)


@pytest.fixture
def kvs(
    dynamo_config: DynamoConfig, proxied: DynamoConfig, namespace: str, unique: str
) -> tuple[DynamoKvStore, DynamoKvStore]:
    """(through the proxy, direct) views of one fresh user's partition."""
    user = f"idem-{unique}"
    via = DynamoNamespacedStore(proxied, user).open_namespace(namespace)
    return via, DynamoNamespacedStore(dynamo_config, user).open_namespace(namespace)


def test_delete_whose_answers_were_lost_reports_the_value_it_deleted(
    kvs: tuple[DynamoKvStore, DynamoKvStore], lose_first_answer: FaultProxy
) -> None:
    via, direct = kvs
    direct.put(b"k", b"v")
    assert via.delete(b"k") is True
    assert dropped(lose_first_answer) >= 1
    assert direct.get(b"k") is None and list(direct.scan_keys()) == []
    for op in WRITES:
        lose_first_answer.drop_answers(op, 1)
    assert via.delete(b"k") is False
    assert via.delete(b"never") is False
    assert list(direct.scan_keys()) == []


def test_sequenced_put_whose_answer_was_lost_is_not_superseded(
    kvs: tuple[DynamoKvStore, DynamoKvStore], lose_first_answer: FaultProxy
) -> None:
    via, direct = kvs
    direct.put(b"k", b"old", seq=3)
    via.put(b"k", b"new", seq=5)
    assert dropped(lose_first_answer) >= 1
    assert (direct.get(b"k"), direct.seq_of(b"k")) == (b"new", 5)


def test_sequenced_delete_whose_answer_was_lost_reports_the_value_it_deleted(
    kvs: tuple[DynamoKvStore, DynamoKvStore], lose_first_answer: FaultProxy
) -> None:
    via, direct = kvs
    direct.put(b"k", b"v", seq=3)
    assert via.delete(b"k", seq=4) is True
    assert dropped(lose_first_answer) >= 1
    assert (direct.get(b"k"), direct.seq_of(b"k")) == (None, 4)  # a tombstone
    for op in WRITES:
        lose_first_answer.drop_answers(op, 1)
    assert via.delete(b"k", seq=6) is False  # only a tombstone was there
    assert via.delete(b"never", seq=6) is False
    assert (direct.seq_of(b"k"), direct.seq_of(b"never")) == (6, 6)


def test_sequenced_writes_still_lose_to_newer_ones(
    kvs: tuple[DynamoKvStore, DynamoKvStore], lose_first_answer: FaultProxy
) -> None:
    via, direct = kvs
    direct.put(b"k", b"newer", seq=9)
    with pytest.raises(errors.ConditionFailedError) as put:
        via.put(b"k", b"older", seq=5)
    assert (put.value.operation, put.value.table) == ("PutItem", via.table)
    with pytest.raises(errors.ConditionFailedError):
        via.delete(b"k", seq=7)
    with pytest.raises(errors.ConditionFailedError):
        via.put(b"k", b"same seq, another value", seq=9)
    assert dropped(lose_first_answer) >= 1
    assert (direct.get(b"k"), direct.seq_of(b"k")) == (b"newer", 9)


def test_under_random_lost_answers_every_write_counts_once(
    schemas: tuple[DynamoSchemaStore, DynamoSchemaStore],
    kvs: tuple[DynamoKvStore, DynamoKvStore],
    proxy: FaultProxy,
) -> None:
    """30 % of write answers lost at random (the odds of a call losing all 8 attempts: 7e-5)."""
    (via, direct), (kv, kv_direct) = schemas, kvs
    proxy.reset_stats()
    proxy.configure(reset_after_rate={op: 0.3 for op in WRITES})
    try:
        versions = [via.put_schema(Schema("s", {"n": n})).version for n in range(1, 21)]
        for seq in range(1, 21):
            kv.put(b"k%d" % (seq % 4), b"v%d" % seq, seq=seq)
        deleted = [kv.delete(b"k%d" % i, seq=100 + i) for i in range(6)]
        lost = sum(proxy.stats().op(op, "connection_reset_after_forward") for op in WRITES)
    finally:
        proxy.configure(reset_after_rate=0.0)
    assert lost > 0
    assert versions == list(range(1, 21))
    stored = direct.get_schema("s")
    assert stored is not None and (stored.version, stored.body) == (20, {"n": 20})
    assert deleted == [True] * 4 + [False] * 2
    assert [kv_direct.seq_of(b"k%d" % i) for i in range(6)] == [100 + i for i in range(6)]


# -- tables ----------------------------------------------------------------------------------
def test_a_table_created_and_deleted_with_lost_answers_is_reported_and_set_up_as_ours(
    dynamo_config: DynamoConfig, proxied: DynamoConfig, proxy: FaultProxy, unique: str
) -> None:
    store = DynamoNamespacedStore(proxied, "u")
    name = f"lost{unique}"
    proxy.drop_answers("CreateTable", 1)  # created, then "in use" on the retry: still ours
    store.open_namespace(name)
    raw = make_client(dynamo_config)
    ttl = raw.describe_time_to_live(TableName=store.table_name(name))["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "ExpiresAt")
    proxy.drop_answers("DeleteTable", 1)  # deleted, then "not found" on the retry: ours
    assert store.delete_namespace(name) is True
    assert not any(proxy.pending_drops().values())  # both answers were really dropped
    assert store.delete_namespace(name) is False  # a clean "not found" is still not ours
