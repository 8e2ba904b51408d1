"""Fixtures of the reliability suite: faults between workers and DynamoDB, workers killed,
Redis restarted, bad input.

Every test has this shape::

    Producer (test process) ──Redis DB 11──▶ workers ──FaultProxy──▶ DynamoDB Local
    test process ───────────── direct reads ─────────────────────────▶ DynamoDB Local

so faults only ever hit the workers, and the test reads back what really landed. Retry and
recovery settings are scaled down (:data:`QUICK`) so the whole suite runs in a few minutes;
a test that needs other bounds passes them to :meth:`Fleet.start`.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from pipeline.status import JobStatus
from producers import Job, Producer
from storage import DynamoConfig
from tests.faults import FaultProxy
from tests.support.pipeline import PipelineEnv, Worker, fresh_env, start_workers

REDIS_DB = 11
QUICK = {
    "DATAFOLD_VISIBILITY_TIMEOUT": "10",  # recovery after a kill: 10 s + kombu's 5 s sweep
    "DATAFOLD_REQUEUE_BASE_DELAY": "0.5",
    "DATAFOLD_REQUEUE_MAX_DELAY": "2",
    "DATAFOLD_DYNAMODB_RETRY_SECONDS": "5",
    "DATAFOLD_BATCH_ROUNDS": "3",
    # The longest segment run, 2 s + one call (5 s of retries + a 2 s read), is under 10 s.
    "DATAFOLD_SEGMENT_SECONDS": "2",
    "DATAFOLD_DYNAMODB_READ_TIMEOUT": "2",
    "DATAFOLD_LEASE_SECONDS": "3",
}
"""Worker settings of every test unless it overrides them."""


@dataclass
class PrivateRedisEnv(PipelineEnv):
    """A :class:`PipelineEnv` whose broker, ledger and limiter live on another Redis."""

    url: str = ""

    @property
    def redis_url(self) -> str:
        return self.url


class Fleet:
    """The workers of one test, all writing through ``proxy``; ``stop()`` ends every one."""

    def __init__(self, penv: PipelineEnv, proxy: FaultProxy) -> None:
        self.penv = penv
        self.proxy = proxy
        self.workers: list[Worker] = []

    def start(self, n: int = 1, prefix: str = "w", **env: str) -> list[Worker]:
        """Start ``n`` workers (QUICK settings, then ``env``) and wait until they are ready."""
        settings = {**QUICK, "DATAFOLD_DYNAMODB_ENDPOINT": self.proxy.endpoint_url, **env}
        ws = start_workers(self.penv, n, prefix=prefix, **settings)
        self.workers += ws
        return ws

    def logs(self) -> str:
        """Every log line of every worker this fleet started (killed ones included)."""
        return "".join(w.log_path.read_text("utf-8", "replace") for w in self.workers)

    def stop(self) -> None:
        for w in self.workers:
            try:
                w.stop()
            except Exception:  # never leave a worker behind because another one misbehaved
                w.kill()


@pytest.fixture(scope="session")
def rpenv(
    schema_config: DynamoConfig, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PipelineEnv]:
    """The suite's pipeline environment on Redis DB 11 (emptied before and after)."""
    logs = Path(tmp_path_factory.mktemp("reliability-logs"))
    with fresh_env(schema_config, REDIS_DB, logs) as e:
        yield e


@pytest.fixture
def proxy(dynamo_config: DynamoConfig) -> Iterator[FaultProxy]:
    """A fault proxy in front of DynamoDB Local, injecting nothing until configured."""
    with FaultProxy(dynamo_config.endpoint_url or "http://127.0.0.1:8000") as p:
        yield p


@pytest.fixture
def fleet(rpenv: PipelineEnv, proxy: FaultProxy) -> Iterator[Fleet]:
    """Workers of this test (none started yet) on an emptied DB 11; all stopped at the end."""
    rpenv.redis().flushdb()
    f = Fleet(rpenv, proxy)
    yield f
    f.stop()


def producer(penv: PipelineEnv, **env: str) -> Producer:
    """A producer on ``penv`` (``env`` e.g. ``DATAFOLD_SEGMENT_SIZE``)."""
    return Producer(penv.dynamo, penv.pipeline_config(**env))


def read_back(penv: PipelineEnv, user: str, ns: str) -> dict[bytes, bytes]:
    """Every item of ``user`` in ``ns``, read directly from DynamoDB Local."""
    return dict(penv.store(user).open_namespace(ns).scan_prefix(b""))


def diff(got: Mapping[bytes, bytes], want: Mapping[bytes, bytes]) -> str:
    """A short account of how two item sets differ ("" if equal); never 20k lines."""
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(k for k in set(got) & set(want) if got[k] != want[k])
    parts = [
        f"{name}: {len(keys)} (first {keys[:3]!r})"
        for name, keys in (("missing", missing), ("extra", extra), ("wrong value", wrong))
        if keys
    ]
    return "; ".join(parts)


def assert_exact(
    st: JobStatus,
    job: Job,
    got: Mapping[bytes, bytes],
    want: Mapping[bytes, bytes],
    dead: Mapping[bytes, str] | None = None,
) -> None:
    """The job finished; nothing lost, nothing extra; the ledger adds up; the dead letters
    are exactly ``dead`` (key -> a piece of the reason) and none of them was written."""
    dead = dict(dead or {})
    assert st.finished, st
    assert st.items == st.written + st.superseded + st.dead_lettered + st.deleted, st
    assert st.segments_done == st.segments_planned, st
    letters = list(job.dead_letters())
    assert sorted(d.key for d in letters) == sorted(dead), [
        (d.key[:40], d.code, d.reason[:300]) for d in letters
    ][:5]
    assert st.dead_lettered == len(dead), st
    for d in letters:
        assert dead[d.key] in d.reason, (d.key[:40], d.code, d.reason)
    expected = {k: v for k, v in want.items() if k not in dead}
    problems = diff(got, expected)
    assert not problems, problems


def wait_for(what: str, check: Any, timeout: float, poll: float = 0.02) -> None:
    """Poll ``check()`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def free_port(start: int = 6390, stop: int = 6490) -> int:
    """A port in [start, stop) that nothing listens on and we can bind."""
    for port in range(start, stop):
        with contextlib.closing(socket.socket()) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {start}..{stop}")


class RedisServer:
    """A redis-server of one test (append-only on, as docker-compose runs it), never the
    shared one: ``restart()`` is SHUTDOWN (AOF flushed) then a start on the same directory."""

    def __init__(self, workdir: Path, password: str | None = None) -> None:
        self.dir = workdir
        self.password = password
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def client(self) -> redis.Redis[Any]:
        return redis.Redis.from_url(self.url(), socket_timeout=5)

    def start(self) -> RedisServer:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--appendonly",
            "yes",
            "--save",
            "",
            "--dir",
            str(self.dir),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        with open(self.dir / "redis.log", "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_for(f"redis-server on {self.port}", self._pong, 20, 0.05)
        return self

    def _pong(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def shutdown(self) -> None:
        """SHUTDOWN: Redis writes its AOF out and exits."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(redis.ConnectionError):
            self.client().shutdown()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A started redis-server on a free port from 6390 up; shut down at the end."""
    server = RedisServer(tmp_path).start()
    yield server
    server.shutdown()
