"""One user's hot partition never slows another user on the same table.

The proxy simulates a table of 10,000 WCU/s whose partition keys may each take 1,000 WCU/s (one
second of burst), refusing as DynamoDB does: a call of which nothing fits is refused whole with
``ThrottlingReasons`` naming the key range, the rest of a partly admitted batch comes back
unprocessed, without a reason. Two users load at once; both want more than their partition
allows, alice more (twice bob's segments at a time). Their refusals must cut
their own partitions' rates and leave the table's alone, so bob still writes at his partition's
full rate while alice is throttled — a limiter with one bucket per table cut the shared rate
for both and bob got the small share of it his three segments won (about half his rate).
"""

from __future__ import annotations

import pytest

from pipeline import keys
from producers import Producer
from tests.faults import FaultConfig, FaultProxy
from tests.reliability.conftest import Fleet, assert_exact, read_back

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PARTITION = 1000  # WCU/s per partition key
TABLE = 10_000  # WCU/s of the table: never the binding limit here
MIN_SHARE = 0.55  # of PARTITION, for bob over his whole load (one bucket per table: 0.41-0.47;
# this limiter: 0.63-1.1 on a busy 2-CPU machine, the spread is how fast his own bucket finds
# his partition's limit, a second or two of his 6,000 items)


def test_a_user_throttled_by_key_range_leaves_another_at_his_partitions_full_rate(
    fleet: Fleet, proxy: FaultProxy, unique: str
) -> None:
    ns, alice, bob = f"part{unique}", f"alice-{unique}", f"bob-{unique}"
    table = fleet.penv.store(alice).open_namespace(ns).table
    proxy.set_config(
        FaultConfig(capacity_wcu={table: TABLE}, partition_wcu={table: PARTITION}, burst_seconds=1)
    )
    fleet.start(
        2,
        prefix="part",
        DATAFOLD_WRITE_CAPACITY="0",
        DATAFOLD_SEGMENT_SECONDS="20",
        DATAFOLD_VISIBILITY_TIMEOUT="30",
    )
    # Segments of 1,000 in order per partition: two of alice's run at a time, one of bob's,
    # each fanning out to the workers' batch threads (and bob's are not queued behind all of
    # alice's: a waiting segment goes to the back of the queue).
    config = fleet.penv.pipeline_config(DATAFOLD_SEGMENT_SIZE="1000")
    want_a = {b"a%06d" % i: b"v" * 100 for i in range(14_000)}  # ~130 bytes: 1 WCU each
    want_b = {b"b%06d" % i: b"v" * 100 for i in range(6000)}
    job_a = Producer(fleet.penv.dynamo, config, partitions=2).load(ns, want_a.items(), alice)
    job_b = Producer(fleet.penv.dynamo, config, partitions=1).load(ns, want_b.items(), bob)
    st_b = job_b.wait(timeout=120)
    bob_rate = len(want_b) / st_b.elapsed
    alice_mid = job_a.status()
    st_a = job_a.wait(timeout=120)

    assert_exact(st_a, job_a, read_back(fleet.penv, alice, ns), want_a)
    assert_exact(st_b, job_b, read_back(fleet.penv, bob, ns), want_b)
    stats = proxy.stats()
    refused_a = stats.partition(table, alice, "items_unprocessed") + stats.partition(
        table, alice, "requests_throttled"
    )
    print(
        f"\nbob {bob_rate:.0f} WCU/s over {st_b.elapsed:.1f}s; alice {len(want_a)} items in "
        f"{st_a.elapsed:.1f}s, {refused_a} refusals; alice had {alice_mid.processed} done "
        f"when bob finished"
    )
    assert refused_a > 0, "alice was never throttled: the test shows nothing"
    assert alice_mid.processed < len(want_a), "bob did not run alongside alice"
    # Alice's refusals cut her own partition's bucket; the table's rate stays above what both
    # partitions together may take (a first refusal of both at once, before any names its key
    # range, may cut it once: it is back within seconds), so it slows no one.
    r = fleet.penv.redis()
    hot = [k for k in r.scan_iter(match=keys.limiter_bucket(table) + "/p*")]
    assert hot and any(float(r.hget(k, "rate") or 0) < 40000 for k in hot), hot
    assert float(r.hget(keys.limiter_bucket(table), "rate") or 0) >= 2 * PARTITION
    assert bob_rate >= MIN_SHARE * PARTITION, f"bob wrote at only {bob_rate:.0f} WCU/s"
