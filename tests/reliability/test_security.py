"""Security of the pipeline: no pickle, tenants kept apart, the compose stack closed.

* A pickled task message is refused by the worker, logged, and never runs.
* One user's jobs cannot read, write or delete another user's items, whatever keys, prefixes
  or look-alike user ids they use.
* docker-compose.yml: Flower requires authentication, Redis is not published.
"""

from __future__ import annotations

import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kombu import Connection, Exchange, Queue

from pipeline import keys
from pipeline.enqueue import SEGMENT_TASK
from pipeline.messages import Segment
from tests.faults import FaultProxy
from tests.reliability.conftest import Fleet, producer, read_back, wait_for
from tests.support.pipeline import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_pickled_message_is_refused_logged_and_never_runs(
    fleet: Fleet, proxy: FaultProxy, unique: str
) -> None:
    penv = fleet.penv
    (worker,) = fleet.start(1, prefix="pickle")
    ns, user, job_id = f"pk{unique}", f"user-{unique}", f"pickled-{unique}"
    kv = penv.store(user).open_namespace(ns)
    # A well-formed segment that would write b"evil" if it ran, pickled instead of JSON.
    seg = Segment(
        job=job_id,
        seg="s0",
        target="kv",
        ns=ns,
        user=user,
        ops=[(b"evil", b"written by a pickled message")],
    )
    body = pickle.dumps(
        (
            [seg.to_message()],
            {},
            {"callbacks": None, "errbacks": None, "chain": None, "chord": None},
        )
    )
    task_id = str(uuid.uuid4())
    bulk = Queue("bulk", Exchange("bulk", type="direct"), routing_key="bulk")
    with Connection(penv.redis_url) as conn:
        conn.Producer().publish(
            body,
            exchange=bulk.exchange,
            routing_key="bulk",
            declare=[bulk],
            content_type="application/x-python-serialize",
            content_encoding="binary",
            headers={
                "lang": "py",
                "task": SEGMENT_TASK,
                "id": task_id,
                "root_id": task_id,
                "parent_id": None,
                "retries": 0,
                "eta": None,
                "expires": None,
                "argsrepr": "",
                "kwargsrepr": "",
                "origin": "test",
            },
        )

    wait_for(
        "the worker to refuse the pickled message",
        lambda: (
            "Refusing to deserialize untrusted content of type pickle" in worker.log_tail(100_000)
        ),
        30,
        0.1,
    )
    # A JSON job sent after it runs, so the worker went past the pickled message.
    job = producer(penv).load(ns, [(b"good", b"json")], user)
    assert job.wait(timeout=60).state == "succeeded"

    assert read_back(penv, user, ns) == {b"good": b"json"}
    assert kv.get(b"evil") is None
    r = penv.redis()
    assert not r.exists(keys.job_deliveries(job_id)), "the pickled segment ran"
    assert r.llen("bulk") == 0 and r.hlen("unacked") == 0, "the pickled message is still queued"


def test_a_users_jobs_cannot_read_write_or_delete_another_users_items(
    fleet: Fleet, proxy: FaultProxy, unique: str
) -> None:
    penv = fleet.penv
    fleet.start(1, prefix="tenant")
    p = producer(penv)
    ns, bob = f"tn{unique}", f"bob-{unique}"
    bob_items = {
        b"secret": b"bob's secret",
        b"shared": b"bob's",
        b"\x00\xff": b"binary",
        b"bob/private": b"bob's private",
        f"{bob}#x".encode(): b"keyed like a PK",
    }
    assert p.load(ns, bob_items.items(), bob).wait(timeout=60).state == "succeeded"

    # Look-alike users: bob's id with a suffix, a prefix of it, and it with odd characters.
    others = [f"{bob}x", bob[:-1], f"{bob} ", f"{bob}#", f"{bob}\x00"]
    crafted = [*bob_items, bob.encode(), f"{bob}/secret".encode(), b"", b"s", b"\x00"]
    for other in others:
        # Reads, as that user, of bob's keys and of every prefix of them.
        store = p.store(other)
        assert all(p.get(ns, k, other) is None for k in crafted if k), other
        for prefix in (b"", b"s", b"b", b"bob", b"\x00"):
            assert list(p.scan(ns, prefix, other)) == [], (other, prefix)
        assert not any(store.open_namespace(ns, create=False).exists(k) for k in crafted if k)
        # Writes and deletes, as that user, of bob's very keys.
        writes = {k: b"overwritten by " + other.encode() for k in bob_items}
        assert p.load(ns, writes.items(), other).wait(timeout=60).state == "succeeded"
        assert p.put(ns, b"secret", b"single write", other).wait(timeout=60).state == "succeeded"
        assert p.delete(ns, b"shared", other).wait(timeout=60).state == "succeeded"
        assert p.delete_keys(ns, list(bob_items), other).wait(timeout=60).state == "succeeded"
    assert p.reset_user(others[0]).wait(timeout=60).state == "succeeded"

    # Bob's items are untouched, and he sees nothing of the others.
    assert read_back(penv, bob, ns) == bob_items
    assert dict(p.scan(ns, b"", bob)) == bob_items


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services = compose.get("services") or {}
    assert name in services, f"docker-compose.yml has no service {name!r}: {sorted(services)}"
    return dict(services[name])


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["NAME=value", ...]
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_flower_requires_auth_and_redis_is_not_published() -> None:
    path = Path(ROOT) / "docker-compose.yml"
    assert path.is_file(), f"{path} does not exist"
    compose = yaml.safe_load(path.read_text(encoding="utf-8"))

    flower = _service(compose, "flower")
    command = flower.get("command") or []
    command = " ".join(command) if isinstance(command, list) else str(command)
    auth = _environment(flower).get("FLOWER_BASIC_AUTH", "")
    assert "--basic-auth" in command or "--basic_auth" in command or auth, (
        "Flower runs without basic auth"
    )
    if auth:
        # Required from the environment (${VAR:?...}): no default, no password in the file.
        assert auth.startswith("${") and ":?" in auth, f"FLOWER_BASIC_AUTH={auth!r}"
    for port in flower.get("ports") or []:
        assert str(port).startswith("127.0.0.1:"), f"Flower published beyond localhost: {port}"

    redis_service = _service(compose, "redis")
    assert not redis_service.get("ports"), f"Redis is published: {redis_service['ports']}"
    assert redis_service.get("network_mode") != "host", "Redis shares the host's network"
    assert "appendonly" in " ".join(map(str, redis_service.get("command") or [])).lower()
