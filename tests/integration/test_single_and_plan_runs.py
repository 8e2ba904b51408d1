"""Single writes and delete plans on real Redis with a scripted DynamoDB: a write whose first
attempt landed counts as written, a plan that no retry can help ends its job with the reason,
and both leave no journal entry behind once recorded."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest
import redis

from pipeline import ids, keys
from pipeline.config import PipelineConfig
from pipeline.ledger import Ledger
from pipeline.messages import WRITE_TASK, Plan, SingleWrite
from pipeline.payloads import PayloadStore
from pipeline.states import JobKind, Outcome, PlanKind
from pipeline.status import LeaseStatus
from storage import Dynamo, DynamoConfig, DynamoNamespacedStore
from storage.errors import BackendUnavailableError
from tests.doubles import FakeClient, FakeClock, client_error
from tests.integration.test_segment_runner import REDIS_URL, ListEnqueuer
from worker.planner import Planner
from worker.single import SingleWriteRunner


def _store(handlers: dict[str, Any]) -> tuple[DynamoNamespacedStore, FakeClient]:
    client = FakeClient(
        {"DescribeTable": lambda **p: {"Table": {"TableStatus": "ACTIVE"}}, **handlers}
    )
    dcfg = DynamoConfig(region="us-east-1", max_attempts=1)
    clock = FakeClock()
    store = DynamoNamespacedStore(dcfg, dynamo=Dynamo(dcfg, client, sleep=clock.sleep))
    return store, client


def _ledger() -> tuple[Ledger, PayloadStore]:
    r = redis.Redis.from_url(REDIS_URL)
    return Ledger(r, ttl=600), PayloadStore(r, ttl=600)


def _single(seq_stored: int, limiter: Any = None) -> tuple[Outcome, Ledger, str]:
    def refused(**p: Any) -> dict[str, Any]:
        assert p["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
        exc = client_error("ConditionalCheckFailedException", "PutItem")
        exc.response["Item"] = {  # type: ignore[typeddict-unknown-key]
            **p["Item"],
            "Seq": {"N": str(seq_stored)},
        }
        raise exc

    store, _ = _store({"PutItem": refused})  # no read-back: the refusal carries the item
    ledger, payloads = _ledger()
    job = uuid.uuid4().hex
    ledger.create(job, kind=JobKind.PUT, namespace="ns", user_id="u")
    w = SingleWrite(job, "ns", "u", b"k", b"v", 42)
    ledger.plan(job, w.seg, 1)
    ledger.seal(job)
    payloads.sent(job, w.seg, w.to_message(), 0.0, task=WRITE_TASK)
    runner = SingleWriteRunner(
        store=store,
        ledger=ledger,
        enqueue=ListEnqueuer(),
        cfg=PipelineConfig(),
        payloads=payloads,
        rng=random.Random(1),
        limiter=limiter,
    )
    return runner.run(w), ledger, job


def test_a_write_whose_first_attempt_landed_counts_as_written() -> None:
    outcome, ledger, job = _single(seq_stored=42)  # our own sequence is stored: it landed
    st = ledger.status(job)
    assert outcome == Outcome.DONE and (st.state, st.written, st.superseded) == ("succeeded", 1, 0)
    assert ledger.r.hget(keys.segment_messages(), f'["{job}", "w"]') is None  # journal cleared


class Limiter:
    """Records how single writes take the limiter; Redis fails where told."""

    partitions = True

    def __init__(self, fail_acquire: bool = False, fail_feedback: bool = False) -> None:
        self.fail_acquire, self.fail_feedback = fail_acquire, fail_feedback
        self.calls: list[tuple[str, Any]] = []

    def acquire(self, table: str, units: float, **kw: Any) -> float:
        self.calls.append(("acquire", kw))
        if self.fail_acquire:
            raise BackendUnavailableError("Redis gone", operation="RateLimiter.acquire")
        return 0.0

    def feedback(self, table: str, **kw: Any) -> None:
        self.calls.append(("feedback", kw))
        if self.fail_feedback:
            raise BackendUnavailableError("Redis gone", operation="RateLimiter.feedback")


def test_a_single_write_takes_the_limiter_with_priority_and_reports_after() -> None:
    lim = Limiter()
    outcome, ledger, job = _single(seq_stored=42, limiter=lim)
    assert outcome == Outcome.DONE and ledger.status(job).written == 1
    assert [c for c, _ in lim.calls] == ["acquire", "feedback"]
    assert lim.calls[0][1] == {"priority": True} and lim.calls[1][1]["units"] == 1.0


def test_redis_gone_at_the_limiter_spends_no_attempt_and_a_landed_write_stands() -> None:
    with pytest.raises(BackendUnavailableError):  # up to the runtime's patience, not a requeue
        _single(seq_stored=42, limiter=Limiter(fail_acquire=True))
    outcome, ledger, job = _single(seq_stored=42, limiter=Limiter(fail_feedback=True))
    st = ledger.status(job)
    assert outcome == Outcome.DONE and (st.state, st.written) == ("succeeded", 1)


def test_a_write_beaten_by_a_newer_one_is_superseded() -> None:
    outcome, ledger, job = _single(seq_stored=43)
    st = ledger.status(job)
    assert outcome == Outcome.DONE and (st.written, st.superseded) == (0, 1)


def test_a_plan_no_retry_can_help_ends_its_job_with_the_reason() -> None:
    def denied(**p: Any) -> dict[str, Any]:
        raise client_error("AccessDeniedException", "DescribeTable")

    store, _ = _store({"DescribeTable": denied})
    ledger, payloads = _ledger()
    job = uuid.uuid4().hex
    ledger.create(job, kind=JobKind.CLEAR_SCHEMAS, user_id="u")
    ledger.plan(job, ids.PLAN, 0)
    plan = Plan(job, PlanKind.CLEAR_SCHEMAS, "u")
    payloads.sent(job, ids.PLAN, plan.to_message(), 0.0)
    planner = Planner(
        store=store, ledger=ledger, enqueue=ListEnqueuer(), cfg=PipelineConfig(), payloads=payloads
    )
    assert planner.run(plan) == 0
    st = ledger.status(job)
    assert (st.state, st.failures) == ("failed", 1) and "AccessDeniedException" in st.error
    assert all(j != job for j, *_ in payloads.overdue(float("inf"), 1000))  # journal cleared


def test_a_retry_its_parent_was_recorded_without_never_counts() -> None:
    store, client = _store({"PutItem": lambda **p: {}})
    ledger, payloads = _ledger()
    job = uuid.uuid4().hex
    ledger.create(job, kind=JobKind.PUT, namespace="ns", user_id="u")
    w = SingleWrite(job, "ns", "u", b"k", b"v", 42)
    ledger.plan(job, w.seg, 1)
    ledger.seal(job)
    runner = SingleWriteRunner(
        store=store,
        ledger=ledger,
        enqueue=ListEnqueuer(payloads),
        cfg=PipelineConfig(),
        payloads=payloads,
        rng=random.Random(1),
    )
    stale_retry = w.retry()  # sent by a run whose recording then failed
    assert runner.run(stale_retry) == Outcome.DEFERRED  # its parent may still plan it
    assert runner.run(w) == Outcome.DONE  # recorded without that retry
    assert runner.run(stale_retry) == Outcome.DUPLICATE
    st = ledger.status(job)
    assert (st.state, st.items, st.written) == ("succeeded", 1, 1)
    assert client.ops().count("PutItem") == 1


def test_a_second_planner_waits_while_the_first_plans() -> None:
    store, _ = _store({})
    ledger, payloads = _ledger()
    job = uuid.uuid4().hex
    ledger.create(job, kind=JobKind.CLEAR_SCHEMAS, user_id="u")
    ledger.plan(job, ids.PLAN, 0)
    assert ledger.take(job, ids.PLAN, "first", 30.0).status is LeaseStatus.TAKEN
    enq = ListEnqueuer(payloads)
    planner = Planner(
        store=store, ledger=ledger, enqueue=enq, cfg=PipelineConfig(), payloads=payloads
    )
    plan = Plan(job, PlanKind.CLEAR_SCHEMAS, "u")
    assert planner.run(plan) == 0
    ((again, countdown),) = enq.segments  # the plan itself, sent again for later
    assert again == plan and countdown > 1.0
    assert ledger.status(job).state == "running" and not ledger.is_done(job, ids.PLAN)
