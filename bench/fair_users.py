"""The users of section 11 (fair rate limiting) and the rounds they play, for any contender.

A contender is a :class:`Users`: ``load(user, items)`` writes one user's bulk load and returns
when all of it is stored; ``put(user, key, value)`` writes one item and returns when it is
stored. Two are here: :class:`PipelineUsers` (``Producer.load`` / ``Producer.put`` then
``Job.wait()``, real worker processes doing the writes) and :class:`Boto3Users` (one
``Table.batch_writer()`` per loading user, in that user's thread, and ``put_item`` on a plain
client for the single writer). Every write of either is one user's: partition key = user id.

:func:`unloaded` times the single writer alone; :func:`loaded` starts every bulk load at once,
one thread each, with the single writer putting beside them until the last load is done. The
single writer starts a put every :data:`EVERY` seconds (or at once when the last took longer)
and times each from the call to its return: what a caller waiting for its write sees.
:func:`stored` counts a user's items back, to check that every write the figures rest on landed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
from boto3.dynamodb.types import Binary

from bench.env import BenchEnv, raw_client
from bench.raw import Item
from bench.runs import BenchError
from producers import Producer

EVERY = 0.05
"""Seconds between the starts of two single writes (a put that took longer: the next at once)."""
VALUE = b"v" * 100
"""A single write's value: with its key, 1 WCU."""


class Users(Protocol):
    """One contender, writing into one table: what each kind of user calls."""

    def load(self, user: str, items: Sequence[Item]) -> None: ...

    def put(self, user: str, key: bytes, value: bytes) -> None: ...


class PipelineUsers:
    """Every user through the queue: one Producer each; the workers must be running."""

    def __init__(self, env: BenchEnv, namespace: str, timeout: float) -> None:
        self.env, self.ns, self.timeout = env, namespace, timeout
        self._producers: dict[str, Producer] = {}
        self._lock = threading.Lock()

    def _producer(self, user: str) -> Producer:
        with self._lock:
            if user not in self._producers:
                self._producers[user] = self.env.producer()
            return self._producers[user]

    def load(self, user: str, items: Sequence[Item]) -> None:
        st = self._producer(user).load(self.ns, items, user).wait(self.timeout, poll=0.1)
        if st.state != "succeeded" or st.written != len(items):
            raise BenchError(f"{user}'s load: {st.state}, {st.written}/{len(items)} written")

    def put(self, user: str, key: bytes, value: bytes) -> None:
        st = self._producer(user).put(self.ns, key, value, user).wait(timeout=120)
        if st.state != "succeeded" or st.written != 1:
            raise BenchError(f"{user}'s put {key!r}: {st.state}, {st.written} written")


class Boto3Users:
    """Plain boto3 through ``endpoint``: a ``batch_writer`` per load (its own session, as each
    of the users' programs would have), ``put_item`` with the bench's plain client."""

    def __init__(self, endpoint: str, region: str, table: str) -> None:
        self.endpoint, self.region, self.table = endpoint, region, table
        self.client: Any = raw_client(endpoint)

    def load(self, user: str, items: Sequence[Item]) -> None:
        session = boto3.session.Session()
        t = session.resource("dynamodb", endpoint_url=self.endpoint, region_name=self.region)
        with t.Table(self.table).batch_writer() as bw:
            for k, v in items:
                bw.put_item(Item={"PK": user, "SK": Binary(k), "Value": Binary(v)})

    def put(self, user: str, key: bytes, value: bytes) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={"PK": {"S": user}, "SK": {"B": key}, "Value": {"B": value}},
        )


@dataclass
class Singles:
    """The single writer's puts: keys ``s000000``, ``s000001``, ... across its rounds, so every
    put is a new item and the read-back count is :attr:`sent`."""

    user: str
    sent: int = 0

    def one(self, users: Users) -> float:
        """One put; its milliseconds."""
        t = time.perf_counter()
        users.put(self.user, b"s%06d" % self.sent, VALUE)
        self.sent += 1
        return (time.perf_counter() - t) * 1000

    def run(self, users: Users, ms: list[float], until: Callable[[], bool]) -> None:
        """Put every :data:`EVERY` s, appending each put's ms to ``ms``, until ``until()``."""
        while not until():
            t = time.perf_counter()
            ms.append(self.one(users))
            time.sleep(max(0.0, t + EVERY - time.perf_counter()))


def unloaded(users: Users, singles: Singles, n: int, warm_up: int) -> list[float]:
    """ms of ``n`` single writes with nothing else running, after ``warm_up`` untimed ones."""
    for _ in range(warm_up):
        singles.one(users)
    ms: list[float] = []
    singles.run(users, ms, lambda: len(ms) >= n)
    return ms


@dataclass
class Round:
    """A loaded round: each loading user's seconds from the common start to its load's end,
    and the single writer's ms per put meanwhile."""

    seconds: dict[str, float] = field(default_factory=dict)
    single_ms: list[float] = field(default_factory=list)

    @property
    def elapsed(self) -> float:
        """Seconds from the common start until the last load was done."""
        return max(self.seconds.values())


def loaded(users: Users, loads: Mapping[str, Sequence[Item]], singles: Singles) -> Round:
    """Every load of ``loads`` (user -> items) at once, one thread each, and the single writer
    beside them until they are all done. Raises the first error of any of them."""
    rnd = Round()
    errors: list[BaseException] = []
    done = threading.Event()
    go = threading.Barrier(len(loads) + 2)  # the loaders, the writer, this thread
    t0 = [0.0]

    def loader(user: str) -> None:
        go.wait()
        try:
            users.load(user, loads[user])
            rnd.seconds[user] = time.perf_counter() - t0[0]
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    def writer() -> None:
        go.wait()
        try:
            singles.run(users, rnd.single_ms, lambda: done.is_set() or bool(errors))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=loader, args=(u,), daemon=True) for u in loads]
    threads.append(threading.Thread(target=writer, daemon=True))
    for t in threads:
        t.start()
    t0[0] = time.perf_counter()
    go.wait()
    for t in threads[:-1]:
        t.join()
    done.set()
    threads[-1].join()
    if errors:
        raise errors[0]
    return rnd


def stored(client: Any, table: str, pk: str) -> int:
    """Items stored under partition key ``pk`` (paginated, consistent COUNT Query)."""
    total, params = 0, {}  # type: tuple[int, dict[str, Any]]
    while True:
        page = client.query(
            TableName=table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": pk}},
            Select="COUNT",
            ConsistentRead=True,
            **params,
        )
        total += int(page["Count"])
        if "LastEvaluatedKey" not in page:
            return total
        params = {"ExclusiveStartKey": page["LastEvaluatedKey"]}
