"""10. Single write: ``Producer.put(...).wait()`` on an idle pipeline, woken vs polled.

``python -m bench.put_wait [--quick]`` prints this section (it starts its own worker, tables
and Redis database 13 like ``python -m bench``); ``python -m bench --only put_wait`` puts it in
the report with the others.

One put at a time, timed from the ``put`` call until ``wait()`` returns a finished job, with
one worker process already running and nothing else queued. Two waits, interleaved put by put:
``Job.wait()`` as it is (woken by the ledger's finished signal, ``pipeline.notify``) and the
wait it replaced, a loop reading ``Job.status()`` every 0.25 s until finished.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench import report
from bench.env import USER, BenchEnv
from bench.model import Panel, Section, Table
from bench.runs import BenchError
from bench.stats import percentile
from producers import Job, JobStatus, Producer

OLD_POLL = 0.25
"""Seconds between two status reads of the wait before the finished signal."""
WARM_UP = 10


def polled_wait(job: Job, timeout: float = 60.0) -> JobStatus:
    """The wait as it was: read the status, sleep 0.25 s, until finished."""
    deadline = time.monotonic() + timeout
    while True:
        st = job.status()
        if st.finished:
            return st
        if time.monotonic() >= deadline:
            raise BenchError(f"job {job.id} not finished after {timeout}s")
        time.sleep(OLD_POLL)


def signalled_wait(job: Job) -> JobStatus:
    return job.wait(timeout=60)


WAITS: dict[str, Callable[[Job], JobStatus]] = {
    "wait() woken by the finished signal": signalled_wait,
    f"status polled every {OLD_POLL} s (before)": polled_wait,
}


@dataclass
class Timed:
    """One put-and-wait: wall-clock times (epoch s) of the ``put`` call, its return and the
    wait's return, and the finished status (with the ledger's own timestamps)."""

    called: float
    enqueued: float
    returned: float
    status: JobStatus

    @property
    def ms(self) -> float:
        return (self.returned - self.called) * 1000

    def phases(self) -> list[float]:
        """Milliseconds of each of :data:`PHASES`."""
        st = self.status
        taken = st.started_at or st.created_at
        done = st.finished_at or taken
        marks = [self.called, self.enqueued, taken, done, self.returned]
        return [(b - a) * 1000 for a, b in itertools.pairwise(marks)]


PHASES = (
    "the put call (job created, message sent)",
    "put returned -> a worker took it",
    "taken -> write recorded in the ledger",
    "recorded -> wait returned",
)


def put_and_wait(producer: Producer, ns: str, i: int, wait: Callable[[Job], JobStatus]) -> Timed:
    """One put and its wait; BenchError unless it wrote its item."""
    called = time.time()
    job = producer.put(ns, b"k%05d" % i, b"v" * 100, USER)
    enqueued = time.time()
    st = wait(job)
    timed = Timed(called, enqueued, time.time(), st)
    if st.state != "succeeded" or st.written != 1:
        raise BenchError(f"put {i}: {st.state}, {st.written} written")
    return timed


def run(env: BenchEnv) -> Section:
    n = 10 if env.quick else 200
    ws = env.pool(1)
    producer = env.producer()
    ns = env.unique("putwait")
    env.kv_table(ns)
    for i in range(WARM_UP):
        put_and_wait(producer, ns, i, signalled_wait)
    runs: dict[str, list[Timed]] = {name: [] for name in WAITS}
    for i in range(n):
        for name, wait in WAITS.items():
            runs[name].append(put_and_wait(producer, ns, WARM_UP + i, wait))
    table = Table(["wait", "puts", "p50 ms", "p90 ms", "p99 ms", "max ms"])
    for name, timed in runs.items():
        ms = [t.ms for t in timed]
        table.add(name, len(ms), *(percentile(ms, p) for p in (50, 90, 99, 100)))
    phases = Table(["phase of a woken put", "p50 ms", "p90 ms"])
    woken = runs[next(iter(WAITS))]
    for k, phase in enumerate(PHASES):
        ms = [t.phases()[k] for t in woken]
        phases.add(phase, percentile(ms, 50), percentile(ms, 90))
    new, old = (percentile([t.ms for t in timed], 90) for timed in runs.values())
    return Section(
        "put_wait",
        "10. Single write: put and wait",
        intro=(
            f"{n} sequential `Producer.put(ns, key, 100 B value).wait()` per wait, interleaved "
            f"put by put, each timed from the `put` call to a finished job; {len(ws)} worker "
            "process already running, nothing else queued (an idle pipeline), after "
            f"{WARM_UP} warm-up puts. The baseline reads `Job.status()` every {OLD_POLL} s, as "
            "`wait()` did before the ledger's finished signal. The phases of the woken puts "
            "come from the ledger's timestamps (created, started, finished) and this "
            "process's clock, all on one machine."
        ),
        tables=[table, phases],
        notes=[
            f"p90 {new:.1f} ms woken against {old:.0f} ms polled ({old / new:.0f}x): the "
            "polled wait spends most of a put in its sleep; the woken one returns as the "
            "worker records the write: what remains is the pipeline's own (the phases above)."
        ],
        panels=[Panel("put + wait, p90 (ms)", {"woken": new, "polled 0.25 s": old}, "ms")],
    )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.put_wait", description=__doc__)
    p.add_argument("--quick", action="store_true", help="10 puts per wait: a smoke run")
    args = p.parse_args(argv)
    t = time.perf_counter()
    with BenchEnv(quick=args.quick) as env:
        section = run(env)
    section.seconds = time.perf_counter() - t
    section.notes.append(
        f"Measured on its own by `python -m bench.put_wait` ({time.strftime('%Y-%m-%d %H:%M %Z')}"
        f"; {report.machine()}), not in the run the rest of this report comes from."
    )
    print("\n".join(report.section_lines(section)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
