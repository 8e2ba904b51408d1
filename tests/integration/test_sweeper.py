"""Lost messages: kombu's Redis transport pops a message before it records it unacknowledged,
so a worker killed in between loses it. The journal and the sweeper send it again; messages
waiting in the queue or held by a worker are left alone; the job ends exact."""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from pipeline import keys
from pipeline.config import PipelineConfig
from pipeline.enqueue import CeleryEnqueuer
from pipeline.ledger import Ledger
from pipeline.payloads import PayloadStore
from producers import Producer
from tests.doubles import metric
from tests.support.pipeline import PipelineEnv, start_workers, stop_all
from worker.celery_app import make_app
from worker.sweeper import Sweeper, in_broker


def _setup(
    penv: PipelineEnv, unique: str, n: int = 600
) -> tuple[Producer, Any, dict[bytes, bytes], str]:
    cfg = penv.pipeline_config(DATAFOLD_SEGMENT_SIZE="200")
    producer = Producer(penv.dynamo, cfg)
    items = {b"k%04d" % i: b"v%d" % i for i in range(n)}
    job = producer.load(f"sweep{unique}", items.items(), f"user-{unique}")
    return producer, job, items, cfg.broker_url


def _sweeper(penv: PipelineEnv, cfg: PipelineConfig, **kw: Any) -> Sweeper:
    r = penv.redis()
    payloads = PayloadStore(r, ttl=600)
    return Sweeper(
        payloads=payloads,
        ledger=Ledger(r, ttl=600),
        enqueue=CeleryEnqueuer(make_app(cfg), payloads),
        broker=r,
        interval=kw.pop("interval", 0.01),
        grace=kw.pop("grace", 0.0),
        **kw,
    )


def test_a_lost_message_is_sent_again_and_others_are_left_alone(
    isolated_penv: PipelineEnv, unique: str
) -> None:
    r = isolated_penv.redis()
    _, job, items, _ = _setup(isolated_penv, unique)
    queued = r.lrange("bulk", 0, -1)
    assert len(queued) > 2 and len(in_broker(queued, [])) == len(queued)
    # One message is lost (popped, never recorded); one is held by a "worker" (unacked).
    lost = r.rpop("bulk")
    held = r.rpop("bulk")
    assert lost is not None and held is not None
    r.hset(keys.broker_unacked(), "tag-1", json.dumps([json.loads(held), "", "bulk"]))

    sweeper = _sweeper(isolated_penv, isolated_penv.pipeline_config())
    before = metric("datafold_segments_total", outcome="resent")
    assert sweeper.sweep() == 1
    assert metric("datafold_segments_total", outcome="resent") == before + 1
    # The lost one is back in the queue; the held one was not sent again.
    back = in_broker(r.lrange("bulk", 0, -1), [])
    assert back == in_broker(queued, []) - in_broker([held], [])
    assert in_broker([lost], []) <= back
    time.sleep(0.02)  # the next interval: the message is back in the queue, nothing to do
    assert sweeper.sweep() == 0

    # The "held" message goes back to the queue (its worker died: the visibility timeout).
    r.hdel(keys.broker_unacked(), "tag-1")
    r.lpush("bulk", held)
    ws = start_workers(isolated_penv, 1, prefix="sweep")
    try:
        st = job.wait(timeout=120)
    finally:
        stop_all(ws)
    assert (st.state, st.written, st.dead_lettered) == ("succeeded", len(items), 0)
    assert st.segments_done == st.segments_planned == len(queued)
    assert [m for m in r.zrange(keys.segments_due(), 0, -1) if job.id in m.decode()] == []
    assert r.hlen(keys.segment_messages()) == 0


def test_only_one_worker_sweeps_an_interval(isolated_penv: PipelineEnv, unique: str) -> None:
    r = isolated_penv.redis()
    _setup(isolated_penv, unique)
    r.rpop("bulk")
    cfg = isolated_penv.pipeline_config()
    a, b = _sweeper(isolated_penv, cfg, interval=5.0), _sweeper(isolated_penv, cfg, interval=5.0)
    assert a.sweep() + b.sweep() == 1
    assert r.pttl(keys.sweeper_turn()) > 0


def test_a_worker_finds_a_lost_message_by_itself(isolated_penv: PipelineEnv, unique: str) -> None:
    r: redis.Redis[bytes] = isolated_penv.redis()
    _, job, items, _ = _setup(isolated_penv, unique)
    assert r.rpop("bulk") is not None  # lost before any worker saw it
    ws = start_workers(
        isolated_penv, 1, prefix="sweep", DATAFOLD_SWEEP_INTERVAL="0.5", DATAFOLD_SWEEP_GRACE="1"
    )
    try:
        st = job.wait(timeout=60)
    finally:
        stop_all(ws)
    assert (st.state, st.written) == ("succeeded", len(items))
    got = dict(
        isolated_penv.store(f"user-{unique}").open_namespace(f"sweep{unique}").scan_prefix(b"")
    )
    assert got == items


def test_a_lost_single_write_and_a_lost_plan_are_found_and_sent_again(
    isolated_penv: PipelineEnv, unique: str
) -> None:
    r: redis.Redis[bytes] = isolated_penv.redis()
    producer = Producer(isolated_penv.dynamo, isolated_penv.pipeline_config())
    user, ns = f"user-{unique}", f"sweep{unique}"
    producer.store(user).open_namespace(ns)  # the table exists: the write has somewhere to go
    put = producer.put(ns, b"k", b"v", user_id=user)
    assert r.rpop("writes") is not None  # lost before any worker saw it
    gone = f"gone-{unique}"
    producer.store(gone).open_namespace(ns).put(b"x", b"to erase")
    erase = producer.reset_user(gone)
    assert r.rpop("bulk") is not None
    assert r.llen("writes") == r.llen("bulk") == 0
    ws = start_workers(
        isolated_penv, 1, prefix="sweep", DATAFOLD_SWEEP_INTERVAL="0.5", DATAFOLD_SWEEP_GRACE="1"
    )
    try:
        put_st = put.wait(timeout=60)
        assert producer.get(ns, b"k", user_id=user) == b"v"
        erase_st = erase.wait(timeout=60)
    finally:
        stop_all(ws)
    assert (put_st.state, put_st.written) == ("succeeded", 1)
    assert (erase_st.state, erase_st.deleted) == ("succeeded", 1)
    assert r.hlen(keys.segment_messages()) == 0  # every journal entry cleared once recorded


def test_an_unreadable_journal_entry_is_dropped_and_the_sweep_goes_on(
    isolated_penv: PipelineEnv, unique: str
) -> None:
    r = isolated_penv.redis()
    _setup(isolated_penv, unique, n=400)  # two segments of 200
    lost = r.rpop("bulk")
    assert lost is not None
    payloads = PayloadStore(r, ttl=600)
    payloads.sent("old-job", "s0", {"v": 1, "job": "old-job"}, time.time() - 100)  # version 1
    sweeper = _sweeper(isolated_penv, isolated_penv.pipeline_config())
    assert sweeper.sweep() == 1  # the lost segment, despite the bad entry before it
    assert all(j != "old-job" for j, *_ in payloads.overdue(float("inf"), 1000))
