"""Three worker processes under one 300 WCU/s limit write within ±10 % of it over 10 s.

Real Redis (DB 15), real clocks, the real Lua script: three spawned OS processes, four threads
each, call ``acquire(table, 1.0)`` as fast as the limiter lets them. A fresh table's bucket
starts full (300 WCU), so the count is taken after the first second, when that burst is spent:
the next nine seconds must admit 9 x 300 WCU, ±10 %.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import uuid
from multiprocessing.connection import Connection
from typing import Any

import pytest
import redis

from pipeline import keys
from tests.support.redis_at import ADDRESS, redis_url

REDIS_URL = redis_url(15)
CAPACITY = 300.0
PROCESSES = 3
THREADS = 4
DURATION = 10.0
BURST_SECONDS = 1.0

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _hammer(table: str, conn: Connection) -> None:
    """One worker process: THREADS threads acquiring 1 WCU at a time until DURATION is up.

    Over ``conn``: sends "ready", receives the start time (epoch seconds), sends the admission
    times relative to it.
    """
    from worker.limiter import RateLimiter, RedisBucketBackend

    limiter = RateLimiter(
        RedisBucketBackend(redis.Redis.from_url(REDIS_URL)),
        capacity=CAPACITY,
        burst_seconds=BURST_SECONDS,
    )
    stamps: list[float] = []
    lock = threading.Lock()
    conn.send("ready")
    begin = conn.recv()
    time.sleep(max(0.0, begin - time.time()))

    def run() -> None:
        mine: list[float] = []
        while True:
            limiter.acquire(table, 1.0)
            now = time.time()
            if now >= begin + DURATION:
                break
            mine.append(now - begin)
        with lock:
            stamps.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.send(stamps)
    conn.close()
    os._exit(0)  # the results are sent: skip interpreter teardown (a second or more)


def test_three_processes_share_one_limit() -> None:
    client: redis.Redis[Any] = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        pytest.fail(f"no Redis on {ADDRESS}: run scripts/redis-local start (make test does)")
    table = f"pytest-limiter-procs-{uuid.uuid4().hex[:12]}"
    ctx = mp.get_context("spawn")
    pipes = [ctx.Pipe() for _ in range(PROCESSES)]
    procs = [ctx.Process(target=_hammer, args=(table, child)) for _, child in pipes]
    try:
        for p in procs:
            p.start()
        for parent, _ in pipes:
            assert parent.poll(30) and parent.recv() == "ready"
        begin = time.time() + 0.2
        for parent, _ in pipes:
            parent.send(begin)
        stamps = []
        for parent, _ in pipes:
            assert parent.poll(DURATION + 20)
            stamps += parent.recv()
        for p in procs:
            p.join(10)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        client.delete(keys.limiter_bucket(table))
        client.close()

    total = len(stamps)
    steady = sum(1 for s in stamps if s >= BURST_SECONDS)
    expected = CAPACITY * (DURATION - BURST_SECONDS)
    print(
        f"\n{PROCESSES} processes x {THREADS} threads, limit {CAPACITY:.0f} WCU/s: "
        f"{total} WCU admitted in {DURATION:.0f} s (bucket {CAPACITY * BURST_SECONDS:.0f} "
        f"+ {CAPACITY * DURATION:.0f} expected); after the first second {steady} WCU "
        f"vs {expected:.0f} expected ({steady / expected - 1:+.1%})"
    )
    assert abs(steady - expected) <= 0.10 * expected
    assert abs(total - CAPACITY * (DURATION + BURST_SECONDS)) <= 0.10 * CAPACITY * DURATION
