"""3. ``clear_all_schemas`` through the queue vs one by one vs the raw parallel ceiling.

Each contender clears its own user's partition of the schema table, filled beforehand (not
timed) with ``n`` schemas. One by one is what datafold 0.1.28 did: list the names, then one
DeleteItem per schema; it is slow and steady, so it clears a subset (its rate is per schema).
The raw ceiling is a paginated key-only Query feeding 25-key BatchWriteItem deletes to N threads
(N swept, best kept). The pipeline is ``Producer.clear_all_schemas`` -> job finished, workers
already running. Goal: pipeline >= 0.9x the raw ceiling (median of per-round ratios).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from bench import raw, runs
from bench.bulk_load import WORKERS
from bench.env import BenchEnv
from bench.model import Goal, Panel, Section, Table
from bench.profiling import Spy, summary
from bench.runs import BenchError
from bench.stats import median
from storage.schema import DynamoSchemaStore


def fill(env: BenchEnv, table: str, user: str, n: int) -> None:
    """``n`` small schemas for ``user``, written with parallel BatchWriteItem (not timed)."""
    now = str(int(time.time()))

    def item(i: int) -> dict[str, object]:
        return {
            "PutRequest": {
                "Item": {
                    "PK": {"S": user},
                    "SK": {"S": f"schema-{i:06d}"},
                    "SchemaJson": {"S": '{"fields":{"id":"int","name":"str"}}'},
                    "MutationMappers": {"S": "{}"},
                    "CreatedAt": {"N": now},
                    "UpdatedAt": {"N": now},
                    "Version": {"N": "1"},
                }
            }
        }

    batches = [[item(i) for i in range(j, min(j + 25, n))] for j in range(0, n, 25)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda b: raw.send_batch(env.client, table, b), batches))


def run(env: BenchEnv) -> Section:
    n, n_one, reps = (600, 150, 1) if env.quick else (10_000, 1_500, 3)
    sweep = (8,) if env.quick else (4, 8, 16)
    sec = Section(
        "clear_schemas",
        "3. clear_all_schemas",
        intro=(
            f"{n:,} schemas per run (one by one: {n_one:,}, rate per schema). {reps} interleaved "
            f"rounds; the pipeline ran on {WORKERS} workers with default settings."
        ),
    )
    table = env.schema_table()
    store = DynamoSchemaStore(env.dynamo_config, dynamo=env.dynamo)
    ws = env.pool(WORKERS)
    producer = env.producer()
    runs.warm_up(env, producer, 500)

    def raw_rate(threads: int) -> float:
        user = env.unique("rawdel")
        fill(env, table, user, n)
        t = time.perf_counter()
        done = raw.parallel_delete_all(env.client, table, user, threads)
        rate = n / (time.perf_counter() - t)
        if done != n:
            raise BenchError(f"raw delete removed {done} of {n}")
        return rate

    def one_by_one() -> float:
        user = env.unique("onebyone")
        fill(env, table, user, n_one)
        s = store.for_user(user)
        t = time.perf_counter()
        for name in s.list_schema_names():
            env.client.delete_item(TableName=table, Key={"PK": {"S": user}, "SK": {"S": name}})
        return n_one / (time.perf_counter() - t)

    def pipeline() -> float:
        user = env.unique("pipedel")
        fill(env, table, user, n)
        t = time.perf_counter()
        st = producer.clear_all_schemas(user).wait(timeout=600, poll=0.02)
        rate = n / (time.perf_counter() - t)
        if st.state != "succeeded" or st.deleted != n:
            raise BenchError(f"clear_all_schemas: {st.state}, {st.deleted}/{n} deleted")
        return rate

    sweep_rates = {th: raw_rate(th) for th in sweep}
    best = max(sweep_rates, key=lambda th: sweep_rates[th])
    rates: dict[str, list[float]] = {"raw": [], "one": [], "pipe": []}
    for _ in range(reps):
        rates["raw"].append(raw_rate(best))
        rates["one"].append(one_by_one())
        rates["pipe"].append(pipeline())
    vs_raw = median([p / r for p, r in zip(rates["pipe"], rates["raw"], strict=True)])
    raw_vs_one = median([r / o for r, o in zip(rates["raw"], rates["one"], strict=True)])
    pipe_vs_one = median([p / o for p, o in zip(rates["pipe"], rates["one"], strict=True)])
    t = Table(["contender", "schemas/s (median)", "rounds (min-max)", "x one by one"])
    for key, name in (
        ("one", "one by one (DeleteItem each)"),
        ("raw", f"raw ceiling: Query + batched deletes, {best} threads"),
        ("pipe", f"pipeline clear_all_schemas ({len(ws)} workers)"),
    ):
        r = rates[key]
        t.add(
            name,
            median(r),
            f"{min(r):,.0f}-{max(r):,.0f}",
            median([a / b for a, b in zip(r, rates["one"], strict=True)]),
        )
    sec.tables.append(t)
    sec.tables.append(
        Table(
            ["raw threads"] + [str(k) for k in sweep_rates],
            [["schemas/s"] + [f"{v:,.0f}" for v in sweep_rates.values()]],
        )
    )
    sec.goals.append(Goal("pipeline vs raw ceiling", vs_raw, 0.9))
    sec.notes.append(
        f"Raw ceiling vs one by one: {raw_vs_one:.1f}x (the issue expects about 7x "
        f"on 2 cores); pipeline vs one by one: {pipe_vs_one:.1f}x."
    )
    if vs_raw < 0.9:
        worst = min(sweep_rates, key=lambda th: sweep_rates[th])
        sec.notes.append(
            f"Why: deletes from the schema table (it has a GSI) scale badly with concurrency on "
            f"DynamoDB Local: the raw ceiling peaks at {best} threads "
            f"({sweep_rates[best]:,.0f}/s) and falls to {sweep_rates[worst]:,.0f}/s at {worst}, "
            f"while the pipeline runs one planner (a paginated Query, sequential) and then up to "
            f"{len(ws)} workers x their task slots x batch threads of deletes at once."
        )
    if vs_raw < 0.9 and not env.quick:
        out = env.workdir / "clear.txt"
        with Spy(ws[0].proc.pid, out) as spy:
            pipeline()
        if spy.ok:
            sec.profile = f"Worker 0 during one more clear_all_schemas (py-spy):\n\n{summary(out)}"
    sec.panels.append(
        Panel(
            f"clear_all_schemas ({n:,})",
            {
                "one by one": median(rates["one"]),
                f"raw ({best} thr)": median(rates["raw"]),
                "pipeline": median(rates["pipe"]),
            },
            "schemas/s",
        )
    )
    return sec
