"""Redis (broker, ledger and limiter) restarted in the middle of a job.

The test runs a redis-server of its own (append-only on, as docker-compose runs it) on a free
port, never the shared one. SHUTDOWN writes the append-only file out; the server is started
again on the same directory, so queued and unacknowledged messages and the ledger survive. The
workers reconnect, their services retry while Redis is away (``worker.runtime.patiently``), and
the job still finishes with every item written once and exact counts.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from storage.errors import BackendUnavailableError
from tests.faults import FaultProxy
from tests.reliability.conftest import (
    Fleet,
    PrivateRedisEnv,
    RedisServer,
    assert_exact,
    producer,
    read_back,
    wait_for,
)
from tests.support.pipeline import PipelineEnv
from tests.support.redis_at import PORT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 6000
OUTAGE_SECONDS = 2.0


def test_redis_restarted_mid_job_the_job_still_finishes_exactly(
    rpenv: PipelineEnv, proxy: FaultProxy, private_redis: RedisServer, unique: str
) -> None:
    assert private_redis.port != PORT  # never the shared Redis
    assert private_redis.client().info("persistence")["aof_enabled"] == 1
    penv = PrivateRedisEnv(rpenv.dynamo, 0, rpenv.logs, url=private_redis.url())
    # A little latency per batch so the job is still running when Redis goes away.
    proxy.configure(latency_ms={"BatchWriteItem": 20})
    fleet = Fleet(penv, proxy)
    try:
        fleet.start(2, prefix="redis", DATAFOLD_BATCH_THREADS="2", DATAFOLD_WORKER_CONCURRENCY="4")
        ns, user = f"rr{unique}", f"user-{unique}"
        want = {b"r%05d" % i: b"%d" % i * 20 for i in range(N)}
        job = producer(penv, DATAFOLD_SEGMENT_SIZE="100").load(ns, want.items(), user)
        wait_for("a fifth of the job written", lambda: job.status().written >= N // 5, 60)
        assert not job.status().finished, "the job finished before Redis went away"
        private_redis.shutdown()
        stopped = job.status  # the ledger is unreachable now
        with pytest.raises(BackendUnavailableError):
            stopped()
        time.sleep(OUTAGE_SECONDS)
        private_redis.start()
        assert private_redis.client().exists(f"datafold:job:{{{job.id}}}"), "AOF lost the job"
        st = job.wait(timeout=120)
    finally:
        fleet.stop()

    assert_exact(st, job, read_back(penv, user, ns), want)
    assert (st.state, st.items, st.written, st.dead_lettered) == ("succeeded", N, N, 0), st
    logs = fleet.logs()
    assert "Connection to broker lost" in logs or "Cannot connect" in logs, (
        "the workers never noticed the restart"
    )
    print(f"\n{N} items across a Redis restart: {st.elapsed:.1f}s, requeues {st.requeues}")


STALL_SECONDS = 12.0
STALLED = {"DATAFOLD_REDIS_TIMEOUT": "2", "DATAFOLD_REDIS_CONNECT_TIMEOUT": "2"}


def test_redis_that_accepts_connections_and_stalls_fails_loudly_and_loses_nothing(
    rpenv: PipelineEnv, proxy: FaultProxy, private_redis: RedisServer, unique: str
) -> None:
    """SIGSTOP: the kernel still accepts connections, Redis answers nothing. Every call times
    out (2 s here) and is retried or raised, never hung on; nothing is acked as done and lost."""
    assert private_redis.proc is not None and private_redis.port != PORT
    penv = PrivateRedisEnv(rpenv.dynamo, 0, rpenv.logs, url=private_redis.url())
    proxy.configure(latency_ms={"BatchWriteItem": 20})
    fleet = Fleet(penv, proxy)
    try:
        fleet.start(2, prefix="stall", DATAFOLD_BATCH_THREADS="2", **STALLED)
        ns, user = f"st{unique}", f"user-{unique}"
        want = {b"s%05d" % i: b"%d" % i * 20 for i in range(N)}
        job = producer(penv, DATAFOLD_SEGMENT_SIZE="100", **STALLED).load(ns, want.items(), user)
        wait_for("a fifth of the job written", lambda: job.status().written >= N // 5, 60)
        os.kill(private_redis.proc.pid, signal.SIGSTOP)
        try:
            asked = time.monotonic()
            with pytest.raises(BackendUnavailableError):
                job.status()
            assert time.monotonic() - asked < 10  # a timeout, not a hang
            time.sleep(STALL_SECONDS)
        finally:
            os.kill(private_redis.proc.pid, signal.SIGCONT)
        st = job.wait(timeout=150)
    finally:
        fleet.stop()
    assert_exact(st, job, read_back(penv, user, ns), want)
    assert (st.state, st.items, st.written, st.dead_lettered) == ("succeeded", N, N, 0), st
    print(f"\n{N} items across a {STALL_SECONDS:g}s Redis stall: {st.elapsed:.1f}s")
