"""An erase is final, step by step on real Redis with a scripted DynamoDB: a write whose job
began before ``reset_user`` of its user is superseded and never sent, one that began after
waits until the erase is over, and the erase reads keys only once the older writes in flight
have ended."""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import redis

from pipeline import ids
from pipeline.config import PipelineConfig
from pipeline.ledger import Ledger
from pipeline.messages import Plan, Segment, SingleWrite
from pipeline.payloads import PayloadStore
from pipeline.states import Admission, JobKind, Outcome, PlanKind, Target
from storage import Dynamo, DynamoConfig, DynamoNamespacedStore
from tests.doubles import FakeClient
from tests.integration.test_segment_runner import REDIS_URL, ListEnqueuer
from worker.admission import Gate
from worker.planner import Planner
from worker.segments import SegmentRunner
from worker.single import SingleWriteRunner

CFG = PipelineConfig()


def _parts(**config: float) -> tuple[DynamoNamespacedStore, FakeClient, Ledger, PayloadStore]:
    client = FakeClient(
        {
            "DescribeTable": lambda **p: {"Table": {"TableStatus": "ACTIVE"}},
            "PutItem": lambda **p: {},
            "BatchWriteItem": lambda **p: {"UnprocessedItems": {}},
            "ListTables": lambda **p: {"TableNames": []},
            "Query": lambda **p: {"Items": []},
        }
    )
    dcfg = DynamoConfig(region="us-east-1", max_attempts=1, fast_writes=False, **config)
    store = DynamoNamespacedStore(dcfg, dynamo=Dynamo(dcfg, client))
    r = redis.Redis.from_url(REDIS_URL)
    return store, client, Ledger(r, ttl=600), PayloadStore(r, ttl=600)


def _put(ledger: Ledger, user: str) -> SingleWrite:
    """A single put enqueued now (its job made, planned and sealed as the producer does)."""
    job = uuid.uuid4().hex
    seq = ledger.sequencer.next()
    ledger.create(job, kind=JobKind.PUT, namespace="ns", user_id=user, seq=seq)
    w = SingleWrite(job, "ns", user, b"k", b"v", seq)
    ledger.plan(job, w.seg, 1)
    ledger.seal(job)
    return w


def _erase(ledger: Ledger, user: str) -> Plan:
    """``reset_user`` enqueued now: the job, its plan step and the erase mark."""
    job = uuid.uuid4().hex
    seq = ledger.create(job, kind=JobKind.RESET_USER, user_id=user)
    ledger.plan(job, ids.PLAN, 0)
    ledger.erasure.mark(user, job, seq)
    return Plan(job, PlanKind.RESET_USER, user)


def _single_runner(store: DynamoNamespacedStore, ledger: Ledger, payloads: PayloadStore) -> Any:
    enq = ListEnqueuer(payloads)
    runner = SingleWriteRunner(
        store=store, ledger=ledger, enqueue=enq, cfg=CFG, payloads=payloads, rng=random.Random(1)
    )
    return runner, enq


def test_a_put_enqueued_before_an_erase_is_superseded_and_never_sent() -> None:
    store, client, ledger, payloads = _parts()
    user = f"eve-{uuid.uuid4().hex[:8]}"
    w = _put(ledger, user)
    _erase(ledger, user)
    runner, _ = _single_runner(store, ledger, payloads)
    assert runner.run(w) == Outcome.DONE
    st = ledger.status(w.job)
    assert (st.state, st.written, st.superseded) == ("succeeded", 0, 1)
    assert "PutItem" not in client.ops()


def test_a_put_enqueued_after_an_erase_waits_for_it_then_lands() -> None:
    store, client, ledger, payloads = _parts()
    user = f"eve-{uuid.uuid4().hex[:8]}"
    plan = _erase(ledger, user)
    w = _put(ledger, user)
    runner, enq = _single_runner(store, ledger, payloads)
    assert runner.run(w) == Outcome.DEFERRED  # the erase is not over: it would delete this
    assert "PutItem" not in client.ops() and enq.segments[-1][0] == w
    planner = Planner(store=store, ledger=ledger, enqueue=enq, cfg=CFG, payloads=payloads)
    planner.run(plan)  # nothing of the user to delete: the erase is over at once
    assert ledger.status(plan.job).finished
    assert runner.run(w) == Outcome.DONE
    st = ledger.status(w.job)
    assert (st.written, st.superseded) == (1, 0)
    assert client.ops().count("PutItem") == 1


def test_a_segment_of_a_load_begun_before_an_erase_is_superseded_whole() -> None:
    store, client, ledger, payloads = _parts()
    user = f"eve-{uuid.uuid4().hex[:8]}"
    job = uuid.uuid4().hex
    ledger.create(job, kind=JobKind.LOAD, namespace="ns", user_id=user)
    seg = Segment(job, ids.segment("s", 0, 0), Target.KV, "ns", user, [(b"a", b"1"), (b"b", b"2")])
    ledger.plan(job, seg.seg, seg.n)
    enq = ListEnqueuer(payloads)
    enq.stage(seg)
    ledger.seal(job)
    _erase(ledger, user)
    runner = SegmentRunner(store=store, ledger=ledger, enqueue=enq, cfg=CFG, payloads=payloads)
    assert runner.run(seg.without_ops()) == Outcome.DONE
    st = ledger.status(job)
    assert (st.state, st.items, st.written, st.superseded) == ("succeeded", 2, 0, 2)
    assert "BatchWriteItem" not in client.ops()
    assert payloads.get(job, seg.seg) is None  # its items are not left behind


def test_the_erase_reads_keys_only_once_older_writes_in_flight_have_ended() -> None:
    store, client, ledger, payloads = _parts()
    user = f"eve-{uuid.uuid4().hex[:8]}"
    w = _put(ledger, user)
    writing = Gate(ledger, 30.0).enter(w.job, w.seg, user, "live", w.seq)  # admitted, still writing
    assert writing.admission is Admission.ADMITTED
    plan = _erase(ledger, user)
    enq = ListEnqueuer(payloads)
    planner = Planner(store=store, ledger=ledger, enqueue=enq, cfg=CFG, payloads=payloads)
    assert planner.run(plan) == 0
    assert "ListTables" not in client.ops() and "Query" not in client.ops()
    assert enq.segments[-1][0] == plan and not ledger.status(plan.job).finished
    writing.leave()
    planner.run(plan)
    assert "Query" in client.ops() and ledger.status(plan.job).finished
    # A later write of the same user is admitted again once the erase is seen over.
    later = _put(ledger, user)
    assert Gate(ledger, 30.0).enter(later.job, later.seg, user, "t", later.seq).admission is (
        Admission.ADMITTED
    )


def test_a_dead_writer_holds_the_erase_back_until_its_last_call_cannot_land() -> None:
    # Its lease ends, and then the longest its last DynamoDB call may go on retrying (the
    # grace: retry_max_seconds + read_timeout, here 0.3 s): only then may the erase read keys.
    store, _, ledger, payloads = _parts(retry_max_seconds=0.2, read_timeout=0.1)
    user = f"eve-{uuid.uuid4().hex[:8]}"
    w = _put(ledger, user)
    Gate(ledger, 0.2).enter(w.job, w.seg, user, "dead", w.seq)  # then the worker died: no leave
    plan = _erase(ledger, user)
    planner = Planner(
        store=store, ledger=ledger, enqueue=ListEnqueuer(payloads), cfg=CFG, payloads=payloads
    )
    time.sleep(0.3)  # past its lease, within the grace
    assert ledger.erasure.pending(user, 0.3) == 1 and ledger.erasure.pending(user, 0.0) == 0
    assert planner.run(plan) == 0 and not ledger.status(plan.job).finished
    time.sleep(0.3)  # past the grace too
    planner.run(plan)
    assert ledger.status(plan.job).finished


def test_a_stale_delivery_leaving_does_not_unlist_the_live_one() -> None:
    # Delivery "a" was admitted, stalled past its lease; "b" took the segment over and was
    # admitted too. "a" wakes up fenced and leaves: "b", still writing, must stay listed.
    _, _, ledger, _ = _parts()
    user = f"eve-{uuid.uuid4().hex[:8]}"
    w = _put(ledger, user)
    stale = Gate(ledger, 30.0).enter(w.job, w.seg, user, "a", w.seq)
    live = Gate(ledger, 30.0).enter(w.job, w.seg, user, "b", w.seq)
    _erase(ledger, user)
    stale.leave()
    assert ledger.erasure.pending(user, 0.0) == 1
    live.leave()
    assert ledger.erasure.pending(user, 0.0) == 0
