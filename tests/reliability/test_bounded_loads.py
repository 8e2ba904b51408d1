"""Loads bigger than Redis, producers that die half-way, and Ctrl-C, with the real CLI, real
workers and real Redis: the producer holds Redis memory to ``DATAFOLD_MAX_QUEUED_BYTES`` by
waiting for workers; a killed producer's job is marked abandoned and its resume ends with the
totals and the table of an uninterrupted load; Ctrl-C leaves an ``incomplete`` job, exit 130.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from pipeline import keys
from pipeline.states import JobState
from producers import Producer
from tests.reliability.conftest import (
    Fleet,
    PrivateRedisEnv,
    RedisServer,
    assert_exact,
    read_back,
    wait_for,
)
from tests.support.pipeline import ROOT, PipelineEnv

MIB = 2**20
BUDGET = 4 * MIB
MEMORY_SLACK = 2 * MIB + BUDGET // 20
"""Redis memory a blocked load may take beyond its budget (README, "Bounded memory"): a
client's query buffer, which holds the largest segment sent (at most 2 MiB) a while after,
and 5 % for the task messages and journal entries of the queued segments and the job's keys."""


def _cli(penv: PipelineEnv, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "producers.cli", *args],
        cwd=ROOT,
        env=penv.env(**env),
        stdout=subprocess.PIPE,
        stderr=log.open("wb"),
    )


def _queued(r: redis.Redis[Any]) -> int:
    return sum(int(v) for v in r.hvals(keys.queued_bytes()))


def _only_job(r: redis.Redis[Any]) -> str:
    ids = r.zrange(keys.jobs_index(), 0, -1)
    assert len(ids) == 1, ids
    return str(ids[0].decode())


def test_a_load_ten_times_the_budget_waits_for_workers_in_bounded_memory(
    private_redis: RedisServer, rpenv: PipelineEnv, proxy: Any, tmp_path: Path, unique: str
) -> None:
    penv = PrivateRedisEnv(rpenv.dynamo, 0, rpenv.logs, url=private_redis.url())
    r = private_redis.client()
    value = "x" * 1000
    n = 10 * BUDGET // 1030
    path = tmp_path / "big.jsonl"
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"key": f"k{i:06d}", "value": f"{value}{i}"}) + "\n")
    want = {f"k{i:06d}".encode(): json.dumps(f"{value}{i}").encode() for i in range(n)}
    base = int(r.info("memory")["used_memory"])
    log = tmp_path / "load.log"
    env = {"DATAFOLD_MAX_QUEUED_BYTES": str(BUDGET)}
    proc = _cli(penv, log, "load", str(path), "-n", "big", "--user", unique, **env)
    wait_for("the producer to fill its budget", lambda: _queued(r) > BUDGET - MIB, 60)
    peak = 0
    for _ in range(40):  # 2 s blocked: nothing more reaches Redis
        peak = max(peak, int(r.info("memory")["used_memory"]) - base)
        time.sleep(0.05)
    job_id = _only_job(r)
    st = Producer(penv.dynamo, penv.pipeline_config()).job(job_id).status()
    assert proc.poll() is None, log.read_text()
    assert _queued(r) <= BUDGET and st.items < n / 5, (st, _queued(r))
    assert peak <= BUDGET + MEMORY_SLACK, f"{peak / MIB:.1f} MiB over the baseline"
    print(
        f"\nblocked at {_queued(r) / MIB:.2f} MiB queued, {st.items} of {n} items; Redis "
        f"used_memory +{peak / MIB:.2f} MiB; file {path.stat().st_size / MIB:.1f} MiB"
    )

    fleet = Fleet(penv, proxy)
    try:
        fleet.start(2, "bp", **env)
        assert proc.wait(180) == 0, log.read_text()
        assert "waiting for workers" in log.read_text()
        job = Producer(penv.dynamo, penv.pipeline_config()).job(job_id)
        st = job.wait(timeout=240)
        assert st.state is JobState.SUCCEEDED and st.items == n, st
        assert_exact(st, job, read_back(penv, unique, "big"), want)
        assert _queued(r) == 0
    finally:
        fleet.stop()


def _lines(path: Path, n: int) -> dict[bytes, bytes]:
    """``n`` lines, keys repeating (last wins), every 1000th bad; the items it should leave."""
    want: dict[bytes, bytes] = {}
    with path.open("w") as f:
        for i in range(n):
            if i % 1000 == 999:
                f.write("{broken\n")
                continue
            key = f"k{i % (n * 3 // 4)}"
            f.write(json.dumps({"key": key, "value": {"i": i}}) + "\n")
            want[key.encode()] = json.dumps({"i": i}, separators=(",", ":")).encode()
    return want


TOTALS = ("items", "written", "superseded", "dead_lettered", "rejected", "deleted")


def test_a_killed_load_is_abandoned_and_its_resume_ends_as_an_uninterrupted_load(
    fleet: Fleet, tmp_path: Path, unique: str
) -> None:
    penv = fleet.penv
    r = penv.redis()
    path = tmp_path / "in.jsonl"
    want = _lines(path, 200_000)
    budget = 2 * MIB  # about half the file's payloads: with no worker, the load stops there
    env = {"DATAFOLD_MAX_QUEUED_BYTES": str(budget), "DATAFOLD_PRODUCER_TIMEOUT": "2"}
    log = tmp_path / "killed.log"
    proc = _cli(penv, log, "load", str(path), "-n", "resumed", "--user", unique, **env)
    wait_for("the load to be half-way", lambda: _queued(r) > budget - 256 * 1024, 60)
    job_id = _only_job(r)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    p = Producer(penv.dynamo, penv.pipeline_config(**env))
    wait_for("the job to be marked abandoned", lambda: p.job(job_id).status().state.stopped, 10)
    st = p.job(job_id).status()
    assert st.state is JobState.ABANDONED and "silent" in st.stopped, st
    assert 0 < st.lines < 200_000 and st.items < 150_000, st
    shown = subprocess.run(
        [sys.executable, "-m", "producers.cli", "status", job_id],
        cwd=ROOT,
        env=penv.env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "abandoned" in shown.stdout and f"--resume {job_id}" in shown.stdout, shown

    fleet.start(2, "rs", **env)
    resumed = _cli(
        penv, tmp_path / "resume.log", "load", str(path), "-n", "resumed", "--user", unique,
        "--resume", job_id, "--wait", **env,
    )  # fmt: skip
    whole = _cli(
        penv, tmp_path / "whole.log", "load", str(path), "-n", "whole", "--user", unique,
        "--wait", **env,
    )  # fmt: skip
    rc = (resumed.wait(300), whole.wait(300))
    assert rc == (3, 3), (tmp_path / "resume.log").read_text()[-2000:]  # rejected lines: partial
    a = p.job(job_id)
    b = p.job(_whole_job(r, job_id))
    got, ref = a.wait(timeout=60), b.wait(timeout=60)
    assert {t: getattr(got, t) for t in TOTALS} == {t: getattr(ref, t) for t in TOTALS}
    assert got.rejected == 200 and got.items == 200_000 - 200
    assert_exact(got, a, read_back(penv, unique, "resumed"), want)
    assert_exact(ref, b, read_back(penv, unique, "whole"), want)


def _whole_job(r: redis.Redis[Any], other: str) -> str:
    ids = [i.decode() for i in r.zrange(keys.jobs_index(), 0, -1)]
    return next(i for i in ids if i != other)


def test_ctrl_c_leaves_the_load_incomplete_and_exits_130(
    fleet: Fleet, tmp_path: Path, unique: str
) -> None:
    penv = fleet.penv
    r = penv.redis()
    path = tmp_path / "in.jsonl"
    _lines(path, 20_000)
    env = {"DATAFOLD_MAX_QUEUED_BYTES": str(64 * 1024)}
    log = tmp_path / "int.log"
    proc = _cli(penv, log, "load", str(path), "-n", "ctrlc", "--user", unique, **env)
    wait_for("the load to wait for workers", lambda: "waiting for workers" in log.read_text(), 60)
    os.kill(proc.pid, signal.SIGINT)
    assert proc.wait(30) == 130
    job_id = _only_job(r)
    text = log.read_text()
    assert "interrupted" in text and f"job {job_id} is incomplete" in text, text
    st = Producer(penv.dynamo, penv.pipeline_config()).job(job_id).status()
    assert st.state is JobState.INCOMPLETE and st.stopped == "interrupted (Ctrl-C)", st


def test_a_load_whose_redis_goes_away_is_never_succeeded_and_ends_abandoned(
    private_redis: RedisServer, rpenv: PipelineEnv
) -> None:
    penv = PrivateRedisEnv(rpenv.dynamo, 0, rpenv.logs, url=private_redis.url())
    env = {"DATAFOLD_PRODUCER_TIMEOUT": "1", "DATAFOLD_REDIS_TIMEOUT": "1"}
    cfg = penv.pipeline_config(DATAFOLD_SEGMENT_SIZE="10", **env)
    p = Producer(penv.dynamo, cfg, partitions=1)  # 10 segments planned before Redis goes

    def items() -> Any:
        for i in range(100):
            yield b"k%d" % i, b"v"
        private_redis.shutdown()  # Redis writes its append-only file out and exits
        for i in range(100, 200):
            yield b"k%d" % i, b"v"

    try:
        p.load("gone", items(), "u")
    except Exception as exc:  # which error matters less than what it says of its job
        notes = getattr(exc, "__notes__", [])
    else:
        raise AssertionError("a load whose Redis went away returned")
    assert any("abandoned once its heartbeat times out" in n for n in notes), notes
    private_redis.start()
    r = private_redis.client()
    job_id = _only_job(r)
    time.sleep(1.5)
    st = Producer(penv.dynamo, penv.pipeline_config(**env)).job(job_id).status()
    assert st.state is JobState.ABANDONED and st.items == 100, st
