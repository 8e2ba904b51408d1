"""11. Fair rate limiting: four users loading into one table at once, a fifth writing single
items beside them: partition-aware, fair rate limiting.

The fault proxy (``tests.faults``) simulates in front of DynamoDB Local a table of
:data:`TABLE_WCU` WCU/s whose partition keys may each take :data:`PARTITION_WCU` WCU/s, both
with 1 s of burst; a call of which nothing fits is refused whole, naming the limit in its
``ThrottlingReasons``, as DynamoDB does. Each user is one partition key (its user id). Four
users each load ``n`` items of 200 B (1 WCU each), all at once; a fifth puts one item at a
time (:mod:`bench.fair_users`), waiting for each, until the loads are done. Before the loads,
in the same table with the same workers, the fifth user puts alone: its unloaded latency.

Contenders, one after the other in one run, each in a table of its own: the pipeline with the
limiter's per-user layer (workers with ``DATAFOLD_LIMIT_PARTITIONS=1``, the default); the same
pipeline with one bucket per table (``=0``) — each with a worker on the ``writes`` queue alone,
as ``docker-compose.yml`` runs one; boto3's ``batch_writer``, one per loading user in
its own thread, and ``put_item`` for the single writer. Measured per contender, over the loads:

- utilisation: WCU the table admitted / (elapsed of the loads x what the limits allow,
  min(table, 4 x partition) WCU/s);
- refused: item writes refused / item writes sent (a call refused whole counts all its items,
  an unprocessed item counts once per time it is sent);
- Jain's fairness index over the four users' throughputs, each user's = its items / its own
  elapsed (common start to its load's end). This one rather than items admitted over a common
  interval: every user loads the same, so it says whether they are served alike to the end, as
  each user sees it (a user's resends included), for any contender alike. 1 = equal shares;
  1/4 = one user served at a time;
- the single writer's p50 / p99 loaded and unloaded, and p99 loaded / p99 unloaded.

After each contender every user's items are counted back (COUNT Query per partition key): a
count short of what was sent fails the section. The goals are for the per-user layer.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from bench import report
from bench.env import BenchEnv
from bench.fair_users import EVERY, Boto3Users, PipelineUsers, Round, Singles, Users, stored
from bench.fair_users import loaded as loaded_round
from bench.fair_users import unloaded as unloaded_round
from bench.model import Goal, Panel, Section, Table
from bench.raw import make_items
from bench.runs import BenchError
from bench.stats import percentile
from tests.faults import FaultConfig, FaultProxy, StatsSnapshot
from tests.support.pipeline import Worker

TABLE_WCU = 1200.0
PARTITION_WCU = 400.0
"""The goals are set for a table of 3,000 WCU/s with 1,000 per partition key. On a 2-CPU
machine, where the proxy, DynamoDB Local, Redis and the workers share the CPUs, the loads carry
~1,800 items/s through the proxy with nothing limiting them: they never reach 3,000, and the
figures would say what the machine carries, not how a limiter shares a table. Both limits are
scaled by 0.4, keeping their ratio: the table binds (1,200 < 4 x 400), a partition nearly."""
LOADERS = 4
ALLOWED = min(TABLE_WCU, LOADERS * PARTITION_WCU)
"""WCU/s the limits let the four loads take together: the utilisation's denominator."""
WORKERS = 2
WARM_UP = 5
SINGLE_OPS = ("PutItem", "UpdateItem", "DeleteItem")
KEY_RANGE = "TableWriteKeyRangeThroughputExceeded"
TABLE_LIMIT = "TableWriteProvisionedThroughputExceeded"
PER_USER, PER_TABLE, BOTO3 = "pipeline, per-user limiter", "pipeline, per-table limiter", "boto3"
FLAGS = {PER_USER: "1", PER_TABLE: "0"}
"""DATAFOLD_LIMIT_PARTITIONS of each pipeline contender's workers."""


@dataclass
class Result:
    """What one contender did: its loaded round, its unloaded single writes, the proxy's
    counters over the loads."""

    items: int
    rnd: Round
    unloaded_ms: list[float]
    stats: StatsSnapshot
    table: str

    @property
    def utilisation(self) -> float:
        return self.stats.table(self.table, "wcu_admitted") / (self.rnd.elapsed * ALLOWED)

    @property
    def refused(self) -> int:
        s = self.stats
        batch = s.op("BatchWriteItem", "items") - s.op("BatchWriteItem", "items_forwarded")
        return batch + sum(s.op(op, "capacity_throttled") for op in SINGLE_OPS)

    @property
    def refused_share(self) -> float:
        """Refused / sent, sent = admitted by the table + refused (only our table is limited,
        so writes elsewhere are never refused and stay out of both)."""
        sent = self.stats.table(self.table, "items_admitted") + self.refused
        return self.refused / sent if sent else float("nan")

    def unprocessed(self) -> tuple[int, int]:
        """Batch items sent back unprocessed, (by a partition key's limit, by the table's)."""
        by_key = self.stats.table(self.table, "items_unprocessed_partition")
        return by_key, self.stats.table(self.table, "items_unprocessed") - by_key

    def throughputs(self) -> list[float]:
        return [self.items / s for s in self.rnd.seconds.values()]

    @property
    def jain(self) -> float:
        xs = self.throughputs()
        return sum(xs) ** 2 / (len(xs) * sum(x * x for x in xs))

    def single(self, p: float, *, loaded: bool) -> float:
        return percentile(self.rnd.single_ms if loaded else self.unloaded_ms, p)

    @property
    def p99_ratio(self) -> float:
        return self.single(99, loaded=True) / self.single(99, loaded=False)


def contend(
    env: BenchEnv, proxy: FaultProxy, name: str, users_for: Callable[[str, str], Users]
) -> Result:
    """One contender in a fresh table: the single writer alone, then with the four loads;
    every user's items counted back. ``users_for(namespace, table)`` makes the contender."""
    n = 2_000 if env.quick else 20_000
    ns = env.unique("fair")
    table = env.kv_table(ns)
    proxy.configure(capacity_wcu={table: TABLE_WCU}, partition_wcu={table: PARTITION_WCU})
    users = users_for(ns, table)
    singles = Singles("single-writer")
    loads = {u: make_items(n, 200, u) for u in (f"loader{i + 1}" for i in range(LOADERS))}
    proxy.reset_capacity()
    alone = unloaded_round(users, singles, 10 if env.quick else 200, WARM_UP)
    proxy.reset_capacity()
    proxy.reset_stats()
    rnd = loaded_round(users, loads, singles)
    stats = proxy.stats()
    expected = {**{u: n for u in loads}, singles.user: singles.sent}
    found = {u: stored(env.client, table, u) for u in expected}
    if found != expected:
        raise BenchError(f"{name}: items stored per user {found}, sent {expected}")
    env.drop(table)
    return Result(n, rnd, alone, stats, table)


def run(env: BenchEnv) -> Section:
    endpoint = env.dynamo_config.endpoint_url or ""
    results: dict[str, Result] = {}
    with FaultProxy(endpoint, config=FaultConfig(burst_seconds=1.0)) as proxy:
        timeout = 120.0 if env.quick else 900.0
        for name, flag in FLAGS.items():
            settings = {
                "DATAFOLD_DYNAMODB_ENDPOINT": proxy.endpoint_url,
                "DATAFOLD_LIMIT_PARTITIONS": flag,
            }
            env.pool(WORKERS, **settings)
            # As in docker-compose.yml: a worker on the writes queue alone, so a put never
            # waits for a slot behind running segments.
            writer = Worker(env.penv, f"bench-writer-{os.getpid()}", "writes", **settings)
            try:
                writer.wait_ready()
                results[name] = contend(
                    env, proxy, name, lambda ns, _t: PipelineUsers(env, ns, timeout)
                )
            finally:
                writer.stop()
        env.stop_workers()  # idle, they would still take CPU from boto3's threads
        region = env.dynamo_config.region
        results[BOTO3] = contend(
            env, proxy, BOTO3, lambda _ns, t: Boto3Users(proxy.endpoint_url, region, t)
        )
    return section(env, results)


def section(env: BenchEnv, results: dict[str, Result]) -> Section:
    n = results[PER_USER].items
    sec = Section(
        "fairness",
        "11. Fair rate limiting: four loads and a single writer",
        intro=(
            f"The fault proxy simulates a table of {TABLE_WCU:,.0f} WCU/s whose partition keys "
            f"may each take {PARTITION_WCU:,.0f} WCU/s (1 s of burst; a call of which nothing "
            "fits is refused whole with its ThrottlingReasons). Each user is one partition key. "
            f"{LOADERS} users each load {n:,} items of 200 B (1 WCU) at once; a fifth puts one "
            f"item every {EVERY * 1000:.0f} ms, waiting for each, until the loads are done; "
            "unloaded = the fifth alone, same table and workers, just before. Contenders, one "
            "table each: the pipeline's limiter with its per-user layer "
            f"(DATAFOLD_LIMIT_PARTITIONS=1) and with one bucket per table (=0), {WORKERS} "
            "worker processes and one on the writes queue alone (as docker-compose.yml); "
            "boto3's batch_writer, one per user in its own thread, and "
            "put_item for the single writer. Utilisation = WCU admitted / (elapsed of the loads "
            f"x {ALLOWED:,.0f} WCU/s, what the limits allow); refused = item writes refused "
            "(every item of a call refused whole; each unprocessed item) / item writes sent; "
            "Jain's index over the four users' items / own elapsed (1 = equal, 0.25 = one at "
            "a time). Every user's items are counted back after each contender. The goals (set for "
            "3,000 / 1,000 WCU/s; scaled by 0.4 so that this machine reaches the limits) are "
            "for the per-user layer."
        ),
    )
    main = Table(
        [
            "contender",
            "seconds",
            "utilisation",
            "refused",
            "Jain",
            "single p50 ms unloaded / loaded",
            "single p99 ms unloaded / loaded",
            "p99 loaded / unloaded",
        ]
    )
    users = Table(
        ["contender"]
        + [f"user {i + 1} items/s" for i in range(LOADERS)]
        + [
            "items unprocessed: key range / table",
            "calls refused whole: key range / table",
            "single puts loaded",
        ]
    )
    for name, r in results.items():
        main.add(
            name,
            r.rnd.elapsed,
            f"{r.utilisation:.0%}",
            f"{r.refused_share:.1%}",
            f"{r.jain:.3f}",
            f"{r.single(50, loaded=False):.0f} / {r.single(50, loaded=True):.0f}",
            f"{r.single(99, loaded=False):.0f} / {r.single(99, loaded=True):.0f}",
            f"{r.p99_ratio:.1f}x",
        )
        users.add(
            name,
            *[round(x) for x in r.throughputs()],
            "{:,} / {:,}".format(*r.unprocessed()),
            f"{r.stats.reason(KEY_RANGE):,} / {r.stats.reason(TABLE_LIMIT):,}",
            len(r.rnd.single_ms),
        )
    sec.tables += [main, users]
    unlimited = [name for name, r in results.items() if not r.refused]
    if unlimited:
        sec.notes.append(
            f"No write was refused in: {', '.join(unlimited)}. Those loads never reached the "
            "simulated limits, so their figures measure what this machine carried through the "
            f"proxy then ({report.machine()}), not how a limiter shares a table."
        )
    one = results[PER_USER]
    sec.goals += [
        Goal("per-user limiter: table utilisation", one.utilisation * 100, 90.0, unit=" %"),
        Goal(
            "per-user limiter: item writes refused",
            one.refused_share * 100,
            5.0,
            higher=False,
            unit=" %",
        ),
        Goal("per-user limiter: Jain's index over the 4 loading users", one.jain, 0.95, unit=""),
        Goal(
            "per-user limiter: single-write p99 loaded / unloaded",
            one.p99_ratio,
            3.0,
            higher=False,
        ),
    ]
    short = {PER_USER: "pipeline per-user", PER_TABLE: "pipeline per-table", BOTO3: "boto3"}
    sec.panels += [
        Panel(
            f"4 loads on {TABLE_WCU:,.0f} WCU/s: utilisation / refused (%)",
            {
                **{f"{short[k]} util": r.utilisation * 100 for k, r in results.items()},
                **{f"{short[k]} refused": r.refused_share * 100 for k, r in results.items()},
            },
            "%",
        ),
        Panel("Jain's index, 4 loading users", {short[k]: r.jain for k, r in results.items()}, ""),
        Panel(
            "single write p99 loaded / unloaded (x)",
            {short[k]: r.p99_ratio for k, r in results.items()},
            "x",
            ref=3.0,
        ),
    ]
    if env.quick:
        sec.notes.append(
            "--quick: loads of a few seconds, where the initial 1 s bursts weigh heavily and "
            "10 unloaded puts make a p99; read the full run's figures."
        )
    return sec
