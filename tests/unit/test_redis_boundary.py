"""Every Redis call crosses one boundary: whatever Redis does wrong — refuses the connection,
never answers (a timeout), answers with an error — the caller gets BackendUnavailableError
naming the operation, never a raw ``redis`` exception."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from pipeline.config import PipelineConfig
from pipeline.enqueue import CeleryEnqueuer
from pipeline.ledger import Ledger
from pipeline.messages import Plan
from pipeline.payloads import PayloadStore
from pipeline.redis_boundary import UNAVAILABLE, connect, guard, where
from pipeline.states import PlanKind
from producers import Producer
from storage import DynamoConfig
from storage.errors import BackendUnavailableError
from worker.limiter import BucketParams, RedisBucketBackend
from worker.sweeper import Sweeper

QUICK = PipelineConfig(redis_timeout=0.2, redis_connect_timeout=0.2)


@pytest.fixture(scope="module")
def silent_url() -> Iterator[str]:
    """A server that accepts connections and never answers: every call times out."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield f"redis://127.0.0.1:{srv.getsockname()[1]}/3"
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


@pytest.fixture(scope="module")
def closed_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"redis://:s3cret@127.0.0.1:{port}/3"


def _calls(client: redis.Redis[Any]) -> dict[str, Callable[[], object]]:
    ledger = Ledger(client, ttl=60)
    payloads = PayloadStore(client, ttl=60)
    limiter = RedisBucketBackend(client)
    sweeper = Sweeper(
        payloads=payloads, ledger=ledger, enqueue=None, broker=client, interval=1.0, grace=1.0
    )
    producer = Producer(DynamoConfig(region="us-east-1"), QUICK, redis_client=client, enqueue=None)
    return {
        "Ledger.create": lambda: ledger.create("j", kind="load"),
        "Ledger.plan": lambda: ledger.plan("j", "s", 1),
        "Ledger.finish": lambda: ledger.finish("j", "s", written=1),
        "Ledger.read": lambda: ledger.status("j"),
        "Payload.get": lambda: payloads.get("j", "s"),
        "Payload.journal": lambda: payloads.sent("j", "s", {}, 0.0, ops=[(b"k", b"v")]),
        "RateLimiter.acquire": lambda: limiter.run(
            "t", "acquire", BucketParams(ceiling=100.0, floor=1.0), units=1.0
        ),
        "Sweeper.turn": sweeper.sweep,
        "Producer.sequence": lambda: producer.put("notes", b"k", b"v"),
    }


@pytest.mark.parametrize("kind", ["silent", "closed"])
def test_every_failure_becomes_backend_unavailable_naming_the_operation(
    kind: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(f"{kind}_url")
    client = connect(url, QUICK)
    for operation, call in _calls(client).items():
        with pytest.raises(BackendUnavailableError) as err:
            call()
        e = err.value
        assert e.operation == operation and e.code == UNAVAILABLE, (operation, e)
        cause = e.__cause__
        assert isinstance(cause, redis.TimeoutError if kind == "silent" else redis.ConnectionError)
        assert "s3cret" not in str(e)


def test_a_reply_error_is_a_backend_error_too() -> None:
    expected = pytest.raises(BackendUnavailableError, match=r"Ledger\.x.*ResponseError")
    with expected, guard("Ledger.x"):
        raise redis.ResponseError("WRONGTYPE Operation against a key")


def test_a_broker_reply_error_on_send_is_a_backend_error_too() -> None:
    class App:
        def send_task(self, *args: Any, **kwargs: Any) -> None:
            raise redis.ResponseError("OOM command not allowed when used memory > 'maxmemory'")

    class Payloads:
        def sent(self, *args: Any, **kwargs: Any) -> None:
            pass

    enq = CeleryEnqueuer(App(), Payloads())  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailableError) as err:
        enq.plan(Plan("j", PlanKind.CLEAR_SCHEMAS, "u"))
    assert err.value.operation == "Enqueue" and err.value.code == UNAVAILABLE


def test_clients_take_their_timeouts_from_the_config() -> None:
    cfg = PipelineConfig.from_env(
        {"DATAFOLD_REDIS_TIMEOUT": "7", "DATAFOLD_REDIS_CONNECT_TIMEOUT": "2"}
    )
    kw = connect("redis://h:1/2", cfg).connection_pool.connection_kwargs
    assert (kw["socket_timeout"], kw["socket_connect_timeout"]) == (7.0, 2.0)
    # A caller that must answer fast (a metrics scrape) may only shorten them.
    kw = connect("redis://h:1/2", cfg, timeout=3.0).connection_pool.connection_kwargs
    assert (kw["socket_timeout"], kw["socket_connect_timeout"]) == (3.0, 2.0)
    assert kw["retry_on_timeout"] is False  # its bound is the timeout itself
    assert PipelineConfig().redis_timeout == 10.0 and PipelineConfig().redis_connect_timeout == 5.0


def test_where_names_the_server_never_the_password() -> None:
    client = connect("redis://:s3cret@db.example:6390/4", QUICK)
    assert where(client) == "db.example:6390/4"
