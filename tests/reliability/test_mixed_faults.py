"""A 20k-item load while 30 % of DynamoDB calls fail: throttling, 5xx, resets, partial batches.

Every item must land exactly once with its value, the ledger must add up, and nothing may be
dead-lettered: each fault is retryable, and the retry layers (one call, in-task rounds, requeues)
must absorb them all.
"""

from __future__ import annotations

import pytest

from tests.faults import FaultConfig, FaultKind, FaultProxy
from tests.reliability.conftest import Fleet, assert_exact, producer, read_back

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 20_000
DUPLICATES = 200

MIXED = FaultConfig(
    throttle_rate=0.05,
    provisioned_rate=0.03,
    request_limit_rate=0.02,
    internal_error_rate=0.04,
    unavailable_rate=0.04,
    reset_rate=0.04,  # RST before forwarding: nothing written
    reset_after_rate=0.03,  # written, then the answer lost: the retry writes it again
    partial_batch_rate=0.05,  # BatchWriteItem only: half its items come back unprocessed
)


def test_30_percent_mixed_faults_lose_nothing(fleet: Fleet, proxy: FaultProxy, unique: str) -> None:
    assert abs(sum(MIXED.rate(k, "BatchWriteItem") for k in FaultKind) - 0.30) < 1e-9
    proxy.set_config(MIXED)
    # Random partial batches look to the adaptive limiter like a saturated table and would
    # slow it to its floor (adaptation has its own test): a high floor keeps this test about
    # delivery, not pacing.
    fleet.start(2, prefix="mixed", DATAFOLD_MIN_WRITE_CAPACITY="4000")
    ns, user = f"mix{unique}", f"user-{unique}"
    want = {b"k%06d" % i: b"%d:" % i + b"x" * (i % 300) for i in range(N)}
    # Later lines for keys already seen: the last one wins (same or another segment).
    pairs = list(want.items())
    for i in range(0, N, N // DUPLICATES):
        pairs.append((b"k%06d" % i, b"second:%d" % i))
        want[b"k%06d" % i] = b"second:%d" % i

    job = producer(fleet.penv).load(ns, pairs, user)
    st = job.wait(timeout=180)
    proxy.set_config(FaultConfig())

    letters = {d.code: d.reason for d in job.dead_letters()} if st.dead_lettered else {}
    assert (st.state, st.items, st.rejected) == ("succeeded", N + DUPLICATES, 0), letters
    assert st.written + st.superseded == N + DUPLICATES
    assert_exact(st, job, read_back(fleet.penv, user, ns), want)
    # The faults really happened, each kind many times.
    stats = proxy.stats()
    for kind in FaultKind:
        if MIXED.rate(kind, "BatchWriteItem") > 0:
            assert stats.op("BatchWriteItem", kind.value) >= 10, (kind, stats.operations)
    injected = {
        k.value: stats.op("BatchWriteItem", k.value)
        for k in FaultKind
        if MIXED.rate(k, "BatchWriteItem") > 0
    }
    print(
        f"\n{N + DUPLICATES} items, {st.elapsed:.1f}s, requeues {st.requeues}, "
        f"BatchWriteItem calls {stats.op('BatchWriteItem', 'requests')}, faults {injected}"
    )
