"""Discovery lands near a table's capacity every time, and refusals that slowing down does not
cure leave the rate alone.

Discovery: the proxy simulates a table provisioned at 1,000 WCU/s (one second of burst). No limit
is configured (``DATAFOLD_WRITE_CAPACITY=0``): the limiter starts at its 40,000 WCU/s ceiling.
A 20k-item load (1 WCU per item) on a fresh bucket (cold), then another right after on the
adapted one (warm), must each sustain at least 90 % of the capacity, whether a call of which
nothing fits is refused whole (``ProvisionedThroughputExceededException``, as DynamoDB does) or
comes back with every item unprocessed. Cuts measured over the table's burst or partial windows
used to compound and leave the rate at 650-800 WCU/s, from where 2 % raises took long.

Noise: no capacity limit, but 10 % of calls throttled, 40 % of batches half refused and 3 %
5xx, at random. Slowing down cures none of it (the same share of calls is refused at any rate),
so the limiter must not sit at its floor: goodput must stay at least a quarter of the same
load's without faults, measured in the same test (at the floor it took 228 s for 5,000 items).
"""

from __future__ import annotations

import time

import pytest

from producers import Job
from tests.faults import FaultConfig, FaultProxy
from tests.reliability.conftest import Fleet, assert_exact, producer, read_back

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 20_000
CAPACITY = 1000  # WCU/s of the simulated table
MIN_SHARE = 0.90  # of CAPACITY, sustained by each load
WORKERS = dict(
    DATAFOLD_WRITE_CAPACITY="0",
    # Segments bounded as in production (many seconds), not by the suite's 2 s: a bound met
    # while the rate is being found would add requeues and their waits (test_adaptive_rate.py).
    DATAFOLD_SEGMENT_SECONDS="20",
    DATAFOLD_VISIBILITY_TIMEOUT="30",
    # Rounds as in production too: the suite's 3 requeue a chunk unlucky with the noise, and a
    # requeue's wait (0.5-1 s) was then most of a load that takes seconds.
    DATAFOLD_BATCH_ROUNDS="6",
)


def sustained(proxy: FaultProxy, table: str, job: Job, before: int) -> tuple[float, float]:
    """Poll the proxy until ``job`` is finished; the WCU/s admitted between 10 % and 90 % of
    the load (start-up and tail left out) and over the whole load."""
    samples: list[tuple[float, int]] = []
    while not job.status().finished:
        samples.append((time.monotonic(), proxy.stats().table(table, "wcu_admitted") - before))
        time.sleep(0.1)
    samples.append((time.monotonic(), proxy.stats().table(table, "wcu_admitted") - before))
    t0, w0 = next(s for s in samples if s[1] >= 0.1 * N)
    t1, w1 = next(s for s in samples if s[1] >= 0.9 * N)
    first = next(s for s in samples if s[1] > 0)
    last = next(s for s in samples if s[1] >= N)
    return (w1 - w0) / (t1 - t0), N / max(1e-9, last[0] - first[0])


@pytest.mark.parametrize("refuse_whole", [True, False], ids=["refused-whole", "unprocessed"])
def test_discovery_uses_90_percent_of_a_1000_wcu_table_cold_and_warm(
    fleet: Fleet, proxy: FaultProxy, unique: str, refuse_whole: bool
) -> None:
    ns, user = f"disc{unique}", f"user-{unique}"
    table = fleet.penv.store(user).open_namespace(ns).table
    proxy.set_config(
        FaultConfig(capacity_wcu={table: CAPACITY}, burst_seconds=1.0, refuse_whole=refuse_whole)
    )
    fleet.start(2, prefix="disc", **WORKERS)
    want: dict[bytes, bytes] = {}
    shares = []
    for run in ("cold", "warm"):
        items = {b"%s%06d" % (run.encode(), i): b"v" * 100 for i in range(N)}  # 1 WCU each
        want |= items
        before = proxy.stats().table(table, "wcu_admitted")
        job = producer(fleet.penv).load(ns, items.items(), user)
        rate, whole = sustained(proxy, table, job, before)
        st = job.wait(timeout=10)
        assert (st.state, st.written, st.dead_lettered) == ("succeeded", N, 0), st
        shares.append(rate / CAPACITY)
        print(
            f"\n{'refused whole' if refuse_whole else 'unprocessed'}, {run}: sustained "
            f"{rate:.0f} WCU/s = {rate / CAPACITY:.1%} of {CAPACITY} (whole load {whole:.0f}); "
            f"load {st.elapsed:.1f}s, {st.requeues} requeues"
        )
    assert_exact(st, job, read_back(fleet.penv, user, ns), want)
    assert all(s >= MIN_SHARE for s in shares), f"sustained {shares} of the capacity"
    assert all(s <= 1.1 for s in shares), f"{shares}: the capacity model leaks"


NOISE_N = 10_000  # a fault-free load runs ~2 s of it on a quiet machine
NOISE = FaultConfig(
    throttle_rate={"BatchWriteItem": 0.10},  # refused whole: ThrottlingException, no reason
    partial_batch_rate=0.40,  # half of the batch comes back unprocessed
    partial_batch_fraction=0.5,
    internal_error_rate={"BatchWriteItem": 0.03},  # 5xx, retried by the call's policy
)
MIN_GOODPUT = 0.25  # of the same load's rate without faults


def test_random_refusals_do_not_pin_the_rate_at_the_floor(
    fleet: Fleet, proxy: FaultProxy, unique: str
) -> None:
    user = f"user-{unique}"
    fleet.start(2, prefix="noise", **WORKERS)
    rates = {}
    for name, config in (("clean", FaultConfig()), ("noisy", NOISE)):
        ns = f"{name}{unique}"
        proxy.set_config(config)
        want = {b"k%06d" % i: b"v" * 100 for i in range(NOISE_N)}
        job = producer(fleet.penv).load(ns, want.items(), user)
        # A bound for the noisy load: well past the goodput asked, far short of the floor's.
        bound = 120.0 if name == "clean" else 2 * NOISE_N / (MIN_GOODPUT * rates["clean"]) + 10
        st = job.wait(timeout=bound)
        assert_exact(st, job, read_back(fleet.penv, user, ns), want)
        assert (st.state, st.written) == ("succeeded", NOISE_N), st
        rates[name] = NOISE_N / st.elapsed
        print(f"\n{name}: {NOISE_N} items in {st.elapsed:.1f}s = {rates[name]:.0f}/s")
    stats = proxy.stats()
    print(
        f"noisy calls: {stats.op('BatchWriteItem', 'throttling')} throttled, "
        f"{stats.op('BatchWriteItem', 'partial_batch')} half refused, "
        f"{stats.op('BatchWriteItem', 'internal_server_error')} 5xx; goodput "
        f"{rates['noisy'] / rates['clean']:.0%} of the fault-free rate"
    )
    assert rates["noisy"] >= MIN_GOODPUT * rates["clean"], rates
