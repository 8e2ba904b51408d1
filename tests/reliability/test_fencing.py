"""Duplicated deliveries of throttled, slow segments, with real workers: only a segment's lease
holder writes it, the last line per key still wins, and nothing is written after the job says
it is finished.

The scenario: one partition; segment 0 sets every key to "old" (1.9 KB values), segment 1 sets
the same keys to "new". The limiter holds the table to 20 WCU/s, so each segment takes many
bounded runs (its leftovers requeued each time). While the job runs, every message of the job
that the journal holds is sent again, over and over — each segment, and each requeued child,
delivered several times at once, on two workers.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from pipeline import keys
from pipeline.broker import sender_app
from pipeline.enqueue import CeleryEnqueuer
from pipeline.messages import Segment
from pipeline.payloads import PayloadStore
from tests.faults import FaultProxy
from tests.reliability.conftest import Fleet, producer, read_back

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

KEYS = 60
VALUE = 1900  # 2 WCU per item
SETTINGS = {
    "DATAFOLD_WRITE_CAPACITY": "20",
    "DATAFOLD_VISIBILITY_TIMEOUT": "6",
    "DATAFOLD_SEGMENT_SECONDS": "1.5",
    "DATAFOLD_DYNAMODB_RETRY_SECONDS": "1.5",
    "DATAFOLD_LEASE_SECONDS": "2",
    "DATAFOLD_WORKER_CONCURRENCY": "4",
    "DATAFOLD_MAX_DELIVERIES": "2",  # a duplicate that counted as a delivery would show
}


def duplicate_everything(fleet: Fleet, job: str, stop: threading.Event) -> int:
    """Send again every journalled message of ``job``, every 0.3 s, until ``stop``."""
    r = fleet.penv.redis()
    cfg = fleet.penv.pipeline_config()
    enq = CeleryEnqueuer(sender_app(cfg), PayloadStore(r, ttl=600))
    sent = 0
    while not stop.wait(0.3):
        for _job, _seg, _task, message in PayloadStore(r, ttl=600).overdue(float("inf"), 1000):
            if _job == job:
                enq.send(Segment.from_message(message))
                sent += 1
    return sent


def test_duplicated_slow_segments_write_once_and_the_last_line_wins(
    fleet: Fleet, proxy: FaultProxy
) -> None:
    fleet.start(2, prefix="fence", **SETTINGS)
    ns, user = f"fence-{uuid.uuid4().hex[:6]}", "u-fence"
    p = producer(fleet.penv, DATAFOLD_SEGMENT_SIZE=str(KEYS))
    p.partitions = 1
    names = [b"K%03d" % i for i in range(KEYS)]
    old, new = b"o" * VALUE, b"n" * VALUE
    job = p.load(ns, [(k, old) for k in names] + [(k, new) for k in names], user_id=user)

    stop = threading.Event()
    sent: list[int] = []
    dup = threading.Thread(target=lambda: sent.append(duplicate_everything(fleet, job.id, stop)))
    dup.start()
    try:
        st = job.wait(timeout=180)
    finally:
        stop.set()
        dup.join()
    finished = read_back(fleet.penv, user, ns)
    forwarded = proxy.stats().op("BatchWriteItem", "items_forwarded")

    assert sent[0] > 10, "the duplicates were not sent"
    assert (st.state, st.items, st.written, st.dead_lettered) == (
        "succeeded",
        2 * KEYS,
        2 * KEYS,
        0,
    )
    assert st.requeues > 2  # the runs were bounded: leftovers handed back many times
    assert finished == dict.fromkeys(names, new)
    # Each item was written by exactly one delivery: duplicates deferred, never wrote.
    assert forwarded == 2 * KEYS, forwarded
    assert "TooManyDeliveries" not in fleet.logs()
    assert fleet.penv.redis().hlen(keys.job_deliveries(job.id)) > 0
    time.sleep(8)  # a stale delivery would still be writing now
    assert read_back(fleet.penv, user, ns) == finished
    assert proxy.stats().op("BatchWriteItem", "items_forwarded") == forwarded
