"""8. Recovery after a crash: a worker killed (SIGKILL) in the middle of a segment, with the
default settings; measured is the time from the kill until another worker holds that segment.

The table is held to a low write rate so a segment runs for seconds. One worker starts the job;
once it holds a segment's lease and has written part of it, a second worker starts and the
first is killed. The segment's message comes back after the visibility timeout (plus up to 5 s
of kombu's restore interval); its lease, unrenewed, has expired by then, so the second worker
takes it over at once (the ledger counts it as the segment's second delivery).
"""

from __future__ import annotations

import time

from bench.env import USER, BenchEnv
from bench.model import Goal, Section, Table
from bench.runs import BenchError
from pipeline import keys
from tests.support.pipeline import start_workers, stop_all

RATE = "400"  # WCU/s: a 500-item segment of 200 B items runs ~1.3 s
QUICK = {
    "DATAFOLD_VISIBILITY_TIMEOUT": "10",
    "DATAFOLD_SEGMENT_SECONDS": "2",
    "DATAFOLD_LEASE_SECONDS": "3",
    "DATAFOLD_DYNAMODB_RETRY_SECONDS": "3",
    "DATAFOLD_DYNAMODB_READ_TIMEOUT": "3",
    "DATAFOLD_REQUEUE_MAX_DELAY": "4",
}


def _wait(what: str, check: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise BenchError(f"recovery: {what} not seen in {timeout:g}s")
        time.sleep(0.01)


def run(env: BenchEnv) -> Section:
    settings = {"DATAFOLD_WRITE_CAPACITY": RATE, **(QUICK if env.quick else {})}
    cfg = env.penv.pipeline_config(**settings)
    r = env.redis()
    ns = env.unique("recovery")
    env.kv_table(ns)
    env.stop_workers()
    (first,) = start_workers(env.penv, 1, prefix="doomed", **settings)
    second = []
    try:
        items = ((b"r%06d" % i, b"x" * 200) for i in range(8000))
        job = env.producer(**settings).load(ns, items, user_id=USER)
        leases = keys.segment_lease(job.id, "") + "*"
        _wait("a segment leased and written to", lambda: job.status().written > 0, 60)
        second = start_workers(env.penv, 1, prefix="survivor", **settings)
        held = [k.decode().rsplit(":", 1)[1] for k in r.scan_iter(match=leases)]
        first.kill()
        if not held:
            raise BenchError("recovery: no segment was leased when the worker was killed")
        killed = time.monotonic()

        def taken_over() -> bool:
            counts = r.hmget(keys.job_deliveries(job.id), held)
            return any(c is not None and int(c) > 1 for c in counts)

        _wait("the killed worker's segment taken over", taken_over, cfg.visibility_timeout + 60)
        took = time.monotonic() - killed
        st = job.wait(timeout=600)
        if st.state != "succeeded" or st.written + st.superseded != st.items:
            raise BenchError(f"recovery: job {st.state}, {st.processed}/{st.items}")
    finally:
        stop_all(second)
        first.kill()
    sec = Section(
        "recovery",
        "8. Recovery after a crash",
        intro=(
            f"A worker killed (SIGKILL) while it holds a segment, with "
            f"{'the quick settings' if env.quick else 'the default settings'}; the table held "
            f"to {RATE} WCU/s so segments run for seconds. Measured: from the kill until a "
            "second worker took the segment over (its second delivery in the ledger)."
        ),
    )
    t = Table(["visibility timeout", "lease", "segment bound", "recovery (kill to takeover)"])
    t.add(
        f"{cfg.visibility_timeout} s",
        f"{cfg.lease_seconds:g} s",
        f"{cfg.segment_seconds:g} s",
        f"{took:.1f} s",
    )
    sec.tables.append(t)
    bound = cfg.visibility_timeout + 5 + 2
    sec.goals.append(
        Goal(
            "recovery within the visibility timeout + kombu's 5 s restore",
            took,
            bound,
            higher=False,
            unit=" s",
        )
    )
    return sec
