"""A worker killed (SIGKILL) at each step of a fenced segment — holding the lease before any
write, after a batch landed, right after recording, right after staging requeued leftovers —
each replaced by a new worker: the job ends exact and the store equals the input.

One worker runs at a time (concurrency 1), so what it holds when killed is known. Its lease
expires unrenewed, the broker hands its message to the next worker after the visibility
timeout, and the next holder takes the segment, counting one more delivery. Every worker sweeps
often, so a message lost in kombu's fetch window (see test_worker_kills) is sent again too.
"""

from __future__ import annotations

import time

import pytest

from pipeline import keys
from producers import Producer
from tests.faults import FaultConfig, FaultProxy
from tests.reliability.conftest import Fleet, assert_exact, read_back, wait_for
from tests.reliability.test_worker_kills import WORKER

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

N = 1200
SETTINGS = {
    **WORKER,
    "DATAFOLD_WORKER_CONCURRENCY": "1",
    "DATAFOLD_LEASE_SECONDS": "2",
    "DATAFOLD_SWEEP_INTERVAL": "1",
    "DATAFOLD_SWEEP_GRACE": "8",
}


def test_sigkill_at_every_step_of_a_fenced_segment(
    fleet: Fleet, proxy: FaultProxy, unique: str
) -> None:
    penv = fleet.penv
    r = penv.redis()
    ns, user = f"fkill{unique}", f"user-{unique}"
    want = {b"key-%05d" % i: b"value %d" % i for i in range(N)}
    # Opening the namespace is slow (the lease is held, nothing written yet); batches take
    # 50 ms; half of them come back half unprocessed, so leftovers are requeued.
    proxy.set_config(
        FaultConfig(
            latency_ms={"DescribeTable": 1500, "BatchWriteItem": 50},
            partial_batch_rate=0.5,
            partial_batch_fraction=0.5,
        )
    )
    job = Producer(
        penv.dynamo, penv.pipeline_config(DATAFOLD_SEGMENT_SIZE="300"), partitions=4
    ).load(ns, want.items(), user)
    lease_prefix = keys.segment_lease(job.id, "")

    def leases() -> list[bytes]:
        return list(r.scan_iter(match=lease_prefix + "*"))

    def forwarded() -> int:
        return proxy.stats().op("BatchWriteItem", "items_forwarded")

    def done() -> int:
        return int(r.scard(keys.job_done_segments(job.id)))

    def staged_children() -> set[bytes]:
        return {m for m in r.hkeys(keys.segment_messages()) if job.id.encode() in m and b".r" in m}

    # 1. Holding the lease, nothing written: the namespace is still being opened.
    (w,) = fleet.start(1, prefix="lease", **SETTINGS)
    wait_for("a lease taken", lambda: leases() and forwarded() == 0, 60, 0.005)
    w.kill()
    assert forwarded() == 0
    proxy.configure(latency_ms={"BatchWriteItem": 50})  # tables open quickly from now on

    # 2. After a batch landed, before its segment is recorded.
    (w,) = fleet.start(1, prefix="batch", **SETTINGS)
    start = forwarded()
    wait_for("a batch landed", lambda: forwarded() > start and done() == 0, 60, 0.002)
    w.kill()

    # 3. Right after recording a segment.
    (w,) = fleet.start(1, prefix="record", **SETTINGS)
    before = done()
    wait_for("a segment recorded", lambda: done() > before, 60, 0.002)
    w.kill()

    # 4. Right after staging requeued leftovers (recorded or not yet: both are fine).
    (w,) = fleet.start(1, prefix="requeue", **SETTINGS)
    seen = staged_children()
    wait_for("leftovers staged", lambda: staged_children() - seen, 60, 0.002)
    w.kill()
    killed_at = time.monotonic()

    fleet.start(1, prefix="last", **{**SETTINGS, "DATAFOLD_WORKER_CONCURRENCY": "4"})
    st = job.wait(timeout=180)
    took = time.monotonic() - killed_at

    assert_exact(st, job, read_back(penv, user, ns), want)
    assert (st.state, st.items, st.written, st.dead_lettered) == ("succeeded", N, N, 0), st
    deliveries = {k.decode(): int(v) for k, v in r.hgetall(keys.job_deliveries(job.id)).items()}
    taken_again = sorted(s for s, n in deliveries.items() if n > 1)
    assert taken_again, f"no segment was taken over from a killed holder: {deliveries}"
    assert leases() == []  # every lease released by its recording
    print(f"\n{N} items: requeues {st.requeues}, taken over {taken_again}, {took:.1f}s after")
