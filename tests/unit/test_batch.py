"""Layer 2: 25-item batches, last-wins de-duplication, bounded unprocessed rounds, poison-item
isolation — and never an item dropped, whatever DynamoDB answers."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import storage.batch
from storage import (
    BATCH_WRITE_MAX_ITEMS,
    BatchResult,
    BatchWriter,
    Dynamo,
    DynamoConfig,
    DynamoKvStore,
    errors,
)
from storage.batch import request_ident
from storage.retry import FullJitter
from tests.doubles import FakeClient, FakeClock, client_error, metric

CONFIG = DynamoConfig(region="us-east-1", max_attempts=3)
TABLE = "batch-tbl"

# What the fake does with one BatchWriteItem call: None = write everything; a set = leave those
# idents unprocessed; an exception = raise it (nothing written).
Plan = Callable[[int, list[dict[str, Any]]], "set[Any] | Exception | None"]


@dataclass
class FakeTable:
    """One DynamoDB table behind BatchWriteItem, enforcing DynamoDB's batch rules."""

    plan: Plan = lambda n, reqs: None
    poison: set[bytes] = field(default_factory=set)
    items: dict[Any, bytes] = field(default_factory=dict)
    applied: dict[Any, str] = field(default_factory=dict)  # ident -> "put" | "delete"
    batches: list[list[dict[str, Any]]] = field(default_factory=list)

    def batch_write_item(self, RequestItems: dict[str, Any], **_: Any) -> dict[str, Any]:
        ((table, requests),) = RequestItems.items()
        assert table == TABLE
        assert 1 <= len(requests) <= 25, len(requests)
        idents = [request_ident(r) for r in requests]
        assert len(set(idents)) == len(idents), "DynamoDB rejects a batch naming a key twice"
        self.batches.append(requests)
        if any(i[1] in self.poison for i in idents):
            raise client_error(
                "ValidationException",
                "BatchWriteItem",
                message="Item size has exceeded the maximum allowed size",
            )
        outcome = self.plan(len(self.batches), requests)
        if isinstance(outcome, Exception):
            raise outcome
        left = outcome or set()
        for ident, req in zip(idents, requests, strict=True):
            if ident in left:
                continue
            assert ident not in self.applied, "an item written twice"
            if "PutRequest" in req:
                self.items[ident] = req["PutRequest"]["Item"]["Value"]["B"]
                self.applied[ident] = "put"
            else:
                self.items.pop(ident, None)
                self.applied[ident] = "delete"
        unprocessed = [r for i, r in zip(idents, requests, strict=True) if i in left]
        return {
            "UnprocessedItems": {TABLE: unprocessed} if unprocessed else {},
            "ConsumedCapacity": [
                {"TableName": TABLE, "CapacityUnits": float(len(requests) - len(left))}
            ],
        }


def setup(
    table: FakeTable, *, rounds: int = 3, threads: int = 1, seed: int = 0
) -> tuple[DynamoKvStore, BatchWriter, FakeClock]:
    clock = FakeClock()
    fake = FakeClient({"BatchWriteItem": table.batch_write_item})
    dynamo = Dynamo(
        CONFIG, fake, sleep=clock.sleep, clock=clock, backoff=FullJitter(rng=random.Random(seed))
    )
    writer = BatchWriter(
        dynamo,
        rounds=rounds,
        threads=threads,
        sleep=clock.sleep,
        backoff=FullJitter(base=0.05, cap=2.0, rng=random.Random(seed + 1)),
    )
    return DynamoKvStore(dynamo, TABLE, "u", writer), writer, clock


def items(n: int, prefix: bytes = b"k") -> list[tuple[bytes, bytes]]:
    return [(prefix + b"%03d" % i, b"v%d" % i) for i in range(n)]


def ident(key: bytes) -> tuple[str, bytes]:
    return ("u", key)


# -- chunking and de-duplication -----------------------------------------------------------------
def test_the_batch_size_is_dynamodbs_limit() -> None:
    assert BATCH_WRITE_MAX_ITEMS == 25


def test_items_go_in_25_item_batches() -> None:
    table = FakeTable()
    kv, _, _ = setup(table)
    result = kv.batch_put(items(60))
    assert [len(b) for b in table.batches] == [25, 25, 10]
    assert result.written == 60 and result.complete
    assert table.items == {ident(k): v for k, v in items(60)}


def test_the_batch_size_comes_from_the_named_constant(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(storage.batch, "BATCH_WRITE_MAX_ITEMS", 10)
    table = FakeTable()
    kv, _, _ = setup(table)
    kv.batch_put(items(35))
    assert [len(b) for b in table.batches] == [10, 10, 10, 5]


def test_keys_are_deduplicated_last_request_wins() -> None:
    table = FakeTable()
    kv, writer, _ = setup(table)
    ops = [
        kv.put_op(b"a", b"1"),
        kv.put_op(b"b", b"1"),
        kv.put_op(b"a", b"2"),
        kv.delete_op(b"b"),
        kv.put_op(b"c", b"1"),
        kv.delete_op(b"c"),
        kv.put_op(b"c", b"3"),
    ]
    result = writer.write(TABLE, ops)
    assert len(table.batches) == 1 and len(table.batches[0]) == 3
    assert table.items == {ident(b"a"): b"2", ident(b"c"): b"3"}
    assert table.applied[ident(b"b")] == "delete"
    assert (result.written, result.deleted) == (2, 1)


def test_ops_already_deduplicated_are_not_walked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = storage.batch.dedupe
    monkeypatch.setattr(storage.batch, "dedupe", lambda ops: calls.append(1) or real(ops))
    for table, flag, walks in ((FakeTable(), True, []), (FakeTable(), False, [1])):
        calls.clear()
        kv, writer, _ = setup(table)
        unique = real([kv.put_op(b"a", b"1"), kv.put_op(b"a", b"2"), kv.put_op(b"b", b"3")])
        assert writer.write(TABLE, unique, unique_keys=flag).written == 2 and calls == walks
        assert table.items == {ident(b"a"): b"2", ident(b"b"): b"3"}


def test_put_op_takes_bytes_like_keys_and_refuses_bad_ones() -> None:
    kv, _, _ = setup(FakeTable())
    op = kv.put_op(bytearray(b"k"), bytearray(b"v"))  # type: ignore[arg-type]
    assert type(op.key) is bytes and type(op.value) is bytes and op.size == 9 + 1 + 1 + 1
    assert op.request == {
        "PutRequest": {"Item": {"PK": {"S": "u"}, "SK": {"B": b"k"}, "Value": {"B": b"v"}}}
    }
    for bad in (b"", b"x" * 1025):
        with pytest.raises(errors.InvalidKeyError):
            kv.put_op(bad, b"v")
    with pytest.raises(errors.InvalidKeyError, match="keys are bytes"):
        kv.put_op("k", b"v")  # type: ignore[arg-type]
    with pytest.raises(errors.ValidationError, match="values are bytes"):
        kv.put_op(b"k", "v")  # type: ignore[arg-type]
    with pytest.raises(errors.ItemTooLargeError):
        kv.put_op(b"k", b"v" * 409_600)
    assert kv.put_op(b"k" * 1024, b"v").size == 9 + 1 + 1024 + 1


def test_duplicates_spread_over_many_batches_never_share_one() -> None:
    table = FakeTable()
    kv, _, _ = setup(table)
    rng = random.Random(11)
    pairs = [(b"k%02d" % rng.randrange(30), b"v%d" % i) for i in range(200)]
    result = kv.batch_put(pairs)  # FakeTable asserts no batch names a key twice
    last = dict(pairs)
    assert result.written == len(last)
    assert table.items == {ident(k): v for k, v in last.items()}


# -- unprocessed items ---------------------------------------------------------------------------
def test_unprocessed_items_are_retried_after_a_backoff() -> None:
    def plan(n: int, reqs: list[dict[str, Any]]) -> set[Any] | None:
        return {request_ident(r) for r in reqs[15:]} if n == 1 else None

    table = FakeTable(plan)
    kv, _, clock = setup(table)
    retries_before = metric(
        "datafold_dynamodb_retries_total",
        operation="BatchWriteItem",
        table=TABLE,
        code="UnprocessedItems",
    )
    result = kv.batch_put(items(25))
    assert [len(b) for b in table.batches] == [25, 10]
    assert table.batches[1] == table.batches[0][15:]
    assert len(clock.sleeps) == 1 and 0.0 <= clock.sleeps[0] <= 0.05
    assert result.written == 25 and result.retry_rounds == 1 and result.complete
    assert result.consumed_wcu == 25.0
    assert (
        metric(
            "datafold_dynamodb_retries_total",
            operation="BatchWriteItem",
            table=TABLE,
            code="UnprocessedItems",
        )
        == retries_before + 1
    )


def always_unprocessed(n: int, reqs: list[dict[str, Any]]) -> set[Any]:
    return {request_ident(r) for r in reqs}


def test_unprocessed_items_are_returned_after_bounded_rounds_never_dropped() -> None:
    table = FakeTable(always_unprocessed)
    kv, _, clock = setup(table, rounds=3)
    unprocessed_before = metric("datafold_batch_items_total", table=TABLE, outcome="unprocessed")
    result = kv.batch_put(items(30), raise_on_incomplete=False)
    # two chunks (25 + 5), each tried 3 times with growing backoff between tries
    assert [len(b) for b in table.batches] == [25, 25, 25, 5, 5, 5]
    assert len(clock.sleeps) == 4
    assert all(0 <= s <= 0.05 for s in clock.sleeps[0::2])
    assert all(0 <= s <= 0.10 for s in clock.sleeps[1::2])
    assert result.written == 0 and not result.complete
    assert sorted((op.key, op.value) for op in result.unprocessed) == items(30)
    assert isinstance(result.last_error, errors.ThrottledError)
    assert result.last_error.code == "UnprocessedItems"
    assert (
        metric("datafold_batch_items_total", table=TABLE, outcome="unprocessed")
        == unprocessed_before + 30
    )


def test_batch_put_raises_batch_incomplete_with_the_items_left() -> None:
    def plan(n: int, reqs: list[dict[str, Any]]) -> set[Any]:
        return {request_ident(r) for r in reqs if r["PutRequest"]["Item"]["SK"]["B"] >= b"k020"}

    table = FakeTable(plan)
    kv, _, _ = setup(table, rounds=2)
    with pytest.raises(errors.BatchIncompleteError) as info:
        kv.batch_put(items(25))
    assert sorted(info.value.items) == items(25)[20:]
    assert "5 unprocessed" in str(info.value) and TABLE in str(info.value)
    assert info.value.code == "UnprocessedItems"
    assert len(table.items) == 20


def test_batch_delete_raises_with_the_keys_left() -> None:
    table = FakeTable(always_unprocessed)
    kv, _, _ = setup(table, rounds=1)
    with pytest.raises(errors.BatchIncompleteError) as info:
        kv.batch_delete([b"x", b"y"])
    assert sorted(info.value.items) == [b"x", b"y"]


def test_rounds_that_make_progress_are_not_failures() -> None:
    def three_per_call(n: int, reqs: list[dict[str, Any]]) -> set[Any]:
        return {request_ident(r) for r in reqs[3:]}

    table = FakeTable(three_per_call)
    kv, _, _ = setup(table, rounds=3)
    result = kv.batch_put(items(25))
    assert len(table.batches) == 9  # 8 retry rounds > rounds=3, all of them with progress
    assert result.written == 25 and result.complete and result.retry_rounds == 8


def test_even_rounds_with_progress_are_bounded() -> None:
    def one_per_call(n: int, reqs: list[dict[str, Any]]) -> set[Any]:
        return {request_ident(r) for r in reqs[1:]}

    table = FakeTable(one_per_call)
    kv, _, _ = setup(table, rounds=2)
    result = kv.batch_put(items(25), raise_on_incomplete=False)
    assert len(table.batches) <= 3 * 2 + 1
    assert result.written == len(table.batches)
    assert result.written + len(result.unprocessed) == 25


# -- failures of the whole call --------------------------------------------------------------------
def test_a_poison_item_is_isolated_and_the_rest_written() -> None:
    table = FakeTable(poison={b"k013"})
    kv, _, _ = setup(table)
    rejected_before = metric("datafold_batch_items_total", table=TABLE, outcome="rejected")
    result = kv.batch_put(items(25), raise_on_incomplete=False)
    assert result.written == 24
    assert [r.op.key for r in result.rejected] == [b"k013"]
    err = result.rejected[0].error
    assert isinstance(err, errors.ValidationError)
    assert (err.operation, err.table, err.code) == ("BatchWriteItem", TABLE, "ValidationException")
    assert "'k013'" in str(err)
    assert set(table.items) == {ident(k) for k, _ in items(25)} - {ident(b"k013")}
    assert len(table.batches) <= 1 + 2 * 5  # halving: about 2 calls per level
    assert (
        metric("datafold_batch_items_total", table=TABLE, outcome="rejected") == rejected_before + 1
    )


def test_several_poison_items_are_each_isolated() -> None:
    table = FakeTable(poison={b"k000", b"k007", b"k024", b"k030"})
    kv, _, _ = setup(table)
    with pytest.raises(errors.BatchIncompleteError) as info:
        kv.batch_put(items(40))
    assert sorted(k for k, _ in info.value.items) == [b"k000", b"k007", b"k024", b"k030"]
    assert len(table.items) == 36


@pytest.mark.parametrize("code", ["ResourceNotFoundException", "AccessDeniedException"])
def test_a_permanent_error_rejects_the_items_without_retrying(code: str) -> None:
    table = FakeTable(lambda n, reqs: client_error(code, "BatchWriteItem"))
    kv, _, clock = setup(table)
    result = kv.batch_put(items(10), raise_on_incomplete=False)
    assert len(table.batches) == 1 and clock.sleeps == []
    assert sorted((r.op.key, r.op.value) for r in result.rejected) == items(10)
    assert all(r.error.code == code for r in result.rejected)


def test_throttling_past_the_call_policy_leaves_the_items_unprocessed() -> None:
    table = FakeTable(lambda n, reqs: client_error("ThrottlingException", "BatchWriteItem"))
    kv, _, _ = setup(table)
    result = kv.batch_put(items(10), raise_on_incomplete=False)
    assert len(table.batches) == CONFIG.max_attempts
    assert sorted((op.key, op.value) for op in result.unprocessed) == items(10)
    assert isinstance(result.last_error, errors.ThrottledError)
    assert result.throttled_calls == 1


# -- nothing is ever dropped -----------------------------------------------------------------------
def random_plan(rng: random.Random) -> Plan:
    def plan(n: int, reqs: list[dict[str, Any]]) -> set[Any] | Exception | None:
        roll = rng.random()
        if roll < 0.15:
            return client_error("ProvisionedThroughputExceededException", "BatchWriteItem")
        if roll < 0.25:
            return client_error("InternalServerError", "BatchWriteItem", status=500)
        if roll < 0.27:
            return client_error("AccessDeniedException", "BatchWriteItem")
        if roll < 0.6:
            return {request_ident(r) for r in reqs if rng.random() < 0.5}
        return None

    return plan


@pytest.mark.parametrize("seed", range(60))
def test_every_distinct_item_is_accounted_for_exactly_once(seed: int) -> None:
    rng = random.Random(seed)
    table = FakeTable(random_plan(rng))
    pool = [b"key%02d" % i for i in range(rng.randrange(1, 70))]
    table.poison = {k for k in pool if rng.random() < 0.05}
    kv, writer, _ = setup(table, rounds=rng.randrange(1, 5), threads=rng.choice([1, 4]), seed=seed)
    ops = []
    for i in range(rng.randrange(1, 150)):
        key = rng.choice(pool)
        ops.append(kv.delete_op(key) if rng.random() < 0.2 else kv.put_op(key, b"%d" % i))
    last = {op.key: op for op in ops}

    result: BatchResult = writer.write(TABLE, ops)
    writer.close()

    done = {k for (_, k) in table.applied}
    left = [op.key for op in result.unprocessed]
    rejected = [r.op.key for r in result.rejected]
    assert result.written + result.deleted + len(left) + len(rejected) == len(last)
    assert len(set(left)) == len(left) and len(set(rejected)) == len(rejected)
    assert done | set(left) | set(rejected) == set(last)
    assert not done & set(left) and not done & set(rejected) and not set(left) & set(rejected)
    assert result.written == sum(1 for a in table.applied.values() if a == "put")
    assert result.deleted == sum(1 for a in table.applied.values() if a == "delete")
    for key in done:  # the last request for each key is the one that landed
        assert table.items.get(ident(key)) == last[key].value
    assert set(rejected) >= table.poison & set(last)
    for r in result.rejected:
        assert isinstance(r.error, errors.PermanentError)
    for op in result.unprocessed:
        assert op is last[op.key]


class RecordingPacer:
    """A limiter that grants everything and remembers every feedback."""

    def __init__(self) -> None:
        self.feedback_calls: list[tuple[bool, str | None, tuple[str, ...]]] = []

    def acquire(
        self,
        table: str,
        units: float,
        deadline: float | None = None,
        partition: Any = None,
        **more: Any,
    ) -> float:
        return 0.0

    def admit(self, *args: Any) -> float:
        return 0.0

    def feedback(
        self,
        table: str,
        *,
        units: float,
        throttled: bool,
        partition: str | None = None,
        reasons: tuple[str, ...] = (),
    ) -> None:
        self.feedback_calls.append((throttled, partition, reasons))


def key_range_refusal() -> Exception:
    err = client_error("ProvisionedThroughputExceededException", "BatchWriteItem")
    err.response["ThrottlingReasons"] = [  # type: ignore[index]
        {"reason": "TableWriteKeyRangeThroughputExceeded", "resource": "arn:aws:dynamodb:x"}
    ]
    return err


def test_a_call_refused_whole_goes_to_the_limiter_at_once_not_to_blind_retries() -> None:
    # Refused whole twice, then admitted: with a limiter each refusal is told to it (with its
    # reason and the partition), and the next round is paced by it; nothing written twice.
    table = FakeTable(plan=lambda n, reqs: key_range_refusal() if n <= 2 else None)
    kv, writer, _ = setup(table)
    pacer = RecordingPacer()
    writer.pacer = pacer
    result = kv.batch_put(items(10))
    assert result.complete and result.written == 10 and len(table.batches) == 3
    refused = [f for f in pacer.feedback_calls if f[0]]
    assert refused == [(True, "u", ("TableWriteKeyRangeThroughputExceeded",))] * 2
    assert pacer.feedback_calls[-1] == (False, "u", ())
    assert result.retry_rounds == 2


def test_without_a_limiter_the_calls_own_policy_retries_a_throttle() -> None:
    table = FakeTable(plan=lambda n, reqs: key_range_refusal() if n <= 2 else None)
    kv, writer, _ = setup(table)
    assert writer.pacer is None
    result = kv.batch_put(items(10))
    assert result.complete and len(table.batches) == 3 and result.retry_rounds == 0
