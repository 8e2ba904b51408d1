"""7. Celery overhead: a segment message with an empty write vs a segment doing its write.

Empty: segment messages with no items, planned in the ledger like any job, so each one pays
exactly the per-message path - broker delivery, JSON decoding, the task wrapper, the ledger's
checks and its atomic finish - and no DynamoDB call. Full: a normal load in segments of the
default size. Both run on the same running workers and are reported per message: wall time
(the workers run many messages at once, so this is throughput, not latency) and worker CPU.
"""

from __future__ import annotations

import time

from bench import raw, runs
from bench.bulk_load import WORKERS
from bench.env import USER, BenchEnv
from bench.model import Panel, Section, Table
from bench.procs import CpuMeter
from bench.runs import BenchError
from pipeline.enqueue import CeleryEnqueuer
from pipeline.ids import new_job_id
from pipeline.messages import Segment


def empty_segments(env: BenchEnv, m: int) -> float:
    """Seconds for ``m`` empty segment messages, from the first send to the job finished."""
    producer = env.producer()
    ns = env.unique("empty")
    env.kv_table(ns)
    enqueue = producer.enqueue
    assert isinstance(enqueue, CeleryEnqueuer)
    job = new_job_id()
    t = time.perf_counter()
    producer.ledger.create(job, kind="load", namespace=ns, user_id=USER)
    for i in range(m):
        seg = Segment(job=job, seg=f"e{i}", target="kv", ns=ns, user=USER, ops=[])
        producer.ledger.plan(job, seg.seg, 0)
        enqueue.segment(seg)
    producer.ledger.seal(job)
    st = producer.job(job).wait(timeout=300, poll=0.02)
    seconds = time.perf_counter() - t
    if st.state != "succeeded" or st.segments_done != m:
        raise BenchError(f"empty segments: {st.state}, {st.segments_done}/{m} done")
    return seconds


def run(env: BenchEnv) -> Section:
    m = 40 if env.quick else 400
    ws = env.pool(WORKERS)
    pids = [w.proc.pid for w in ws]
    producer = env.producer()
    size = producer.config.segment_size
    runs.warm_up(env, producer, 500)
    with CpuMeter.standard(pids) as cpu_e:
        t_empty = empty_segments(env, m)
    n_full = (m // 4) * size
    items = raw.make_items(n_full, 200, USER)
    with CpuMeter.standard(pids) as cpu_f:
        t_full, st = runs.pipeline_job(env, producer, items)
    full_msgs = st.segments_planned
    e_wall, f_wall = t_empty / m * 1000, t_full / full_msgs * 1000
    e_cpu, f_cpu = (cpu_e.used["workers"] / m * 1000, cpu_f.used["workers"] / full_msgs * 1000)
    sec = Section(
        "overhead",
        "7. Celery overhead per segment message",
        intro=(
            f"{m} empty segment messages vs a load of {n_full:,} items of 200 B (about "
            f"{full_msgs} segments of up to {size}); {len(ws)} workers, default settings. Wall ms "
            "per message is elapsed time / messages with the workers running many at once."
        ),
    )
    t = Table(["message", "wall ms / message", "worker CPU ms / message"])
    t.add("empty segment (Celery + ledger only)", e_wall, e_cpu)
    t.add(f"segment writing ~{n_full // full_msgs} items", f_wall, f_cpu)
    sec.tables.append(t)
    share = e_cpu / f_cpu * 100
    sec.notes.append(
        f"The per-message path costs {share:.0f} % of a {size}-item segment's "
        "worker CPU (no goal in the issue: reported)."
    )
    per_item = e_cpu * 1000 / (n_full / full_msgs)
    sec.notes.append(
        f"Per item, the per-message overhead is {per_item:.1f} µs of worker CPU; "
        f"one message per 25 items would cost {e_cpu * 1000 / 25:.0f} µs per item."
    )
    sec.panels.append(
        Panel(
            "Per segment message (worker CPU ms)",
            {"empty": e_cpu, f"~{n_full // full_msgs} items": f_cpu},
            "ms",
        )
    )
    return sec
