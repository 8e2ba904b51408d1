"""Put-and-wait with real workers ends on the ledger's finished signal, not on a poll: each wait
reads the status once before blocking and once when woken, whatever the worker's speed
(speed itself is measured by the benchmark, section 10, never by a test)."""

from __future__ import annotations

import threading

from producers import Producer
from producers.job import Job
from tests.integration.test_finished_signal import CountingLedger, Spy
from tests.support.pipeline import PipelineEnv, Worker

N = 12
PERIOD = 20.0
"""A status-read period no put-and-wait comes near: only the signal ends a wait before it."""


def test_sequential_puts_each_return_on_the_signal_and_read_their_write(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, unique: str
) -> None:
    ns, user = f"pw{unique}", f"user-{unique}"
    kv = penv.store(user).open_namespace(ns)
    ledger = CountingLedger(producer.redis, ttl=producer.config.result_ttl)
    blocked = 0
    for i in range(N):
        job = producer.put(ns, b"k%02d" % i, b"v%d" % i, user)
        spy, ledger.reads = Spy(producer.redis), 0
        st = Job(job.id, ledger, signal=spy).wait(timeout=60, poll=PERIOD)
        assert st.state == "succeeded" and st.written == 1
        # Finished at the first read, or blocked once and woken by the signal: never a period.
        assert spy.results in ([], [True]), spy.results
        assert ledger.reads == 1 + len(spy.results)
        blocked += len(spy.results)
        assert kv.get(b"k%02d" % i) == b"v%d" % i  # read-your-writes
    assert blocked > 0  # the wake-up path ran (a worker never finishes before the first read)
    # The plain call, as applications write it.
    assert producer.put(ns, b"plain", b"p", user).wait(timeout=60).state == "succeeded"
    assert kv.get(b"plain") == b"p"


def test_several_waiters_of_one_put_all_return_on_the_signal(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, unique: str
) -> None:
    ns, user = f"pw{unique}", f"user-{unique}"
    penv.store(user).open_namespace(ns)
    job = producer.put(ns, b"shared", b"v", user)
    spies = [Spy(producer.redis) for _ in range(5)]
    states: list[str] = []

    def wait(spy: Spy) -> None:
        states.append(Job(job.id, producer.ledger, signal=spy).wait(timeout=60, poll=PERIOD).state)

    threads = [threading.Thread(target=wait, args=(s,)) for s in spies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    assert states == ["succeeded"] * 5
    assert all(s.results in ([], [True]) for s in spies), [s.results for s in spies]
    late = Spy(producer.redis)
    assert Job(job.id, producer.ledger, signal=late).wait(timeout=60).finished
    assert late.results == []  # finished before it began: one read, no block
