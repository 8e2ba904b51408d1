"""2. Direct reads: ``Producer.get`` vs raw ``get_item``; ``scan_prefix`` vs a raw Query.

Reads never touch the queue, so this measures the storage layer's own overhead: key checks,
the retry wrapper, metrics. Both sides send the same request (strongly consistent, the value
projected) to the same table, one call at a time from one thread, interleaved in blocks of
``BLOCK`` calls so machine noise hits both alike. The scan reads ``n`` items under one prefix
page by page (1 MB pages); the raw side is a paginated Query with ``begins_with``; both
collect the (key, value) pairs in a list.
Goal: overhead under 10 % (p50 of get, median of scan).
"""

from __future__ import annotations

import random
import time
from typing import Any

from bench import raw
from bench.env import USER, BenchEnv
from bench.model import Goal, Panel, Section, Table
from bench.stats import median, percentile

BLOCK = 50


def _raw_get(client: Any, table: str, key: bytes) -> bytes | None:
    resp = client.get_item(
        TableName=table,
        Key={"PK": {"S": USER}, "SK": {"B": key}},
        ProjectionExpression="#v",
        ExpressionAttributeNames={"#v": "Value"},
        ConsistentRead=True,
    )
    v = resp.get("Item", {}).get("Value")
    return bytes(v["B"]) if v else None


def _raw_scan(client: Any, table: str, prefix: bytes) -> int:
    """Every (key, value) pair under ``prefix``, as a user's loop would collect them."""
    params: dict[str, Any] = {
        "TableName": table,
        "ConsistentRead": True,
        "KeyConditionExpression": "PK = :pk AND begins_with(SK, :p)",
        "ExpressionAttributeValues": {":pk": {"S": USER}, ":p": {"B": prefix}},
    }
    pairs: list[tuple[bytes, bytes]] = []
    while True:
        page = client.query(**params)
        pairs += [(bytes(i["SK"]["B"]), bytes(i["Value"]["B"])) for i in page.get("Items", [])]
        if not page.get("LastEvaluatedKey"):
            return len(pairs)
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def run(env: BenchEnv) -> Section:
    n_items, n_gets, scans = (1_000, 300, 2) if env.quick else (10_000, 3_000, 21)
    sec = Section(
        "reads",
        "2. Direct reads",
        intro=(
            f"{n_items:,} items of 200 B in one namespace; {n_gets:,} gets of random keys per side "
            f"(interleaved in blocks of {BLOCK}); `scan_prefix` over all {n_items:,} items, "
            f"{scans} times per side, interleaved. Same request parameters on both sides; the raw "
            "client is boto3's default (botocore checks each request's parameters, which the "
            "storage layer's client skips: see storage/client.py)."
        ),
    )
    ns = env.unique("reads")
    table = env.kv_table(ns)
    items = raw.make_items(n_items, 200, USER)
    raw.parallel_batch_write(env.client, table, USER, items, 8)
    producer = env.producer()
    keys = [k for k, _ in items]
    rng = random.Random(7)
    sample = [rng.choice(keys) for _ in range(n_gets)]
    producer.get(ns, sample[0], USER)  # open the namespace once (one DescribeTable)
    _raw_get(env.client, table, sample[0])
    lat: dict[str, list[float]] = {"raw": [], "get": []}
    for i in range(0, n_gets, BLOCK):
        for k in sample[i : i + BLOCK]:
            t = time.perf_counter()
            _raw_get(env.client, table, k)
            lat["raw"].append(time.perf_counter() - t)
        for k in sample[i : i + BLOCK]:
            t = time.perf_counter()
            producer.get(ns, k, USER)
            lat["get"].append(time.perf_counter() - t)
    scan: dict[str, list[float]] = {"raw": [], "scan": []}
    for _ in range(scans):
        t = time.perf_counter()
        got = _raw_scan(env.client, table, b"k")
        scan["raw"].append(time.perf_counter() - t)
        t = time.perf_counter()
        mine = len(list(producer.scan(ns, b"k", USER)))
        scan["scan"].append(time.perf_counter() - t)
        if got != n_items or mine != n_items:
            raise RuntimeError(f"scan read {mine} items, raw {got}; expected {n_items}")
    env.drop(table)
    ms = {k: [x * 1000 for x in v] for k, v in lat.items()}
    lt = Table(["read", "p50 ms", "p99 ms", "mean ms"])
    for key, name in (("raw", "raw get_item"), ("get", "Producer.get")):
        v = ms[key]
        lt.add(name, percentile(v, 50), percentile(v, 99), sum(v) / len(v))
    get_over = percentile(ms["get"], 50) / percentile(ms["raw"], 50) - 1
    p99_over = percentile(ms["get"], 99) / percentile(ms["raw"], 99) - 1
    sec.tables.append(lt)
    s = Table(["scan of all items", "median s", "rounds (min-max) s", "items/s"])
    for key, name in (("raw", "raw paginated Query"), ("scan", "scan_prefix")):
        s.add(
            name,
            median(scan[key]),
            f"{min(scan[key]):.2f}-{max(scan[key]):.2f}",
            n_items / median(scan[key]),
        )
    scan_over = median(scan["scan"]) / median(scan["raw"]) - 1
    sec.tables.append(s)
    sec.goals += [
        Goal("get p50 overhead vs raw get_item", get_over * 100, 10, higher=False, unit=" %"),
        Goal("scan_prefix overhead vs raw Query", scan_over * 100, 10, higher=False, unit=" %"),
    ]
    sec.notes.append(
        f"get p99 overhead: {p99_over * 100:+.1f} % (p99 of one thread on a "
        "shared machine is mostly scheduling noise; reported, not a goal)."
    )
    sec.panels.append(
        Panel(
            "Direct reads: latency (ms)",
            {
                "raw p50": percentile(ms["raw"], 50),
                "get p50": percentile(ms["get"], 50),
                "raw p99": percentile(ms["raw"], 99),
                "get p99": percentile(ms["get"], 99),
            },
            "ms",
        )
    )
    return sec
