"""A job's producer on real Redis: the queued-bytes budget (backpressure), the producer token
that fences a producer off its job, heartbeats, and the honest stops (``incomplete``,
``abandoned``). Each test has Redis database 12 to itself: the budget counts every job there.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis

from pipeline import keys
from pipeline.ledger import Ledger
from pipeline.segmenter import Segmenter
from pipeline.states import JobKind, JobState
from pipeline.status import PlanStatus, Recorded
from producers.session import BudgetGate, ProducerSession, Progress
from storage.errors import NotResumableError, ProducerFencedError
from tests.integration.test_segment_runner import ListEnqueuer


def _job(ledger: Ledger, token: str = "") -> str:
    job = uuid.uuid4().hex[:16]
    ledger.create(job, kind=JobKind.LOAD, namespace="ns", user_id="u", producer=token)
    return job


def test_a_segment_is_planned_only_while_every_jobs_queued_bytes_leave_room(
    r: redis.Redis[Any],
) -> None:
    ledger = Ledger(r, ttl=600)
    a, b = _job(ledger), _job(ledger)
    assert ledger.plan(a, "a0", 5, size=600, budget=1000).status is PlanStatus.PLANNED
    full = ledger.plan(b, "b0", 5, size=600, budget=1000)
    assert (full.status, full.queued) == (PlanStatus.FULL, 600)
    assert ledger.status(b).items == 0  # nothing planned: nothing counted
    assert ledger.producing.queued_bytes() == 600
    ledger.finish(a, "a0", written=5)
    assert ledger.producing.queued_bytes() == 0
    assert ledger.plan(b, "b0", 5, size=600, budget=1000).status is PlanStatus.PLANNED
    # Planned already: planning again neither counts nor waits, whatever the budget.
    assert ledger.plan(b, "b0", 5, size=600, budget=1).status is PlanStatus.PLANNED
    assert ledger.status(b).items == 5 and ledger.producing.queued_bytes() == 600


def test_one_segment_over_the_budget_still_goes_when_nothing_is_queued(
    r: redis.Redis[Any],
) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger)
    assert ledger.plan(job, "s0", 1, size=5000, budget=1000).status is PlanStatus.PLANNED
    assert ledger.plan(job, "s1", 1, size=1, budget=1000).status is PlanStatus.FULL


def test_requeued_leftovers_keep_their_bytes_until_recorded_and_a_final_job_frees_all(
    r: redis.Redis[Any],
) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger)
    ledger.plan(job, "s0", 4, size=400, budget=10_000)
    ledger.plan(job, "s1", 4, size=100, budget=10_000)
    ledger.seal(job)
    assert ledger.finish(job, "s0", written=2, child="s0.1") is Recorded.FIRST
    assert ledger.producing.queued_bytes() == 500  # the child carries the leftovers
    ledger.finish(job, "s0.1", written=2)
    assert ledger.producing.queued_bytes() == 100
    ledger.finish(job, "s1", written=4)
    assert ledger.status(job).state is JobState.SUCCEEDED
    assert ledger.producing.queued_bytes() == 0
    assert r.hkeys(keys.queued_bytes()) == [] and not r.exists(keys.job_sizes(job))


def test_the_budget_forgets_jobs_whose_results_expired(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger)
    ledger.plan(job, "s0", 1, size=700, budget=1000)
    r.delete(keys.job(job))  # expired with its results: its segments never run
    assert ledger.producing.heal_queued() == 1
    assert ledger.producing.queued_bytes() == 0


def test_the_gate_waits_for_workers_reports_it_and_loses_nothing(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600)
    other = _job(ledger)
    ledger.plan(other, "o0", 1, size=900, budget=1000)
    token = ProducerSession.new_token()
    job = _job(ledger, token)
    seen: list[Progress] = []
    session = ProducerSession(ledger, job, token=token)
    gate = BudgetGate(session, 1000, on_progress=seen.append, sleep=lambda s: time.sleep(0.01))
    seg = Segmenter(
        job=job,
        ns="ns",
        user="u",
        ledger=ledger,
        enqueue=ListEnqueuer(),
        segment_size=2,
        partitions=1,
        gate=gate,
    )
    worker = threading.Timer(0.3, lambda: ledger.finish(other, "o0", written=1))
    worker.start()
    seg.add_all([(b"k1", b"v" * 100), (b"k2", b"v" * 100)])  # ~220 bytes: waits for o0
    worker.join()
    assert any(p.waiting and p.queued == 900 for p in seen)
    assert not seen[-1].waiting and seen[-1].items == 2
    assert ledger.status(job).items == 2


def test_only_the_jobs_producer_plans_and_seals(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger, "mine")
    with pytest.raises(ProducerFencedError):
        ledger.plan(job, "s0", 3, producer="zombie")
    with pytest.raises(ProducerFencedError):
        ledger.seal(job, producer="zombie")
    assert ledger.status(job).items == 0
    ledger.plan(job, "s0", 3, producer="mine")
    ledger.seal(job, producer="mine")
    assert not ledger.status(job).fed and not r.zscore(keys.producing(), job)


def test_a_silent_producer_is_marked_abandoned_and_fenced_off(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600, producer_timeout=0.3)
    job = _job(ledger, "tok")
    ledger.plan(job, "s0", 3, producer="tok")
    assert ledger.status(job).state is JobState.QUEUED  # within its timeout
    assert ledger.producing.beat(job, "tok")
    time.sleep(0.5)
    st = ledger.status(job)  # reading is enough: no worker needed to notice
    assert st.state is JobState.ABANDONED and "silent" in st.stopped and not st.fed
    assert not ledger.producing.beat(job, "tok")
    with pytest.raises(ProducerFencedError):
        ledger.plan(job, "s1", 3, producer="tok")


def test_the_sweep_marks_every_stale_producer_and_leaves_live_ones(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600, producer_timeout=0.3)
    stale, live = _job(ledger, "a"), _job(ledger, "b")
    time.sleep(0.5)
    ledger.producing.beat(live, "b")
    assert ledger.producing.abandon_stale() == [stale]
    assert ledger.status(live).state is JobState.QUEUED


def test_a_stopped_job_resumes_once_and_a_fed_one_never(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600, producer_timeout=30)
    job = _job(ledger, "first")
    ledger.plan(job, "s0", 1, producer="first", checkpoint='{"x":1}', lines=7)
    with pytest.raises(NotResumableError, match="still feeding"):
        ledger.producing.resume(job, "second")
    assert ledger.producing.stop(job, "first", "interrupted (Ctrl-C)")
    st = ledger.status(job)
    assert (st.state, st.stopped, st.lines, st.finished) == (
        JobState.INCOMPLETE,
        "interrupted (Ctrl-C)",
        7,
        False,  # s0 still runs
    )
    assert ledger.producing.resume(job, "second") == '{"x":1}'
    with pytest.raises(NotResumableError):
        ledger.producing.resume(job, "third")
    assert ledger.status(job).state is JobState.RUNNING
    with pytest.raises(ProducerFencedError):
        ledger.plan(job, "s1", 1, producer="first")
    ledger.plan(job, "s1", 1, producer="second")


def test_stop_is_the_producers_alone(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger, "tok")
    assert not ledger.producing.stop(job, "other", "no")
    assert ledger.status(job).state is JobState.QUEUED


def test_a_stopped_jobs_wait_ends_when_what_was_sent_is_recorded(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger, "tok")
    ledger.plan(job, "s0", 2, producer="tok")
    ledger.producing.stop(job, "tok", "its input raised OSError")
    ledger.finish(job, "s0", written=2)
    st = ledger.status(job)
    assert st.finished and st.state is JobState.INCOMPLETE and st.written == 2


def test_stopping_takes_back_what_was_planned_and_never_staged(r: redis.Redis[Any]) -> None:
    from pipeline.payloads import PayloadStore

    ledger = Ledger(r, ttl=600)
    job = _job(ledger, "tok")
    ledger.plan(job, "s0", 3, size=300, producer="tok")
    PayloadStore(r, ttl=600).sent(job, "s0", {"seg": "s0"}, 0.0, ops=[(b"k", b"v")] * 3)
    ledger.plan(job, "s1", 4, size=400, producer="tok")  # its producer died right here
    ledger.producing.stop(job, "tok", "interrupted (Ctrl-C)")
    assert ledger.unplan_unsent(job) == 1
    st = ledger.status(job)
    assert (st.items, st.segments_planned) == (3, 1)
    assert ledger.producing.queued_bytes() == 300
    ledger.finish(job, "s0", written=3)
    assert ledger.status(job).finished and ledger.producing.queued_bytes() == 0


def test_an_abandoned_job_read_by_anyone_gives_back_its_unstaged_segment(
    r: redis.Redis[Any],
) -> None:
    ledger = Ledger(r, ttl=600, producer_timeout=0.2)
    job = _job(ledger, "tok")
    ledger.plan(job, "s0", 4, size=400, producer="tok")
    time.sleep(0.4)
    st = ledger.status(job)
    assert st.state is JobState.ABANDONED and st.items == 0 and st.finished


def test_a_producer_is_judged_by_its_own_timeout_not_the_readers(r: redis.Redis[Any]) -> None:
    patient = Ledger(r, ttl=600, producer_timeout=5)
    hasty_reader = Ledger(r, ttl=600, producer_timeout=0.1)
    job = _job(patient, "tok")
    time.sleep(0.4)
    assert hasty_reader.status(job).state is JobState.QUEUED
    assert hasty_reader.producing.abandon_stale() == []
    quick = Ledger(r, ttl=600, producer_timeout=0.1)
    other = _job(quick, "t2")
    time.sleep(0.3)
    assert Ledger(r, ttl=600, producer_timeout=600).status(other).state is JobState.ABANDONED
