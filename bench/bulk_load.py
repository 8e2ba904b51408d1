"""1. Bulk load: the pipeline end to end vs the raw parallel ceiling vs boto3's batch_writer.

Per data set: the raw ceiling's thread count is swept first (one run each) and the best kept;
then the three contenders run interleaved, ``reps`` times. The pipeline is ``Producer.load`` to
job finished with the workers already running (default settings, ``WORKERS`` processes).
``batch_writer`` is slow and steady, so it writes a subset (its rate is per item either way).
Goals: pipeline >= 0.9x the raw ceiling and >= 2x batch_writer, as medians of the per-round
ratios (each round's contenders ran back to back, so they saw the same machine load).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import raw, runs
from bench.env import USER, BenchEnv
from bench.model import Goal, Panel, Section, Table
from bench.procs import CpuMeter
from bench.profiling import Spy, summary
from bench.stats import median

WORKERS = 2


@dataclass(frozen=True)
class DataSet:
    label: str
    size: int
    n: int
    bw_n: int


FULL = (DataSet("200 B", 200, 50_000, 10_000), DataSet("4 KB", 4096, 10_000, 4_000))
QUICK = (DataSet("200 B", 200, 3_000, 1_000), DataSet("4 KB", 4096, 600, 300))


def run(env: BenchEnv) -> Section:
    sets, reps = (QUICK, 1) if env.quick else (FULL, 5)
    sweep = (8,) if env.quick else (4, 8, 16, 32)
    sec = Section(
        "bulk_load",
        "1. Bulk load",
        intro=(
            f"Pipeline: `Producer.load` -> job finished, {WORKERS} worker processes already "
            "running with the default settings. Raw ceiling: BatchWriteItem of 25 from N "
            "threads on one client (N swept, best kept). batch_writer: boto3 "
            f"`Table.batch_writer()`. {reps} interleaved rounds; figures are medians, ratios are "
            "medians of per-round ratios. CPU columns: CPU µs per item of this process (the "
            "loader), the workers, and "
            "DynamoDB Local (shared with other users of the machine)."
        ),
    )
    ws = env.pool(WORKERS)
    producer = env.producer()
    runs.warm_up(env, producer)
    for ds in sets:
        items = raw.make_items(ds.n, ds.size, USER)
        sweep_rates = {t: runs.raw_load(env, items, t) for t in sweep}
        best_t = max(sweep_rates, key=lambda t: sweep_rates[t])
        rates: dict[str, list[float]] = {"raw": [], "bw": [], "pipe": []}
        cpu: dict[str, list[dict[str, float]]] = {"raw": [], "pipe": []}
        for _ in range(reps):
            with CpuMeter.standard() as m:
                rates["raw"].append(runs.raw_load(env, items, best_t))
            cpu["raw"].append(m.per_item_us(ds.n))
            rates["bw"].append(runs.batch_writer_load(env, items[: ds.bw_n]))
            with CpuMeter.standard([w.proc.pid for w in ws]) as m:
                rates["pipe"].append(runs.pipeline_load(env, producer, items))
            cpu["pipe"].append(m.per_item_us(ds.n))
        vs_raw = median([p / r for p, r in zip(rates["pipe"], rates["raw"], strict=True)])
        vs_bw = median([p / b for p, b in zip(rates["pipe"], rates["bw"], strict=True)])
        t = Table(
            [
                "contender",
                "items/s (median)",
                "rounds (min-max)",
                "x raw ceiling",
                "CPU µs/item: loader",
                "workers",
                "DynamoDB Local",
            ]
        )
        for key, name in (
            ("raw", f"raw BatchWriteItem, {best_t} threads"),
            ("bw", f"boto3 batch_writer ({ds.bw_n:,} items)"),
            ("pipe", f"pipeline ({WORKERS} workers)"),
        ):
            r = rates[key]
            c = cpu.get(key)
            cells = (
                [median([x.get(g, 0.0) for x in c]) for g in ("bench", "workers", "dynamodb-local")]
                if c
                else ["-", "-", "-"]
            )
            t.add(
                name,
                median(r),
                f"{min(r):,.0f}-{max(r):,.0f}",
                median([a / b for a, b in zip(r, rates["raw"], strict=True)]),
                *cells,
            )
        sec.tables.append(t)
        sw = Table(
            ["raw threads"] + [str(k) for k in sweep_rates],
            [["items/s"] + [f"{v:,.0f}" for v in sweep_rates.values()]],
        )
        sec.tables.append(sw)
        sec.goals += [
            Goal(f"{ds.label}: pipeline vs raw ceiling", vs_raw, 0.9),
            Goal(f"{ds.label}: pipeline vs batch_writer", vs_bw, 2.0),
        ]
        sec.panels.append(
            Panel(
                f"Bulk load {ds.label} x {ds.n:,}",
                {
                    f"raw ({best_t} thr)": median(rates["raw"]),
                    "batch_writer": median(rates["bw"]),
                    "pipeline": median(rates["pipe"]),
                },
                "items/s",
            )
        )
        sec.notes += explain(ds, cpu, median(rates["raw"]) / median(rates["bw"]), vs_bw)
        if vs_raw < 0.9 and not env.quick:
            out = env.workdir / f"bulk-{ds.size}.txt"
            with Spy(ws[0].proc.pid, out) as spy:
                runs.pipeline_load(env, producer, items)
            if spy.ok:
                sec.profile += (
                    f"Worker 0 during one more {ds.label} load (py-spy):\n\n{summary(out)}\n\n"
                )
    return sec


def explain(
    ds: DataSet, cpu: dict[str, list[dict[str, float]]], raw_vs_bw: float, pipe_vs_bw: float
) -> list[str]:
    """Why the ratios are what they are, from the CPU each contender cost per item."""

    def total(key: str) -> float:
        return median([sum(x.values()) for x in cpu[key]])

    def part(key: str, group: str) -> float:
        return median([x.get(group, 0.0) for x in cpu[key]])

    p, r = total("pipe"), total("raw")
    notes = [
        f"{ds.label}: CPU per item (loader + workers + DynamoDB Local): pipeline "
        f"{p:,.0f} us (workers {part('pipe', 'workers'):,.0f}, DynamoDB Local "
        f"{part('pipe', 'dynamodb-local'):,.0f}), raw {r:,.0f} us (loader "
        f"{part('raw', 'bench'):,.0f}, DynamoDB Local {part('raw', 'dynamodb-local'):,.0f})."
        f" Everything shares 2 cores, so throughput is bounded by CPU per item: "
        f"raw/pipeline CPU = {r / p:.2f}x."
    ]
    if raw_vs_bw < 2.0 and pipe_vs_bw < 2.0:
        notes.append(
            f"{ds.label}: the raw ceiling itself is only {raw_vs_bw:.1f}x batch_writer "
            "here: DynamoDB Local answers one thread in about a millisecond and the "
            "2 cores are the limit for every parallel writer; against DynamoDB's real "
            "latency (several ms per call) one thread is far from the ceiling."
        )
    return notes
