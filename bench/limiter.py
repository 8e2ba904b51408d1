"""4. Rate limiter: accuracy of a configured limit; behaviour against a simulated capacity.

Accuracy: ``ACC_WORKERS`` worker processes share ``DATAFOLD_WRITE_CAPACITY`` (items of 200 B =
1 WCU each); the rate is counted in the table (COUNT Queries) over a window that starts after
the bucket's initial burst. Capacity: the fault proxy (``tests.faults``) simulates a table of
``CAPACITY`` WCU/s (1 s of burst) in front of DynamoDB Local and no limit is configured: the
pipeline must find the capacity itself. Side by side, on the same proxy: boto3's
``batch_writer`` and a plain 8-thread pool of BatchWriteItem with botocore's ``adaptive`` retry
mode, both resending unprocessed items as soon as they come back (what those tools do).
Utilisation = WCU admitted / (elapsed x capacity); waste = item writes sent but refused
(throttled calls or unprocessed items) / item writes sent.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from bench import raw
from bench.env import USER, BenchEnv, raw_client
from bench.model import Goal, Panel, Section, Table
from bench.runs import BenchError
from tests.faults import FaultConfig, FaultProxy

ACC_WORKERS = 3
CAPACITY = 1000.0


def _count(env: BenchEnv, table: str) -> int:
    total, params = 0, {}  # type: tuple[int, dict[str, Any]]
    while True:
        page = env.client.query(
            TableName=table,
            KeyConditionExpression="PK = :pk",
            ExpressionAttributeValues={":pk": {"S": USER}},
            Select="COUNT",
            **params,
        )
        total += int(page["Count"])
        if "LastEvaluatedKey" not in page:
            return total
        params = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def accuracy(env: BenchEnv, sec: Section) -> None:
    limit, settle, window = (300.0, 1.5, 3.0) if env.quick else (300.0, 3.0, 12.0)
    n = int(limit * (settle + window + 3))
    env.pool(ACC_WORKERS, DATAFOLD_WRITE_CAPACITY=str(int(limit)))
    producer = env.producer()
    ns = env.unique("acc")
    table = env.kv_table(ns)
    job = producer.load(ns, raw.make_items(n, 200, USER), USER)
    time.sleep(settle)
    c0, t0 = _count(env, table), time.monotonic()
    time.sleep(window)
    c1, t1 = _count(env, table), time.monotonic()
    st = job.wait(timeout=120, poll=0.05)
    env.drop(table)
    if st.written != n:
        raise BenchError(f"limited load wrote {st.written} of {n}")
    rate = (c1 - c0) / (t1 - t0)
    dev = abs(rate / limit - 1) * 100
    sec.tables.append(
        Table(
            ["configured WCU/s", "workers", "measured WCU/s", "window s", "deviation"],
            [[f"{limit:,.0f}", str(ACC_WORKERS), f"{rate:,.0f}", f"{window:.0f}", f"{dev:.1f} %"]],
        )
    )
    sec.goals.append(
        Goal(
            f"limit accuracy across {ACC_WORKERS} workers (|deviation|)",
            dev,
            10.0,
            higher=False,
            unit=" %",
        )
    )


def _measured(proxy: FaultProxy, table: str, run: Callable[[], None]) -> dict[str, float]:
    proxy.reset_stats()
    proxy.reset_capacity()
    t = time.perf_counter()
    run()
    elapsed = time.perf_counter() - t
    s = proxy.stats()
    sent = s.op("BatchWriteItem", "items")
    admitted = s.table(table, "items_admitted")
    return {
        "elapsed": elapsed,
        "util": s.table(table, "wcu_admitted") / (elapsed * CAPACITY),
        "waste": 1 - admitted / sent if sent else float("nan"),
        "calls": s.op("BatchWriteItem", "requests"),
        "throttled": s.op("BatchWriteItem", "capacity_throttled"),
        "admitted": admitted,
    }


def capacity(env: BenchEnv, sec: Section) -> None:
    n = 1_500 if env.quick else 15_000
    items = raw.make_items(n, 200, USER)
    endpoint = env.dynamo_config.endpoint_url or ""
    results: dict[str, dict[str, float]] = {}
    with FaultProxy(endpoint, config=FaultConfig(capacity_wcu=CAPACITY)) as proxy:
        env.pool(2, DATAFOLD_DYNAMODB_ENDPOINT=proxy.endpoint_url)
        producer = env.producer()

        def pipeline(table: str) -> None:
            st = producer.load(table.split("-", 1)[1], items, USER).wait(timeout=300, poll=0.05)
            if st.written != n:
                raise BenchError(f"pipeline under capacity wrote {st.written} of {n}")

        def batch_writer(table: str) -> None:
            raw.batch_writer_load(table, USER, items, proxy.endpoint_url, env.dynamo_config.region)

        adaptive: Any = raw_client(
            proxy.endpoint_url, retries={"mode": "adaptive", "max_attempts": 10}
        )

        def thread_pool(table: str) -> None:
            raw.parallel_batch_write(adaptive, table, USER, items, 8)

        for name, fn in (
            ("pipeline (no limit set)", pipeline),
            ("boto3 batch_writer", batch_writer),
            ("8 threads, botocore adaptive", thread_pool),
        ):
            ns = env.unique("cap")
            table = env.kv_table(ns)
            results[name] = _measured(proxy, table, functools.partial(fn, table))
            if results[name]["admitted"] < n:
                raise BenchError(f"{name}: only {results[name]['admitted']} of {n} admitted")
            env.drop(table)
    t = Table(
        [
            "contender",
            "seconds",
            "utilisation",
            "item writes wasted",
            "BatchWriteItem calls",
            "calls throttled",
        ]
    )
    for name, r in results.items():
        t.add(
            name,
            r["elapsed"],
            f"{r['util']:.0%}",
            f"{r['waste']:.1%}",
            int(r["calls"]),
            int(r["throttled"]),
        )
    sec.tables.append(t)
    pipe = results["pipeline (no limit set)"]
    sec.goals.append(
        Goal(
            "pipeline utilisation of a 1,000 WCU/s table (design)",
            pipe["util"] * 100,
            85.0,
            unit=" %",
        )
    )
    sec.goals.append(
        Goal(
            "pipeline share of item writes wasted (design)",
            pipe["waste"] * 100,
            5.0,
            higher=False,
            unit=" %",
        )
    )
    if pipe["waste"] * 100 > 5.0:
        sec.notes.append(
            f"Why the pipeline wastes {pipe['waste']:.1%} of item writes: its shared rate rises "
            "2 % per clean second until the table refuses, then is cut to 0.9x the measured "
            f"rate; each probe past the capacity returns a batch partly unprocessed "
            f"({int(pipe['throttled'])} of {int(pipe['calls'])} calls were refused outright). "
            "Those items are resent after a backoff, never lost; the other contenders resend "
            "at once and waste far more."
        )
    sec.panels.append(
        Panel(
            f"Simulated {CAPACITY:,.0f} WCU/s: utilisation / waste (%)",
            {
                **{
                    f"{k.split(' (')[0].split(',')[0]} util": v["util"] * 100
                    for k, v in results.items()
                },
                **{
                    f"{k.split(' (')[0].split(',')[0]} waste": v["waste"] * 100
                    for k, v in results.items()
                },
            },
            "%",
        )
    )


def run(env: BenchEnv) -> Section:
    sec = Section(
        "limiter",
        "4. Rate limiter",
        intro=(
            f"Accuracy: {ACC_WORKERS} worker processes share DATAFOLD_WRITE_CAPACITY (items of "
            "200 B = 1 WCU each), counted in the table over a window after the initial burst. "
            f"Capacity: the fault proxy simulates a table of {CAPACITY:,.0f} WCU/s (1 s of burst) "
            "in front of DynamoDB Local, no limit configured: the pipeline must find the capacity "
            "itself. Side by side on the same proxy: boto3's batch_writer and a plain 8-thread "
            "pool of BatchWriteItem with botocore's adaptive retry mode, both resending "
            "unprocessed items at once (what those tools do). Utilisation = WCU admitted / "
            "(elapsed x capacity); waste = item writes refused (throttled calls or unprocessed "
            "items) / item writes sent. The 10 %, 85 % and 5 % targets are the limiter's own, "
            'stated in docs/design.md ("The rate limiter"), not taken from the issue.'
        ),
    )
    accuracy(env, sec)
    capacity(env, sec)
    if env.quick:
        sec.notes.append(
            "--quick: runs of a few seconds, where the tables' initial 1 s burst "
            "weighs heavily; read the full run's figures."
        )
    return sec
