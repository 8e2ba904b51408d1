"""Single writes are ordered per key: the last one enqueued wins, a delete included."""

from __future__ import annotations

import random

from pipeline import keys
from pipeline.sequence import Sequencer
from producers import Producer
from tests.support.pipeline import PipelineEnv, Worker


def test_interleaved_puts_and_deletes_end_in_the_last_enqueued_state(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, unique: str
) -> None:
    rng = random.Random(7)
    ns, user = f"ord{unique}", f"user-{unique}"
    penv.store(user).open_namespace(ns)
    finals: dict[bytes, bytes | None] = {}
    jobs = []
    for round_ in range(6):
        for key in (b"alpha", b"beta", b"gamma"):
            for i in range(40):
                if rng.random() < 0.3:
                    jobs.append(producer.delete(ns, key, user))
                    finals[key] = None
                else:
                    value = b"%s-%d-%d" % (key, round_, i)
                    jobs.append(producer.put(ns, key, value, user))
                    finals[key] = value
    # End two keys on a delete: a late, older put must not resurrect them.
    for key in (b"alpha", b"beta"):
        jobs.append(producer.delete(ns, key, user))
        finals[key] = None

    statuses = [j.wait(timeout=120) for j in jobs]
    assert all(s.state == "succeeded" for s in statuses)
    assert sum(s.written + s.deleted + s.superseded for s in statuses) == len(jobs)
    # Out-of-order runs really happened, and lost to the newer write.
    assert sum(s.superseded for s in statuses) > 0

    kv = penv.store(user).open_namespace(ns)
    for key, value in finals.items():
        assert kv.get(key) == value
        assert kv.exists(key) == (value is not None)
    assert [k for k, _ in kv.scan_prefix(b"")] == sorted(
        k for k, v in finals.items() if v is not None
    )


def test_a_write_after_redis_lost_its_sequence_counter_still_wins(
    penv: PipelineEnv, workers: list[Worker], producer: Producer, unique: str
) -> None:
    ns, user = f"seq{unique}", f"user-{unique}"
    first = producer.put(ns, b"k", b"v1", user).wait(timeout=60)
    assert first.written == 1
    penv.redis().delete(keys.write_sequence())  # a failover to a lagging replica, a FLUSHDB
    second = producer.put(ns, b"k", b"v2", user).wait(timeout=60)
    assert (second.written, second.superseded) == (1, 0), second
    assert producer.get(ns, b"k", user) == b"v2"


def test_sequences_never_go_backwards_whatever_happens_to_the_counter(
    penv: PipelineEnv,
) -> None:
    seq = Sequencer(penv.redis())
    a = seq.next()
    b = seq.next()
    penv.redis().delete(keys.write_sequence())
    c = seq.next()
    penv.redis().set(keys.write_sequence(), 5)  # an old counter restored
    d = seq.next()
    assert a < b < c < d
    secs, micros = penv.redis().time()
    assert abs(d - (secs * 1_000_000 + micros)) < 60_000_000  # floored at Redis's clock
