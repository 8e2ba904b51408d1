"""Segments reach the broker least attained service first; other messages at the top step."""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

from pipeline.enqueue import CeleryEnqueuer, segment_priority
from pipeline.messages import Plan, Segment, SingleWrite
from pipeline.states import PlanKind, Target


class App:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_task(self, name: str, **kwargs: Any) -> None:
        self.sent.append({"name": name, **kwargs})


class Payloads:
    def sent(self, *args: Any, **kwargs: Any) -> None:
        pass


def _seg(idx: int) -> Segment:
    return Segment("j", f"s{idx}", Target.KV, "ns", "u", [], part="p0", idx=idx)


def test_a_partitions_later_segments_never_rank_above_its_earlier_ones() -> None:
    steps = [segment_priority(i) for i in range(200)]
    assert steps == sorted(steps)
    assert steps[0] == 0 and steps[-1] == 9
    # Every value is one of kombu's steps: none falls between lists.
    assert set(steps) <= set(kombu_redis.PRIORITY_STEPS)


def test_a_new_jobs_first_segments_go_ahead_of_an_old_jobs_later_ones() -> None:
    app = App()
    enq = CeleryEnqueuer(app, Payloads())  # type: ignore[arg-type]
    enq.segment(_seg(100))  # a large job, far along
    enq.segment(_seg(0))  # a job just begun
    enq.single(SingleWrite("w", "ns", "u", b"k", b"v", 1))
    enq.plan(Plan("p", PlanKind.CLEAR_SCHEMAS, "u"))
    prio = [m["priority"] for m in app.sent]
    assert prio[0] > prio[1] == 0
    assert prio[2] == prio[3] == 0  # kombu's Redis transport serves step 0 first
