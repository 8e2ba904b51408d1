"""An erase is final, with real worker processes, DynamoDB Local and Redis: writes enqueued
before ``reset_user`` run after it and are superseded; a write enqueued after it waits for it
and survives. Which queue has a worker decides the order things run in."""

from __future__ import annotations

import time

from producers import Producer
from tests.support.pipeline import PipelineEnv, Worker, stop_all


def _worker(penv: PipelineEnv, name: str, queues: str) -> Worker:
    return Worker(penv, f"{name}-{time.monotonic_ns()}", queues=queues).wait_ready()


def test_writes_enqueued_before_an_erase_never_land_after_it(
    isolated_penv: PipelineEnv, unique: str
) -> None:
    penv = isolated_penv
    producer = Producer(penv.dynamo, penv.pipeline_config())
    ns, user = f"erase{unique}", f"eve-{unique}"
    kv = penv.store(user).open_namespace(ns)
    kv.put(b"old", b"there before")
    bulk = _worker(penv, "bulk", "bulk")  # nothing runs single writes yet
    try:
        put = producer.put(ns, b"k", b"v", user)
        erase = producer.reset_user(user).wait(timeout=90)
        assert (erase.state, erase.deleted) == ("succeeded", 1), erase
        assert kv.get(b"old") is None and kv.get(b"k") is None
        writes = _worker(penv, "writes", "writes")  # now the put runs: after the erase
        try:
            st = put.wait(timeout=90)
        finally:
            stop_all([writes])
        assert (st.state, st.written, st.superseded) == ("succeeded", 0, 1), st
        assert kv.get(b"k") is None
    finally:
        stop_all([bulk])


def test_a_load_queued_before_an_erase_is_superseded_by_it(
    isolated_penv: PipelineEnv, unique: str
) -> None:
    penv = isolated_penv
    producer = Producer(penv.dynamo, penv.pipeline_config())
    ns, user = f"erasel{unique}", f"eve-{unique}"
    kv = penv.store(user).open_namespace(ns)
    items = [(b"key%04d" % i, b"value %d" % i) for i in range(1200)]
    load = producer.load(ns, items, user)  # no worker yet: every segment waits in the queue
    erase = producer.reset_user(user)
    worker = _worker(penv, "both", "writes,bulk")
    try:
        done, erased = load.wait(timeout=120), erase.wait(timeout=120)
    finally:
        stop_all([worker])
    assert (done.state, done.items, done.written, done.superseded) == (
        "succeeded",
        len(items),
        0,
        len(items),
    ), done
    assert erased.state == "succeeded", erased
    assert list(kv.scan_keys()) == []


def test_a_write_enqueued_after_an_erase_waits_for_it_and_survives(
    isolated_penv: PipelineEnv, unique: str
) -> None:
    penv = isolated_penv
    producer = Producer(penv.dynamo, penv.pipeline_config())
    ns, user = f"erasea{unique}", f"eve-{unique}"
    kv = penv.store(user).open_namespace(ns)
    kv.put(b"old", b"there before")
    writes = _worker(penv, "writes", "writes")  # the erase cannot run yet
    try:
        erase = producer.reset_user(user)
        put = producer.put(ns, b"new", b"after the erase", user)
        time.sleep(3)  # the put is delivered and deferred, again and again, meanwhile
        assert not put.status().finished and kv.get(b"new") is None
        bulk = _worker(penv, "bulk", "bulk")
        try:
            erased, st = erase.wait(timeout=90), put.wait(timeout=90)
        finally:
            stop_all([bulk])
    finally:
        stop_all([writes])
    assert (erased.state, erased.deleted) == ("succeeded", 1), erased
    assert (st.state, st.written) == ("succeeded", 1), st
    assert kv.get(b"new") == b"after the erase" and kv.get(b"old") is None
