"""Concurrent bulk jobs share a table max-min fairly by user; a small job is not stuck behind a
large one.

The table's rate is the binding limit here (``DATAFOLD_WRITE_CAPACITY``), so the order of the
queue and the shares decide who writes: alice's load runs eight segments at a time, bob's two, and
each still gets half of the table while both want more; a 300-item job queued after a
20,000-item one starts at once (its first segments rank first in the broker) and finishes long
before it.
"""

from __future__ import annotations

import time

import pytest

from producers import Producer
from tests.faults import FaultProxy
from tests.reliability.conftest import Fleet, assert_exact, read_back

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

CAPACITY = 600  # WCU/s configured: the table's bucket is the bottleneck, also on a busy machine
# (at 1,000 a loaded 2-CPU machine did not always reach it, and then nothing is shared)
MIN_SHARE = 0.4  # of CAPACITY for bob while both load (equal split: 0.5; at 1,000 WCU/s measured
# 0.44-0.52, and 0.33 with one bucket per table, DATAFOLD_LIMIT_PARTITIONS=0: his threads' share)


def _start(fleet: Fleet) -> None:
    fleet.start(2, prefix="fair", DATAFOLD_WRITE_CAPACITY=str(CAPACITY))


def test_two_users_share_the_table_equally_whatever_their_parallelism(
    fleet: Fleet, proxy: FaultProxy, unique: str
) -> None:
    _start(fleet)
    ns, alice, bob = f"fair{unique}", f"alice-{unique}", f"bob-{unique}"
    config = fleet.penv.pipeline_config(DATAFOLD_SEGMENT_SIZE="1000")
    want_a = {b"a%06d" % i: b"v" * 100 for i in range(12_000)}  # ~130 bytes: 1 WCU each
    want_b = {b"b%06d" % i: b"v" * 100 for i in range(4_000)}
    job_a = Producer(fleet.penv.dynamo, config, partitions=8).load(ns, want_a.items(), alice)
    job_b = Producer(fleet.penv.dynamo, config, partitions=2).load(ns, want_b.items(), bob)
    st_b = job_b.wait(timeout=120)
    alice_mid = job_a.status()
    st_a = job_a.wait(timeout=120)

    assert_exact(st_a, job_a, read_back(fleet.penv, alice, ns), want_a)
    assert_exact(st_b, job_b, read_back(fleet.penv, bob, ns), want_b)
    bob_rate = len(want_b) / st_b.elapsed
    print(f"\nbob {bob_rate:.0f} WCU/s; alice had {alice_mid.processed} done when bob finished")
    assert alice_mid.processed < len(want_a), "alice's load was over: nothing was shared"
    assert bob_rate >= MIN_SHARE * CAPACITY, f"bob wrote at only {bob_rate:.0f} WCU/s"


def test_a_small_job_is_not_stuck_behind_a_large_one(
    fleet: Fleet, proxy: FaultProxy, unique: str
) -> None:
    _start(fleet)
    ns, alice, bob = f"small{unique}", f"alice-{unique}", f"bob-{unique}"
    config = fleet.penv.pipeline_config(DATAFOLD_SEGMENT_SIZE="100")
    want_a = {b"a%06d" % i: b"v" * 100 for i in range(20_000)}  # 200 segments queued at once
    want_b = {b"b%06d" % i: b"v" * 100 for i in range(300)}
    job_a = Producer(fleet.penv.dynamo, config).load(ns, want_a.items(), alice)
    time.sleep(1.0)
    job_b = Producer(fleet.penv.dynamo, config).load(ns, want_b.items(), bob)
    st_b = job_b.wait(timeout=120)
    alice_mid = job_a.status()
    st_a = job_a.wait(timeout=120)

    assert_exact(st_a, job_a, read_back(fleet.penv, alice, ns), want_a)
    assert_exact(st_b, job_b, read_back(fleet.penv, bob, ns), want_b)
    print(
        f"\nbob's 300 items took {st_b.elapsed:.1f}s, alice's 20,000 {st_a.elapsed:.1f}s; "
        f"alice had {alice_mid.processed} done when bob finished"
    )
    assert alice_mid.processed < 0.5 * len(want_a), "bob waited for most of alice's job"
    assert st_b.elapsed < 0.25 * st_a.elapsed
