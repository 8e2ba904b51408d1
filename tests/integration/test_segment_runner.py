"""The segment runner and the ledger together, on real Redis, with a scripted DynamoDB client
(no Celery): requeue with backoff, dead letters, poison isolation, delivery bound, ordering,
exactly-once counting."""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
import redis

from pipeline import keys
from pipeline.config import PipelineConfig
from pipeline.ledger import Ledger
from pipeline.messages import Plan, Segment, SingleWrite
from pipeline.payloads import PayloadStore
from pipeline.states import Outcome
from pipeline.status import LeaseStatus
from producers import Producer
from storage import Dynamo, DynamoConfig, DynamoNamespacedStore
from tests.doubles import FakeClient, FakeClock, client_error
from tests.support.redis_at import redis_url
from worker.delivery import Delivery
from worker.segments import SegmentRunner

REDIS_URL = redis_url(9)


class ListEnqueuer:
    """Stages like the real enqueuer (items and journal in Redis); "sends" to a list."""

    def __init__(self, payloads: PayloadStore | None = None) -> None:
        self.segments: list[tuple[Segment, float]] = []
        self.payloads = payloads

    def stage(self, m: Any, countdown: float = 0.0) -> None:
        if self.payloads is not None:
            if isinstance(m, Segment):
                message = m.without_ops().to_message()
                self.payloads.sent(m.job, m.seg, message, 0.0, ops=m.ops, refs=m.refs)
            else:
                self.payloads.sent(m.job, m.seg, m.to_message(), 0.0)

    def send(self, m: Any, countdown: float = 0.0) -> None:
        self.segments.append((m, countdown))

    def segment(self, seg: Segment, countdown: float = 0.0) -> None:
        self.stage(seg, countdown)
        self.send(seg, countdown)

    def single(self, write: SingleWrite, countdown: float = 0.0) -> None:
        self.stage(write, countdown)
        self.send(write, countdown)

    def plan(self, plan: Plan) -> None:
        self.stage(plan)
        self.send(plan)


class PayloadFirstRunner(SegmentRunner):
    """Stores a segment's items as the enqueuer does, then runs the message that names them."""

    def run(self, seg: Segment, delivery: Delivery | None = None) -> Outcome:
        if seg.ops is not None:
            message = seg.without_ops().to_message()
            self.payloads.sent(seg.job, seg.seg, message, 0.0, ops=seg.ops, refs=seg.refs)
            seg = seg.without_ops()
        return super().run(seg, delivery)


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    r = redis.Redis.from_url(REDIS_URL)
    yield Ledger(r, ttl=600)


def _runner(
    ledger: Ledger,
    batch: Callable[..., dict[str, Any]],
    describe: Callable[..., dict[str, Any]] = lambda **p: {"Table": {"TableStatus": "ACTIVE"}},
    **cfg: Any,
) -> tuple[SegmentRunner, ListEnqueuer, FakeClient]:
    client = FakeClient({"DescribeTable": describe, "BatchWriteItem": batch})
    dcfg = DynamoConfig(region="us-east-1", batch_rounds=2, max_attempts=2)
    clock = FakeClock()
    store = DynamoNamespacedStore(
        dcfg, dynamo=Dynamo(dcfg, client, sleep=clock.sleep), sleep=clock.sleep
    )
    store.writer.sleep = clock.sleep
    payloads = PayloadStore(ledger.r, ttl=600)
    enq = ListEnqueuer(payloads)
    pcfg = replace(PipelineConfig(), **cfg)
    return (
        PayloadFirstRunner(
            store=store,
            ledger=ledger,
            enqueue=enq,
            cfg=pcfg,
            payloads=payloads,
            rng=random.Random(1),
            sleep=clock.sleep,
            clock=clock,
        ),
        enq,
        client,
    )


def _ok(**params: Any) -> dict[str, Any]:
    return {"UnprocessedItems": {}}


def _segment(job: str, n: int, **kw: Any) -> Segment:
    return Segment(
        job=job,
        seg=kw.pop("seg", "s0"),
        target="kv",
        ns="ns",
        user="u",
        ops=[(b"k%03d" % i, b"v%d" % i) for i in range(n)],
        **kw,
    )


def _job(ledger: Ledger, segments: dict[str, int]) -> str:
    job = uuid.uuid4().hex
    ledger.create(job, kind="load", namespace="ns", user_id="u")
    for seg, n in segments.items():
        ledger.plan(job, seg, n)
    ledger.seal(job)
    return job


def test_a_redelivered_segment_is_counted_once(ledger: Ledger) -> None:
    runner, _, client = _runner(ledger, _ok)
    job = _job(ledger, {"s0": 60})
    assert runner.run(_segment(job, 60)) == "done"
    assert runner.run(_segment(job, 60)) == "duplicate"
    st = ledger.status(job)
    assert (st.state, st.items, st.written) == ("succeeded", 60, 60)
    assert client.ops().count("BatchWriteItem") == 3  # 25 + 25 + 10, once


def test_duplicates_in_a_segment_are_superseded_last_wins(ledger: Ledger) -> None:
    sent: list[dict[str, Any]] = []

    def batch(**p: Any) -> dict[str, Any]:
        sent.extend(p["RequestItems"]["DataFoldStorage-ns"])
        return {}

    runner, _, _ = _runner(ledger, batch)
    job = _job(ledger, {"s0": 3})
    seg = replace(_segment(job, 0), ops=[(b"a", b"1"), (b"b", b"2"), (b"a", b"3")])
    runner.run(seg)
    st = ledger.status(job)
    assert (st.written, st.superseded, st.state) == (2, 1, "succeeded")
    values = {
        r["PutRequest"]["Item"]["SK"]["B"]: r["PutRequest"]["Item"]["Value"]["B"] for r in sent
    }
    assert values == {b"a": b"3", b"b": b"2"}


def test_unprocessed_leftovers_are_requeued_with_backoff_then_finish(ledger: Ledger) -> None:
    def stingy(**p: Any) -> dict[str, Any]:
        reqs = p["RequestItems"]["DataFoldStorage-ns"]
        return {"UnprocessedItems": {"DataFoldStorage-ns": reqs[-2:]}}

    runner, enq, _ = _runner(ledger, stingy, requeue_base_delay=2.0)
    job = _job(ledger, {"s0": 10})
    assert runner.run(_segment(job, 10, part="p", idx=0)) == "requeued"
    ((child, countdown),) = enq.segments
    assert child.seg == "s0.r1" and child.attempt == 1 and (child.part, child.idx) == ("p", 0)
    assert 1.0 <= countdown <= 2.0 and len(child.ops) == 2
    st = ledger.status(job)
    assert (st.state, st.written, st.requeues, st.segments_planned) == ("running", 8, 1, 2)
    assert ledger.next_index(job, "p") == 0  # the partition waits for the child

    runner2, _, _ = _runner(ledger, _ok)
    assert runner2.run(child) == "done"
    st = ledger.status(job)
    assert (st.state, st.written) == ("succeeded", 10)
    assert ledger.next_index(job, "p") == 1


def test_leftovers_past_the_requeue_bound_are_dead_lettered_with_reason(ledger: Ledger) -> None:
    def never(**p: Any) -> dict[str, Any]:
        return {"UnprocessedItems": p["RequestItems"]}

    runner, enq, _ = _runner(ledger, never, max_requeues=1)
    job = _job(ledger, {"s0": 4})
    seg = _segment(job, 4)
    assert runner.run(seg) == "requeued"
    child = enq.segments[0][0]
    assert runner.run(child) == "dead"
    st = ledger.status(job)
    assert (st.state, st.written, st.dead_lettered) == ("failed", 0, 4)
    letters = list(ledger.dead_letters(job))
    assert sorted(d.key for d in letters) == [b"k000", b"k001", b"k002", b"k003"]
    assert all(d.code == "UnprocessedItems" and "after 1 requeues" in d.reason for d in letters)
    assert {d.key: d.value for d in letters} == dict(seg.ops)  # values kept, for replay


def test_a_poison_item_is_isolated_and_dead_lettered_alone(ledger: Ledger) -> None:
    def picky(**p: Any) -> dict[str, Any]:
        reqs = p["RequestItems"]["DataFoldStorage-ns"]
        if any(r["PutRequest"]["Item"]["SK"]["B"] == b"k013" for r in reqs):
            raise client_error("ValidationException", "BatchWriteItem")
        return {}

    runner, _, _ = _runner(ledger, picky)
    job = _job(ledger, {"s0": 30})
    assert runner.run(_segment(job, 30)) == "dead"
    st = ledger.status(job)
    assert (st.state, st.written, st.dead_lettered) == ("partial", 29, 1)
    (d,) = ledger.dead_letters(job)
    assert (d.key, d.value, d.code) == (b"k013", b"v13", "ValidationException")
    assert "k013" in d.reason


def test_a_segment_that_keeps_killing_workers_is_dead_lettered(ledger: Ledger) -> None:
    runner, _, client = _runner(ledger, _ok, max_deliveries=2)
    job = _job(ledger, {"s0": 5})
    for holder in ("a", "b"):  # two deliveries that took the lease and vanished
        assert ledger.take(job, "s0", holder, 0.001).status is LeaseStatus.TAKEN
        time.sleep(0.005)
    assert runner.run(_segment(job, 5)) == "dead"
    st = ledger.status(job)
    assert (st.state, st.dead_lettered) == ("failed", 5)
    assert {d.code for d in ledger.dead_letters(job)} == {"TooManyDeliveries"}
    assert "BatchWriteItem" not in client.ops()


def test_a_segment_waits_for_its_turn_in_the_partition(ledger: Ledger) -> None:
    runner, enq, client = _runner(ledger, _ok)
    job = _job(ledger, {"p.0": 2, "p.1": 2})
    second = _segment(job, 2, seg="p.1", part="p", idx=1)
    assert runner.run(second) == "deferred"
    assert enq.segments == [(second.without_ops(), 1.0)] and client.ops() == []
    assert runner.run(_segment(job, 2, seg="p.0", part="p", idx=0)) == "done"
    assert runner.run(second) == "done"
    assert ledger.status(job).state == "succeeded"


def test_a_named_payload_is_loaded_written_and_removed(ledger: Ledger) -> None:
    runner, _, client = _runner(ledger, _ok)
    payloads = runner.payloads
    job = _job(ledger, {"s0": 60})
    seg = _segment(job, 60)
    assert seg.ops is not None
    payloads.sent(job, "s0", seg.without_ops().to_message(), 0.0, ops=seg.ops)
    assert runner.run(seg.without_ops()) == "done"
    assert payloads.get(job, "s0") is None
    st = ledger.status(job)
    assert (st.state, st.written) == ("succeeded", 60)
    # A redelivery after the payload is gone is a duplicate, not a loss.
    assert runner.run(seg.without_ops()) == "duplicate"
    assert client.ops().count("BatchWriteItem") == 3


def test_a_payload_gone_before_writing_is_dead_lettered_with_the_reason(ledger: Ledger) -> None:
    runner, _, client = _runner(ledger, _ok)
    job = _job(ledger, {"s0": 60})
    assert runner.run(_segment(job, 60).without_ops()) == "dead"
    st = ledger.status(job)
    # One letter stands for the 60 items it cannot name: the totals stay exact.
    assert st.state == "failed" and st.dead_lettered == 60 and st.written == 0
    assert st.items == st.processed == 60
    (letter,) = ledger.dead_letters(job)
    assert letter.code == "PayloadLost" and letter.key == b"s0"
    assert "60 items" in letter.reason and "noeviction" in letter.reason
    assert client.ops().count("BatchWriteItem") == 0
    # It names no item: a replay must not turn it into a delete of a key named like it.
    enq = ListEnqueuer()
    producer = Producer(
        runner.store.config, PipelineConfig(redis_url=REDIS_URL), redis_client=ledger.r, enqueue=enq
    )
    replay = producer.replay_dead_letters(job).status()
    assert enq.segments == [] and replay.items == 0


def test_a_corrupt_payload_is_dead_lettered_not_guessed_at(ledger: Ledger) -> None:
    runner, _, _ = _runner(ledger, _ok)
    job = _job(ledger, {"s0": 2})
    ledger.r.set(keys.segment_payload(job, "s0"), b"DFP1\x00\x00")
    assert runner.run(_segment(job, 2).without_ops()) == "dead"
    (letter,) = ledger.dead_letters(job)
    assert letter.code == "PayloadLost" and "unreadable" in letter.reason
