"""DynamoDB unreachable in the middle of a job.

* 15 s without DynamoDB (the proxy stopped: connections refused), shorter than the retry budget:
  tasks give their leftovers back, requeue them with growing countdowns, and write everything
  once DynamoDB is back; nothing is dead-lettered.
* An outage longer than the retry budget (every call reset): the items left go to dead letters
  with the reason, and ``datafold dead-letters JOB --replay --wait`` writes them all afterwards.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from tests.faults import FaultProxy
from tests.reliability.conftest import Fleet, assert_exact, producer, read_back, wait_for
from tests.support.pipeline import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

OUTAGE_SECONDS = 15.0
SLOW = {"DATAFOLD_WORKER_CONCURRENCY": "2", "DATAFOLD_BATCH_THREADS": "2"}
"""Few writers, so the job is still running when DynamoDB goes away."""
PATIENT = {
    **SLOW,
    # One call: 3 tries within 2 s. Then up to 8 requeues, waiting 0.5-1, 1-2, 2-4, then 3-6 s
    # each: at least 18.5 s in all, more than the outage.
    "DATAFOLD_DYNAMODB_MAX_ATTEMPTS": "3",
    "DATAFOLD_DYNAMODB_RETRY_SECONDS": "2",
    "DATAFOLD_REQUEUE_BASE_DELAY": "1",
    "DATAFOLD_REQUEUE_MAX_DELAY": "6",
    "DATAFOLD_MAX_REQUEUES": "8",
    "DATAFOLD_VISIBILITY_TIMEOUT": "15",
}
IMPATIENT = {
    **SLOW,
    # A budget of a second or two: 2 tries per call, 2 quick requeues, then dead letters.
    "DATAFOLD_DYNAMODB_MAX_ATTEMPTS": "2",
    "DATAFOLD_DYNAMODB_RETRY_SECONDS": "1",
    "DATAFOLD_REQUEUE_BASE_DELAY": "0.5",
    "DATAFOLD_REQUEUE_MAX_DELAY": "1",
    "DATAFOLD_MAX_REQUEUES": "2",
}


def test_15s_outage_tasks_back_off_and_resume(fleet: Fleet, proxy: FaultProxy, unique: str) -> None:
    n = 4000
    proxy.configure(latency_ms={"BatchWriteItem": 60})
    fleet.start(1, prefix="patient", **PATIENT)
    ns, user = f"out{unique}", f"user-{unique}"
    want = {b"o%05d" % i: b"v%d" % i for i in range(n)}
    job = producer(fleet.penv, DATAFOLD_SEGMENT_SIZE="100").load(ns, want.items(), user)
    wait_for("a tenth of the job written", lambda: job.status().written >= n // 10, 60)

    port = proxy.port
    proxy.stop()  # connections refused from now on
    down_at = time.monotonic()
    written_down = job.status().written
    assert written_down < n
    time.sleep(OUTAGE_SECONDS)
    back = FaultProxy(proxy.upstream_url, port=port).start()
    back_at = time.monotonic()
    try:
        st = job.wait(timeout=120)
    finally:
        back.stop()

    assert_exact(st, job, read_back(fleet.penv, user, ns), want)
    assert (st.state, st.written, st.dead_lettered) == ("succeeded", n, 0), st
    assert st.requeues > 0, "nothing was requeued during the outage"
    assert back.stats().op("BatchWriteItem", "forwarded") > 0, "nothing written after it"
    print(
        f"\n{n} items, DynamoDB down {back_at - down_at:.1f}s with {written_down} written: "
        f"requeues {st.requeues}, job {st.elapsed:.1f}s"
    )


def test_outage_past_the_retry_budget_dead_letters_then_replay_writes_all(
    fleet: Fleet, proxy: FaultProxy, unique: str
) -> None:
    n = 1500
    proxy.configure(latency_ms={"BatchWriteItem": 80})
    fleet.start(1, prefix="impatient", **IMPATIENT)
    penv = fleet.penv
    ns, user = f"dl{unique}", f"user-{unique}"
    want = {b"d%05d" % i: b"value-%d" % i for i in range(n)}
    job = producer(penv, DATAFOLD_SEGMENT_SIZE="100").load(ns, want.items(), user)
    wait_for("some items written", lambda: job.status().written >= n // 10, 60)

    proxy.configure(reset_rate=1.0)  # every call is reset: DynamoDB is gone
    assert job.status().written < n, "the job finished before the outage"
    st = job.wait(timeout=90)
    proxy.configure(reset_rate=0.0)

    assert st.state == "partial" and st.written < n and st.dead_lettered > 0, st
    letters = list(job.dead_letters())
    got = read_back(penv, user, ns)
    assert {d.key for d in letters} == set(want) - set(got)
    for d in letters:
        assert d.code == "ConnectionError", (d.code, d.reason)
        assert "still unprocessed after 2 requeues" in d.reason, d.reason
        assert d.value == want[d.key] and d.namespace == ns
    assert_exact(st, job, got, want, dead={d.key: "requeues" for d in letters})

    proc = subprocess.run(
        [sys.executable, "-m", "producers.cli", "dead-letters", job.id, "--replay", "--wait"],
        cwd=ROOT,
        env=penv.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    replay_id = next(
        line.split()[-1] for line in proc.stderr.splitlines() if line.startswith("replay: job")
    )
    replay = producer(penv).job(replay_id)
    rs = replay.status()
    assert (rs.state, rs.items, rs.written, rs.dead_lettered) == (
        "succeeded",
        len(letters),
        len(letters),
        0,
    ), rs
    assert_exact(rs, replay, read_back(penv, user, ns), want)
    print(
        f"\n{n} items: {st.written} written before the outage, {len(letters)} dead-lettered, "
        f"all {rs.written} written by the replay"
    )
