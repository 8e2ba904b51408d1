"""The finished signal on real Redis (database 12, no workers): every step that makes a job
finished sets it in the same atomic step and no other step does, so the signal is set exactly
when ``JobStatus.finished`` is true; waiters blocked on it all wake, a late one returns at once,
and ``Job.wait`` ends on the wake-up (not on a poll) and never spins on a stale signal."""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest
import redis

from pipeline import keys
from pipeline.ledger import Ledger
from pipeline.notify import FinishedSignal
from pipeline.payloads import PayloadStore
from pipeline.states import JobKind, JobState
from producers.job import Job
from tests.integration.conftest import SCRATCH_REDIS_URL


class Spy(FinishedSignal):
    """A FinishedSignal that records what each wait returned and says when one begins."""

    def __init__(self, client: redis.Redis[Any]) -> None:
        super().__init__(client)
        self.results: list[bool] = []
        self.entered = threading.Event()

    def wait(self, job_id: str, seconds: float) -> bool:
        self.entered.set()
        woke = super().wait(job_id, seconds)
        self.results.append(woke)
        return woke


class CountingLedger(Ledger):
    """Counts status reads."""

    reads = 0

    def status(self, job_id: str) -> Any:
        self.reads += 1
        return super().status(job_id)


def _job(ledger: Ledger, token: str = "") -> str:
    job = uuid.uuid4().hex[:16]
    ledger.create(job, kind=JobKind.LOAD, namespace="ns", user_id="u", producer=token)
    return job


def _signalled(r: redis.Redis[Any], job: str) -> bool:
    return bool(r.exists(keys.job_finished(job)))


def _agree(ledger: Ledger, job: str) -> bool:
    """Whether the signal is set, checked to be set exactly when the status says finished."""
    finished = ledger.status(job).finished
    assert _signalled(ledger.r, job) == finished
    return finished


def test_the_last_recording_of_a_sealed_job_sets_the_signal_with_the_jobs_ttl(
    r: redis.Redis[Any],
) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger)
    ledger.plan(job, "s0", 2)
    ledger.plan(job, "s1", 2)
    ledger.seal(job)
    ledger.finish(job, "s0", written=2)
    assert not _agree(ledger, job)
    ledger.finish(job, "s1", written=2, child="s1.r1")  # leftovers requeued: not yet
    assert not _agree(ledger, job)
    ledger.finish(job, "s1.r1", written=0, dead_items=0)
    assert _agree(ledger, job) and ledger.status(job).state is JobState.SUCCEEDED
    assert r.lrange(keys.job_finished(job), 0, -1) == [b"1"]
    assert 590 <= r.ttl(keys.job_finished(job)) <= 600
    ledger.finish(job, "s1.r1", written=0)  # a redelivery changes nothing
    assert r.llen(keys.job_finished(job)) == 1


def test_sealing_a_job_whose_segments_are_all_recorded_sets_it(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger)
    ledger.plan(job, "s0", 1)
    ledger.finish(job, "s0", written=1)
    assert not _agree(ledger, job)  # not sealed: more may come
    ledger.seal(job)
    assert _agree(ledger, job)


def test_a_stopped_load_is_signalled_once_what_was_sent_is_recorded(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger, "tok")
    ledger.plan(job, "s0", 2, producer="tok")
    ledger.producing.stop(job, "tok", "interrupted (Ctrl-C)")
    assert not _agree(ledger, job)
    ledger.finish(job, "s0", written=2)
    assert _agree(ledger, job)
    nothing_sent = _job(ledger, "tok")
    ledger.producing.stop(nothing_sent, "tok", "its input raised OSError")
    assert _agree(ledger, nothing_sent)  # by the stop itself


def test_taking_back_the_last_unsent_segment_signals_and_a_resume_clears_it(
    r: redis.Redis[Any],
) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger, "tok")
    ledger.plan(job, "s0", 3, producer="tok")
    PayloadStore(r, ttl=600).sent(job, "s0", {"seg": "s0"}, 0.0, ops=[(b"k", b"v")] * 3)
    ledger.plan(job, "s1", 4, producer="tok")  # never staged
    ledger.producing.stop(job, "tok", "interrupted (Ctrl-C)")
    ledger.finish(job, "s0", written=3)
    assert not _agree(ledger, job)
    assert ledger.unplan_unsent(job) == 1
    assert _agree(ledger, job)
    ledger.producing.resume(job, "again")
    assert not _agree(ledger, job)  # fed again: not finished, no signal
    ledger.plan(job, "s1", 4, producer="again")
    ledger.seal(job, producer="again")
    ledger.finish(job, "s1", written=4)
    assert _agree(ledger, job) and ledger.status(job).state is JobState.SUCCEEDED


def test_an_abandoned_job_with_nothing_pending_is_signalled(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600, producer_timeout=0.1)
    job = _job(ledger, "tok")
    time.sleep(0.3)
    assert ledger.producing.abandon_if_stale(job)
    assert _signalled(r, job) and ledger.status(job).state is JobState.ABANDONED


def test_every_blocked_waiter_wakes_and_a_late_one_returns_at_once(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger)
    ledger.plan(job, "s0", 1)
    ledger.seal(job)
    spies = [Spy(redis.Redis.from_url(SCRATCH_REDIS_URL, socket_timeout=60)) for _ in range(4)]
    woke: list[bool] = []
    threads = [threading.Thread(target=lambda s=s: woke.append(s.wait(job, 20))) for s in spies]
    for t in threads:
        t.start()
    for s in spies:
        assert s.entered.wait(10)
    ledger.finish(job, "s0", written=1)
    for t in threads:
        t.join(30)
    assert woke == [True] * 4  # not one waited out its 20 s
    assert r.llen(keys.job_finished(job)) == 1  # the element stays for the next
    assert FinishedSignal(r).wait(job, 20) is True


def test_a_wait_without_a_signal_ends_before_the_socket_timeout(r: redis.Redis[Any]) -> None:
    tight = redis.Redis.from_url(SCRATCH_REDIS_URL, socket_timeout=0.4)
    sig = FinishedSignal(tight)
    assert sig.longest == pytest.approx(0.2)
    # Asked for 5 s on a 0.4 s socket: cut to 0.2 s, so it answers (False) and never times out.
    assert sig.wait(_job(Ledger(r, ttl=600)), 5) is False
    assert FinishedSignal(redis.Redis.from_url(SCRATCH_REDIS_URL)).longest == float("inf")


def test_job_wait_ends_on_the_wake_up_and_a_late_wait_reads_once(r: redis.Redis[Any]) -> None:
    ledger = CountingLedger(r, ttl=600)
    job = _job(ledger)
    ledger.plan(job, "s0", 1)
    ledger.seal(job)
    spy = Spy(r)
    finisher = threading.Thread(
        target=lambda: spy.entered.wait(10) and ledger.finish(job, "s0", written=1)
    )
    finisher.start()
    # A 20 s period: only the signal can end this wait before then.
    st = Job(job, ledger, signal=spy).wait(timeout=60, poll=20)
    finisher.join()
    assert st.finished and spy.results == [True] and ledger.reads == 2
    late, ledger.reads = Spy(r), 0
    assert Job(job, ledger, signal=late).wait(timeout=60).finished
    assert (ledger.reads, late.results) == (1, [])


def test_job_wait_never_spins_on_a_signal_left_by_a_finished_state_since_undone(
    r: redis.Redis[Any],
) -> None:
    ledger = CountingLedger(r, ttl=600)
    job = _job(ledger)
    ledger.plan(job, "s0", 1)
    ledger.seal(job)
    r.rpush(keys.job_finished(job), "1")  # stale: the job is not finished
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        ledger.finish(job, "s0", written=1)

    spy = Spy(r)
    st = Job(job, ledger, sleep=sleep, signal=spy).wait(poll=3)
    assert st.finished and spy.results == [True] and slept == [3]
    assert ledger.reads == 3


def test_job_wait_times_out_on_a_job_that_never_finishes(r: redis.Redis[Any]) -> None:
    ledger = Ledger(r, ttl=600)
    job = _job(ledger)
    ledger.plan(job, "s0", 1)
    with pytest.raises(TimeoutError, match="not finished"):
        Job(job, ledger).wait(timeout=0.3)
