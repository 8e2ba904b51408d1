"""The adaptive limiter finds a table's capacity by itself and keeps to it.

The proxy simulates a table provisioned at 1,000 WCU/s (capacity mode: a token bucket of one
second of capacity; writes beyond it come back unprocessed or throttled). No limit is configured
(``DATAFOLD_WRITE_CAPACITY=0``): the limiter starts optimistic at its 40,000 WCU/s ceiling and
must cut down to the table's capacity on the first refusals, then hold near it. A 30k-item load
(1 WCU per item) must sustain at least 90 % of the capacity with at most 5 % of the item writes
refused (a call with one item of 25 kept back wastes one write, not 25), and lose nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from tests.faults import FaultConfig, FaultProxy
from tests.reliability.conftest import Fleet, assert_exact, producer, read_back

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 30_000
CAPACITY = 1000  # WCU/s of the simulated table
MIN_SHARE = 0.90  # of CAPACITY, sustained
MAX_REFUSED_ITEMS = 0.05  # of the item writes sent
MAX_REFUSED_CALLS = 0.10  # of the BatchWriteItem calls refused in whole or in part


class Refusals:
    """Counts BatchWriteItem calls and item writes, and those the capacity model refused."""

    def __init__(self, proxy: FaultProxy) -> None:
        self.calls = self.refused = self.items = self.refused_items = 0
        self._lock = threading.Lock()
        plan = proxy.engine.plan

        def counting(operation: str, body: bytes) -> Any:
            p = plan(operation, body)
            if operation == "BatchWriteItem":
                sent = body.count(b'"PutRequest"') + body.count(b'"DeleteRequest"')
                whole = p.response is not None and p.response.status == 400
                kept = sent if whole else len(p.kept_back)
                with self._lock:
                    self.calls += 1
                    self.refused += kept > 0
                    self.items += sent
                    self.refused_items += kept
            return p

        proxy.engine.plan = counting  # type: ignore[method-assign]


def test_limiter_sustains_90_percent_of_a_1000_wcu_table(
    fleet: Fleet, proxy: FaultProxy, unique: str
) -> None:
    ns, user = f"rate{unique}", f"user-{unique}"
    table = fleet.penv.store(user).open_namespace(ns).table
    proxy.set_config(FaultConfig(capacity_wcu={table: CAPACITY}, burst_seconds=1.0))
    refusals = Refusals(proxy)
    # Segments bounded as in production (many seconds), not by the suite's 2 s: this test is
    # about finding the capacity, and a segment sharing 1,000 WCU/s with 15 others runs ~8 s
    # (more while the rate is being found): a bound it meets would add requeues and their waits.
    fleet.start(
        2,
        prefix="rate",
        DATAFOLD_WRITE_CAPACITY="0",
        DATAFOLD_SEGMENT_SECONDS="20",  # + one call (5 s of retries, a 2 s read) < 30 s
        DATAFOLD_VISIBILITY_TIMEOUT="30",
    )
    want = {b"r%06d" % i: b"v" * 100 for i in range(N)}  # ~130 bytes: 1 WCU each

    job = producer(fleet.penv).load(ns, want.items(), user)
    samples: list[tuple[float, int]] = []  # (time, WCU admitted so far)
    while not job.status().finished:
        samples.append((time.monotonic(), proxy.stats().table(table, "wcu_admitted")))
        time.sleep(0.25)
    st = job.wait(timeout=10)

    assert_exact(st, job, read_back(fleet.penv, user, ns), want)
    assert (st.state, st.written, st.dead_lettered) == ("succeeded", N, 0), st
    # Sustained rate: between 10 % and 90 % of the load (start-up and tail left out).
    t0, w0 = next(s for s in samples if s[1] >= 0.1 * N)
    t1, w1 = next(s for s in samples if s[1] >= 0.9 * N)
    rate = (w1 - w0) / (t1 - t0)
    refused = refusals.refused / refusals.calls
    wasted = refusals.refused_items / refusals.items
    print(
        f"\nsustained {rate:.0f} WCU/s = {rate / CAPACITY:.1%} of {CAPACITY}; "
        f"{refusals.refused} of {refusals.calls} calls throttled ({refused:.1%}); "
        f"{refusals.refused_items} of {refusals.items} item writes refused ({wasted:.1%}); "
        f"{st.requeues} requeues; load {st.elapsed:.1f}s"
    )
    assert rate >= MIN_SHARE * CAPACITY, f"sustained only {rate:.0f} WCU/s"
    assert rate <= 1.1 * CAPACITY, f"{rate:.0f} WCU/s: the capacity model leaks"
    assert wasted <= MAX_REFUSED_ITEMS, f"{wasted:.1%} of the item writes refused"
    assert refused <= MAX_REFUSED_CALLS, f"{refused:.1%} of the calls throttled"
