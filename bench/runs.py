"""Timed runs shared by the sections: one pipeline load, one raw load, one batch_writer load.

Each returns items per second. Tables are created before the clock starts and deleted after
(DynamoDB Local keeps everything in memory), so every run writes into an empty table. A pipeline
run is timed from ``Producer.load`` to the job's ledger saying it is finished, with the workers
already running; it fails loudly unless every item was written.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from bench import raw
from bench.env import USER, BenchEnv
from producers import JobStatus, Producer


class BenchError(RuntimeError):
    """A run did not do what it had to (a job not fully written): its figure would lie."""


def pipeline_job(
    env: BenchEnv, producer: Producer, items: Sequence[raw.Item], user: str = USER
) -> tuple[float, JobStatus]:
    """(seconds, final status) of ``Producer.load`` -> job finished (workers must be running).
    Raises :class:`BenchError` unless every item was written."""
    ns = env.unique("pipe")
    table = env.kv_table(ns)
    t0 = time.perf_counter()
    job = producer.load(ns, items, user)
    st = job.wait(timeout=max(120.0, len(items) / 100), poll=0.02)
    dt = time.perf_counter() - t0
    env.drop(table)
    if st.state != "succeeded" or st.written != len(items):
        raise BenchError(f"pipeline job {job.id}: {st.state}, {st.written}/{len(items)} written")
    return dt, st


def pipeline_load(
    env: BenchEnv, producer: Producer, items: Sequence[raw.Item], user: str = USER
) -> float:
    """Items/s of ``Producer.load`` -> job finished (workers must be running)."""
    return len(items) / pipeline_job(env, producer, items, user)[0]


def raw_load(env: BenchEnv, items: Sequence[raw.Item], threads: int) -> float:
    """Items/s of plain parallel BatchWriteItem from ``threads`` threads."""
    table = env.kv_table(env.unique("raw"))
    t0 = time.perf_counter()
    raw.parallel_batch_write(env.client, table, USER, items, threads)
    dt = time.perf_counter() - t0
    env.drop(table)
    return len(items) / dt


def batch_writer_load(env: BenchEnv, items: Sequence[raw.Item]) -> float:
    """Items/s of boto3's ``Table.batch_writer()``."""
    table = env.kv_table(env.unique("bw"))
    cfg = env.dynamo_config
    t0 = time.perf_counter()
    raw.batch_writer_load(table, USER, items, cfg.endpoint_url or "", cfg.region)
    dt = time.perf_counter() - t0
    env.drop(table)
    return len(items) / dt


def warm_up(env: BenchEnv, producer: Producer, n: int = 2000) -> None:
    """One small job so every worker has built its clients and pools before timing."""
    pipeline_load(env, producer, raw.make_items(n, 200, USER, tag="warm"))
