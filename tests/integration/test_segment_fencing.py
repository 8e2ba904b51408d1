"""Fencing, on real Redis with a scripted DynamoDB: only the delivery holding a segment's lease
writes, requeues or records it; a stale one stops at once and counts nothing; a child cut by a
holder that lost its parent never runs; runs are bounded; permanent errors end the segment."""

from __future__ import annotations

import itertools
import time
from typing import Any

from pipeline import keys
from pipeline.ledger import Ledger
from pipeline.states import Outcome
from pipeline.status import LeaseStatus
from tests.doubles import client_error
from tests.integration.test_segment_runner import _job, _ok, _runner, _segment, ledger
from worker.delivery import Delivery

__all__ = ["ledger"]  # the fixture, shared


def test_a_second_delivery_of_a_leased_segment_defers_and_writes_nothing(ledger: Ledger) -> None:
    runner, enq, client = _runner(ledger, _ok)
    job = _job(ledger, {"s0": 30})
    assert ledger.take(job, "s0", "running-elsewhere", 30.0).status is LeaseStatus.TAKEN
    seg = _segment(job, 30)
    assert runner.run(seg) == Outcome.DEFERRED
    ((again, countdown),) = enq.segments
    assert again == seg.without_ops() and countdown >= 1.0
    assert "BatchWriteItem" not in client.ops()
    assert ledger.status(job).written == 0
    assert int(ledger.r.hget(keys.job_deliveries(job), "s0")) == 1  # not counted again


def test_a_holder_that_loses_its_lease_stops_and_counts_nothing(ledger: Ledger) -> None:
    job = _job(ledger, {"s0": 60})
    calls = []

    def steal_then_answer(**p: Any) -> dict[str, Any]:
        calls.append(p)
        if len(calls) == 1:  # another delivery takes the lease while this batch is in flight
            ledger.r.set(keys.segment_lease(job, "s0"), "thief", px=200)
            time.sleep(0.3)  # the keeper's renewal is refused meanwhile
        return {}

    runner, enq, _ = _runner(ledger, steal_then_answer, lease_seconds=0.3)
    seg = _segment(job, 60)
    assert runner.run(seg) == Outcome.FENCED
    assert len(calls) == 1  # nothing more was sent after the lease was lost
    st = ledger.status(job)
    assert (st.written, st.segments_done, st.requeues) == (0, 0, 0)
    assert enq.segments == [(seg.without_ops(), 0.3)]  # the message goes round again
    time.sleep(0.25)  # the thief vanishes: its lease expires
    runner2, _, client2 = _runner(ledger, _ok)
    assert runner2.run(_segment(job, 60)) == Outcome.DONE  # the next holder writes it all
    st = ledger.status(job)
    assert (st.state, st.items, st.written) == ("succeeded", 60, 60)
    assert client2.ops().count("BatchWriteItem") == 3


def test_only_the_lease_holder_records(ledger: Ledger) -> None:
    job = _job(ledger, {"s0": 1})
    assert ledger.take(job, "s0", "a", 30.0).status is LeaseStatus.TAKEN
    assert ledger.finish(job, "s0", written=1, token="b") == -1  # fenced: nothing counted
    assert ledger.status(job).written == 0
    assert ledger.finish(job, "s0", written=1, token="a") == 1
    assert ledger.take(job, "s0", "c", 30.0).status is LeaseStatus.RECORDED
    assert ledger.status(job).written == 1


def test_deliveries_count_only_holders_that_vanished(ledger: Ledger) -> None:
    job = _job(ledger, {"s0": 1})
    assert ledger.take(job, "s0", "a", 30.0).deliveries == 1
    assert ledger.take(job, "s0", "a", 30.0).deliveries == 1  # the same delivery, re-run
    assert ledger.take(job, "s0", "b", 30.0).status is LeaseStatus.HELD
    ledger.release(job, "s0", "a")  # gave it back cleanly: not a lost delivery
    assert ledger.take(job, "s0", "b", 0.001).deliveries == 1
    time.sleep(0.005)  # b vanished: its lease expired unreleased
    assert ledger.take(job, "s0", "c", 30.0).deliveries == 2


def test_a_child_cut_by_a_holder_that_lost_its_parent_never_runs(ledger: Ledger) -> None:
    runner, _, client = _runner(ledger, _ok)
    job = _job(ledger, {"s0": 4})
    stale = _segment(job, 4).child([(b"k000", b"old")], holder=1)
    waiting = runner.run(stale)
    assert waiting == Outcome.DEFERRED  # its parent is not recorded yet: it may still be
    runner.run(_segment(job, 4))  # the parent, recorded by its holder without that child
    assert runner.run(stale) == Outcome.DUPLICATE
    assert client.ops().count("BatchWriteItem") == 1  # the parent's only
    assert runner.payloads.get(job, stale.seg) is None
    st = ledger.status(job)
    assert (st.state, st.written, st.requeues) == ("succeeded", 4, 0)


def test_a_segment_past_its_deadline_hands_its_items_back(ledger: Ledger) -> None:
    runner, enq, client = _runner(ledger, _ok, segment_seconds=0.5)
    ticks = itertools.count()
    runner.clock = lambda: float(next(ticks))  # every look at the clock: one second later
    job = _job(ledger, {"s0": 30})
    assert runner.run(_segment(job, 30)) == Outcome.REQUEUED
    ((child, _),) = enq.segments
    assert child.n == 30 and child.idle == 1 and "BatchWriteItem" not in client.ops()
    runner2, _, _ = _runner(ledger, _ok)
    assert runner2.run(child) == Outcome.DONE
    st = ledger.status(job)
    assert (st.state, st.written, st.dead_lettered) == ("succeeded", 30, 0)


def test_a_permanent_error_dead_letters_every_item_and_ends_the_job(ledger: Ledger) -> None:
    def denied(**p: Any) -> dict[str, Any]:
        raise client_error("AccessDeniedException", "DescribeTable")

    runner, _, client = _runner(ledger, _ok, describe=denied)
    job = _job(ledger, {"s0": 7})
    assert runner.run(_segment(job, 7)) == Outcome.DEAD
    st = ledger.status(job)
    assert (st.state, st.dead_lettered, st.items) == ("failed", 7, 7)
    letters = list(ledger.dead_letters(job))
    assert len(letters) == 7 and {d.code for d in letters} == {"AccessDeniedException"}
    assert "BatchWriteItem" not in client.ops()


def test_a_payload_that_does_not_match_its_message_is_refused(ledger: Ledger) -> None:
    runner, _, client = _runner(ledger, _ok)
    job = _job(ledger, {"s0": 3})
    seg = _segment(job, 3)
    runner.payloads.sent(job, "s0", {}, 0.0, ops=seg.ops[:2])  # type: ignore[index]
    assert runner.run(seg.without_ops(), Delivery()) == Outcome.DEAD
    st = ledger.status(job)
    assert (st.state, st.dead_lettered, st.items) == ("failed", 3, 3)
    (letter,) = ledger.dead_letters(job)
    assert letter.code == "PayloadLost" and "holds 2 items" in letter.reason
    assert "BatchWriteItem" not in client.ops()


def test_whether_a_child_may_run_is_decided_in_one_step(ledger: Ledger) -> None:
    job = _job(ledger, {"s0": 2})
    assert ledger.take(job, "s0.r1", "c", 30.0, parent="s0").status is LeaseStatus.UNPLANNED
    assert ledger.take(job, "s0", "p", 30.0).status is LeaseStatus.TAKEN
    assert ledger.finish(job, "s0", written=1, child="s0.r1", token="p") == 1
    assert ledger.take(job, "s0.r1", "c", 30.0, parent="s0").status is LeaseStatus.TAKEN
    assert ledger.take(job, "s0.r1x1", "d", 30.0, parent="s0").status is LeaseStatus.ORPHAN
    assert ledger.finish(job, "s0.r1x1", written=1) == -2  # never counted: not planned
    assert ledger.status(job).written == 1


def test_a_rerun_of_one_delivery_names_a_child_of_its_own(ledger: Ledger) -> None:
    def stingy(**p: Any) -> dict[str, Any]:
        reqs = p["RequestItems"]["DataFoldStorage-ns"]
        return {"UnprocessedItems": {"DataFoldStorage-ns": reqs[-1:]}}

    runner, enq, _ = _runner(ledger, stingy)
    job = _job(ledger, {"s0": 4})
    delivery = Delivery()
    delivery.runs = 1  # as if Redis failed once and the task ran the same delivery again
    assert runner.run(_segment(job, 4), delivery) == Outcome.REQUEUED
    ((child, _),) = enq.segments
    assert child.seg == "s0.r1x1" and child.parent == "s0"
