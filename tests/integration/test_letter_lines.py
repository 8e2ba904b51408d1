"""Dead letters of items loaded from files name their input and line: the segment runner and
the ledger on real Redis, with a scripted DynamoDB client (no Celery). Poison items, leftovers
dead-lettered after requeues (the requeued child carries its items' refs), a segment that keeps
killing workers; a lost payload and items not from a file name none."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from pipeline import keys
from pipeline.ledger import Ledger
from pipeline.messages import Op, Segment
from pipeline.refs import decode, encode, ref
from pipeline.status import LeaseStatus
from storage.limits import MAX_ITEM_BYTES
from tests.doubles import client_error
from tests.integration.test_segment_runner import REDIS_URL, _job, _ok, _runner


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    yield Ledger(redis.Redis.from_url(REDIS_URL), ttl=600)


NAMES = {0: "in/a.jsonl", 1: "s3://bucket/exports/part-2.json.gz"}


def _file_segment(job: str, ops: list[Op], lines: list[tuple[int, int]], **kw: Any) -> Segment:
    """A segment as a load of the inputs ``NAMES`` cuts it: item i is line lines[i]."""
    refs = encode(NAMES, [ref(i, n) for i, n in lines])
    return Segment(job=job, seg="s0", target="kv", ns="ns", user="u", ops=ops, refs=refs, **kw)


def _where(ledger: Ledger, job: str) -> dict[bytes, list[tuple[str | None, int | None]]]:
    out: dict[bytes, list[tuple[str | None, int | None]]] = {}
    for d in ledger.dead_letters(job):
        out.setdefault(d.key, []).append((d.source, d.line))
    return {k: sorted(v, key=str) for k, v in out.items()}


def test_poison_items_name_their_input_and_line(ledger: Ledger) -> None:
    def picky(**p: Any) -> dict[str, Any]:
        reqs = p["RequestItems"]["DataFoldStorage-ns"]
        if any(r["PutRequest"]["Item"]["SK"]["B"] == b"k013" for r in reqs):
            raise client_error("ValidationException", "BatchWriteItem")
        return {}

    runner, _, _ = _runner(ledger, picky)
    big = b"x" * (MAX_ITEM_BYTES + 1)
    ops: list[Op] = [(b"k%03d" % i, b"v%d" % i) for i in range(30)]
    ops[20] = (b"k020", big)  # refused before any call, like the one on line 40 of input 0
    ops.append((b"k021", big))
    ops.append((b"k020", big))  # refused again: a letter per occurrence
    lines = [(1, 100 + i) for i in range(30)] + [(0, 39), (0, 40)]
    job = _job(ledger, {"s0": len(ops)})
    assert runner.run(_file_segment(job, ops, lines)) == "dead"
    st = ledger.status(job)
    assert (st.state, st.written, st.dead_lettered) == ("partial", 28, 4)
    part2 = NAMES[1]
    assert _where(ledger, job) == {
        b"k013": [(part2, 113)],
        b"k020": [("in/a.jsonl", 40), (part2, 120)],
        b"k021": [("in/a.jsonl", 39)],
    }


def test_leftovers_dead_lettered_after_requeues_still_name_their_lines(ledger: Ledger) -> None:
    def never(**p: Any) -> dict[str, Any]:
        return {"UnprocessedItems": p["RequestItems"]}

    runner, enq, _ = _runner(ledger, never, max_requeues=2)
    ops: list[Op] = [(b"a", b"1"), (b"b", b"2"), (b"a", b"3"), (b"c", None)]
    lines = [(0, 5), (1, 6), (1, 7), (1, 9)]
    job = _job(ledger, {"s0": 4})
    assert runner.run(_file_segment(job, ops, lines)) == "requeued"
    for _ in range(2):
        child = enq.segments[-1][0]
        assert child.refs is not None and len(decode(child.refs).refs) == child.n == 3
        assert ledger.r.exists(keys.segment_refs(job, child.seg))  # staged with its payload
        runner.run(child)
    st = ledger.status(job)
    assert (st.written, st.dead_lettered, st.superseded) == (0, 3, 1)
    part2 = NAMES[1]
    # "a" was written (and refused) as its last line: line 7 of input 1, not line 5 of input 0.
    assert _where(ledger, job) == {b"a": [(part2, 7)], b"b": [(part2, 6)], b"c": [(part2, 9)]}
    assert not ledger.r.keys(keys.segment_refs(job, "*"))  # deleted with the payloads


def test_a_segment_that_keeps_killing_workers_names_every_line(ledger: Ledger) -> None:
    runner, _, _ = _runner(ledger, _ok, max_deliveries=2)
    job = _job(ledger, {"s0": 3})
    for holder in ("a", "b"):
        assert ledger.take(job, "s0", holder, 0.001).status is LeaseStatus.TAKEN
        time.sleep(0.005)
    ops: list[Op] = [(b"x", b"1"), (b"y", b"2"), (b"z", b"3")]
    assert runner.run(_file_segment(job, ops, [(0, 1), (0, 2), (1, 1)])) == "dead"
    assert _where(ledger, job) == {
        b"x": [("in/a.jsonl", 1)],
        b"y": [("in/a.jsonl", 2)],
        b"z": [(NAMES[1], 1)],
    }


def test_a_lost_payload_and_items_not_from_a_file_name_no_line(ledger: Ledger) -> None:
    runner, _, _ = _runner(ledger, _ok)
    job = _job(ledger, {"s0": 2})
    seg = _file_segment(job, [(b"a", b"1"), (b"b", b"2")], [(0, 1), (0, 2)])
    ledger.r.set(keys.segment_refs(job, "s0"), seg.refs or b"")  # refs stayed, the items did not
    assert runner.run(seg.without_ops()) == "dead"
    (lost,) = ledger.dead_letters(job)
    assert (lost.code, lost.source, lost.line) == ("PayloadLost", None, None)

    job = _job(ledger, {"s0": 1})
    plain = Segment(job=job, seg="s0", target="kv", ns="ns", user="u", ops=[(b"", b"v")])
    assert runner.run(plain) == "dead"
    (d,) = ledger.dead_letters(job)
    assert (d.code, d.source, d.line) == ("Invalid", None, None)
