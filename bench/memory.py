"""6. Memory: peak RSS of the producer streaming a large file, and of a worker during a load.

The producer runs in a child process (``python -m bench.memory_child``) that streams a JSONL
file through ``Producer.load_file`` and reports its own peak RSS; it runs on a small file and on
one ten times larger, so "flat" is measured, not assumed. No worker consumes meanwhile: the
parent empties the broker's ``bulk`` lists (kombu's priority sub-lists too) as they fill (Redis
database 13 is ours), so a million queued items never sit in the shared Redis; then it forgets
the job (ledger, payloads, journal), or the sweeper would send its segments again to the
workers of the sections that follow. A worker's peak RSS (VmHWM) is read after loads of
4 KB items (the largest messages: 2 MB segments).
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import redis

from bench import raw, runs
from bench.bulk_load import WORKERS
from bench.env import USER, BenchEnv
from bench.model import Goal, Panel, Section, Table
from bench.procs import peak_rss_mb
from pipeline import keys
from pipeline.messages import BULK_QUEUE
from tests.support.pipeline import ROOT

LIMIT_MB = 200.0
FLAT_MB = 20.0


def write_file(path: Path, lines: int) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i in range(lines):
            f.write(f'{{"key":"k{i:08d}","value":{{"i":{i},"s":"{"x" * 24}"}}}}\n')


def producer_peak(env: BenchEnv, path: Path) -> dict[str, Any]:
    """Run the child producer on ``path`` while draining the queue; its report."""
    stop = threading.Event()
    r = env.redis()

    lists = keys.broker_queue_lists(BULK_QUEUE)

    def drain() -> None:
        while not stop.wait(0.2):
            r.delete(*lists)

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.memory_child", str(path), env.unique("mem")],
            cwd=ROOT,
            env=env.worker_env(),
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        stop.set()
        t.join()
        r.delete(*lists)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed: {proc.stderr[-2000:]}")
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    forget_job(r, str(report["job"]))
    return report


def forget_job(r: redis.Redis[bytes], job_id: str) -> None:
    """Drop a job whose messages were thrown away as if its results had expired: its keys
    (ledger and payloads) and its journal entries; the sweeper then drops its queued bytes."""
    gone = [m for m, _ in r.zscan_iter(keys.segments_due()) if json.loads(m)[0] == job_id]
    if gone:
        r.zrem(keys.segments_due(), *gone)
        r.hdel(keys.segment_messages(), *gone)
    for key in r.scan_iter(match=keys.job(job_id) + "*", count=1000):
        r.delete(key)
    r.zrem(keys.producing(), job_id)


def run(env: BenchEnv) -> Section:
    small, big = (2_000, 20_000) if env.quick else (100_000, 1_000_000)
    sec = Section("memory", "6. Memory", intro=__doc__.split("\n\n", 1)[1].strip())
    env.stop_workers()
    t = Table(["producer input", "file MB", "peak RSS MB", "lines/s"])
    peaks: dict[int, float] = {}
    for lines in (small, big):
        path = env.workdir / f"lines-{lines}.jsonl"
        write_file(path, lines)
        rep = producer_peak(env, path)
        peaks[lines] = rep["peak_rss_mb"]
        t.add(
            f"{lines:,} lines",
            path.stat().st_size / 1e6,
            rep["peak_rss_mb"],
            lines / rep["seconds"],
        )
        path.unlink()
    sec.tables.append(t)
    sec.goals.append(
        Goal(f"producer peak RSS, {big:,} lines", peaks[big], LIMIT_MB, higher=False, unit=" MB")
    )
    sec.goals.append(
        Goal(
            f"producer RSS growth {small:,} -> {big:,} lines (flat)",
            peaks[big] - peaks[small],
            FLAT_MB,
            higher=False,
            unit=" MB",
        )
    )
    n = 600 if env.quick else 10_000
    ws = env.pool(WORKERS)
    producer = env.producer()
    runs.pipeline_load(env, producer, raw.make_items(n, 4096, USER))
    rss = [peak_rss_mb(w.proc.pid) for w in ws]
    sec.tables.append(
        Table(
            ["worker", "peak RSS MB after loading"],
            [[f"worker {i}", f"{v:,.0f}"] for i, v in enumerate(rss)],
        )
    )
    sec.notes.append(
        f"Workers: {WORKERS} processes, thread pool, default concurrency; the peak "
        f"includes every load of this run so far ({n:,} items of 4 KB last)."
    )
    sec.panels.append(
        Panel(
            "Peak RSS (MB)",
            {
                f"producer {small // 1000}k": peaks[small],
                f"producer {big // 1000}k": peaks[big],
                "worker": max(rss),
            },
            "MB",
            ref=LIMIT_MB,
        )
    )
    return sec
